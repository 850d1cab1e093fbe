"""AdamP and SGDP (Heo et al., ICLR 2021) as torch.optim optimizers.

Numerically identical to the official ``adamp==0.3.0`` package, without its per-tensor device-to-host
synchronisation, with multi-tensor (``foreach``) and compiled (``fused``) implementations.
"""

from . import functional
from ._projection import scale_invariant
from .adamp import AdamP
from .sgdp import SGDP

__all__ = ["AdamP", "SGDP", "functional", "scale_invariant"]
__version__ = "0.1.0"
