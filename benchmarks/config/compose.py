"""Checks of a composed sweep (file + bases + grid/zip + ``--set``) that no single run can see.

A tag labels a run for analysis (``tags.optimizer: AdamP`` fills the AdamP column of a table), so a tag that
names another run's value is a wrong answer waiting to be printed. This happens when lists that were meant
to go together (``zip: {optimizer.name: [...], tags.optimizer: [...]}``) are re-paired or partly replaced.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence

from .errors import ConfigError

#: tag name -> the dotted key of the value it describes
DESCRIBED: dict[str, str] = {
    "optimizer": "optimizer.name",
    "model": "model.name",
    "dataset": "data.name",
    "loss": "train.loss",
}

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalise_label(value: Any) -> str:
    """``AdamP``, ``adamp``, ``timm:adamp`` and ``torch.optim:AdamP`` all become ``adamp``."""
    text = str(value)
    if ":" in text:
        text = text.rsplit(":", 1)[1]
    return _NON_ALNUM.sub("", text.lower())


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def check_tags(resolved: Sequence[Mapping[str, Any]], overridden: Iterable[str] = ()) -> None:
    """Raise ConfigError when a tag contradicts the value it describes.

    * across the runs of one file: a run whose ``tags.optimizer`` is exactly the label of another run's
      ``optimizer.name`` (normalised: case, punctuation and a ``module:`` prefix ignored) while its own
      ``optimizer.name`` differs, e.g. AdamW ran tagged AdamP;
    * for a value changed for every run by ``--set`` (``overridden`` holds those dotted keys): a tag that does
      not even contain the new value's label (the tag comes from the file and still names the old value).

    Tags that name something the config does not hold (``Adam`` for the paper's "Adam" column run with
    ``adamw``) stay allowed as long as no run of the sweep holds the value they name.
    """
    overridden = set(overridden)
    for tag, key in DESCRIBED.items():
        pairs = []
        for config in resolved:
            tags = config.get("tags")
            if not isinstance(tags, Mapping) or tags.get(tag) is None:
                continue
            value = _get(config, key)
            if value is None:
                continue
            pairs.append((tags[tag], value))
        if not pairs:
            continue
        holders = {normalise_label(value): value for _, value in pairs}
        for label, value in pairs:
            lab, val = normalise_label(label), normalise_label(value)
            if lab != val and lab in holders:
                raise ConfigError(
                    f"`tags.{tag}: {label}` is on a run whose `{key}` is {value!r}, while another run has "
                    f"`{key}: {holders[lab]!r}`: the tag contradicts the value it describes (lists of a zip/grid "
                    f"re-paired?). Vary `tags.{tag}` together with `{key}` in one zip, or set both")
            section = key.split(".")[0]
            if (key in overridden or section in overridden) and f"tags.{tag}" not in overridden \
                    and "tags" not in overridden and lab not in val and val not in lab:
                raise ConfigError(
                    f"--set changes `{key}` to {value!r} but `tags.{tag}` still says {label!r} (from the config "
                    f"file): set the tag too, e.g. --set 'tags.{tag}={value}', or drop it with --set tags.{tag}=null")


__all__ = ["DESCRIBED", "check_tags", "normalise_label"]
