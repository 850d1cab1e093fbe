"""The Triton kernels of the fused path (adamp/_triton.py) on shapes that cross every tiling boundary, the
fallback for layouts they do not handle, their compilation for a real GPU, and (on CUDA) parity there.

On machines without a GPU the kernels run in Triton's interpreter (tests/conftest.py); the compilation
test builds the real sm_90 binaries ahead of time, which needs no GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import adamp
from adamp import _fused, _triton
from tests.optim.cases import max_rel_diff

ROOT = Path(__file__).resolve().parents[2]
OPTIMIZERS = [
    (adamp.AdamP, dict(lr=1e-2, weight_decay=1e-2)),
    (adamp.AdamP, dict(lr=1e-2, weight_decay=5e-2, nesterov=True, betas=(0.8, 0.99))),
    (adamp.SGDP, dict(lr=0.1, momentum=0.9, weight_decay=1e-3)),
    (adamp.SGDP, dict(lr=0.1, momentum=0.9, weight_decay=1e-3, project_buffer=False)),
    (adamp.SGDP, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2, dampening=0.1)),
]
IDS = ["adamp", "adamp-nesterov", "sgdp", "sgdp-paper", "sgdp-nesterov"]


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles small enough that tiny tensors cross every boundary: rows split into pieces (CHUNK), more rows
    than a tile (BLOCK_R), than a row block (BLOCK_T) and more row blocks than one iteration of the decision
    kernel (BLOCK_B)."""
    monkeypatch.setattr(_triton, "BLOCK_R", 4)
    monkeypatch.setattr(_triton, "BLOCK_C", 16)
    monkeypatch.setattr(_triton, "CHUNK", 48)
    monkeypatch.setattr(_triton, "BLOCK_T", 8)
    monkeypatch.setattr(_triton, "BLOCK_B", 2)


# rows > BLOCK_T and not a multiple of BLOCK_R; rows of 100 = 2 full pieces + a partial one; a 1-D tensor
# longer than CHUNK; a 0-d param; an empty one; a 4-D conv weight
SHAPES = [(21, 5), (3, 100), (130,), (), (0, 3), (6, 2, 3, 3), (2, 1, 50)]


def _params(dtype, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype).to(device)) for s in SHAPES]


def _grads(params, step):
    """Gradients that make the channel view fire on even steps (radial component removed per row)."""
    out = []
    for i, p in enumerate(params):
        g = torch.sin(3.0 * p.detach() + 0.1 * step + i)
        if p.ndim >= 2 and p.numel() and step % 2 == 0:
            w, gv = p.detach().reshape(p.shape[0], -1), g.reshape(p.shape[0], -1)
            gv = gv - (gv * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w
            g = gv.reshape(p.shape)
        out.append(g)
    return out


def _run(cls, kwargs, params, steps, triton):
    opt = cls(params, **kwargs, **({"fused": True} if triton else {"foreach": False}))
    for step in range(steps):
        for p, g in zip(params, _grads(params, step)):
            p.grad = g.clone()
        if triton:
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(_fused, "BACKEND", "triton")
                opt.step()
        else:
            opt.step()
    return opt


def _state(opt, params):
    return [v for p in params for v in opt.state[p].values() if torch.is_tensor(v) and v.numel() > 1]


needs_kernels = pytest.mark.skipif(not _triton.available(torch.device("cpu")),
                                   reason="Triton's interpreter is off on machines with a GPU (CUDA tests below)")


@needs_kernels
@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS, ids=IDS)
def test_every_tiling_boundary_matches_single_float64(small_tiles, cls, kwargs):
    single, kernels = _params(torch.float64), _params(torch.float64)
    opt_single = _run(cls, kwargs, single, 6, triton=False)
    opt_kernels = _run(cls, kwargs, kernels, 6, triton=True)
    assert max_rel_diff(single, kernels) <= 1e-12
    assert max_rel_diff(_state(opt_single, single), _state(opt_kernels, kernels)) <= 1e-12


@needs_kernels
@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS[::2], ids=IDS[::2])
def test_a_tensor_with_many_rows_is_split_across_programs_and_matches_single(cls, kwargs, monkeypatch):
    """A word-embedding-like tensor (many short rows, as the Transformer-XL's 267,735 x 410): its rows are
    spread over many programs of the row kernel (the decision kernel only combines their partials), with
    the real tile sizes, and the result equals the single-tensor path's in float64."""
    g = torch.Generator().manual_seed(2)

    def make():
        return [torch.nn.Parameter(torch.randn(2600, 3, generator=g, dtype=torch.float64)),
                torch.nn.Parameter(torch.randn(7, 5, dtype=torch.float64, generator=g))]

    single = make()
    g.manual_seed(2)
    kernels = make()
    grids = []
    real_rows = _triton._rows_kernel
    monkeypatch.setattr(_triton, "_rows_kernel", type("Spy", (), {
        "__getitem__": lambda self, grid: grids.append(grid) or real_rows[grid]})())
    _run(cls, kwargs, single, 4, triton=False)
    _run(cls, kwargs, kernels, 4, triton=True)
    assert grids and grids[0] == (-(-2600 // _triton.BLOCK_T) + 1,)  # 6 row blocks + 1
    assert max_rel_diff(single, kernels) <= 1e-12


KERNELS = ("_stats_kernel", "_rows_kernel", "_decide_kernel", "_apply_kernel")


def _count_launches(monkeypatch) -> list:
    launches = []
    for name in KERNELS:
        kernel = getattr(_triton, name)

        class Counting:
            def __getitem__(self, grid, kernel=kernel, name=name):
                launches.append((name, grid))
                return kernel[grid]

        monkeypatch.setattr(_triton, name, Counting())
    return launches


@needs_kernels
def test_one_launch_sequence_serves_all_tensors(small_tiles, monkeypatch):
    launches = _count_launches(monkeypatch)
    params = _params(torch.float32)
    _run(adamp.AdamP, dict(lr=1e-3), params, 1, triton=True)
    layout = _triton.layout_for(params, torch.float32, 0.1)
    assert [name for name, _ in launches] == list(KERNELS)
    assert launches[2][1] == (len(SHAPES),)
    # tiles: ceil(rows * pieces / BLOCK_R) per tensor; the empty tensor has none
    assert launches[0][1] == launches[3][1] == (6 + 3 + 1 + 1 + 0 + 2 + 1,) == (layout.n_tiles,)
    # row blocks: ceil(rows / BLOCK_T) per tensor (21 rows: 3 blocks of 8)
    assert launches[1][1] == (3 + 1 + 1 + 1 + 0 + 1 + 1,) == (layout.n_blocks,)


@needs_kernels
def test_layouts_the_kernels_do_not_handle_fall_back_to_foreach_not_inductor(monkeypatch):
    base = torch.randn(6, 4, dtype=torch.float64)
    transposed = [torch.nn.Parameter(base.t()), torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))]
    assert not transposed[0].is_contiguous()
    plain = [torch.nn.Parameter(p.detach().clone()) for p in transposed]
    assert not _triton.supported(transposed)
    monkeypatch.setattr(_fused, "compiled", lambda *a, **k: pytest.fail("the inductor path was compiled"))
    launched = []
    real_launch = _triton.launch
    monkeypatch.setattr(_triton, "launch", lambda *a, **k: launched.append(1) or real_launch(*a, **k))
    with pytest.warns(UserWarning, match="the foreach implementation runs: the Triton kernels decline") as seen:
        _run(adamp.AdamP, dict(lr=1e-2, weight_decay=1e-2), transposed, 3, triton=True)
    assert len([w for w in seen if "decline" in str(w.message)]) == 1  # said once, not every step
    _run(adamp.AdamP, dict(lr=1e-2, weight_decay=1e-2), plain, 3, triton=False)
    assert not launched
    assert max_rel_diff(plain, transposed) <= 1e-12


def test_kernels_compile_for_an_h100_without_a_gpu():
    """Every kernel variant the optimizers launch compiles to an sm_90 binary (Triton's bundled ptxas), and
    none working in float32 spills registers to local memory (the first tile shape tried did)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = ROOT / "scripts" / "triton_aot_check.py"
    proc = subprocess.run([sys.executable, str(script), "--arch", "90", "--registers"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "compiled 84 kernel variants for sm_90" in proc.stdout


def _cuda_params(dtype):
    """The tiling shapes plus rows longer than the real CHUNK (3 pieces each), on the GPU."""
    g = torch.Generator().manual_seed(1)
    long_rows = torch.nn.Parameter(torch.randn(3, 5000, generator=g, dtype=dtype).cuda())
    return _params(dtype, "cuda") + [long_rows]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_compiled_kernels_match_single_on_cuda(cls, kwargs, dtype):
    single, kernels = _cuda_params(dtype), _cuda_params(dtype)
    _run(cls, kwargs, single, 6, triton=False)
    calls = []
    real = _triton.launch
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_triton, "launch", lambda *a, **k: calls.append(1) or real(*a, **k))
        _run(cls, kwargs, kernels, 6, triton=True)
    assert calls
    assert max_rel_diff(single, kernels) <= (1e-12 if dtype == torch.float64 else 1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS[::2], ids=IDS[::2])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_compiled_kernels_on_half_params_match_single_on_cuda(cls, kwargs, dtype):
    """Half-precision params: fp32 state and math, the result rounded to the param's dtype (bf16 by the
    kernels' own round-to-nearest-even). A different fp32 rounding may move a result by one half-precision
    step, nothing more."""
    single, kernels = _cuda_params(dtype), _cuda_params(dtype)
    _run(cls, kwargs, single, 3, triton=False)
    _run(cls, kwargs, kernels, 3, triton=True)
    for a, b in zip(single, kernels):
        torch.testing.assert_close(b.detach().float(), a.detach().float(), rtol=2 * torch.finfo(dtype).eps, atol=0)


@needs_kernels
def test_tables_are_not_reused_for_other_shapes_at_the_same_addresses(monkeypatch):
    """Memory freed by one set of tensors can come back, at the same addresses, as tensors of other shapes."""
    storage = torch.randn(35, dtype=torch.float64)
    grad_storage, m, v = torch.randn(35, dtype=torch.float64), torch.zeros(35, dtype=torch.float64), \
        torch.zeros(35, dtype=torch.float64)
    scalars = [0.9, 0.1, 0.999, 0.001, 1.0, 1e-8, -1e-3, 1.0, 1.0]
    seen = []
    for shape in ((5, 7), (7, 5)):
        views = [t.view(shape) for t in (storage, grad_storage, m, v)]
        assert _triton.step(_triton.ADAMP, [views[0]], [views[1]], [views[2]], [views[3]], scalars,
                            delta=0.1, nesterov=False, maximize=False)
        layout, _ = _triton._tables([[views[0]], [views[1]], [views[2]], [views[3]]], 0.1)
        seen.append(int(layout.meta[0, 0]))  # rows of the tensor, as the kernels see it
    assert seen == [5, 7]


def test_backend_comes_from_the_environment_and_a_wrong_one_is_a_clear_error(monkeypatch):
    env = dict(os.environ, ADAMP_FUSED_BACKEND="triton")
    proc = subprocess.run([sys.executable, "-c", "import adamp._fused as f; print(f.BACKEND)"], env=env,
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.stdout.strip() == "triton", proc.stderr[-2000:]
    monkeypatch.setattr(_fused, "BACKEND", "trition")
    params = [torch.nn.Parameter(torch.randn(3, 4))]
    params[0].grad = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"^adamp._fused.BACKEND \(or ADAMP_FUSED_BACKEND\) is 'trition'; "
                                         r"expected one of 'inductor', 'triton'$"):
        adamp.AdamP(params, fused=True).step()
