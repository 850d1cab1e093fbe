"""Image classification data in torchvision's ImageFolder layout (ImageNet and anything shaped like it).

Expected layout (the layout of ImageNet after the usual ``valprep`` step that sorts val/ into class folders)::

    root/train/<class>/<image>.jpg
    root/val/<class>/<image>.jpg

Class indices come from the sorted class folders of ``train/``; ``val/`` is read with the same mapping, so a
val folder that lacks a class cannot shift the labels.

Determinism: the training sampler draws the epoch's permutation AND one seed per sample from a generator
seeded by ``(run seed, epoch)``; each sample's random augmentation is drawn from its own seed. Epoch ``e`` is
therefore the same whatever the number of workers, whether the workers are persistent, and whether the run
was resumed from a checkpoint in between.

Images leave the loader as ``uint8`` tensors (4x less to pin and copy than float32); the task converts and
normalises them on the device.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS, DatasetFolder, default_loader
from torchvision.transforms import v2

from benchmarks.config.errors import ConfigError

from .digits import stratified_fraction
from .seeding import epoch_generator

#: ImageNet channel statistics (of the 0..1 scaled RGB values), the usual normalisation for these models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPLITS = ("train", "val")


@contextlib.contextmanager
def seeded_cpu_rng(seed: int) -> Iterator[None]:
    """Run the block with torch's global CPU generator seeded by ``seed``, restoring its state afterwards.

    torchvision's random transforms draw from the global generator. Saving and restoring it keeps the main
    process's stream untouched when samples are loaded there (``num_workers == 0``). ``torch.manual_seed``
    would also reseed every accelerator (about 0.3 ms, a tenth of a sample's decoding), so only the CPU
    generator is touched.
    """
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


def layout_help(root: str | os.PathLike[str]) -> str:
    """The expected folder layout, spelled out for error messages."""
    return (
        f"expected the ImageFolder layout {root}/train/<class>/<image>.jpg and {root}/val/<class>/<image>.jpg "
        f"(image files: {', '.join(IMG_EXTENSIONS)}); for ImageNet, sort val/ into class folders first"
    )


def check_layout(root: str | os.PathLike[str] | None) -> dict[str, Path]:
    """Return ``{"train": root/train, "val": root/val}``; raise ``ConfigError`` naming the path if absent."""
    if root is None or str(root) == "":
        raise ConfigError(
            "data.root is not set: the imagefolder data set needs the folder that holds train/ and val/; "
            "pass --set data.root=/path/to/dataset (with make: DATA=/path/to/dataset); " + layout_help("<root>")
        )
    base = Path(root).expanduser()
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise ConfigError(f"data.root: {base} {what}; {layout_help(base)}")
    folders: dict[str, Path] = {}
    for split in SPLITS:
        folder = base / split
        if not folder.is_dir():
            found = sorted(p.name for p in base.iterdir() if p.is_dir())
            raise ConfigError(
                f"data.root: {base} has no {split}/ folder (sub-folders found: {found or 'none'}); "
                f"{layout_help(base)}"
            )
        folders[split] = folder
    return folders


class ImageFolderSplit(DatasetFolder):
    """One split of an ImageFolder tree read with a FIXED class mapping (that of the training split).

    ``dataset[i]`` returns ``(image, label)``; ``dataset[(i, seed)]`` (what :class:`SeededSampler` yields)
    returns ``(image, label, seed)`` with the random transform drawn from ``seed``.
    """

    def __init__(
        self,
        root: Path,
        class_to_idx: dict[str, int] | None,
        transform: Callable[[Any], torch.Tensor],
        keep: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self._fixed_class_to_idx = class_to_idx
        try:
            super().__init__(str(root), loader=default_loader, extensions=IMG_EXTENSIONS, transform=transform)
        except FileNotFoundError as exc:
            # torchvision says "Couldn't find any class folder" / "Found no valid file for the classes ..."
            raise ConfigError(f"data.root: {exc}; {layout_help(root.parent)}") from exc
        if keep is not None:
            index = keep(np.asarray(self.targets))
            self.samples = [self.samples[i] for i in index]
            self.targets = [s[1] for s in self.samples]
            self.imgs = self.samples

    def find_classes(self, directory: str | os.PathLike[str]) -> tuple[list[str], dict[str, int]]:
        """Classes of this split; with a fixed mapping, only its classes are allowed (extra ones are errors)."""
        classes, mapping = super().find_classes(directory)
        if self._fixed_class_to_idx is None:
            return classes, mapping
        unknown = sorted(set(classes) - set(self._fixed_class_to_idx))
        if unknown:
            raise ConfigError(
                f"data.root: {directory} has class folders that train/ lacks: {unknown[:10]}"
                f"{' ...' if len(unknown) > 10 else ''}; both splits must use the same class names"
            )
        present = sorted(classes, key=self._fixed_class_to_idx.__getitem__)
        return present, {c: self._fixed_class_to_idx[c] for c in present}

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, ...]:  # type: ignore[override]
        if isinstance(key, tuple):
            index, seed = key
            path, target = self.samples[index]
            image = self.loader(path)
            with seeded_cpu_rng(seed):
                image = self.transform(image)
            return image, target, seed
        path, target = self.samples[key]
        return self.transform(self.loader(path)), target


class SeededSampler(Sampler[tuple[int, int]]):
    """Shuffles ``size`` indices and attaches a per-sample seed, both drawn from ``(seed, epoch)``.

    With ``world_size > 1`` each rank takes an interleaved shard of the same permutation (padded by wrapping
    around so that every rank gets the same number of samples).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(self.size, generator=generator)
        seeds = torch.randint(0, 2**62, (self.size,), generator=generator)
        per_rank = len(self)
        total = per_rank * self.world_size
        if total > self.size:
            order = torch.cat([order, order[: total - self.size]])
            seeds = torch.cat([seeds, seeds[: total - self.size]])
        for i, s in zip(order[self.rank :: self.world_size].tolist(), seeds[self.rank :: self.world_size].tolist()):
            yield i, s


def apply_cutmix(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, alpha: float, prob: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability ``prob`` apply torchvision's v2 ``CutMix(alpha)`` to the batch, else one-hot the labels.

    Always returns soft labels ``(batch, num_classes)`` so that a run sees one label format. The draw comes
    from ``seed`` alone (the caller's RNG state is left untouched).
    """
    with seeded_cpu_rng(seed):
        if float(torch.rand(())) < prob:
            return v2.CutMix(alpha=alpha, num_classes=num_classes)(images, labels)
    return images, torch.nn.functional.one_hot(labels, num_classes).to(torch.float32)


class TrainCollate:
    """Stacks ``(image, label, seed)`` samples; with ``cutmix_prob > 0`` applies :func:`apply_cutmix`.

    Labels stay integer class indices without CutMix. The CutMix draw is seeded from the batch's first
    sample seed, so it is as deterministic as the samples themselves.
    """

    def __init__(self, num_classes: int, cutmix_alpha: float = 1.0, cutmix_prob: float = 0.0):
        self.num_classes = num_classes
        self.cutmix_alpha = cutmix_alpha
        self.cutmix_prob = cutmix_prob

    def __call__(self, samples: Sequence[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([s[0] for s in samples])
        labels = torch.tensor([s[1] for s in samples], dtype=torch.long)
        if self.cutmix_prob <= 0:
            return images, labels
        seed = (samples[0][2] ^ 0x5DEECE66D) & (2**63 - 1)
        return apply_cutmix(images, labels, self.num_classes, self.cutmix_alpha, self.cutmix_prob, seed)


def train_transform(image_size: int, augment: str) -> Callable[[Any], torch.Tensor]:
    """The training transform: ``imagenet`` = RandomResizedCrop + horizontal flip; ``none`` = eval-style crop."""
    if augment == "imagenet":
        steps: list[Any] = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
    elif augment == "none":
        steps = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    else:
        raise ConfigError(f"data.augment: {augment!r} is not valid for imagefolder; valid: imagenet, none")
    return v2.Compose([*steps, v2.PILToTensor()])


def eval_transform(image_size: int, val_resize: int) -> Callable[[Any], torch.Tensor]:
    """The evaluation transform: resize the shorter side to ``val_resize``, then center-crop ``image_size``."""
    if val_resize < image_size:
        raise ConfigError(f"data.val_resize ({val_resize}) must be >= data.image_size ({image_size})")
    return v2.Compose([v2.Resize(val_resize, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])


@dataclass
class ImageFolderData:
    """Both splits of an ImageFolder tree and their loaders."""

    train: ImageFolderSplit
    val: ImageFolderSplit
    classes: list[str]
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: SeededSampler

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def build_imagefolder(
    root: str | os.PathLike[str] | None,
    *,
    image_size: int = 224,
    val_resize: int = 256,
    augment: str = "imagenet",
    train_fraction: float = 1.0,
    val_fraction: float = 1.0,
    split_seed: int = 0,
    batch_size: int = 256,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
    cutmix_alpha: float = 1.0,
    cutmix_prob: float = 0.0,
    rank: int = 0,
    world_size: int = 1,
) -> ImageFolderData:
    """Scan ``root`` and build the training and validation loaders.

    ``batch_size`` is the batch of THIS process (the caller divides a global batch by the world size). The
    last incomplete training batch is dropped whenever at least one full batch exists, so that every step has
    the same size (BatchNorm needs more than one sample; per-step timings stay comparable).
    """
    folders = check_layout(root)

    def subset(fraction: float) -> Callable[[np.ndarray], np.ndarray] | None:
        if fraction == 1.0:
            return None
        return lambda targets: stratified_fraction(targets, fraction, split_seed)

    train = ImageFolderSplit(folders["train"], None, train_transform(image_size, augment), subset(train_fraction))
    val = ImageFolderSplit(
        folders["val"], dict(train.class_to_idx), eval_transform(image_size, val_resize), subset(val_fraction)
    )
    classes = list(train.classes)
    sampler = SeededSampler(len(train), seed, rank, world_size)
    workers = dict(num_workers=num_workers, pin_memory=pin_memory, persistent_workers=num_workers > 0)
    train_loader = DataLoader(
        train,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=len(sampler) >= batch_size,
        collate_fn=TrainCollate(len(classes), cutmix_alpha, cutmix_prob),
        generator=torch.Generator().manual_seed(seed),
        **workers,
    )
    val_index = list(range(rank, len(val), world_size))
    val_loader = DataLoader(
        torch.utils.data.Subset(val, val_index) if world_size > 1 else val,
        batch_size=eval_batch_size or batch_size,
        shuffle=False,
        **workers,
    )
    return ImageFolderData(train, val, classes, train_loader, val_loader, sampler)
