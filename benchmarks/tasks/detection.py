"""Object detection: the paper's Table 3 (CenterNet and SSD on MS-COCO, from scratch and ImageNet-pretrained,
Adam vs AdamP) and a CPU-sized tier on real handwritten digits.

Data (``data.name``), both read by the same COCO reader (``benchmarks.data.coco``, pycocotools):

* ``coco``: MS-COCO 2017 in its official layout under ``data.root`` (``annotations/instances_{train,val}2017
  .json``, ``{train,val}2017/``); training on ``train2017``, evaluation on ``val2017``.
* ``digit_detection``: MNIST digits pasted on 64 px canvases (``benchmarks.data.digit_detection``), written in
  the same layout (splits ``train``/``val``); with ``data.root`` null it is generated once into
  ``$BENCHMARKS_DATA_CACHE`` (default ``~/.cache/adamp-benchmarks``) from ``data.digits``.

Models (``model.name``): ``centernet`` (``benchmarks.models.centernet``: ResNet + up-sampling neck, heat-map,
size and offset heads), ``ssd300_vgg16`` and ``ssdlite320_mobilenet_v3_large`` (torchvision's, built by
``benchmarks.models.ssd``). Backbone ImageNet weights only from ``model.pretrained_path`` (a local file).

Augmentation (``data.augment``, null = the detector's reference recipe): ``centernet`` (colour jitter, the
code's random scale-and-shift crop to ``data.image_size``, flip), ``ssd`` / ``ssdlite`` (torchvision's
detection reference), ``none``. CenterNet inputs are square ``data.image_size`` batches (evaluation images
letterboxed to it, detections mapped back to original pixels); SSD resizes inside the model.

Evaluation: the official COCOeval (bbox) on the whole validation split, at most ``train.max_detections`` (100,
COCO's maxDets) detections per image. Metrics in percent: ``ap`` (AP@[.5:.95], the paper's number), ``ap50``,
``ap75``, ``ap_small``, ``ap_medium``, ``ap_large`` (NaN when the split has no object of that size). There is
no separate validation split in this protocol (the literature reports val2017), and the reported model is the
final one, as in both reference recipes (``selection_metric`` is None).
"""

from __future__ import annotations

import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import nn

from benchmarks.config.errors import ConfigError
from benchmarks.data.seeding import epoch_generator

from .base import RunContext, Task

DATASETS = ("coco", "digit_detection")
MODELS = ("centernet", "ssd300_vgg16", "ssdlite320_mobilenet_v3_large")
#: per detector: reference augmentation recipe, input size, and whether empty training images are dropped
RECIPE = {
    # CenterNet code: ctdet augmentation, 512 x 512 input, every training image kept
    "centernet": {"augment": "centernet", "image_size": 512, "skip_empty": False},
    # torchvision detection reference: --data-augmentation ssd / ssdlite, images without boxes removed
    "ssd300_vgg16": {"augment": "ssd", "image_size": 300, "skip_empty": True},
    "ssdlite320_mobilenet_v3_large": {"augment": "ssdlite", "image_size": 320, "skip_empty": True},
}
SPLITS = {"coco": ("train2017", "val2017"), "digit_detection": ("train", "val")}


def data_cache_dir() -> Path:
    return Path(os.environ.get("BENCHMARKS_DATA_CACHE") or "~/.cache/adamp-benchmarks").expanduser()


class _CenterNetCollate:
    """Stack fixed-size images and encode the heat-map targets (in the loader workers)."""

    def __init__(self, num_classes: int, image_size: int):
        self.num_classes = num_classes
        self.image_size = image_size

    def __call__(self, batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> dict[str, Any]:
        from benchmarks.models.centernet import encode_targets

        images = torch.stack([torch.as_tensor(image) for image, _ in batch]).as_subclass(torch.Tensor)
        encoded = [encode_targets(t["boxes"].as_subclass(torch.Tensor), t["labels"], self.num_classes,
                                  self.image_size) for _, t in batch]
        targets = {k: torch.stack([e[k] for e in encoded]) for k in encoded[0]} if encoded else {}
        meta = [{"image_id": t["image_id"], "orig_size": t["orig_size"]} for _, t in batch]
        return {"images": images, "targets": targets, "meta": meta}


def _ssd_collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> dict[str, Any]:
    images = [torch.as_tensor(image).as_subclass(torch.Tensor) for image, _ in batch]
    # torchvision's SSD keeps class 0 for the background
    targets = [{"boxes": t["boxes"].as_subclass(torch.Tensor).float(), "labels": t["labels"] + 1} for _, t in batch]
    meta = [{"image_id": t["image_id"], "orig_size": t["orig_size"]} for _, t in batch]
    return {"images": images, "targets": targets, "meta": meta}


class Detection(Task):
    """Object detection with CenterNet or SSD, evaluated with COCO AP (pycocotools COCOeval)."""

    name: ClassVar[str] = "detection"
    description: ClassVar[str] = (
        "object detection (paper Table 3): CenterNet / SSD on MS-COCO or on pasted MNIST digits; COCO AP"
    )
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "coco",  # coco | digit_detection
            "root": None,  # folder in the COCO layout (digit_detection: null = generated into the cache)
            "train_split": None,  # null: train2017 (coco) / train (digit_detection)
            "val_split": None,  # null: val2017 / val
            "image_size": None,  # null: the detector's (CenterNet 512, SSD300 300, SSDlite 320)
            "augment": None,  # null: the detector's recipe; centernet | ssd | ssdlite | none
            "skip_empty": None,  # drop training images without boxes; null: the detector's recipe
            "train_max_images": None,  # first N training images only (quick runs; marks a run reduced)
            "val_max_images": None,  # first N validation images only
            "digits": {"train": 1500, "val": 300, "size": 64, "scale_range": [12, 32], "max_objects": 3, "seed": 0},
        },
        "model": {
            "name": "centernet",  # centernet | ssd300_vgg16 | ssdlite320_mobilenet_v3_large
            "backbone": "resnet18",  # centernet: resnet18 | resnet34 | resnet50 | resnet101
            "backbone_layers": 4,  # centernet: 4 = the code (stride 32); 3 = stop after layer3 (tiny inputs)
            "neck": "deconv",  # centernet: deconv (the code's res_*) | dcn (resdcn_*)
            "neck_channels": None,  # centernet: widths of the three up-sampling stages; null: the neck's
            "head_channels": 64,  # centernet: the code's head_conv
            "pretrained_path": None,  # local ImageNet backbone weights (torchvision state dict); null = scratch
            "trainable_backbone_layers": None,  # ssd300_vgg16: VGG blocks trained (null: 4 pretrained, 5 scratch)
            "image_mean": None,  # ssd: input normalisation (null: torchvision's for the model)
            "image_std": None,
        },
        "train": {
            "eval_batch_size": None,  # null: train.batch_size
            "max_detections": 100,  # per image (COCO maxDets)
            "loss_weights": {"hm": 1.0, "wh": 0.1, "reg": 1.0},  # centernet (the code's defaults)
        },
    }
    smoke: ClassVar[Mapping[str, Any]] = {
        "train.epochs": 1,
        "train.max_steps": 2,
        "train.batch_size": 4,
        "train.num_workers": 0,
        "data.train_max_images": 8,
        "data.val_max_images": 8,
    }
    metrics: ClassVar[Mapping[str, str]] = {
        "ap": "max", "ap50": "max", "ap75": "max", "ap_small": "max", "ap_medium": "max", "ap_large": "max",
    }
    selection_metric: ClassVar[str | None] = None

    # -- checks before launch ------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Static checks (no disk). Raises ``ConfigError`` naming the key."""
        from benchmarks.data.coco import AUGMENTATIONS
        from benchmarks.models.centernet import BACKBONES, NECKS

        data, model, train = config["data"], config["model"], config["train"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: {data['name']!r} is not a detection data set; valid: {', '.join(DATASETS)}")
        if model["name"] not in MODELS:
            raise ConfigError(f"model.name: {model['name']!r} is not a detector; valid: {', '.join(MODELS)}")
        if data["augment"] is not None and data["augment"] not in AUGMENTATIONS:
            raise ConfigError(f"data.augment: {data['augment']!r}; valid: null (the detector's recipe), "
                              f"{', '.join(AUGMENTATIONS)}")
        if model["name"] != "centernet" and data["augment"] == "centernet":
            raise ConfigError("data.augment: centernet crops to CenterNet's fixed input; use ssd, ssdlite or none "
                              f"with {model['name']}")
        size = data["image_size"]
        if size is not None and (int(size) < 32 or (model["name"] == "centernet" and int(size) % 32)):
            raise ConfigError(f"data.image_size must be >= 32 (CenterNet: a multiple of 32, its backbone stride), "
                              f"got {size}")
        if model["name"] == "centernet":
            if model["backbone"] not in BACKBONES:
                raise ConfigError(f"model.backbone: {model['backbone']!r}; valid: {', '.join(BACKBONES)}")
            if model["neck"] not in NECKS:
                raise ConfigError(f"model.neck: {model['neck']!r}; valid: {', '.join(NECKS)}")
            if model["backbone_layers"] not in (3, 4):
                raise ConfigError(f"model.backbone_layers: 4 (stride 32, the code) or 3, got {model['backbone_layers']}")
            channels, ups = model["neck_channels"], int(model["backbone_layers"]) - 1
            if channels is not None and (not isinstance(channels, list) or len(channels) != ups
                                         or not all(isinstance(c, int) and c > 0 for c in channels)):
                raise ConfigError(f"model.neck_channels: {ups} positive integers (one per up-sampling stage) or "
                                  f"null, got {channels!r}")
        elif model["name"].startswith("ssdlite") and model["pretrained_path"]:
            raise ConfigError("model.pretrained_path: ssdlite320_mobilenet_v3_large is built from scratch only; "
                              "set it to null or use ssd300_vgg16")
        for key in ("train_max_images", "val_max_images"):
            if data[key] is not None and int(data[key]) < 1:
                raise ConfigError(f"data.{key} must be >= 1 or null, got {data[key]}")
        weights = train["loss_weights"]
        if any(float(v) < 0 for v in weights.values()):
            raise ConfigError(f"train.loss_weights must be >= 0, got {dict(weights)}")
        if int(train["max_detections"]) < 1:
            raise ConfigError(f"train.max_detections must be >= 1, got {train['max_detections']}")
        digits = data["digits"]
        if int(digits["size"]) < 32 or int(digits["train"]) < 1 or int(digits["val"]) < 1:
            raise ConfigError(f"data.digits: size >= 32 and at least one train and val image, got {dict(digits)}")

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """Cheap on-disk checks: the COCO layout under ``data.root`` and the weights file exist."""
        from benchmarks.data.coco import check_layout

        data, model = config["data"], config["model"]
        if data["name"] == "coco" or data["root"] is not None:
            check_layout(data["root"], cls._splits(data))
        path = model["pretrained_path"]
        if path and not Path(path).expanduser().is_file():
            raise ConfigError(f"model.pretrained_path: {path} does not exist (backbone weights are only read from "
                              f"a local file, never downloaded); set it to a torchvision state dict or to null")

    @staticmethod
    def _splits(data: Mapping[str, Any]) -> tuple[str, str]:
        train, val = SPLITS[data["name"]]
        return str(data["train_split"] or train), str(data["val_split"] or val)

    # -- setup ---------------------------------------------------------------------------------------------
    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)
        self.check_data(config)
        data, model, train = config["data"], config["model"], config["train"]
        self.model_name: str = model["name"]
        recipe = RECIPE[self.model_name]
        self.is_centernet = self.model_name == "centernet"
        self.image_size = int(data["image_size"] or recipe["image_size"])
        self.augment = str(data["augment"] or recipe["augment"])
        self.skip_empty = bool(recipe["skip_empty"] if data["skip_empty"] is None else data["skip_empty"])
        world = max(1, ctx.world_size)
        batch = int(train["batch_size"])
        if batch % world:
            raise ConfigError(f"train.batch_size ({batch}) must be divisible by the number of processes ({world})")
        self.batch_size = batch // world
        self.eval_batch_size = max(1, int(train["eval_batch_size"] or batch) // world)
        self.max_detections = int(train["max_detections"])
        self.loss_weights = {k: float(v) for k, v in train["loss_weights"].items()}

    @cached_property
    def root(self) -> Path:
        data = self.config["data"]
        if data["root"] is not None:
            return Path(data["root"]).expanduser()
        from benchmarks.data.digit_detection import cached_set

        digits = data["digits"]
        return cached_set(data_cache_dir(), train=int(digits["train"]), val=int(digits["val"]),
                          size=int(digits["size"]), scale_range=[int(v) for v in digits["scale_range"]],
                          max_objects=int(digits["max_objects"]), seed=int(digits["seed"]))

    @cached_property
    def splits(self) -> tuple[Any, Any]:
        from benchmarks.data.coco import open_split, untrained_categories

        data = self.config["data"]
        train_split, val_split = self._splits(data)
        train = open_split(self.root, train_split, skip_empty=self.skip_empty, max_images=data["train_max_images"])
        val = open_split(self.root, val_split, max_images=data["val_max_images"], cat_ids=train.cat_ids)
        if not train.image_ids:
            raise ConfigError(f"data.root: {self.root}: the training split {train_split!r} has no usable image")
        unseen = untrained_categories(train, val)
        if unseen:
            names = [str(train.coco.cats[c].get("name", c)) for c in unseen]
            warnings.warn(f"data.root: {self.root}: validation split {val_split!r} has boxes of categories that no "
                          f"training image of {train_split!r} has ({len(unseen)}: {', '.join(names[:10])}"
                          f"{', ...' if len(names) > 10 else ''}); their AP measures nothing the detector was "
                          f"taught", stacklevel=1)
        return train, val

    @property
    def num_classes(self) -> int:
        return self.splits[0].num_classes

    def _dataset(self, train: bool) -> Any:
        from benchmarks.data.coco import CocoDetection, detection_transforms

        index = self.splits[0] if train else self.splits[1]
        fixed = self.image_size if self.is_centernet else None
        return CocoDetection(index, detection_transforms(self.augment, train, fixed))

    def _collate(self) -> Any:
        return _CenterNetCollate(self.num_classes, self.image_size) if self.is_centernet else _ssd_collate

    @cached_property
    def train_set(self) -> Any:
        return self._dataset(train=True)

    @cached_property
    def val_set(self) -> Any:
        return self._dataset(train=False)

    def _loader(self, dataset: Any, batch_size: int, sampler: Any, drop_last: bool) -> Any:
        workers = int(self.config["train"].get("num_workers") or 0)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, collate_fn=self._collate(),
            num_workers=workers, pin_memory=self.ctx.device.type == "cuda", persistent_workers=False,
        )

    def _train_sampler(self, epoch: int) -> Any:
        world = max(1, self.ctx.world_size)
        if world > 1:
            sampler = torch.utils.data.DistributedSampler(self.train_set, num_replicas=world, rank=self.ctx.rank,
                                                          shuffle=True, seed=self.ctx.seed, drop_last=True)
            sampler.set_epoch(epoch)
            return sampler
        return torch.utils.data.RandomSampler(self.train_set, generator=epoch_generator(self.ctx.seed, epoch))

    def _per_rank_train(self) -> int:
        return len(self.train_set) // max(1, self.ctx.world_size)

    def steps_per_epoch(self) -> int | None:
        n = self._per_rank_train()
        return n // self.batch_size if n >= self.batch_size else 1

    def train_batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        """Training batches of ``epoch``: order and worker seeds from (run seed, epoch)."""
        # augmentations draw from torch's RNG: the loop's (seeded) one without workers; with workers, the seeds
        # the loader derives from it
        drop = self._per_rank_train() >= self.batch_size
        yield from self._loader(self.train_set, self.batch_size, self._train_sampler(epoch), drop)

    # -- model and loss ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        if self.is_centernet:
            from benchmarks.models.centernet import build_centernet

            return build_centernet(self.config["model"], self.num_classes)
        from benchmarks.models.ssd import build_ssd

        return build_ssd(self.config["model"], self.num_classes, self.image_size, self.max_detections)

    @cached_property
    def _norm(self) -> tuple[torch.Tensor, torch.Tensor]:
        from benchmarks.data.coco import CENTERNET_MEAN, CENTERNET_STD

        mean = torch.tensor(CENTERNET_MEAN).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(CENTERNET_STD).view(1, 3, 1, 1) * 255.0
        return mean.to(self.ctx.device), std.to(self.ctx.device)

    def _centernet_inputs(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self._norm
        x = (images.to(self.ctx.device, non_blocking=True).float() - mean) / std
        if self.config["train"].get("channels_last"):
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _ssd_inputs(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        return [im.to(self.ctx.device, non_blocking=True).float() / 255.0 for im in images]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.is_centernet:
            from benchmarks.models.centernet import centernet_loss

            outputs = model(self._centernet_inputs(batch["images"]))
            targets = {k: v.to(self.ctx.device, non_blocking=True) for k, v in batch["targets"].items()}
            return centernet_loss(outputs, targets, self.loss_weights)
        targets = [{k: v.to(self.ctx.device, non_blocking=True) for k, v in t.items()} for t in batch["targets"]]
        parts = model(self._ssd_inputs(batch["images"]), targets)
        total = sum(parts.values())
        return total, {f"loss_{k}": v.detach() for k, v in parts.items()}

    def batch_size_of(self, batch: Any) -> int:
        """Images in a batch (for the loop's images/s)."""
        return len(batch["meta"])

    # -- evaluation ------------------------------------------------------------------------------------------
    def _detections(self, model: nn.Module, batch: dict[str, Any]) -> list[dict[str, Any]]:
        from benchmarks.data.coco import letterbox_params, to_coco_detections

        cat_ids = self.splits[0].cat_ids
        out: list[dict[str, Any]] = []
        if self.is_centernet:
            from benchmarks.models.centernet import decode

            boxes, scores, labels = decode(model(self._centernet_inputs(batch["images"])), k=self.max_detections)
            for b, s, c, meta in zip(boxes, scores, labels, batch["meta"]):
                h, w = meta["orig_size"]
                scale, left, top = letterbox_params(h, w, self.image_size)
                b = (b - torch.tensor([left, top, left, top], device=b.device, dtype=b.dtype)) / scale
                b[:, 0::2] = b[:, 0::2].clamp(0, w)
                b[:, 1::2] = b[:, 1::2].clamp(0, h)
                out += to_coco_detections(meta["image_id"], b, s, c, cat_ids)
            return out
        results = model(self._ssd_inputs(batch["images"]))
        for r, meta in zip(results, batch["meta"]):
            out += to_coco_detections(meta["image_id"], r["boxes"][: self.max_detections],
                                      r["scores"][: self.max_detections], r["labels"][: self.max_detections] - 1,
                                      cat_ids)
        return out

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """COCO AP and friends (%) of the model on the whole validation split (official COCOeval)."""
        from benchmarks.data.coco import coco_evaluate

        world, rank = max(1, self.ctx.world_size), self.ctx.rank
        indices = list(range(rank, len(self.val_set), world))
        loader = self._loader(torch.utils.data.Subset(self.val_set, indices), self.eval_batch_size, None, False)
        detections: list[dict[str, Any]] = []
        for batch in loader:
            detections += self._detections(model, batch)
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, detections)
            detections = [d for part in gathered for d in part]
        val = self.splits[1]
        return coco_evaluate(val.coco, detections, val.image_ids)


__all__ = ["DATASETS", "Detection", "MODELS", "RECIPE"]
