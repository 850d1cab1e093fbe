"""Config files: YAML loading with ``base:`` inheritance and ``--set`` overrides, grid expansion, validation."""

from .errors import ConfigError, ConfigWarning
from .grid import expand, grid_points
from .loader import apply_override, load_config, load_yaml, parse_override
from .validate import recipe_warnings, resolve_config

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "apply_override",
    "expand",
    "grid_points",
    "load_config",
    "load_yaml",
    "parse_override",
    "recipe_warnings",
    "resolve_config",
]
