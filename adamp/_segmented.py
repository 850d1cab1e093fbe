"""The projection of the multi-tensor path, batched over all tensors with segmented reductions.

The per-row dot products of every >= 2-D tensor of a group are computed in one flat buffer: the
elementwise products are written into it by ``_foreach`` kernels (one launch per ~100 tensors) and reduced
per row by one ``segment_reduce``; the per-tensor tests, the choice of view and the per-row coefficients are
computed on vectors of rows and tensors; the coefficients are expanded to elements with
``repeat_interleave`` and applied with one ``_foreach_addcmul_``. The number of kernel launches no longer
grows with the number of tensors, nothing is read back to the host, and the flat buffer is the only
temporary of the parameters' size.

Index vectors (row lengths, row-to-tensor map) are built once per set of shapes and cached on the device;
they are copied from pinned memory without blocking, so even the first step does not synchronise. Every
``segment_reduce`` passes ``unsafe=True``: its default validates the lengths by reading two values back to
the host (a synchronisation per call); the lengths here are built from the shapes and valid by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._multi_tensor import device_table, stream_key


@dataclass(frozen=True)
class _Layout:
    numels: list[int]
    numel: int
    row_lengths: Tensor  # (R,) int32 (int64 past 2**31 elements), length of every row of every tensor
    rows_per_tensor: Tensor  # (T,) same dtype
    rows_per_tensor4: Tensor  # (4T,) rows_per_tensor four times: the per-tensor sums of four stacked row vectors
    row_tensor: Tensor  # (R,) int64, tensor index of every row
    channel_bound: Tensor  # (T,) delta / sqrt(row length), in the math dtype
    layer_bound: Tensor  # (T,) delta / sqrt(numel)


_LAYOUTS: dict[tuple, _Layout] = {}



def layout_for(shapes: list[tuple[int, ...]], device: torch.device, dtype: torch.dtype, delta: float) -> _Layout:
    """The (cached) index vectors for tensors of these shapes; ``dtype`` is the one the math runs in.

    Called eagerly: a compiled step receives the layout as an argument instead of building it, since
    pinned host memory and the cache are not things to trace.
    """
    key = (device, stream_key(device), dtype, delta, tuple(shapes))
    layout = _LAYOUTS.get(key)
    if layout is None:
        rows = [s[0] for s in shapes]
        numels = [math.prod(s) for s in shapes]
        lengths = [n // r for n, r in zip(numels, rows)]
        row_lengths = [length for length, r in zip(lengths, rows) for _ in range(r)]
        row_tensor = [t for t, r in enumerate(rows) for _ in range(r)]
        # The bounds are computed in double precision, as the official code does, then rounded once.
        # int32 lengths where they fit: repeat_interleave builds its element-to-row index in the dtype of the
        # lengths, and an int64 index of the chunk's size was a third of the step's temporary memory
        index = torch.int32 if sum(numels) < 2**31 else torch.int64
        layout = _Layout(
            numels=numels, numel=sum(numels),
            row_lengths=device_table(row_lengths, index, device),
            rows_per_tensor=device_table(rows, index, device),
            rows_per_tensor4=device_table(rows * 4, index, device),
            row_tensor=device_table(row_tensor, torch.int64, device),
            channel_bound=device_table([delta / math.sqrt(n) for n in lengths], dtype, device),
            layer_bound=device_table([delta / math.sqrt(n) for n in numels], dtype, device),
        )
        if len(_LAYOUTS) > 64:  # models with many distinct groups: keep the cache bounded
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def _views(flat: Tensor, like: list[Tensor], numels: list[int]) -> list[Tensor]:
    return [v.view(p.shape) for v, p in zip(flat.split(numels), like)]


def _layout(params: list[Tensor], delta: float) -> _Layout:
    return layout_for([tuple(p.shape) for p in params], params[0].device, params[0].dtype, delta)


def segmented_projection(params: list[Tensor], grads: list[Tensor], updates: list[Tensor], delta: float,
                         eps: float, layout: _Layout | None = None) -> Tensor:
    """Project ``updates`` in place where the tensor looks scale-invariant; return the (T,) bool flags.

    Same rule and the same decisions as :func:`adamp._projection.multi_tensor_projection` (up to the
    rounding of the reductions' summation order); all tensors must share one device and dtype.
    """
    layout = layout or _layout(params, delta)
    # Per-row g·w, g·g, w·w, w·u: each product written into the one flat buffer, then reduced per row.
    flat = torch.empty(layout.numel, dtype=params[0].dtype, device=params[0].device)
    views = _views(flat, params, layout.numels)
    dots = []
    for a, b in ((grads, params), (grads, grads), (params, params), (params, updates)):
        torch._foreach_copy_(views, a)
        torch._foreach_mul_(views, b)
        dots.append(torch.segment_reduce(flat, "sum", lengths=layout.row_lengths, unsafe=True))
    del flat, views
    rows = torch.stack(dots)  # (4, R): g·w, g·g, w·w, w·u of every row
    # The layer view's sums are the sums of each tensor's row sums: one 1-D reduction of the four row vectors
    # laid end to end (CUDA runs 1-D segment sums with CUB, a block per segment; a 2-D one along dim 0 walks
    # each tensor's rows in a single thread).
    per_tensor = torch.segment_reduce(rows.view(-1), "sum", lengths=layout.rows_per_tensor4, unsafe=True)
    # Both views side by side, (4, R + T): every formula below runs once for the channel view's rows and the
    # layer view's single row per tensor (the same operations on the same numbers as view by view).
    gw, gg, ww, wu = torch.cat([rows, per_tensor.view(4, -1)], dim=1).unbind(0)
    n_rows = rows.shape[1]
    w_norm = ww.sqrt()
    cos = gw.abs() / (gg.sqrt().clamp_min(eps) * w_norm.clamp_min(eps))
    # u - (ŵ·u) ŵ with ŵ = w / (||w|| + eps)  ==  u - w * (w·u) / (||w|| + eps)^2, per row or per tensor
    coefs = wu / (w_norm + eps).square()

    channel = torch.segment_reduce(cos[:n_rows], "max", lengths=layout.rows_per_tensor, unsafe=True) \
        < layout.channel_bound
    layer = (cos[n_rows:] < layout.layer_bound) & ~channel
    coef = torch.where(channel[layout.row_tensor], coefs[:n_rows],
                       torch.where(layer, coefs[n_rows:], 0.0)[layout.row_tensor])
    per_element = torch.repeat_interleave(coef, layout.row_lengths, output_size=layout.numel)
    torch._foreach_addcmul_(updates, params, _views(per_element, params, layout.numels), value=-1.0)
    return channel | layer


def apply_decay_(params: list[Tensor], flags: Tensor, scale_projected: Tensor, scale_plain: Tensor, delta: float,
                 layout: _Layout | None = None) -> None:
    """params[i] *= scale_projected if flags[i] else scale_plain (0-d tensors), with one expansion and one
    foreach."""
    layout = layout or _layout(params, delta)
    scales = torch.where(flags, scale_projected, scale_plain)
    # expanded row by row: CUDA's repeat_interleave gives each repeat one warp, so a whole tensor per repeat
    # would make the largest tensor a serial tail
    per_element = torch.repeat_interleave(scales[layout.row_tensor], layout.row_lengths, output_size=layout.numel)
    torch._foreach_mul_(params, _views(per_element, params, layout.numels))
