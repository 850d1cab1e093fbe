"""Random generators derived from (run seed, epoch): every shuffled order a loader draws comes from here."""

from __future__ import annotations

import numpy as np
import torch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh generator for epoch ``epoch`` of a run seeded ``seed``. SeedSequence mixes the pair, so
    neighbouring seeds (or epochs) do not give correlated permutations; resuming at an epoch needs no state."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


__all__ = ["epoch_generator"]
