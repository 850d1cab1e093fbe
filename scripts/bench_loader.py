"""Measure the classification data loader's throughput (images/s) on a generated ImageFolder tree.

Writes ``--images`` JPEGs of ``--size`` x ``--size`` pixels (smooth colour fields plus noise, so that JPEG
decoding costs about what it costs on photos) into a temporary ImageFolder tree, then times the training loader
of ``benchmarks.data.imagefolder`` (decode + RandomResizedCrop(224) + flip + collate, uint8 output) for each
``--workers`` value, and the evaluation loader (resize 256 + center crop 224) once. The first epoch of each
setting is a warm-up (worker start-up, page cache) and is reported separately.

Example::

    python scripts/bench_loader.py                       # 512 images, workers 0 and 2
    python scripts/bench_loader.py --workers 0 2 4 8 --images 2048 --json loader.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data.imagefolder import build_imagefolder  # noqa: E402


def write_tree(root: Path, images: int, size: int, classes: int, seed: int = 0) -> None:
    """Write ``images`` JPEGs (quality 90) split over ``classes`` folders of ``root/train`` and a quarter as many
    into ``root/val``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for split, count in (("train", images), ("val", max(classes, images // 4))):
        for i in range(count):
            folder = root / split / f"class{i % classes:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            a, b, c = rng.uniform(0, 255, size=(3, 3))
            field = np.stack([a[k] * xx + b[k] * yy + c[k] * xx * yy for k in range(3)], axis=-1)
            pixels = np.clip(field / 2 + rng.normal(0, 12, size=field.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=90)


def time_loader(loader, epochs: int, set_epoch=None) -> list[float]:
    """Images per second of each epoch of ``loader``."""
    rates = []
    for epoch in range(epochs):
        if set_epoch is not None:
            set_epoch(epoch)
        count = 0
        start = time.perf_counter()
        for images, _ in loader:
            count += images.shape[0]
        rates.append(count / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> int:
    """Generate the tree, time each setting, print one line per setting (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="training images (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=8, help="class folders (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers values (default: 0 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per setting, the first is warm-up")
    parser.add_argument("--root", type=Path, default=None, help="reuse/keep the tree here instead of a temp dir")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = args.root or Path(tmp)
        if not (root / "train").is_dir():
            t0 = time.perf_counter()
            write_tree(root, args.images, args.size, args.classes)
            print(f"wrote {args.images} train JPEGs ({args.size}x{args.size}) to {root} in "
                  f"{time.perf_counter() - t0:.1f}s", flush=True)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"machine: {cores} usable CPU cores; batch {args.batch_size}; crop 224", flush=True)
        results = []
        for workers in args.workers:
            data = build_imagefolder(root, batch_size=args.batch_size, num_workers=workers, seed=0)
            rates = time_loader(data.train_loader, args.epochs, data.sampler.set_epoch)
            steady = float(np.median(rates[1:]))
            val_rate = time_loader(data.val_loader, 2)[1]
            results.append({"num_workers": workers, "train_images_per_s": steady, "train_warmup_images_per_s": rates[0],
                            "val_images_per_s": val_rate})
            print(f"num_workers={workers}: train {steady:7.1f} images/s (first epoch {rates[0]:.1f}), "
                  f"val {val_rate:7.1f} images/s", flush=True)
            del data
    if args.json:
        args.json.write_text(json.dumps({"cpu_count": cores, "batch_size": args.batch_size,
                                         "image_size": args.size, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
