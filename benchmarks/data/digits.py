"""scikit-learn's bundled handwritten digits (``load_digits``) as a small, real, offline classification set.

1,797 grey 8x8 images of the digits 0-9 (UCI "Optical Recognition of Handwritten Digits", test part). The
data ships inside the scikit-learn wheel, so nothing is downloaded. The whole set fits in memory, so batches
are cut from tensors directly instead of going through a ``DataLoader`` (worker start-up would cost more than
the epoch itself).

The train/val split is stratified and drawn from ``split_seed``, which is independent of the run seed: every
run of a sweep, whatever its seed or optimizer, sees exactly the same held-out images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

#: pixel values in load_digits are integers 0..16
_MAX_PIXEL = 16.0

AUGMENTATIONS = ("none", "shift")


@dataclass(frozen=True)
class DigitsSplit:
    """Normalised images ``(N, 1, 8, 8)`` (float32) and labels ``(N,)`` (int64) of one split."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Digits:
    """The fixed train/val split of the digits set, normalised with the training split's mean and std."""

    train: DigitsSplit
    val: DigitsSplit
    num_classes: int
    mean: float
    std: float
    #: indices into ``sklearn.datasets.load_digits()`` of each split (for checking reproducibility)
    train_index: np.ndarray
    val_index: np.ndarray


def stratified_fraction(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Return sorted indices of a stratified random ``fraction`` of ``labels`` (at least one per class).

    Used for quick runs on a part of a data set; the choice depends only on ``seed``, so it is the same for
    every run that uses the same fraction.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(labels.shape[0])
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = max(1, int(round(fraction * members.shape[0])))
        keep.append(rng.choice(members, size=count, replace=False))
    return np.sort(np.concatenate(keep))


def load_digits_split(
    val_size: float = 0.2,
    split_seed: int = 0,
    train_fraction: float = 1.0,
    val_fraction: float = 1.0,
) -> Digits:
    """Load the digits and split them, stratified, into train and val.

    Args:
        val_size: fraction of the 1,797 images held out for validation.
        split_seed: seed of the split and of the optional subsets (independent of the run seed).
        train_fraction, val_fraction: keep only this stratified fraction of each split (quick runs).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_size < 1.0:
        raise ValueError(f"data.val_size must be in (0, 1), got {val_size}")
    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float32) / _MAX_PIXEL
    labels = np.asarray(bunch.target, dtype=np.int64)
    all_index = np.arange(labels.shape[0])
    train_index, val_index = train_test_split(
        all_index, test_size=val_size, stratify=labels, random_state=split_seed
    )
    train_index, val_index = np.sort(train_index), np.sort(val_index)
    train_index = train_index[stratified_fraction(labels[train_index], train_fraction, split_seed)]
    val_index = val_index[stratified_fraction(labels[val_index], val_fraction, split_seed)]

    # One scalar mean/std from the training pixels: the images are grey, and per-pixel statistics would turn
    # the always-blank border pixels into noise amplifiers.
    mean = float(pixels[train_index].mean())
    std = float(pixels[train_index].std())

    def split(index: np.ndarray) -> DigitsSplit:
        images = torch.from_numpy((pixels[index] - mean) / std).reshape(-1, 1, 8, 8).contiguous()
        return DigitsSplit(images=images, labels=torch.from_numpy(labels[index]).contiguous())

    return Digits(
        train=split(train_index),
        val=split(val_index),
        num_classes=int(labels.max()) + 1,
        mean=mean,
        std=std,
        train_index=train_index,
        val_index=val_index,
    )


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by an independent random offset in ``[-max_shift, max_shift]`` pixels (both axes).

    Uncovered pixels take the background value (the minimum of the batch, i.e. the normalised zero ink).
    """
    if max_shift <= 0:
        return images
    n, c, h, w = images.shape
    background = float(images.min())
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(h)[None, :])  # (n, h)
    cols = (offsets[:, 1, None] + torch.arange(w)[None, :])  # (n, w)
    batch = torch.arange(n)[:, None, None, None]
    chan = torch.arange(c)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def iterate_batches(
    split: DigitsSplit,
    batch_size: int,
    generator: torch.Generator | None = None,
    augment: str = "none",
    drop_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images, labels)`` batches of ``split``; shuffled (and augmented) when ``generator`` is given.

    With ``world_size > 1`` every rank takes an interleaved shard of the same permutation.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown digits augmentation {augment!r}; valid: {', '.join(AUGMENTATIONS)}")
    n = len(split)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order[rank::world_size]
    stop = (order.shape[0] // batch_size) * batch_size if drop_last else order.shape[0]
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        images = split.images[index]
        if augment == "shift" and generator is not None:
            images = random_shift(images, 1, generator)
        yield images, split.labels[index]
