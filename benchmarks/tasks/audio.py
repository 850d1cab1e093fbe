"""Audio classification with the Harmonic CNN: the paper's audio table (Table 5).

Data sets (``data.name``; layouts in :mod:`benchmarks.data.audio`):

* ``speech_commands``: keyword spotting, Speech Commands v0.02, 35 words, single-label cross-entropy;
  clips padded/cropped to ``input_length`` (1 s at 16 kHz). Metric: ``accuracy``.
* ``magnatagatune``: music tagging, top-50 tags, multi-label binary cross-entropy. Metrics: ``roc_auc`` and
  ``pr_auc`` (macro over tags, scikit-learn's ``roc_auc_score`` / ``average_precision_score``).
* ``dcase2017``: sound event tagging, DCASE 2017 Task 4 weak labels, 17 classes, multi-label. Metric: ``f1``
  at decision thresholds tuned on the validation split (per class by default) and applied to the test split;
  micro-averaged over (clip, class) decisions by default (the DCASE 2017 Task 4 ranking metric).

Training takes one random window of ``input_length`` samples per clip and epoch; evaluation averages the
predicted probabilities of up to ``eval_chunks`` windows evenly spread over each clip.

Metrics are percentages (as printed in the paper), prefixed by split: ``val_*`` always, ``test_*`` when
``data.evaluate_test`` is true. ``val_score`` / ``test_score`` repeat the data set's primary metric
(accuracy, ROC-AUC or F1) so that one name selects across data sets. ``skipped_files`` counts the distinct
audio files skipped so far (missing, corrupt or unreadable); they are listed in ``skipped_files.txt`` in the
run folder. The primary metric is ``test_score``; with ``train.select: best`` (the HCNN code's rule, set in
``configs/audio/base.yaml``) the reported metrics are those of the evaluation with the best ``val_score``, and
the last evaluation's are kept as ``last_*``.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmarks.config.errors import ConfigError, did_you_mean
from benchmarks.data import audio as audio_data
from benchmarks.models.harmonic_cnn import HarmonicCNN

from .base import RunContext, Task

DATASETS = ("speech_commands", "magnatagatune", "dcase2017")
PRIMARY = {"speech_commands": "accuracy", "magnatagatune": "roc_auc", "dcase2017": "f1"}


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------
def tagging_auc(targets: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Macro ROC-AUC and macro PR-AUC (average precision) in [0, 1] over the classes that have both
    positive and negative clips (a class without either has no defined AUC; skipping it is what a
    tag-wise average over a split can do)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives = targets.sum(axis=0)
    valid = (positives > 0) & (positives < targets.shape[0])
    if not valid.any():
        return float("nan"), float("nan")
    y, s = targets[:, valid], scores[:, valid]
    return float(roc_auc_score(y, s, average="macro")), float(average_precision_score(y, s, average="macro"))


def tune_thresholds(targets: np.ndarray, scores: np.ndarray, mode: str = "per_class") -> np.ndarray:
    """Decision thresholds (one per class) that maximise F1 on (targets, scores).

    ``per_class``: each class's threshold maximises that class's F1 (classes without positives keep 0.5);
    ``global``: one threshold for all classes maximising the micro F1. Candidates are the observed scores,
    so the optimum is exact; a threshold ``t`` means "predict positive when score >= t".
    """
    from sklearn.metrics import precision_recall_curve

    n_classes = targets.shape[1]
    if mode == "global":
        candidates = np.unique(scores)
        best_t, best_f1 = 0.5, -1.0
        y = targets.astype(bool)
        for t in candidates:
            pred = scores >= t
            tp = float((pred & y).sum())
            denom = float(pred.sum() + y.sum())
            f1 = 2 * tp / denom if denom else 0.0
            if f1 > best_f1:
                best_t, best_f1 = float(t), f1
        return np.full(n_classes, best_t, dtype=np.float64)
    if mode != "per_class":
        raise ValueError(f"threshold mode must be 'per_class' or 'global', got {mode!r}")
    thresholds = np.full(n_classes, 0.5, dtype=np.float64)
    for c in range(n_classes):
        if targets[:, c].sum() == 0:
            continue
        precision, recall, cut = precision_recall_curve(targets[:, c], scores[:, c])
        precision, recall = precision[:-1], recall[:-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        thresholds[c] = float(cut[int(np.argmax(f1))])
    return thresholds


def f1_at_thresholds(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, average: str) -> float:
    """F1 in [0, 1] of the multi-label decisions ``scores >= thresholds``.

    ``micro``: over all (clip, class) decisions; ``macro``: mean of the per-class F1; ``samples``: mean of the
    per-clip F1. An undefined F1 (no positives and no predictions) counts as 0, like scikit-learn's
    ``zero_division=0``. Computed from counts so that a single class stays multi-label (scikit-learn reads a
    one-column indicator matrix as a binary problem and averages over both of its labels).
    """
    y = targets.astype(bool)
    pred = scores >= thresholds[None, :]
    tp, fp, fn = (pred & y), (pred & ~y), (~pred & y)

    def f1(tp_n: np.ndarray, fp_n: np.ndarray, fn_n: np.ndarray) -> np.ndarray:
        denom = 2 * tp_n + fp_n + fn_n
        return np.where(denom > 0, 2 * tp_n / np.maximum(denom, 1), 0.0)

    if average == "micro":
        return float(f1(tp.sum(), fp.sum(), fn.sum()))
    if average == "macro":
        return float(f1(tp.sum(0), fp.sum(0), fn.sum(0)).mean())
    if average == "samples":
        return float(f1(tp.sum(1), fp.sum(1), fn.sum(1)).mean())
    raise ValueError(f"average must be micro, macro or samples, got {average!r}")


# ----------------------------------------------------------------------------------------------------------
# Task
# ----------------------------------------------------------------------------------------------------------
class Audio(Task):
    """Harmonic CNN on keyword spotting, music tagging and sound event tagging."""

    name: ClassVar[str] = "audio"
    description: ClassVar[str] = (
        "audio classification with the Harmonic CNN: Speech Commands, MagnaTagATune, DCASE 2017 Task 4 (Table 5)"
    )
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "speech_commands",  # speech_commands | magnatagatune | dcase2017
            "root": None,  # folder of the data set in its official layout (benchmarks/data/audio.py)
            "audio_dir": "",  # magnatagatune / dcase2017: audio sub-folder of root ("" = root itself)
            "sample_rate": 16000,  # every file is resampled to this rate
            "input_length": 16000,  # samples per training window (and per evaluation window)
            "eval_chunks": 1,  # evaluation windows per clip, evenly spread, probabilities averaged
            "train_list": None,  # dcase2017: training label files (null: training + testing sets)
            "val_list": None,  # null: the data set's official validation list / protocol
            "test_list": None,  # null: the data set's official test list
            "top_k_tags": 50,  # magnatagatune: the most frequent tags used as targets
            "drop_untagged": False,  # magnatagatune: drop clips with none of the top-k tags
            "val_fraction": 0.1,  # dcase2017 with val_list null: share of each class drawn for validation
            "split_seed": 123,  # dcase2017 validation draw and max_clips subsets; NOT the run seed
            "threshold": "per_class",  # dcase2017 F1: per_class | global thresholds tuned on validation
            "f1_average": "micro",  # dcase2017 F1: micro (instance-based, DCASE 2017) | macro | samples
            "evaluate_test": True,  # also evaluate the test split at every evaluation
            "max_clips": None,  # int: a fixed random subset of at most this many clips per split
        },
        "model": {
            "name": "harmonic_cnn",
            "front_end": "harmonic",  # harmonic | mel (log-mel ablation)
            "n_fft": 512,
            "hop_length": None,  # null: n_fft // 2
            "n_harmonic": 6,
            "semitone_scale": 2,  # filters per semitone
            "low_midi": 24,  # lowest fundamental (C1)
            "high_midi": None,  # null: the note nearest sample_rate / (2 n_harmonic)
            "bw_q": 1.0,  # initial quality factor of the ERB bandwidth
            "learn_bw": "only_q",  # only_q | full | fixed
            "learn_f0": False,
            "n_mels": 128,  # front_end mel only
            "channels": [128, 128, 256, 256, 256, 256, 256],  # width of each block (depth = length)
            "pooling": [2, 2, 2, 2, 2, [2, 3], [2, 3]],  # max pool [freq, time] after each block
            "dropout": 0.5,
        },
        "train": {
            "eval_batch_size": None,  # clips per evaluation batch (null: train.batch_size)
        },
    }
    smoke: ClassVar[Mapping[str, Any]] = {
        "train.epochs": 1,
        "train.max_steps": 2,
        "train.batch_size": 4,
        "train.num_workers": 0,
        "data.max_clips": 16,
        "data.input_length": 8000,
        "data.eval_chunks": 1,
        "model.n_harmonic": 2,
        "model.channels": [8, 8],
        "model.pooling": [2, 2],
    }
    metrics: ClassVar[Mapping[str, str]] = {
        "test_score": "max",
        "val_score": "max",
        "val_accuracy": "max",
        "test_accuracy": "max",
        "val_roc_auc": "max",
        "test_roc_auc": "max",
        "val_pr_auc": "max",
        "test_pr_auc": "max",
        "val_f1": "max",
        "test_f1": "max",
        "test_f1_macro": "max",
        "val_loss": "min",
        "skipped_files": "min",
    }
    #: the HCNN code keeps the model with the best validation score and reports its test metrics
    selection_metric: ClassVar[str | None] = "val_score"

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        data, model = config["data"], config["model"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: {data['name']!r} is not an audio data set; valid: {', '.join(DATASETS)}"
                              f"{did_you_mean(str(data['name']), DATASETS)}")
        if model["name"] != "harmonic_cnn":
            raise ConfigError(f"model.name: {model['name']!r} is not an audio model; valid: harmonic_cnn")
        for key in ("sample_rate", "input_length", "eval_chunks"):
            if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
                raise ConfigError(f"data.{key} must be a positive integer, got {data[key]!r}")
        if data["threshold"] not in ("per_class", "global"):
            raise ConfigError(f"data.threshold: {data['threshold']!r}; valid: per_class, global")
        if data["f1_average"] not in ("micro", "macro", "samples"):
            raise ConfigError(f"data.f1_average: {data['f1_average']!r}; valid: micro, macro, samples")
        if data["max_clips"] is not None and int(data["max_clips"]) < 2:
            raise ConfigError(f"data.max_clips must be null or >= 2, got {data['max_clips']!r}")
        if data["name"] == "magnatagatune" and any(data[k] is not None for k in ("train_list", "val_list",
                                                                                 "test_list")):
            raise ConfigError("data.train_list/val_list/test_list: magnatagatune is split by the mp3_path folder; "
                              "leave them null")
        if data["name"] == "speech_commands" and data["train_list"] is not None:
            raise ConfigError("data.train_list: speech_commands trains on every clip not in val_list/test_list; "
                              "leave it null")
        if not isinstance(model["channels"], list) or not isinstance(model["pooling"], list):
            raise ConfigError(
                f"model.channels and model.pooling must be lists (one entry per block), got "
                f"{model['channels']!r} and {model['pooling']!r}"
            )
        if len(model["channels"]) == 0 or len(model["channels"]) != len(model["pooling"]):
            raise ConfigError(
                f"model.channels ({len(model['channels'])} entries) and model.pooling ({len(model['pooling'])} "
                "entries) must be non-empty lists of equal length"
            )
        if int(config["train"]["batch_size"]) < 2:
            raise ConfigError(f"train.batch_size ({config['train']['batch_size']}) must be >= 2 per process: batch "
                              f"norm needs 2 samples")

    #: the files each data set's reader opens first (relative to data.root), when its lists are not set
    _LAYOUT: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "speech_commands": {"val_list": "validation_list.txt", "test_list": "testing_list.txt"},
        "magnatagatune": {"annotations": "annotations_final.csv"},
        "dcase2017": {"train_list": ["groundtruth_weak_label_training_set.csv",
                                     "groundtruth_weak_label_testing_set.csv"],
                      "test_list": "groundtruth_weak_label_evaluation_set.csv"},
    }

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """``data.root`` is a folder holding the data set's list/annotation files (their content and the
        audio files are read when the run starts)."""
        data = config["data"]
        name = data["name"]
        root = data["root"]
        if root is None or str(root) == "":
            raise ConfigError(f"data.root is not set: give the folder holding the {name} data set "
                              f"(--set data.root=..., with make: DATA=...)")
        base = Path(str(root)).expanduser()
        if not base.is_dir():
            what = "is not a folder" if base.exists() else "does not exist"
            raise ConfigError(f"data.root: {base} {what} (expected the {name} data set; layouts: "
                              f"benchmarks/data/audio.py)")
        for key, default in cls._LAYOUT[name].items():
            names = data.get(key) if data.get(key) is not None else default
            for file in [names] if isinstance(names, str) else names:
                if not (base / file).is_file():
                    where = f"data.{key}" if key in data else "data.root"
                    raise ConfigError(f"{where}: {base / file} not found (the {name} layout under data.root: "
                                      f"benchmarks/data/audio.py)")
        if data["audio_dir"] and not (base / data["audio_dir"]).is_dir():
            raise ConfigError(f"data.audio_dir: {base / data['audio_dir']} is not a folder")

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)
        train = config["train"]
        world = max(1, ctx.world_size)
        batch = int(train["batch_size"])
        if batch < 2 * world:
            raise ConfigError(f"train.batch_size ({batch}) must be >= 2 per process: batch norm needs 2 samples")
        self.batch_size = batch // world
        self.eval_batch_size = max(1, int(train.get("eval_batch_size") or batch))
        self.skips = audio_data.SkipLog()
        self._reported_skips = 0

    # -- data ----------------------------------------------------------------------------------------------
    @property
    def dataset(self) -> str:
        return self.config["data"]["name"]

    @cached_property
    def splits(self) -> audio_data.AudioSplits:
        """The indexed splits (read once, on first use); listed-but-missing files are counted as skipped."""
        data = self.config["data"]
        lists = {k: data[k] for k in ("train_list", "val_list", "test_list") if data[k] is not None}
        if self.dataset == "speech_commands":
            splits = audio_data.read_speech_commands(data["root"], **lists)
        elif self.dataset == "magnatagatune":
            splits = audio_data.read_magnatagatune(
                data["root"], audio_dir=data["audio_dir"], top_k=int(data["top_k_tags"]),
                drop_untagged=bool(data["drop_untagged"]),
            )
        else:
            splits = audio_data.read_dcase2017(
                data["root"], val_fraction=float(data["val_fraction"]), split_seed=int(data["split_seed"]),
                audio_dir=data["audio_dir"], **lists,
            )
        for path, reason in splits.missing.items():
            self.skips.add(path, reason)
        n = data["max_clips"]
        seed = int(data["split_seed"])
        splits.train = audio_data.subsample(splits.train, n, seed)
        splits.val = audio_data.subsample(splits.val, n, seed + 1)
        splits.test = audio_data.subsample(splits.test, n, seed + 2)
        self.ctx.log(
            f"audio/{self.dataset}: {len(splits.classes)} classes, train {len(splits.train)}, "
            f"val {len(splits.val)}, test {len(splits.test)} clips; {len(splits.missing)} listed files missing"
        )
        return splits

    @property
    def num_classes(self) -> int:
        return len(self.splits.classes)

    def _loader(self, dataset: audio_data.ClipDataset, batch_size: int, sampler: Any = None,
                drop_last: bool = False, collate: Any = None) -> DataLoader:
        workers = int(self.config["train"].get("num_workers") or 0)
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, shuffle=False, drop_last=drop_last,
            num_workers=workers, collate_fn=collate, pin_memory=self.ctx.device.type == "cuda",
        )

    def steps_per_epoch(self) -> int | None:
        n = len(self.splits.train) // max(1, self.ctx.world_size)
        return audio_data.steps_per_epoch(n, self.batch_size)

    def train_batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        data = self.config["data"]
        clips = self.splits.train
        dataset = audio_data.ClipDataset(clips, data["sample_rate"], data["input_length"], train=True)
        sampler = _RankSampler(audio_data.EpochSampler(len(clips), self.ctx.seed, epoch),
                               self.ctx.rank, max(1, self.ctx.world_size))
        loader = self._loader(dataset, self.batch_size, sampler, drop_last=len(sampler) >= self.batch_size,
                              collate=audio_data.collate_train)
        for batch in loader:
            for path, reason in batch["skipped"]:
                self.skips.add(path, reason)
            # Batch norm cannot train on a single sample; a batch emptied by corrupt files is dropped too.
            if batch["x"] is None or batch["x"].shape[0] < 2:
                continue
            yield batch

    def batch_size_of(self, batch: Any) -> int:
        return int(batch["x"].shape[0])

    # -- model and loss ------------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        cfg = self.config["model"]
        try:
            return HarmonicCNN(
                n_classes=self.num_classes,
                sample_rate=int(self.config["data"]["sample_rate"]),
                front_end=cfg["front_end"],
                n_fft=int(cfg["n_fft"]),
                hop_length=cfg["hop_length"],
                n_harmonic=int(cfg["n_harmonic"]),
                semitone_scale=int(cfg["semitone_scale"]),
                low_midi=float(cfg["low_midi"]),
                high_midi=cfg["high_midi"],
                bw_q=float(cfg["bw_q"]),
                learn_bw=cfg["learn_bw"],
                learn_f0=bool(cfg["learn_f0"]),
                n_mels=int(cfg["n_mels"]),
                channels=cfg["channels"],
                pooling=cfg["pooling"],
                dropout=float(cfg["dropout"]),
            )
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None

    def _criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.splits.multilabel:
            return F.binary_cross_entropy_with_logits(logits, targets.float())
        return F.cross_entropy(logits, targets)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = model(batch["x"])
        loss = self._criterion(logits, batch["y"])
        extra: dict[str, Any] = {}
        if not self.splits.multilabel:
            extra["accuracy"] = (logits.argmax(dim=1) == batch["y"]).float().mean().detach() * 100.0
        return loss, extra

    # -- evaluation ----------------------------------------------------------------------------------------
    def _predict(self, model: torch.nn.Module, split: str) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-clip probabilities (softmax or sigmoid, averaged over windows), targets, and the mean
        per-window loss over the readable clips of ``split``."""
        data = self.config["data"]
        dataset = audio_data.ClipDataset(self.splits.split(split), data["sample_rate"], data["input_length"],
                                         train=False, eval_chunks=data["eval_chunks"])
        loader = self._loader(dataset, self.eval_batch_size, collate=audio_data.collate_eval)
        probs: list[np.ndarray] = []
        targets: list[np.ndarray] = []
        loss_sum, n_windows = 0.0, 0
        device = self.ctx.device
        for batch in loader:
            for path, reason in batch["skipped"]:
                self.skips.add(path, reason)
            if batch["x"] is None:
                continue
            x = batch["x"].to(device, non_blocking=True)
            y = batch["y"].to(device, non_blocking=True)
            counts = torch.tensor(batch["counts"], device=device)
            logits = model(x).float()
            window_targets = y.repeat_interleave(counts, dim=0)
            loss_sum += float(self._criterion(logits, window_targets)) * logits.shape[0]
            n_windows += logits.shape[0]
            p = torch.sigmoid(logits) if self.splits.multilabel else torch.softmax(logits, dim=1)
            clip_ids = torch.repeat_interleave(torch.arange(len(batch["counts"]), device=device), counts)
            summed = torch.zeros(len(batch["counts"]), p.shape[1], device=device).index_add_(0, clip_ids, p)
            probs.append((summed / counts[:, None]).cpu().numpy())
            targets.append(batch["y"].numpy())
        if not probs:
            return np.zeros((0, self.num_classes)), np.zeros((0,)), float("nan")
        return np.concatenate(probs), np.concatenate(targets), loss_sum / max(1, n_windows)

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        data = self.config["data"]
        splits = ["val", "test"] if data["evaluate_test"] else ["val"]
        predictions = {s: self._predict(model, s) for s in splits}
        metrics: dict[str, float] = {"val_loss": predictions["val"][2]}
        primary = PRIMARY[self.dataset]
        if self.dataset == "speech_commands":
            for s, (p, y, _) in predictions.items():
                metrics[f"{s}_accuracy"] = float((p.argmax(axis=1) == y).mean() * 100.0) if len(y) else float("nan")
        elif self.dataset == "magnatagatune":
            for s, (p, y, _) in predictions.items():
                roc, pr = tagging_auc(y, p) if len(y) else (float("nan"), float("nan"))
                metrics[f"{s}_roc_auc"], metrics[f"{s}_pr_auc"] = roc * 100.0, pr * 100.0
        else:
            p_val, y_val, _ = predictions["val"]
            if len(y_val):
                thresholds = tune_thresholds(y_val, p_val, data["threshold"])
            else:
                thresholds = np.full(self.num_classes, 0.5)
            for s, (p, y, _) in predictions.items():
                if not len(y):
                    metrics[f"{s}_f1"] = float("nan")
                    continue
                metrics[f"{s}_f1"] = f1_at_thresholds(y, p, thresholds, data["f1_average"]) * 100.0
                if s == "test":
                    metrics["test_f1_macro"] = f1_at_thresholds(y, p, thresholds, "macro") * 100.0
        for s in splits:
            metrics[f"{s}_score"] = metrics[f"{s}_{primary}"]
        metrics["skipped_files"] = float(len(self.skips))
        self._report_skips()
        return metrics

    def _report_skips(self) -> None:
        if len(self.skips) == self._reported_skips:
            return
        self._reported_skips = len(self.skips)
        if self.ctx.is_main:
            self.skips.write(self.ctx.run_dir / "skipped_files.txt")
            self.ctx.log(f"audio: {len(self.skips)} audio files skipped so far (list: skipped_files.txt)")


class _RankSampler(torch.utils.data.Sampler):
    """Every ``world_size``-th key of an epoch sampler, starting at ``rank`` (one shard per process)."""

    def __init__(self, inner: audio_data.EpochSampler, rank: int, world_size: int):
        self.inner, self.rank, self.world_size = inner, rank, world_size

    def __iter__(self) -> Iterator[Any]:
        for i, key in enumerate(self.inner):
            if i % self.world_size == self.rank:
                yield key

    def __len__(self) -> int:
        return len(range(self.rank, len(self.inner), self.world_size))
