"""Biased-MNIST (Bahng et al., "Learning De-biased Representations with Biased Representations", ICML 2020).

The definition follows the official code (github.com/clovaai/rebias, ``datasets/colour_mnist.py``):

* every digit class ``c`` has a background colour, :data:`COLOUR_MAP[c]` (ten fixed RGB colours);
* the digit's pixels (grey value != 0) become white (255, 255, 255) and every other pixel takes the sample's
  background colour; images are then normalised with mean 0.5 and std 0.5 per channel;
* ``rho`` (the "data-label correlation") is the fraction of each class drawn in its own colour: of the ``n``
  samples of class ``c``, ``int(n * rho)`` (chosen at random) get ``COLOUR_MAP[c]``; the rest is cut into
  chunks of ``ceil(rest / n_confusing)`` samples, one chunk per colour of the classes
  ``c+1, ..., c+n_confusing`` (mod 10) taken in a random order;
* training uses the chosen ``rho`` (the paper: 0.990, 0.995, 0.997, 0.999); the *biased* test set uses
  ``rho = 1`` (every test digit in its class colour) and the *unbiased* test set ``rho = 0.1`` with all nine
  other colours (each colour on about a tenth of every class: the colour says nothing about the digit).

The colour assignment here is drawn from ``numpy.random.default_rng(seed)`` (the official code shuffles with
the global numpy state); the fractions are exactly the official ones.
"""

from __future__ import annotations

import math

import numpy as np

#: background colour per class (RGB), as in the official code
COLOUR_MAP = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [225, 225, 0], [225, 0, 225],
     [0, 255, 255], [255, 128, 0], [255, 0, 128], [128, 0, 255], [128, 128, 128]],
    dtype=np.uint8,
)
NUM_COLOURS = 10
#: the official evaluation sets: biased (colour = class) and unbiased (colours spread evenly)
BIASED_TEST_RHO = 1.0
UNBIASED_TEST_RHO = 0.1


def assign_colours(labels: np.ndarray, rho: float, rng: np.random.Generator, n_confusing: int = 9) -> np.ndarray:
    """The background colour index of every sample (official rule: see module docstring)."""
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    if not 1 <= n_confusing <= NUM_COLOURS - 1:
        raise ValueError(f"n_confusing must be in 1..{NUM_COLOURS - 1}, got {n_confusing}")
    labels = np.asarray(labels, dtype=np.int64)
    colours = np.empty_like(labels)
    for label in range(NUM_COLOURS):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n = members.shape[0]
        n_correlated = int(n * rho)
        colours[members[:n_correlated]] = label
        rest = members[n_correlated:]
        if rest.size == 0:
            continue
        chunk = int(math.ceil(rest.size / n_confusing))
        others = [(label + k) % NUM_COLOURS for k in range(1, n_confusing + 1)]
        rng.shuffle(others)
        for i, start in enumerate(range(0, rest.size, chunk)):
            colours[rest[start : start + chunk]] = others[i]
    return colours


def colourise(images: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """RGB images ``(N, 3, H, W)`` uint8: white digit (pixels != 0) on the background colour ``colours[i]``."""
    images = np.asarray(images)
    ink = images != 0
    background = COLOUR_MAP[np.asarray(colours)]  # (N, 3)
    out = np.where(ink[:, None, :, :], np.uint8(255), background[:, :, None, None])
    return out.astype(np.uint8)


def biased_mnist(
    images: np.ndarray, labels: np.ndarray, rho: float, seed: int, n_confusing: int = 9
) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb images (N, 3, H, W) uint8, colour index (N,))`` of Biased-MNIST at correlation ``rho``."""
    colours = assign_colours(labels, rho, np.random.default_rng(seed), n_confusing)
    return colourise(images, colours), colours
