"""Benchmark suite for the AdamP/SGDP optimizers (Heo et al., ICLR 2021).

``benchmarks.load_results(OUT)`` / ``benchmarks.load_history(OUT)`` load a results folder into pandas; they
are imported lazily so that ``import benchmarks`` stays cheap (no pandas, no torch).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_history", "load_results"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from benchmarks import store

        return getattr(store, name)
    raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
