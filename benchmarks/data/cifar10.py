"""CIFAR-10 from its official release layouts under ``data.root``, read without downloading.

Two layouts (Krizhevsky's release), either directly under ``data.root`` or as ``data.root/<folder>``:

* binary, ``cifar-10-batches-bin/``: ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``;
  each record is 1 label byte followed by 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue; row-major
  32x32), 10,000 records per file.
* python, ``cifar-10-batches-py/``: ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a pickled
  dict with ``data`` (uint8 array 10000 x 3072, same pixel order) and ``labels`` (list of ints). These files
  are read ONLY through :class:`RestrictedUnpickler`: a data file must never be able to run code.

What the official python batches reference: they were written by Python 2's cPickle (protocol 2) from a
numpy array, so besides dicts, lists, ints and byte strings they name exactly three globals, the ones that
rebuild an ndarray: ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (newer
numpy writes ``numpy._core.multiarray._reconstruct``). Nothing else is allowed; any other global (``os.system``,
``builtins.eval``, ``_codecs.encode``, ...) is refused before it is looked up, with the file and the global named.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config.errors import ConfigError

from .mnist import DataFormatError

LAYOUTS = {
    "bin": ("cifar-10-batches-bin", [f"data_batch_{i}.bin" for i in range(1, 6)], ["test_batch.bin"]),
    "py": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RECORD_BYTES = 1 + 3 * 32 * 32

#: the globals an ndarray pickle needs, and nothing else (module, name) -> object
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(DataFormatError):
    """A pickle that names a global outside the allowed set (it was not loaded)."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals needed to rebuild numpy arrays (see module docstring).

    Every other ``GLOBAL`` / ``STACK_GLOBAL`` / ``INST`` / ``OBJ`` lookup goes through :meth:`find_class` and is
    refused there, before any module is imported or any callable is resolved, so nothing in the file can run.
    Persistent ids (``persistent_load``) are refused by the base class.
    """

    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise UnsafePickleError(
                f"{self.source}: the pickle references the global {module}.{name}, which a CIFAR-10 python batch "
                f"never needs; refused without loading it (allowed: {allowed})"
            ) from None


def restricted_load(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; any failure is a :class:`DataFormatError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc})") from exc
    try:
        return RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle: name the file
        raise DataFormatError(f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class ImageArrays:
    """RGB images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read_bin_batch(path: str | os.PathLike[str]) -> ImageArrays:
    """One file of the binary layout (label byte + 3,072 pixel bytes per record)."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc})") from exc
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataFormatError(
            f"{path}: {raw.size} bytes is not a whole number of CIFAR-10 records ({RECORD_BYTES} bytes each: "
            "1 label byte + 3x32x32 pixels)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataFormatError(f"{path}: record {bad} has label {int(labels[bad])}; CIFAR-10 labels are 0..9")
    return ImageArrays(records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels)


def _key(batch: dict, name: str, path: Path) -> Any:
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise DataFormatError(f"{path}: the batch dict has no {name!r} entry (keys: {sorted(map(str, batch))})")


def read_py_batch(path: str | os.PathLike[str]) -> ImageArrays:
    """One file of the python layout, through the restricted unpickler."""
    path = Path(path)
    batch = restricted_load(path)
    if not isinstance(batch, dict):
        raise DataFormatError(f"{path}: expected a pickled dict with data and labels, got {type(batch).__name__}")
    data = _key(batch, "data", path)
    labels = np.asarray(_key(batch, "labels", path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataFormatError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {type(data).__name__} {shape}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{path}: 'labels' must be {data.shape[0]} integers, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(f"{path}: labels outside 0..9")
    return ImageArrays(data.reshape(-1, 3, 32, 32).copy(), labels.astype(np.int64))


def find_layout(root: str | os.PathLike[str] | None, layout: str = "auto") -> tuple[str, Path]:
    """``(layout, folder)`` of the CIFAR-10 files under ``root`` (``auto``: binary first, then python)."""
    if root is None or str(root) == "":
        raise ConfigError(
            "data.root is not set: data.name cifar10 needs the folder holding cifar-10-batches-bin/ or "
            "cifar-10-batches-py/; pass --set data.root=/path/to/cifar10"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"data.root: {base} {'is not a folder' if base.exists() else 'does not exist'}")
    if layout not in ("auto", *LAYOUTS):
        raise ConfigError(f"data.layout: {layout!r}; valid: auto, {', '.join(LAYOUTS)}")
    candidates = list(LAYOUTS) if layout == "auto" else [layout]
    for name in candidates:
        folder_name, train, test = LAYOUTS[name]
        for folder in (base / folder_name, base):
            if all((folder / f).is_file() for f in train + test):
                return name, folder
    wanted = " or ".join(
        f"{base}/{LAYOUTS[n][0]}/{{{', '.join(LAYOUTS[n][1] + LAYOUTS[n][2])}}}" for n in candidates
    )
    raise ConfigError(f"data.root: no complete CIFAR-10 layout under {base}; expected {wanted}")


def load_cifar10(root: str | os.PathLike[str] | None, layout: str = "auto") -> dict[str, ImageArrays]:
    """``{"train": 50,000 images, "test": 10,000 images}`` from either official layout."""
    name, folder = find_layout(root, layout)
    _, train_files, test_files = LAYOUTS[name]
    reader = read_bin_batch if name == "bin" else read_py_batch

    def concat(files: list[str]) -> ImageArrays:
        parts = [reader(folder / f) for f in files]
        return ImageArrays(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))

    return {"train": concat(train_files), "test": concat(test_files)}
