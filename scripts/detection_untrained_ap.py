"""COCO AP of an UNTRAINED detector (the reference point for "the detector learns"): build the task and the
model of each run of a detection config exactly as the training loop does (same seed, same initialisation),
skip training, and evaluate on the validation split with the same COCOeval.

Example::

    python scripts/detection_untrained_ap.py configs/detection/digits.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config.grid import expand  # noqa: E402
from benchmarks.config.loader import load_config  # noqa: E402
from benchmarks.config.validate import resolve_config  # noqa: E402
from benchmarks.tasks.base import RunContext  # noqa: E402
from benchmarks.tasks.detection import Detection  # noqa: E402
from benchmarks.training.setup import seed_everything  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seen = set()
    for run, _ in expand(load_config(args.config)):
        config = resolve_config({k: v for k, v in run.items() if k != "tags"})
        key = (config["model"]["name"], config["train"]["seed"])
        if key in seen:  # the optimizer does not change an untrained model
            continue
        seen.add(key)
        seed_everything(int(config["train"]["seed"]))
        task = Detection(config, RunContext(run_dir=Path("."), device=torch.device("cpu"),
                                            seed=int(config["train"]["seed"])))
        model = task.build_model().eval()
        with torch.no_grad():
            metrics = task.evaluate(model)
        print(json.dumps({"model": key[0], "seed": key[1], "untrained": metrics}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
