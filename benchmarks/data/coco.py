"""COCO-format object detection data: the MS-COCO 2017 reader, the detectors' augmentations, COCOeval.

Layout (the official one; ``split`` is ``train2017`` / ``val2017``, or any name for other COCO-format sets)::

    <root>/annotations/instances_<split>.json
    <root>/<split>/<file_name of each image>        (JPEG/PNG)

Reading: the annotation file is parsed with :mod:`json`, checked (top-level lists ``images``,
``annotations``, ``categories``; the keys of each entry) and handed to ``pycocotools.coco.COCO``, so a
malformed file fails with its path and what was expected instead of a ``KeyError`` deep inside a worker.

Standard handling (as the reference implementations of both detectors do):

* crowd annotations (``iscrowd: 1``) never become training targets; at evaluation COCOeval matches them as
  "ignore" regions (a detection on a crowd region is neither a true nor a false positive);
* boxes of zero width or height are dropped from the training targets;
* images without a non-crowd box are kept for evaluation (every detection on them is a false positive) and,
  in training, kept or dropped by ``skip_empty`` (the torchvision detection reference drops them; the
  CenterNet code keeps them, with an all-zero heat-map);
* category ids (COCO's are 1..90 with gaps) map to contiguous labels ``0..K-1`` in sorted-id order and back.

Evaluation: :func:`coco_evaluate` runs the official ``COCOeval`` (bbox, maxDets 100) and returns AP, AP50,
AP75 and AP for small/medium/large objects in percent; nothing is computed by hand.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from benchmarks.config.errors import ConfigError

#: COCOeval.stats index -> our metric name (percent)
COCO_METRICS: dict[str, int] = {"ap": 0, "ap50": 1, "ap75": 2, "ap_small": 3, "ap_medium": 4, "ap_large": 5}

_IMAGE_KEYS = ("id", "file_name", "width", "height")
_ANN_KEYS = ("id", "image_id", "category_id", "bbox")


class CocoFormatError(ConfigError):
    """An annotation file that is not valid COCO detection json (a ConfigError: exit code 2, nothing run)."""


def annotation_path(root: str | Path, split: str) -> Path:
    return Path(root).expanduser() / "annotations" / f"instances_{split}.json"


def image_dir(root: str | Path, split: str) -> Path:
    return Path(root).expanduser() / split


def check_layout(root: str | Path | None, splits: Iterable[str], key: str = "data.root") -> None:
    """Cheap on-disk check of the COCO layout (files and folders exist; nothing is parsed)."""
    if root is None or str(root) == "":
        raise ConfigError(f"{key} is not set: give the folder holding annotations/ and the image folders "
                          f"(the COCO 2017 layout), e.g. --set {key}=/data/coco")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"{key}: {base} is not a folder; expected the COCO layout (annotations/instances_"
                          f"<split>.json and <split>/ image folders)")
    for split in splits:
        ann, images = annotation_path(base, split), image_dir(base, split)
        if not ann.is_file():
            raise ConfigError(f"{key}: {ann} does not exist; expected annotations/instances_{split}.json under "
                              f"{base} (COCO 2017 layout)")
        if not images.is_dir():
            raise ConfigError(f"{key}: {images} is not a folder; expected the images of split {split!r} there "
                              f"(COCO 2017 layout)")


def _fail(path: Path, what: str) -> CocoFormatError:
    return CocoFormatError(f"{path}: {what} (expected COCO detection json: lists 'images' "
                           f"[{', '.join(_IMAGE_KEYS)}], 'annotations' [{', '.join(_ANN_KEYS)}, iscrowd], "
                           f"'categories' [id, name])")


def read_annotations(path: str | Path) -> dict[str, Any]:
    """Parse and check a COCO detection annotation file; returns the json dict (CocoFormatError if bad)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CocoFormatError(f"{path}: file not found (expected annotations/instances_<split>.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid json ({exc})") from None
    if not isinstance(data, dict):
        raise _fail(path, f"top level is a {type(data).__name__}, not an object")
    for section in ("images", "annotations", "categories"):
        if not isinstance(data.get(section), list):
            raise _fail(path, f"missing or non-list top-level key {section!r}")
    for i, image in enumerate(data["images"]):
        missing = [k for k in _IMAGE_KEYS if not isinstance(image, dict) or k not in image]
        if missing:
            raise _fail(path, f"images[{i}] lacks {missing}")
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise _fail(path, f"categories[{i}] lacks 'id'")
    image_ids = {image["id"] for image in data["images"]}
    cat_ids = {cat["id"] for cat in data["categories"]}
    for i, ann in enumerate(data["annotations"]):
        missing = [k for k in _ANN_KEYS if not isinstance(ann, dict) or k not in ann]
        if missing:
            raise _fail(path, f"annotations[{i}] lacks {missing}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise _fail(path, f"annotations[{i}].bbox is {bbox!r}, not [x, y, width, height]")
        if ann["image_id"] not in image_ids:
            raise _fail(path, f"annotations[{i}].image_id {ann['image_id']!r} is not in 'images'")
        if ann["category_id"] not in cat_ids:
            raise _fail(path, f"annotations[{i}].category_id {ann['category_id']!r} is not in 'categories'")
        # COCOeval needs an area per annotation (its small/medium/large ranges); the box area when absent
        ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
        ann.setdefault("iscrowd", 0)
    return data


def load_coco(path: str | Path) -> Any:
    """A ``pycocotools.coco.COCO`` of the checked annotation file (its index printout silenced)."""
    from pycocotools.coco import COCO

    data = read_annotations(path)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


@dataclass
class CocoIndex:
    """One split: the COCO object, the image ids used, and the category id <-> label maps."""

    coco: Any
    root: Path
    split: str
    image_ids: list[int]
    cat_ids: list[int]

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    @property
    def label_of(self) -> dict[int, int]:
        return {c: i for i, c in enumerate(self.cat_ids)}


def _training_boxes(anns: Sequence[Mapping[str, Any]], width: float, height: float, label_of: Mapping[int, int]):
    boxes, labels = [], []
    for ann in anns:
        if ann.get("iscrowd", 0):
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        x1, y1 = max(0.0, x), max(0.0, y)
        x2, y2 = min(float(width), x + w), min(float(height), y + h)
        if x2 > x1 and y2 > y1:
            boxes.append([x1, y1, x2, y2])
            labels.append(label_of[ann["category_id"]])
    return boxes, labels


def untrained_categories(train: CocoIndex, val: CocoIndex) -> list[int]:
    """Category ids with a non-crowd validation box but no non-crowd box in the training images used: AP on
    them measures nothing the detector was taught (a sign of a bad split, e.g. one ordered by class)."""

    def present(index: CocoIndex) -> set[int]:
        anns = index.coco.loadAnns(index.coco.getAnnIds(imgIds=index.image_ids))
        return {int(a["category_id"]) for a in anns if not a.get("iscrowd", 0)}

    return sorted(present(val) - present(train))


def open_split(root: str | Path, split: str, *, skip_empty: bool = False, max_images: int | None = None,
               cat_ids: Sequence[int] | None = None) -> CocoIndex:
    """Read ``annotations/instances_<split>.json`` of ``root``. ``skip_empty`` drops images without a non-crowd
    box; ``max_images`` keeps the first N images in id order (quick runs); ``cat_ids`` fixes the label order
    (the training split's) so that labels mean the same in both splits."""
    base = Path(root).expanduser()
    coco = load_coco(annotation_path(base, split))
    own_cats = sorted(coco.getCatIds())
    if cat_ids is not None and sorted(cat_ids) != own_cats:
        raise CocoFormatError(f"{annotation_path(base, split)}: categories {own_cats} differ from the training "
                              f"split's {sorted(cat_ids)}")
    ids = sorted(coco.getImgIds())
    if skip_empty:
        label_of = {c: i for i, c in enumerate(own_cats)}
        ids = [i for i in ids if _training_boxes(coco.loadAnns(coco.getAnnIds(imgIds=[i])),
                                                 coco.imgs[i]["width"], coco.imgs[i]["height"], label_of)[0]]
    if max_images is not None:
        ids = ids[: int(max_images)]
    return CocoIndex(coco=coco, root=base, split=split, image_ids=ids, cat_ids=list(cat_ids or own_cats))


class CocoDetection(torch.utils.data.Dataset):
    """Images (``tv_tensors.Image``, uint8 RGB) and targets ``{"boxes": BoundingBoxes (XYXY, pixels),
    "labels": int64, "image_id": int, "orig_size": (h, w)}`` after ``transforms(image, target)``."""

    def __init__(self, index: CocoIndex, transforms: Callable[..., Any] | None = None):
        self.index = index
        self.transforms = transforms
        self._label_of = index.label_of

    def __len__(self) -> int:
        return len(self.index.image_ids)

    def load(self, i: int) -> tuple[tv_tensors.Image, dict[str, Any]]:
        from torchvision.io import ImageReadMode, decode_image

        coco = self.index.coco
        image_id = self.index.image_ids[i]
        info = coco.imgs[image_id]
        path = image_dir(self.index.root, self.index.split) / info["file_name"]
        try:
            image = decode_image(str(path), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError) as exc:
            raise OSError(f"{path}: cannot read image {image_id} listed in "
                          f"{annotation_path(self.index.root, self.index.split)} ({exc})") from exc
        h, w = int(image.shape[-2]), int(image.shape[-1])
        if (h, w) != (int(info["height"]), int(info["width"])):
            raise CocoFormatError(f"{path}: image is {w}x{h} but the annotation file says "
                                  f"{info['width']}x{info['height']}")
        boxes, labels = _training_boxes(coco.loadAnns(coco.getAnnIds(imgIds=[image_id])), w, h, self._label_of)
        target = {
            "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                              format="XYXY", canvas_size=(h, w)),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": int(image_id),
            "orig_size": (h, w),
        }
        return tv_tensors.Image(image), target

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.load(i)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate_list(batch: Sequence[tuple[Any, Any]]) -> tuple[list[Any], list[Any]]:
    """Images and targets as two lists (images of different sizes cannot be stacked)."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


# --------------------------------------------------------------------------------------------------------
# augmentation (torchvision.transforms.v2 transforms boxes with the images)
# --------------------------------------------------------------------------------------------------------
def _first_image_size(flat_inputs: Sequence[Any]) -> tuple[int, int]:
    for item in flat_inputs:
        if isinstance(item, (tv_tensors.Image, tv_tensors.BoundingBoxes)) or (
                isinstance(item, torch.Tensor) and item.ndim >= 2):
            if isinstance(item, tv_tensors.BoundingBoxes):
                continue
            h, w = F.get_size(item)
            return int(h), int(w)
    raise TypeError("no image in the sample")


def _centernet_border(border: int, size: int) -> int:
    # CenterNet code (src/lib/datasets/sample/ctdet.py, _get_border): halve the border until the centre range
    # [border, size - border) is not empty
    i = 1
    while size - border // i <= border // i:
        i *= 2
    return border // i


class CenterNetRandomCrop(v2.Transform):
    """CenterNet's training crop (xingyizhou/CenterNet, ``src/lib/datasets/sample/ctdet.py``): a square of side
    ``max(h, w) * s`` (``s`` drawn from ``scales``) centred at a random point at least ``border`` pixels (128
    in the code, shrunk for small images) inside the image, resized to ``size`` x ``size``; outside the image
    is black. The official code does it as one affine warp with OpenCV; this is the same map (scale and
    shift) as a crop-with-padding plus resize, which ``transforms.v2`` applies to the boxes too."""

    def __init__(self, size: int, scales: Sequence[float] = tuple(round(0.6 + 0.1 * i, 1) for i in range(8)),
                 border: int = 128):
        super().__init__()
        self.size = int(size)
        self.scales = tuple(float(s) for s in scales)
        self.border = int(border)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _first_image_size(flat_inputs)
        side = max(h, w) * self.scales[int(torch.randint(len(self.scales), ()))]
        bw, bh = _centernet_border(self.border, w), _centernet_border(self.border, h)
        cx = int(torch.randint(bw, w - bw, ())) if w > 2 * bw else w / 2
        cy = int(torch.randint(bh, h - bh, ())) if h > 2 * bh else h / 2
        side_i = max(1, int(round(side)))
        return {"top": int(round(cy - side / 2)), "left": int(round(cx - side / 2)), "side": side_i}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resized_crop, inpt, top=params["top"], left=params["left"],
                                 height=params["side"], width=params["side"], size=[self.size, self.size],
                                 antialias=True)


def letterbox_params(h: int, w: int, size: int) -> tuple[float, int, int]:
    """Scale and padding that fit an ``h`` x ``w`` image centred into ``size`` x ``size`` (longer side fills
    it), as CenterNet's evaluation affine (centre of the image, scale ``max(h, w)``) does."""
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    return scale, (size - new_w) // 2, (size - new_h) // 2


class Letterbox(v2.Transform):
    """Resize the longer side to ``size`` and pad centred to ``size`` x ``size`` (boxes follow)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _first_image_size(flat_inputs)
        scale, left, top = letterbox_params(h, w, self.size)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        return {"new": [new_h, new_w], "pad": [left, top, self.size - new_w - left, self.size - new_h - top]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = self._call_kernel(F.resize, inpt, size=params["new"], antialias=True)
        return self._call_kernel(F.pad, out, padding=params["pad"], fill=0)


#: per-channel mean of the CenterNet code (COCO statistics, 0..1; the code lists them in BGR, here in RGB)
CENTERNET_MEAN = (0.470, 0.447, 0.408)
CENTERNET_STD = (0.278, 0.274, 0.289)

#: augmentation recipes of :func:`detection_transforms`
AUGMENTATIONS = ("centernet", "ssd", "ssdlite", "none")


def detection_transforms(recipe: str, train: bool, fixed_size: int | None = None) -> v2.Compose:
    """The augmentation of ``recipe`` (uint8 image in, uint8 image out; the model or the task normalises).

    ``fixed_size``: the side of the square input of a model that takes fixed-size batches (CenterNet); None
    for a model that resizes by itself (torchvision's SSD). Recipes:

    * ``centernet`` (CenterNet code, ctdet): training = colour jitter (brightness/contrast/saturation 0.4;
      the code's PCA lighting noise is left out, ours), :class:`CenterNetRandomCrop` to ``fixed_size``,
      horizontal flip 0.5; evaluation = :class:`Letterbox` to ``fixed_size`` (the code's default affine; its
      published numbers use ``--keep_res``, the original resolution padded to a multiple of 32: ours).
    * ``ssd`` (torchvision detection reference, ``--data-augmentation ssd``): photometric distortion, zoom-out
      (fill = the SSD mean colour), IoU crop, flip 0.5; the model resizes to its input size.
    * ``ssdlite`` (``--data-augmentation ssdlite``): IoU crop and flip 0.5.
    * ``none``: no augmentation.

    Evaluation never augments; with ``fixed_size`` every split is letterboxed to it after augmentation.
    """
    sanitize = v2.SanitizeBoundingBoxes(labels_getter=lambda sample: sample[1]["labels"], min_size=1.0)
    if recipe not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; valid: {', '.join(AUGMENTATIONS)}")
    steps: list[Any] = []
    if train and recipe == "centernet":
        if fixed_size is None:
            raise ValueError("the centernet augmentation crops to a fixed size: give fixed_size")
        steps = [v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4), CenterNetRandomCrop(fixed_size),
                 v2.RandomHorizontalFlip(0.5)]
    elif train and recipe == "ssd":
        fill = {tv_tensors.Image: [round(255 * m) for m in (0.48235, 0.45882, 0.40784)], "others": 0}
        steps = [v2.RandomPhotometricDistort(p=1.0), v2.RandomZoomOut(fill=fill), v2.RandomIoUCrop(),
                 v2.RandomHorizontalFlip(0.5)]
    elif train and recipe == "ssdlite":
        steps = [v2.RandomIoUCrop(), v2.RandomHorizontalFlip(0.5)]
    if fixed_size is not None and not (train and recipe == "centernet"):
        steps.append(Letterbox(fixed_size))
    return v2.Compose([*steps, v2.ClampBoundingBoxes(), sanitize])


# --------------------------------------------------------------------------------------------------------
# evaluation: the official COCOeval
# --------------------------------------------------------------------------------------------------------
def coco_evaluate(coco_gt: Any, detections: Sequence[Mapping[str, Any]], image_ids: Sequence[int]) -> dict[str, float]:
    """COCO bbox AP (official ``COCOeval``: IoU 0.50:0.95, area ranges, maxDets 100) over ``image_ids``, in percent.

    ``detections``: ``{"image_id", "category_id" (the COCO id), "bbox": [x, y, w, h] in original pixels,
    "score"}``. With no detection at all AP is 0 (COCOeval cannot load an empty result list). An area range
    without ground truth (COCOeval's -1) is reported as NaN.
    """
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return {name: 0.0 for name in COCO_METRICS}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(d) for d in detections])
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    out = {}
    for name, k in COCO_METRICS.items():
        value = float(evaluator.stats[k])
        out[name] = 100.0 * value if value >= 0 else math.nan
    return out


def to_coco_detections(image_id: int, boxes_xyxy: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                       cat_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO result entries of one image (boxes in original pixels, labels 0..K-1)."""
    boxes = boxes_xyxy.detach().float().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    return [{"image_id": int(image_id), "category_id": int(cat_ids[int(c)]), "bbox": [round(v, 2) for v in b],
             "score": float(s)} for b, s, c in zip(xywh, scores.detach().float().cpu().tolist(), labels.tolist())]


__all__ = [
    "AUGMENTATIONS",
    "CENTERNET_MEAN",
    "CENTERNET_STD",
    "COCO_METRICS",
    "CenterNetRandomCrop",
    "CocoDetection",
    "CocoFormatError",
    "CocoIndex",
    "Letterbox",
    "annotation_path",
    "check_layout",
    "coco_evaluate",
    "collate_list",
    "detection_transforms",
    "image_dir",
    "letterbox_params",
    "load_coco",
    "open_split",
    "read_annotations",
    "to_coco_detections",
]
