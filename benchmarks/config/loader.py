"""Reading config files: ``yaml.safe_load``, ``base:`` inheritance and ``--set`` overrides.

* ``base: path`` (or a list of paths) is resolved relative to the file that names it; bases are deep-merged
  in order and the file itself wins. Dicts merge key by key; every other value (lists included) replaces.
* ``--set a.b.c=value`` parses ``value`` as YAML (``3`` is an int, ``1e-3`` a float, ``[0, 1]`` a list,
  ``null`` is None). ``grid.<dotted key>`` addresses one axis of the grid, whose own name contains dots.
  ``--set grid=...`` / ``--set zip=...`` replace the file's whole grid / zip. ``--set zip.<dotted key>`` may
  only build a zip from nothing: the lists of a zip go together element by element, so adding or replacing
  one list of the file's zip would silently re-pair (and mislabel) the others (docs/configs.md).

Config files are UTF-8, duplicate keys are errors, and aliases may not expand beyond :data:`MAX_YAML_NODES`
nodes (a "billion laughs" file is rejected while parsing, before anything copies it).
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from benchmarks.safe_read import MAX_CONFIG_BYTES, describe, read_regular

from .errors import ConfigError

#: the most nodes a YAML document may hold with every alias expanded (a real config has a few hundred; a
#: 9-level "billion laughs" file has 10^9). Counted on the composed node graph, before anything is built.
MAX_YAML_NODES = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _YAMLProblem(yaml.YAMLError):
    """A YAML document that parses but is refused (duplicate key, alias bomb); the message is complete."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

#: top-level sections whose keys are dotted paths themselves (one axis each), not nested dicts
AXIS_SECTIONS = ("grid", "zip")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float, as every ML config author expects.

    YAML 1.1 only resolves floats written with a dot (``1.0e-3``); without this, ``lr: 1e-3`` would be the
    *string* "1e-3" and fail type validation with a confusing message.

    It also refuses duplicate keys in a mapping (the last one would silently win) and documents whose
    aliases expand to more than :data:`MAX_YAML_NODES` nodes.
    """

    def construct_document(self, node: Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                    continue  # `<<: *base` merges may be overridden by explicit keys, as YAML defines
                key = self.construct_object(key_node)
                try:
                    line = first_line.get(key)
                except TypeError:
                    continue  # unhashable: the base class reports it
                if line is not None:
                    raise _YAMLProblem(
                        f"duplicate key `{key}` at line {key_node.start_mark.line + 1} (first at line {line}); "
                        f"the last one would silently win: keep one")
                first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: Node) -> None:
    """Refuse a document whose aliases expand to more than MAX_YAML_NODES nodes, or that refers to itself.

    Each distinct node is visited once (sizes are memoised), so this takes time linear in the file.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _YAMLProblem(f"recursive alias at line {node.start_mark.line + 1}: a config cannot contain itself")
        active.add(key)
        if isinstance(node, SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        active.discard(key)
        sizes[key] = total
        if total > MAX_YAML_NODES:
            raise _YAMLProblem(
                f"the value at line {node.start_mark.line + 1} expands to more than {MAX_YAML_NODES:,} nodes "
                f"through its aliases (*name); a config this large is refused (it looks like a \"billion laughs\" "
                f"file); write it without nested aliases")
        return total

    size(root)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text safely; a syntax error becomes a ConfigError naming ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
    except _YAMLProblem as exc:
        raise ConfigError(exc.message, source=source) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply (thousands of levels): not a config", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if mark is not None:
            raise ConfigError(
                f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}",
                source=source,
            ) from None
        raise ConfigError(f"YAML syntax error: {problem}", source=source) from None


def _position(raw: bytes, offset: int) -> str:
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return f"byte offset {offset} (line {line}, column {column})"


def decode_config_text(raw: bytes, source: str) -> str:
    """The UTF-8 text of a config file; binary or non-UTF-8 bytes are a ConfigError naming the position."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise ConfigError(f"not a text file: NUL byte at {_position(raw, nul)}; a config is UTF-8 YAML text",
                          source=source)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at {_position(raw, exc.start)}; config files are "
            f"UTF-8 (re-save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`)", source=source) from None


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one YAML file into a dict (no inheritance). Errors name the file and line."""
    path = Path(path)
    try:
        raw = read_regular(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:  # a FIFO, a device, a folder, a symlink loop, no permission, a runaway size
        raise ConfigError(f"cannot read config file {path}: {describe(exc)}; a config is a YAML text file") from None
    data = parse_yaml(decode_config_text(raw, str(path)), source=str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"a config file must be a mapping of sections (task:, optimizer:, ...), got a {type(data).__name__}",
            source=str(path),
        )
    return data


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` into a copy of ``base``: dicts merge recursively, anything else in ``top`` wins."""
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), *, _chain: tuple[Path, ...] = ()) -> dict:
    """Load a config file with its ``base:`` chain merged in and ``overrides`` (``a.b=value``) applied.

    The result still holds ``grid:``/``zip:`` (expanded by :func:`benchmarks.config.grid.expand`); ``base:``
    is consumed. Inheritance cycles and missing bases are errors naming the file.
    """
    path = Path(path)
    data = load_yaml(path)
    resolved = Path(os.path.realpath(path))  # realpath, not resolve(): it never raises on a symlink loop
    bases = data.pop("base", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise ConfigError("`base` must be a path or a list of paths (relative to this file)", source=str(path))
    merged: dict[str, Any] = {}
    zip_source: str | None = None
    for base in bases:
        base_path = (path.parent / base) if not os.path.isabs(base) else Path(base)
        if not base_path.exists() and not base_path.is_symlink():
            raise ConfigError(
                f"`base: {base}` not found (looked for {base_path}; paths are relative to this file)",
                source=str(path),
            )
        base_real = Path(os.path.realpath(base_path))
        if base_real in (*_chain, resolved):
            cycle = " -> ".join(str(p) for p in (*_chain, resolved, base_real))
            raise ConfigError(f"`base:` inheritance cycle: {cycle}", source=str(path))
        try:
            layer = load_config(base_path, _chain=(*_chain, resolved))
        except ConfigError as exc:  # the base's own errors name the base; unreadable ones say who names it
            raise exc.with_source(str(path)) from None
        zip_source = _check_zip_layers(merged, layer, zip_source, str(base_path), str(path))
        merged = deep_merge(merged, layer)
    _check_zip_layers(merged, data, zip_source, str(path), str(path))
    merged = deep_merge(merged, data)
    file_zip = _zip_axes(merged.get("zip"))
    for override in overrides:
        key, _ = parse_override(override)
        if key == "zip":
            file_zip = []
        elif key.startswith("zip.") and file_zip:
            raise ConfigError(
                f"--set {override!r}: the config's zip already pairs {', '.join(f'`{a}`' for a in file_zip)} "
                f"element by element; a list added or replaced from the command line would be re-paired with "
                f"them (and runs mislabelled). Replace the whole zip instead, e.g. --set 'zip={{optimizer.name: "
                f"[adamw, adamp], tags.optimizer: [AdamW, AdamP]}}' (or --set zip=null to drop it); "
                f"see docs/configs.md", source=str(path))
        apply_override(merged, override)
    return merged


def _zip_axes(section: Any) -> list[str]:
    """The axis names of a ``zip:`` section (a mapping, or a list of mappings); [] when empty."""
    groups = section if isinstance(section, list) else [section]
    return [str(k) for g in groups if isinstance(g, dict) for k in g]


def _check_zip_layers(merged: Mapping[str, Any], layer: Mapping[str, Any], zip_source: str | None,
                      layer_name: str, path: str) -> str | None:
    """A zip is never merged from two files (its lists would be re-paired); return who defines the zip."""
    if not _zip_axes(layer.get("zip")):
        return zip_source
    if _zip_axes(merged.get("zip")):
        raise ConfigError(
            f"`zip` is defined both in {zip_source} and in {layer_name}; the lists of a zip go together element "
            f"by element, so merging two zips would re-pair them: write the whole zip in one file", source=path)
    return layer_name


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into the dotted key and the YAML-typed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set optimizer.lr=0.01")
    if any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty part in the dotted key {key!r}")
    try:
        value = parse_yaml(raw, source=f"--set {key}")
    except ConfigError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc.message})") from None
    return key, value


def split_key(key: str) -> list[str]:
    """Path of a dotted key; ``grid.x.y`` / ``zip.x.y`` address the single axis ``x.y`` of that section."""
    head, _, rest = key.partition(".")
    if head in AXIS_SECTIONS and rest:
        return [head, rest]
    return key.split(".")


def set_dotted(config: dict, key: str | list[str], value: Any, *, source: str = "") -> None:
    """Set ``config[a][b][c] = value`` for ``key = "a.b.c"``, creating missing dicts."""
    parts = split_key(key) if isinstance(key, str) else key
    node = config
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"{source or 'override'} sets `{'.'.join(parts)}` but `{where}` is a "
                f"{type(child).__name__} ({child!r}), not a section"
            )
        node = child
    node[parts[-1]] = value


def apply_override(config: dict, override: str) -> tuple[str, Any]:
    """Apply one ``--set`` override in place; return the parsed (key, value)."""
    key, value = parse_override(override)
    set_dotted(config, key, value, source=f"--set {override!r}")
    return key, value


__all__ = [
    "AXIS_SECTIONS",
    "apply_override",
    "deep_merge",
    "load_config",
    "load_yaml",
    "parse_override",
    "parse_yaml",
    "set_dotted",
    "split_key",
]
