"""Functional AdamP and SGDP, in the style of ``torch.optim.adam.adam``."""

from ._projection import scale_invariant
from .adamp import adamp
from .sgdp import sgdp

__all__ = ["adamp", "sgdp", "scale_invariant"]
