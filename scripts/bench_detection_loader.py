"""Measure the detection task's training loader alone (images/s): JPEG decode + the detector's augmentation +
target encoding (CenterNet heat-maps) + collate, exactly what ``Detection.train_batches`` yields, no model.

By default on the cheap tier's digit set (generated into the cache); ``--root`` times a COCO-layout folder
(e.g. MS-COCO) instead. The first pass of each setting is a warm-up and is reported separately.

Example::

    python scripts/bench_detection_loader.py --model centernet --workers 0
    python scripts/bench_detection_loader.py --model ssd300_vgg16 --root /data/coco --image-size 300 \\
        --workers 8 16 --batches 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config.validate import resolve_config  # noqa: E402
from benchmarks.tasks.base import RunContext  # noqa: E402
from benchmarks.tasks.detection import Detection  # noqa: E402


def rate(task: Detection, epoch: int, batches: int) -> float:
    count, start = 0, time.perf_counter()
    for i, batch in enumerate(task.train_batches(epoch)):
        count += task.batch_size_of(batch)
        if i + 1 >= batches:
            break
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="centernet", help="centernet | ssd300_vgg16 | ssdlite320_mobilenet_v3_large")
    parser.add_argument("--root", default=None, help="COCO-layout folder (default: the digit set, generated)")
    parser.add_argument("--image-size", type=int, default=64, help="input size (default: %(default)s)")
    parser.add_argument("--augment", default=None,
                        help="centernet | ssd | ssdlite | none (default: the detector's recipe)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=20, help="batches per timed pass")
    parser.add_argument("--workers", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = []
    for workers in args.workers:
        data = {"name": "coco", "root": args.root} if args.root else {"name": "digit_detection"}
        config = resolve_config({
            "task": "detection", "data": {**data, "image_size": args.image_size, "augment": args.augment},
            "model": {"name": args.model},
            "optimizer": {"name": "adam", "lr": 1e-3},
            "train": {"batch_size": args.batch_size, "num_workers": workers, "device": "cpu"},
        })
        task = Detection(config, RunContext(run_dir=Path("."), device=torch.device("cpu"), seed=0))
        warm = rate(task, 0, args.batches)
        steady = rate(task, 1, args.batches)
        results.append({"model": args.model, "augment": task.augment, "num_workers": workers,
                        "images_per_s": steady, "warmup": warm})
        print(f"{args.model} loader ({task.augment} augmentation), num_workers={workers}, batch {args.batch_size}, "
              f"{args.image_size} px: {steady:.1f} images/s (warm-up pass {warm:.1f})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
