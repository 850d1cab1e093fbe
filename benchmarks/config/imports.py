"""Code named in a config (``task: pkg.mod:Class``, ``optimizer.name: pkg.mod:Class``) runs when it is imported.

Whatever that import does (raise, call ``sys.exit``) is a config error: one line naming the key, the module's
file and line where it failed and the exception, exit 2, nothing launched. An import that exits is an error,
never a success. The traceback of the last such failure is kept in :data:`last_traceback` for the CLI's
``--debug``/BENCHMARKS_DEBUG=1 (the ConfigError itself is re-raised with the config file's name on the way).
"""

from __future__ import annotations

import importlib
import traceback
from types import ModuleType

from .errors import ConfigError

#: the formatted traceback of the last failed import (None: none failed)
last_traceback: str | None = None


def import_failure(what: str, key: str, exc: BaseException) -> ConfigError:
    """The ConfigError for an import of ``what`` (named at ``key``) that raised or exited with ``exc``."""
    if isinstance(exc, SystemExit):
        detail = f"it called sys.exit({exc.code!r}) while being imported; a module named in a config must not exit"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    user = [f for f in frames if "importlib" not in f.filename]
    where = f" (raised at {user[-1].filename}:{user[-1].lineno})" if user else ""
    global last_traceback
    last_traceback = "".join(traceback.format_exception(exc))
    return ConfigError(f"{what} at `{key}` cannot be imported: {detail}{where}")


def import_module(name: str, what: str, key: str) -> ModuleType:
    """``importlib.import_module(name)``; ImportError passes through (callers add hints about PYTHONPATH),
    every other exception and SystemExit become :func:`import_failure`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code may raise anything at import
        raise import_failure(what, key, exc) from None


__all__ = ["import_failure", "import_module"]
