"""Errors and warnings of config handling.

A :class:`ConfigError` always means "the config is wrong, nothing was launched and nothing was written"; the
CLI turns it into exit code 2. Its message names the file, the key (as a dotted path) and what would be valid.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class ConfigError(Exception):
    """A config that cannot be run. ``exit_code`` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, *, source: str | None = None):
        self.message = message
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)

    def with_source(self, source: str | None) -> "ConfigError":
        """Return the same error attributed to ``source`` (a file name), unless it already names one."""
        if self.source or not source:
            return self
        return ConfigError(self.message, source=source)


class ConfigWarning(UserWarning):
    """A config that runs but probably does not do what its author meant (printed before launch)."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean `x`?"`` for the closest candidate (difflib), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def unknown_key_message(key: str, path: str, valid: Iterable[str], where: str = "") -> str:
    """The one wording used for every unknown key, so users see the same shape everywhere."""
    valid = sorted(str(v) for v in valid)
    hint = did_you_mean(key, valid)
    where = f" {where}" if where else ""
    listed = ", ".join(f"`{v}`" for v in valid) if valid else "(none)"
    return f"unknown key `{key}` at `{path}`{where}{hint} Valid keys: {listed}." if hint else (
        f"unknown key `{key}` at `{path}`{where}. Valid keys: {listed}.")


__all__ = ["ConfigError", "ConfigWarning", "did_you_mean", "unknown_key_message"]
