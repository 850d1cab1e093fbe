"""Image classification: the paper's ImageNet experiments (Tables 1 and 2) and a quick real-data demo (digits).

Data (``data.name``):

* ``imagefolder``: any data set in torchvision's ImageFolder layout under ``data.root`` (``train/<class>/``,
  ``val/<class>/``), e.g. ImageNet. Training: RandomResizedCrop(``image_size``) + horizontal flip; evaluation:
  resize the shorter side to ``val_resize`` (default ``round(image_size * 256 / 224)``, ImageNet's ratio, so
  that a smaller ``image_size`` keeps the same crop proportion) and center-crop ``image_size``; ImageNet
  mean/std normalisation.
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 real images, 10 classes) with a fixed stratified
  train/val split (``val_size``, ``split_seed``); no augmentation unless ``augment: shift``.

Metrics: ``top1`` and ``top5`` accuracy in percent (``top5`` only with at least 5 classes) and ``val_loss``
(plain cross-entropy, without label smoothing, so that it is comparable across runs).

Batch size: ``train.batch_size`` is the GLOBAL batch; with several processes each takes an equal share.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F

from benchmarks.config.errors import ConfigError, did_you_mean
from benchmarks.data.seeding import epoch_generator
from benchmarks.models.vision import (MODEL_DEFAULTS, SMALL_MODELS, build_model, check_model_config,
                                      check_weights_file)

from .base import RunContext, Task

DATASETS = ("imagefolder", "digits")


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks: Iterable[int]) -> dict[int, int]:
    """Number of samples whose true class is among the ``k`` highest logits, for each ``k`` in ``ks``."""
    ks = list(ks)
    top = logits.topk(max(ks), dim=1).indices
    hit = top.eq(targets.view(-1, 1))
    return {k: int(hit[:, :k].any(dim=1).sum()) for k in ks}


class Classification(Task):
    """Image classification with cross-entropy (optionally label smoothing and CutMix)."""

    name: ClassVar[str] = "classification"
    description: ClassVar[str] = (
        "image classification: ImageFolder data sets (ImageNet; paper Tables 1-2) or the bundled 8x8 digits"
    )
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "digits",  # imagefolder | digits
            "root": None,  # imagefolder: the folder holding train/ and val/
            "image_size": 224,  # imagefolder: training crop and evaluation crop
            "val_resize": None,  # imagefolder: shorter side before the eval center crop; null: image_size*256/224
            "augment": None,  # null: the data set's standard (imagefolder: imagenet; digits: none)
            "cutmix": {"alpha": 1.0, "prob": 0.0},  # CutMix on training batches; prob 0 = off
            "label_smoothing": 0.0,
            "num_classes": None,  # null: inferred from the data; if set it must match
            "train_fraction": 1.0,  # stratified fraction of the training split (quick runs)
            "val_fraction": 1.0,  # stratified fraction of the validation split
            "split_seed": 0,  # seed of the digits split and of the fractions; NOT the run seed
            "val_size": 0.2,  # digits: fraction held out for validation
        },
        "model": dict(MODEL_DEFAULTS),
        "train": {
            "eval_batch_size": None,  # null: train.batch_size
        },
    }
    #: shrink only: the configured data set and model (a stratified 2 % of the validation split, >= 1 per class)
    smoke: ClassVar[Mapping[str, Any]] = {
        "data.val_fraction": 0.02,
        "train.epochs": 1,
        "train.max_steps": 2,
        "train.batch_size": 16,
        "train.num_workers": 0,
    }
    metrics: ClassVar[Mapping[str, str]] = {"top1": "max", "top5": "max", "val_loss": "min"}

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Static checks of a resolved config that need no data on disk (``data.root`` is checked by
        :meth:`check_data`). Raises ``ConfigError``."""
        data = config["data"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: {data['name']!r} is not a classification data set; valid: "
                              f"{', '.join(DATASETS)}{did_you_mean(str(data['name']), DATASETS)}")
        if data["name"] == "digits" and not 0.0 < float(data["val_size"]) < 1.0:
            raise ConfigError(f"data.val_size must be in (0, 1) (the fraction of the digits held out), "
                              f"got {data['val_size']}")
        check_model_config(config["model"])
        cutmix = data.get("cutmix") or {}
        alpha, prob = float(cutmix.get("alpha", 1.0)), float(cutmix.get("prob", 0.0))
        if not 0.0 <= prob <= 1.0 or alpha <= 0:
            raise ConfigError(f"data.cutmix: need 0 <= prob <= 1 and alpha > 0, got {dict(cutmix)}")
        for key in ("train_fraction", "val_fraction"):
            if not 0.0 < float(data[key]) <= 1.0:
                raise ConfigError(f"data.{key} must be in (0, 1], got {data[key]}")
        valid_augment = ("none", "shift") if data["name"] == "digits" else ("imagenet", "none")
        if data["augment"] is not None and data["augment"] not in valid_augment:
            raise ConfigError(
                f"data.augment: {data['augment']!r} is not valid for {data['name']}; valid: null, "
                f"{', '.join(valid_augment)}"
            )
        resize = data["val_resize"]
        if resize is not None and (isinstance(resize, bool) or not isinstance(resize, int) or resize < 1):
            raise ConfigError(f"data.val_resize must be null (image_size x 256/224) or a whole number of pixels, "
                              f"got {resize!r}")
        if data["name"] == "imagefolder" and cls.val_resize(data) < int(data["image_size"]):
            raise ConfigError(f"data.val_resize ({data['val_resize']}) must be >= data.image_size ({data['image_size']})")
        if not 0.0 <= float(data["label_smoothing"]) < 1.0:
            raise ConfigError(f"data.label_smoothing must be in [0, 1), got {data['label_smoothing']}")

    @staticmethod
    def val_resize(data: Mapping[str, Any]) -> int:
        """Shorter side before the evaluation crop: ``data.val_resize``, or ImageNet's 256/224 of the crop."""
        return int(data["val_resize"] or round(int(data["image_size"]) * 256 / 224))

    @classmethod
    def fill_derived(cls, config: dict[str, Any]) -> None:
        # 224 resolves to 256, the old fixed default, so the ids of such runs did not change
        data = config["data"]
        if data.get("val_resize") is None and isinstance(data.get("image_size"), int):
            config["data"] = {**data, "val_resize": round(data["image_size"] * 256 / 224)}

    @classmethod
    def config_warnings(cls, config: Mapping[str, Any]) -> list[str]:
        data = config["data"]
        if data["name"] != "imagefolder":
            return []
        share = int(data["image_size"]) / cls.val_resize(data)
        if share >= 0.6:
            return []
        # a 32-pixel crop of a 256-pixel image scored 13.6% top-1 where a proportional resize scored 93.6%
        return [f"data.val_resize={data['val_resize']} with data.image_size={data['image_size']}: the evaluation "
                f"crop keeps only {share:.0%} of the image's shorter side (ImageNet's recipe keeps 88%); leave "
                f"data.val_resize null for round(image_size * 256 / 224) = {round(int(data['image_size']) * 256 / 224)}"]

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """imagefolder: ``data.root`` holds ``train/`` and ``val/``; a ``model.pretrained_path`` file exists."""
        if config["data"]["name"] == "imagefolder":
            from benchmarks.data.imagefolder import check_layout

            check_layout(config["data"]["root"])
        check_weights_file(config["model"].get("pretrained_path"))

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)
        data = config["data"]
        self.cutmix_alpha = float(data["cutmix"].get("alpha", 1.0))
        self.cutmix_prob = float(data["cutmix"].get("prob", 0.0))
        world = max(1, ctx.world_size)
        batch = int(config["train"]["batch_size"])
        if batch % world:
            raise ConfigError(f"train.batch_size ({batch}) must be divisible by the number of processes ({world})")
        self.batch_size = batch // world
        self.eval_batch_size = int(config["train"].get("eval_batch_size") or batch) // world or 1
        self.label_smoothing = float(data["label_smoothing"])

    # -- data ----------------------------------------------------------------------------------------------
    @cached_property
    def _source(self) -> Any:
        data = self.config["data"]
        if data["name"] == "digits":
            from benchmarks.data.digits import load_digits_split

            return load_digits_split(
                val_size=float(data["val_size"]),
                split_seed=int(data["split_seed"]),
                train_fraction=float(data["train_fraction"]),
                val_fraction=float(data["val_fraction"]),
            )
        from benchmarks.data.imagefolder import build_imagefolder

        return build_imagefolder(
            data["root"],
            image_size=int(data["image_size"]),
            val_resize=self.val_resize(data),
            augment=data["augment"] or "imagenet",
            train_fraction=float(data["train_fraction"]),
            val_fraction=float(data["val_fraction"]),
            split_seed=int(data["split_seed"]),
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            num_workers=int(self.config["train"].get("num_workers") or 0),
            pin_memory=self.ctx.device.type == "cuda",
            seed=self.ctx.seed,
            cutmix_alpha=self.cutmix_alpha,
            cutmix_prob=self.cutmix_prob,
            rank=self.ctx.rank,
            world_size=max(1, self.ctx.world_size),
        )

    @property
    def is_digits(self) -> bool:
        return self.config["data"]["name"] == "digits"

    @cached_property
    def num_classes(self) -> int:
        """Number of classes found in the data (checked against ``data.num_classes`` when that is set)."""
        found = int(self._source.num_classes)
        wanted = self.config["data"]["num_classes"]
        if wanted is not None and int(wanted) != found:
            where = "digits" if self.is_digits else self.config["data"]["root"]
            raise ConfigError(f"data.num_classes is {wanted} but {where} has {found} classes; set it to null")
        return found

    @property
    def data_channels(self) -> int:
        return 1 if self.is_digits else 3

    @property
    def model_channels(self) -> int:
        # torchvision models are fixed to RGB: grey digits are repeated over 3 channels for them
        name = str(self.config["model"]["name"])
        if name in SMALL_MODELS or name.startswith("timm:"):
            return self.data_channels
        return 3

    @cached_property
    def _norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        from benchmarks.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

        # uint8 images are scaled to 0..1 and normalised in one multiply-add on the device
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0
        return mean.to(self.ctx.device), std.to(self.ctx.device)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """Device, dtype, normalisation and channel count as the model expects them (idempotent)."""
        if images.device != self.ctx.device:
            images = images.to(self.ctx.device, non_blocking=True)
        if images.dtype == torch.uint8:
            mean, std = self._norm
            images = (images.float() - mean) / std
        if images.shape[1] != self.model_channels:
            images = images.expand(-1, self.model_channels, -1, -1)
        if self.config["train"].get("channels_last") and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _digits_augment(self) -> str:
        return self.config["data"]["augment"] or "none"

    # -- the Task contract ---------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """The classifier named by ``model.name`` with ``num_classes`` outputs (weights only from a file)."""
        return build_model(self.config["model"], self.num_classes, self.model_channels)

    def _digits_per_rank(self) -> int:
        # rank 0 holds the largest interleaved shard (ceil); every rank uses its size to decide drop_last
        return -(-len(self._source.train) // max(1, self.ctx.world_size))

    def steps_per_epoch(self) -> int | None:
        if self.is_digits:
            per_rank = self._digits_per_rank()
            return per_rank // self.batch_size if per_rank >= self.batch_size else 1
        return len(self._source.train_loader)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Training batches of ``epoch``: a permutation (and augmentation) drawn from (run seed, epoch)."""
        if not self.is_digits:
            self._source.sampler.set_epoch(epoch)
            yield from self._source.train_loader
            return
        from benchmarks.data.digits import iterate_batches
        from benchmarks.data.imagefolder import apply_cutmix

        split = self._source.train
        generator = epoch_generator(self.ctx.seed, epoch)
        for images, labels in iterate_batches(
            split,
            self.batch_size,
            generator=generator,
            augment=self._digits_augment(),
            drop_last=self._digits_per_rank() >= self.batch_size,
            rank=self.ctx.rank,
            world_size=max(1, self.ctx.world_size),
        ):
            if self.cutmix_prob > 0:
                seed = int(torch.randint(0, 2**62, (), generator=generator))
                images, labels = apply_cutmix(
                    images, labels, self.num_classes, self.cutmix_alpha, self.cutmix_prob, seed
                )
            yield images, labels

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Cross-entropy (with ``data.label_smoothing``) on hard or CutMix-soft labels; train top-1 if hard."""
        images, targets = batch
        targets = targets.to(self.ctx.device, non_blocking=True)
        logits = model(self._inputs(images))
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        extra: dict[str, Any] = {}
        if targets.ndim == 1:
            extra["top1"] = (logits.detach().argmax(dim=1) == targets).float().mean() * 100.0
        return loss, extra

    def _val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.is_digits:
            yield from self._source.val_loader
            return
        from benchmarks.data.digits import iterate_batches

        yield from iterate_batches(
            self._source.val, self.eval_batch_size, rank=self.ctx.rank, world_size=max(1, self.ctx.world_size)
        )

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Top-1/top-5 accuracy (%) and mean cross-entropy on the whole validation split."""
        ks = [1, 5] if self.num_classes >= 5 else [1]
        totals = torch.zeros(2 + len(ks), dtype=torch.float64, device=self.ctx.device)  # count, loss, hits
        for images, targets in self._val_batches():
            targets = targets.to(self.ctx.device, non_blocking=True)
            logits = model(self._inputs(images)).float()
            hits = topk_correct(logits, targets, ks)
            totals[0] += targets.shape[0]
            totals[1] += F.cross_entropy(logits, targets, reduction="sum").double()
            for i, k in enumerate(ks):
                totals[2 + i] += hits[k]
        if max(1, self.ctx.world_size) > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(totals)
        count = float(totals[0])
        if count == 0:
            raise RuntimeError("the validation split is empty")
        metrics = {f"top{k}": 100.0 * float(totals[2 + i]) / count for i, k in enumerate(ks)}
        metrics["val_loss"] = float(totals[1]) / count
        return metrics

    def batch_size_of(self, batch: Any) -> int:
        """Images in a training batch (for the loop's images/s)."""
        return int(batch[0].shape[0])
