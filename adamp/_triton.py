"""Triton kernels of the fused path: four launches per step for all tensors of one device and dtype (all
param groups whose flags agree), whatever the number of tensors.

1. ``_stats_kernel`` (one program per tile of rows) updates the optimizer state in place, forms the update
   direction in registers and reduces, per row, ``g·w``, ``g·g``, ``w·w`` and ``w·u``;
2. ``_rows_kernel`` (one program per block of ``BLOCK_T`` rows of one tensor) adds each row's sums from its
   pieces, writes the row's channel-view coefficient and the block's partials for the test;
3. ``_decide_kernel`` (one program per tensor) runs the scale-invariance test of both views from the blocks'
   partials (the layer view's sums are the sums of the row sums) and writes which view fired, the layer
   view's coefficient and the tensor's weight-decay factor;
4. ``_apply_kernel`` (one program per tile) forms the update direction again from the new state (cheaper
   than storing it: no temporary of the parameters' size), projects it and steps the weights.

That is two passes over params, grads and state, the floor for a rule whose step depends on a reduction
over the whole tensor; the temporaries are a few numbers per row and per tensor. Nothing is read back to
the host. Every per-tensor input (scalars included) is read from tables, so param groups with different
hyper-parameters share one launch sequence (each tensor reads its group's row of the scalar table).

Tensors are reached through a table of addresses (one ``int64`` per tensor and role), so one launch serves
tensors of any shapes. Each tensor is seen as ``rows x row_length`` (dim 0 by the rest, as in the official
channel view; a tensor with fewer than two dims is one row). Rows longer than ``CHUNK`` are cut into pieces
("virtual rows") so that a tensor with a few long rows still spreads over many programs; a row's sums are
then added from its pieces in a fixed order, so results do not depend on scheduling (no atomics).

The kernels need every tensor of a group to be laid out like its parameter with dim 0 outermost (contiguous
or channels_last, grads and state alike) and plain (no tensor subclass); :func:`supported` and :func:`plain`
check that and the caller falls back to the multi-tensor path otherwise. On the CPU they run only under Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests check them without a GPU;
``scripts/triton_aot_check.py`` compiles them for a GPU architecture without one.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from ._multi_tensor import device_table, plain, stream_key

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with torch's CUDA wheels
    triton = None

#: Tile of the two element-wise kernels: ``BLOCK_R`` virtual rows by ``BLOCK_C`` columns per iteration.
#: Chosen from ptxas's report for sm_90 (scripts/triton_aot_check.py --registers): 4 x 256 with 4 warps
#: needs about 96 registers per thread and no spills in float32; 16 x 128 needed all 255 and spilled.
BLOCK_R = 4
BLOCK_C = 256
#: Longest virtual row (a multiple of BLOCK_C): bounds the work of one program.
CHUNK = 2048
#: Rows per program of the row kernel (one row block): a 267,735-row word embedding is 523 programs, not
#: one program walking all its rows (the first version did that, twice); 512 rows use 71 registers in float32.
BLOCK_T = 512
#: Row blocks per iteration of the per-tensor decision kernel (which only combines the blocks' partials).
BLOCK_B = 256
NUM_WARPS = 4

# The tables the kernels read (their column order is spelled out in the kernels):
#   meta   (tensors, META) int64: rows, row length, pieces per row, first row, first piece, projected (>= 2-D),
#          row of the scalar table, first row block, row blocks
#   tiles  (tiles, 2) int64: tensor, first virtual row
#   blocks (row blocks, 2) int64: tensor, first row
#   addr   (tensors, 4) int64: addresses of param, grad, state 1, state 2
#   scal   (scalar rows, 9) float64: see ``step``; loaded in the math dtype (Python computes them in double
#          precision, as the other paths do; kernel float arguments would be rounded to float32 on the way in)
ADAMP, SGDP = 0, 1


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available(device: torch.device) -> bool:
    """Whether the kernels can run on ``device``: CUDA, or the CPU under Triton's interpreter."""
    if triton is None:
        return False
    return device.type == "cuda" or (device.type == "cpu" and interpreted())


def _dense_rows(t: Tensor) -> bool:
    # Row k of the channel view must be the k-th block of numel/rows consecutive elements in memory.
    if t.ndim < 2:
        return t.ndim == 0 or t.stride(0) == 1 or t.numel() <= 1
    if t.is_contiguous():
        return True
    return (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)) or \
        (t.ndim == 5 and t.is_contiguous(memory_format=torch.channels_last_3d))


def supported(params: list[Tensor], *others: list[Tensor]) -> bool:
    """All tensors densely laid out with dim 0 outermost, and grads/state strided exactly like their param."""
    for i, p in enumerate(params):
        if not _dense_rows(p):
            return False
        stride = p.stride()
        for lst in others:
            if lst[i].stride() != stride and lst[i].numel() > 1:
                return False
    return True


#: Columns of the per-tensor table ``meta`` (see below).
META = 9


@dataclass
class Layout:
    n_tensors: int
    n_tiles: int
    n_rows: int
    n_pieces: int
    n_blocks: int
    meta: Tensor  # (T, META) int64
    tiles: Tensor  # (n_tiles, 2) int64: tensor, first virtual row
    blocks: Tensor  # (n_blocks, 2) int64: tensor, first row (row blocks of the decision)
    bounds: Tensor  # (T, 2) math dtype: delta / sqrt(row length), delta / sqrt(numel)
    #: scratch of the kernels (row sums, row coefficients, block partials, per-tensor decisions), allocated
    #: on first use and kept: launches on one stream run in order, so one step's scratch is free for the next
    workspace: tuple[Tensor, ...] | None = None

    def scratch(self, math_dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        if self.workspace is None:
            self.workspace = (torch.empty((max(self.n_pieces, 1), 4), dtype=math_dtype, device=device),
                              torch.empty(max(self.n_rows, 1), dtype=math_dtype, device=device),
                              torch.empty((max(self.n_blocks, 1), 5), dtype=math_dtype, device=device),
                              torch.empty((max(self.n_tensors, 1), 3), dtype=math_dtype, device=device))
        return self.workspace


_LAYOUTS: dict[tuple, Layout] = {}


def layout_for(params: list[Tensor], math_dtype: torch.dtype, delta: float | list[float],
               scalar_rows: list[int] | None = None) -> Layout:
    """The (cached) tables describing tensors of these shapes. ``delta`` and ``scalar_rows`` (the row of the
    scalar table each tensor reads: its param group and step count) may be given per tensor, so that one
    launch sequence serves several param groups."""
    device = params[0].device
    shapes = tuple(tuple(p.shape) for p in params)
    deltas = tuple(delta) if isinstance(delta, (list, tuple)) else (delta,) * len(shapes)
    srows = tuple(scalar_rows) if scalar_rows is not None else (0,) * len(shapes)
    key = (device, stream_key(device), math_dtype, deltas, srows, shapes, BLOCK_R, CHUNK, BLOCK_T)
    layout = _LAYOUTS.get(key)
    if layout is not None:
        return layout
    meta, tiles, blocks, bounds = [], [], [], []
    row_base = piece_base = 0
    for t, (shape, d, srow) in enumerate(zip(shapes, deltas, srows)):
        numel = math.prod(shape)
        multi = len(shape) >= 2
        rows = (shape[0] if multi else 1) if numel else 0  # an empty tensor: no rows, no tiles
        length = numel // rows if rows else 0
        pieces = max(1, -(-length // CHUNK))
        first_block = len(blocks)
        blocks.extend([t, r] for r in range(0, rows, BLOCK_T))
        meta.append([rows, length, pieces, row_base, piece_base, int(multi), srow, first_block,
                     len(blocks) - first_block])
        tiles.extend([t, v] for v in range(0, rows * pieces, BLOCK_R))
        # As in the official code: the bound in double precision, compared in the tensor's dtype.
        bounds.append([d / math.sqrt(max(length, 1)), d / math.sqrt(max(numel, 1))])
        row_base += rows
        piece_base += rows * pieces
    layout = Layout(
        n_tensors=len(shapes), n_tiles=len(tiles), n_rows=row_base, n_pieces=piece_base, n_blocks=len(blocks),
        meta=device_table(meta, torch.int64, device),
        tiles=device_table(tiles or [[0, 0]], torch.int64, device),
        blocks=device_table(blocks or [[0, 0]], torch.int64, device),
        bounds=device_table(bounds, math_dtype, device),
    )
    if len(_LAYOUTS) > 64:  # many distinct groups: keep the cache bounded
        _LAYOUTS.clear()
    _LAYOUTS[key] = layout
    return layout


#: why a step falls back when :func:`step` declines the tensors (said once per optimizer)
DECLINED = ("the Triton kernels decline these tensors' layout (not dense with dim 0 outermost, or grads/state "
            "strided unlike their params)")

_TABLES: dict[tuple, tuple[Layout, Tensor]] = {}


def _tables(lists: list[list[Tensor]], delta: float) -> tuple[Layout, Tensor] | None:
    """The layout and the device table of addresses for these tensors, or None if the kernels cannot take
    them. Cached by the addresses and the shapes: in steady training grads are reallocated at the same
    addresses step after step, so the table is built and copied to the device once. (The shapes belong to
    the key because memory freed by one set of tensors can be handed to another of other shapes. A grad is
    laid out like its param by autograd, so strides are checked only when the addresses change.)"""
    params, grads, state1, state2 = lists
    ptrs = tuple(x.data_ptr() for quad in zip(params, grads, state1, state2) for x in quad)
    key = (delta, state1[0].dtype, ptrs, tuple(p.shape for p in params), stream_key(params[0].device), BLOCK_R,
           CHUNK, BLOCK_T)
    hit = _TABLES.get(key)
    if hit is not None:
        return hit
    if not plain(params) or not supported(params, grads, state1, state2):
        return None
    layout = layout_for(params, state1[0].dtype, delta)
    tables = (layout, device_table(ptrs, torch.int64, params[0].device))
    if len(_TABLES) >= 16:  # e.g. grads that move every step: keep only recent tables
        _TABLES.pop(next(iter(_TABLES)))
    _TABLES[key] = tables
    return tables


_TL_DTYPES: dict = {}


def _tl_dtype(dtype: torch.dtype):
    if not _TL_DTYPES:
        _TL_DTYPES.update({torch.float32: tl.float32, torch.float64: tl.float64, torch.float16: tl.float16,
                           torch.bfloat16: tl.bfloat16})
    return _TL_DTYPES[dtype]


def step(algo: int, params: list[Tensor], grads: list[Tensor], state1: list[Tensor], state2: list[Tensor],
         scalars: list[float], *, delta: float, nesterov: bool, maximize: bool,
         project_buffer: bool = True) -> bool:
    """One step of AdamP (``algo=ADAMP``; state: exp_avg, exp_avg_sq) or SGDP (``SGDP``; state: the
    momentum buffer, ``state2`` unused) for tensors of one device and dtype.

    ``scalars``: AdamP ``[beta1, 1 - beta1, beta2, 1 - beta2, sqrt(1 - beta2**t), eps, -lr / (1 - beta1**t),
    decay factor if projected, decay factor otherwise]``; SGDP ``[momentum, 1 - dampening, 0, 0, 1, eps, -lr,
    decay factor if projected, decay factor otherwise]``.

    Returns False, having changed nothing, when the tensors' layout is one the kernels do not handle
    (:func:`supported`); the caller then takes another path.
    """
    tables = _tables([params, grads, state1, state2], delta)
    if tables is None:
        return False
    layout, addr = tables
    launch(algo, layout, addr, device_table(scalars, torch.float64, params[0].device), params[0].dtype,
           state1[0].dtype, nesterov=nesterov, maximize=maximize, project_buffer=project_buffer)
    return True


def launch(algo: int, layout: Layout, addr: Tensor, scal: Tensor, param_dtype: torch.dtype,
           math_dtype: torch.dtype, *, nesterov: bool, maximize: bool, project_buffer: bool) -> None:
    """The four launches of one step over the tensors of ``layout`` (addresses ``addr``, scalar table
    ``scal``: one row of nine per param group and step count, see :func:`step`)."""
    if layout.n_tiles == 0:
        return
    device = addr.device
    stats, coef, part, tinfo = layout.scratch(math_dtype, device)
    flags = dict(ALGO=algo, P_DTYPE=_tl_dtype(param_dtype), M_DTYPE=_tl_dtype(math_dtype),
                 NESTEROV=bool(nesterov), MAXIMIZE=bool(maximize), BLOCK_R=BLOCK_R, BLOCK_C=BLOCK_C,
                 CHUNK=CHUNK)
    # Triton launches on the current device; the params may be on another one (model parallel, or a rank
    # that moved its model to cuda:k without set_device)
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        _stats_kernel[(layout.n_tiles,)](addr, layout.meta, layout.tiles, scal, stats, **flags,
                                         num_warps=NUM_WARPS)
        _rows_kernel[(layout.n_blocks,)](layout.meta, layout.blocks, scal, stats, coef, part,
                                         M_DTYPE=flags["M_DTYPE"], BLOCK_T=BLOCK_T, num_warps=NUM_WARPS)
        _decide_kernel[(layout.n_tensors,)](layout.meta, layout.bounds, scal, part, tinfo,
                                            M_DTYPE=flags["M_DTYPE"], BLOCK_B=BLOCK_B, num_warps=NUM_WARPS)
        _apply_kernel[(layout.n_tiles,)](addr, layout.meta, layout.tiles, scal, coef, tinfo, **flags,
                                         PROJECT_BUFFER=bool(project_buffer), num_warps=NUM_WARPS)


if triton is not None:

    @triton.jit
    def _tile(meta, tiles, BLOCK_R: tl.constexpr, CHUNK: tl.constexpr):
        """Which tensor this program works on, its virtual rows and where their elements start."""
        pid = tl.program_id(0)
        t = tl.load(tiles + 2 * pid)
        first = tl.load(tiles + 2 * pid + 1)
        rows = tl.load(meta + t * 9)
        length = tl.load(meta + t * 9 + 1)
        pieces = tl.load(meta + t * 9 + 2)
        row_base = tl.load(meta + t * 9 + 3)
        piece_base = tl.load(meta + t * 9 + 4)
        scal_row = tl.load(meta + t * 9 + 6)
        vr = first + tl.arange(0, BLOCK_R)
        valid = vr < rows * pieces
        r = vr // pieces
        k = vr - r * pieces
        start = r * length + k * CHUNK
        size = tl.minimum(length - k * CHUNK, CHUNK)
        return t, vr, valid, r, start, size, tl.minimum(length, CHUNK), row_base, piece_base, scal_row

    @triton.jit
    def _pointers(addr, t, P_DTYPE: tl.constexpr, M_DTYPE: tl.constexpr):
        """Param, grad, state 1 and state 2 of tensor ``t``, from the address table."""
        return (tl.load(addr + t * 4).to(tl.pointer_type(P_DTYPE)),
                tl.load(addr + t * 4 + 1).to(tl.pointer_type(P_DTYPE)),
                tl.load(addr + t * 4 + 2).to(tl.pointer_type(M_DTYPE)),
                tl.load(addr + t * 4 + 3).to(tl.pointer_type(M_DTYPE)))

    @triton.jit
    def _scalar(scal, i, M_DTYPE: tl.constexpr):
        return tl.load(scal + i).to(M_DTYPE)

    @triton.jit
    def _scalars_of(meta, scal, t):
        """The scalar row of tensor ``t`` (its param group and step count)."""
        return scal + tl.load(meta + t * 9 + 6) * 9

    @triton.jit
    def _sqrt(x, M_DTYPE: tl.constexpr):
        # IEEE-rounded like torch's (Triton's float32 default is an approximation that flushes denormals)
        if M_DTYPE == tl.float64:
            y = tl.sqrt(x)
        else:
            y = tl.sqrt_rn(x)
        return y

    @triton.jit
    def _div(x, y, M_DTYPE: tl.constexpr):
        if M_DTYPE == tl.float64:
            z = x / y
        else:
            z = tl.div_rn(x, y)
        return z

    @triton.jit
    def _to_param(w, P_DTYPE: tl.constexpr):
        # bfloat16 rounded to nearest even in integer arithmetic, as torch rounds: the GPU's conversion does
        # the same, Triton's interpreter (the CPU tests) truncates
        if P_DTYPE == tl.bfloat16:
            bits = w.to(tl.uint32, bitcast=True)
            rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            rounded = tl.where(w != w, (bits >> 16) | 0x40, rounded)  # NaN stays NaN (quiet)
            out = rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            out = w.to(P_DTYPE)
        return out

    @triton.jit
    def _direction(ALGO: tl.constexpr, NESTEROV: tl.constexpr, M_DTYPE: tl.constexpr, s1, s2, g, a, b, bc2, eps):
        """AdamP: (nesterov) m / (sqrt(v) / sqrt(bc2) + eps); SGDP: g + momentum * buf, or buf."""
        if ALGO == 0:
            denom = _div(_sqrt(s2, M_DTYPE), bc2, M_DTYPE) + eps
            if NESTEROV:
                u = _div(a * s1 + b * g, denom, M_DTYPE)
            else:
                u = _div(s1, denom, M_DTYPE)
        else:
            if NESTEROV:
                u = g + a * s1
            else:
                u = s1
        return u

    @triton.jit
    def _stats_kernel(addr, meta, tiles, scal, stats, ALGO: tl.constexpr, P_DTYPE: tl.constexpr,
                      M_DTYPE: tl.constexpr, NESTEROV: tl.constexpr, MAXIMIZE: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, CHUNK: tl.constexpr):
        t, vr, valid, r, start, size, n_cols, row_base, piece_base, scal_row = _tile(meta, tiles, BLOCK_R, CHUNK)
        p_ptr, g_ptr, s1_ptr, s2_ptr = _pointers(addr, t, P_DTYPE, M_DTYPE)
        scal = scal + scal_row * 9
        a, b = _scalar(scal, 0, M_DTYPE), _scalar(scal, 1, M_DTYPE)
        c2, d2 = _scalar(scal, 2, M_DTYPE), _scalar(scal, 3, M_DTYPE)
        bc2, eps = _scalar(scal, 4, M_DTYPE), _scalar(scal, 5, M_DTYPE)
        gw = tl.zeros([BLOCK_R], dtype=M_DTYPE)
        gg = tl.zeros([BLOCK_R], dtype=M_DTYPE)
        ww = tl.zeros([BLOCK_R], dtype=M_DTYPE)
        wu = tl.zeros([BLOCK_R], dtype=M_DTYPE)
        for c0 in range(0, n_cols, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            mask = valid[:, None] & (cols[None, :] < size[:, None])
            offs = start[:, None] + cols[None, :]
            w = tl.load(p_ptr + offs, mask=mask, other=0.0).to(M_DTYPE)
            g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(M_DTYPE)
            if MAXIMIZE:
                g = -g
            s1 = tl.load(s1_ptr + offs, mask=mask, other=0.0)
            s1 = s1 * a + g * b
            tl.store(s1_ptr + offs, s1, mask=mask)
            s2 = s1
            if ALGO == 0:
                s2 = tl.load(s2_ptr + offs, mask=mask, other=0.0)
                s2 = s2 * c2 + g * g * d2
                tl.store(s2_ptr + offs, s2, mask=mask)
            u = _direction(ALGO, NESTEROV, M_DTYPE, s1, s2, g, a, b, bc2, eps)
            gw += tl.sum(tl.where(mask, g * w, 0.0), axis=1)
            gg += tl.sum(tl.where(mask, g * g, 0.0), axis=1)
            ww += tl.sum(tl.where(mask, w * w, 0.0), axis=1)
            wu += tl.sum(tl.where(mask, w * u, 0.0), axis=1)
        out = stats + (piece_base + vr) * 4
        tl.store(out, gw, mask=valid)
        tl.store(out + 1, gg, mask=valid)
        tl.store(out + 2, ww, mask=valid)
        tl.store(out + 3, wu, mask=valid)

    @triton.jit
    def _row_sums(stats, piece_base, rr, pieces, valid, M_DTYPE: tl.constexpr, BLOCK_T: tl.constexpr):
        gw = tl.zeros([BLOCK_T], dtype=M_DTYPE)
        gg = tl.zeros([BLOCK_T], dtype=M_DTYPE)
        ww = tl.zeros([BLOCK_T], dtype=M_DTYPE)
        wu = tl.zeros([BLOCK_T], dtype=M_DTYPE)
        for k in range(0, pieces):
            src = stats + (piece_base + rr * pieces + k) * 4
            gw += tl.load(src, mask=valid, other=0.0)
            gg += tl.load(src + 1, mask=valid, other=0.0)
            ww += tl.load(src + 2, mask=valid, other=0.0)
            wu += tl.load(src + 3, mask=valid, other=0.0)
        return gw, gg, ww, wu

    @triton.jit
    def _rows_kernel(meta, blocks, scal, stats, coef, part, M_DTYPE: tl.constexpr, BLOCK_T: tl.constexpr):
        """One block of rows of one tensor: the rows' sums from their pieces, each row's |cos| and channel-view
        coefficient, and the block's partials (max |cos|, sums of g·w, g·g, w·w, w·u) for the decision."""
        pid = tl.program_id(0)
        t = tl.load(blocks + 2 * pid)
        r0 = tl.load(blocks + 2 * pid + 1)
        rows = tl.load(meta + t * 9)
        pieces = tl.load(meta + t * 9 + 2)
        row_base = tl.load(meta + t * 9 + 3)
        piece_base = tl.load(meta + t * 9 + 4)
        eps = _scalar(_scalars_of(meta, scal, t), 5, M_DTYPE)
        rr = r0 + tl.arange(0, BLOCK_T)
        valid = rr < rows
        gw, gg, ww, wu = _row_sums(stats, piece_base, rr, pieces, valid, M_DTYPE, BLOCK_T)
        # cosine similarity as torch computes it: x·y / (max(||x||, eps) * max(||y||, eps))
        cos = _div(tl.abs(gw), tl.maximum(_sqrt(gg, M_DTYPE), eps) * tl.maximum(_sqrt(ww, M_DTYPE), eps), M_DTYPE)
        # tl.maximum drops NaN; torch's max keeps it and NaN < bound is False: count a NaN row as +inf
        top = tl.max(tl.where(valid, tl.where(cos == cos, cos, float("inf")), 0.0), axis=0)
        row_norm = _sqrt(ww, M_DTYPE) + eps
        tl.store(coef + row_base + rr, _div(wu, row_norm * row_norm, M_DTYPE), mask=valid)
        out = part + pid * 5
        tl.store(out, top.to(M_DTYPE))
        tl.store(out + 1, tl.sum(gw, axis=0))
        tl.store(out + 2, tl.sum(gg, axis=0))
        tl.store(out + 3, tl.sum(ww, axis=0))
        tl.store(out + 4, tl.sum(wu, axis=0))

    @triton.jit
    def _decide_kernel(meta, bounds, scal, part, tinfo, M_DTYPE: tl.constexpr, BLOCK_B: tl.constexpr):
        """One tensor: the scale-invariance test of both views from its row blocks' partials (in a fixed
        order, so results do not depend on scheduling); writes the view that fired (0 none, 1 channel,
        2 layer), the layer view's coefficient and the weight-decay factor."""
        t = tl.program_id(0)
        multi = tl.load(meta + t * 9 + 5)
        first = tl.load(meta + t * 9 + 7)
        n_blocks = tl.load(meta + t * 9 + 8)
        scal = _scalars_of(meta, scal, t)
        eps = _scalar(scal, 5, M_DTYPE)
        top = tl.zeros([BLOCK_B], dtype=M_DTYPE)
        sum_gw = tl.zeros([BLOCK_B], dtype=M_DTYPE)
        sum_gg = tl.zeros([BLOCK_B], dtype=M_DTYPE)
        sum_ww = tl.zeros([BLOCK_B], dtype=M_DTYPE)
        sum_wu = tl.zeros([BLOCK_B], dtype=M_DTYPE)
        for b0 in range(0, n_blocks, BLOCK_B):
            bb = b0 + tl.arange(0, BLOCK_B)
            valid = bb < n_blocks
            src = part + (first + bb) * 5
            top = tl.maximum(top, tl.load(src, mask=valid, other=0.0))
            sum_gw += tl.load(src + 1, mask=valid, other=0.0)
            sum_gg += tl.load(src + 2, mask=valid, other=0.0)
            sum_ww += tl.load(src + 3, mask=valid, other=0.0)
            sum_wu += tl.load(src + 4, mask=valid, other=0.0)
        layer_gw = tl.sum(sum_gw, axis=0)
        layer_ww = tl.sum(sum_ww, axis=0)
        layer_cos = _div(tl.abs(layer_gw), tl.maximum(_sqrt(tl.sum(sum_gg, axis=0), M_DTYPE), eps)
                         * tl.maximum(_sqrt(layer_ww, M_DTYPE), eps), M_DTYPE)
        channel = (multi != 0) & (tl.max(top, axis=0) < tl.load(bounds + 2 * t))
        layer = (multi != 0) & (layer_cos < tl.load(bounds + 2 * t + 1)) & ~channel
        norm = _sqrt(layer_ww, M_DTYPE) + eps
        layer_coef = _div(tl.sum(sum_wu, axis=0), norm * norm, M_DTYPE)
        out = tinfo + t * 3
        tl.store(out, tl.where(channel, 1.0, tl.where(layer, 2.0, 0.0)).to(M_DTYPE))
        tl.store(out + 1, layer_coef)
        tl.store(out + 2, tl.where(channel | layer, tl.load(scal + 7), tl.load(scal + 8)).to(M_DTYPE))

    @triton.jit
    def _apply_kernel(addr, meta, tiles, scal, coef, tinfo, ALGO: tl.constexpr, P_DTYPE: tl.constexpr,
                      M_DTYPE: tl.constexpr, NESTEROV: tl.constexpr, MAXIMIZE: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, CHUNK: tl.constexpr,
                      PROJECT_BUFFER: tl.constexpr):
        t, vr, valid, r, start, size, n_cols, row_base, piece_base, scal_row = _tile(meta, tiles, BLOCK_R, CHUNK)
        p_ptr, g_ptr, s1_ptr, s2_ptr = _pointers(addr, t, P_DTYPE, M_DTYPE)
        scal = scal + scal_row * 9
        a, b = _scalar(scal, 0, M_DTYPE), _scalar(scal, 1, M_DTYPE)
        bc2, eps, step = _scalar(scal, 4, M_DTYPE), _scalar(scal, 5, M_DTYPE), _scalar(scal, 6, M_DTYPE)
        view = tl.load(tinfo + t * 3)
        scale = tl.load(tinfo + t * 3 + 2)
        row_coef = tl.load(coef + row_base + r, mask=valid, other=0.0)
        row_coef = tl.where(view == 1.0, row_coef, tl.where(view == 2.0, tl.load(tinfo + t * 3 + 1), 0.0))
        for c0 in range(0, n_cols, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            mask = valid[:, None] & (cols[None, :] < size[:, None])
            offs = start[:, None] + cols[None, :]
            w = tl.load(p_ptr + offs, mask=mask, other=0.0).to(M_DTYPE)
            g = tl.zeros([BLOCK_R, BLOCK_C], dtype=M_DTYPE)
            if NESTEROV:
                g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(M_DTYPE)
                if MAXIMIZE:
                    g = -g
            s1 = tl.load(s1_ptr + offs, mask=mask, other=0.0)
            s2 = s1
            if ALGO == 0:
                s2 = tl.load(s2_ptr + offs, mask=mask, other=0.0)
            u = _direction(ALGO, NESTEROV, M_DTYPE, s1, s2, g, a, b, bc2, eps)
            u = u - w * row_coef[:, None]
            if ALGO == 1:
                if PROJECT_BUFFER and not NESTEROV:
                    tl.store(s1_ptr + offs, u, mask=mask)  # the official SGDP projects its buffer in place
            w = w * scale + u * step
            tl.store(p_ptr + offs, _to_param(w, P_DTYPE), mask=mask)
