"""Generic optimizer behaviour, written once and run over every optimizer and implementation, plus the
cases where the official code fails and ours must work."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import adamp
from adamp import _fused
from adamp._projection import multi_tensor_projection, single_tensor_projection
from tests.optim.cases import OPTIMS, PROBLEM, max_rel_diff, run_steps

IMPLS = ["single", "single-select", "foreach", "foreach-segmented", "fused-triton"]  # see tests/optim/conftest.py
CASES = [(info, impl) for info in OPTIMS for impl in IMPLS]
IDS = [f"{i.name}-{m}" for i, m in CASES]
# under torch.compile the fused path traces its inductor formulation, never the Triton kernels
EAGER_CASES = [(info, impl) for info, impl in CASES if impl != "fused-triton"]


def _kwargs(info, impl):
    return dict(list(info.variants.values())[1], foreach=impl.startswith("foreach"), fused=impl.startswith("fused"))


def _convnet():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 10, 10, generator=g), torch.randint(0, 4, (8,), generator=g)


def _train(model, opt, steps=5, memory_format=torch.contiguous_format, dtype=None):
    x, y = _batch()
    x = x.to(memory_format=memory_format)
    if dtype is not None:
        x = x.to(dtype)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_training_reduces_loss(info, impl):
    model = _convnet()
    losses = _train(model, info.cls(model.parameters(), **_kwargs(info, impl)), steps=15)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_closure_returns_loss_and_is_evaluated_with_grad(info, impl):
    model = _convnet()
    opt = info.cls(model.parameters(), **_kwargs(info, impl))
    x, y = _batch()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    loss = opt.step(closure)
    assert torch.is_tensor(loss) and loss.requires_grad
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_maximize_equals_minimizing_the_negated_gradient(info, impl):
    a = PROBLEM.make_params(torch.float64)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    run_steps(info.cls(a, **_kwargs(info, impl), maximize=True), a, PROBLEM.grad_fn, 10)

    def negated(step, params):
        return [None if g is None else -g for g in PROBLEM.grad_fn(step, params)]

    run_steps(info.cls(b, **_kwargs(info, impl)), b, negated, 10)
    # cos(-g, w) = -cos(g, w): the test is symmetric (abs), so the two runs are identical
    assert max_rel_diff(a, b) <= 1e-12


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_channels_last_and_non_contiguous(info, impl):
    """The official code calls .view on params and grads and fails on channels_last; ours must not."""
    dense, last = _convnet(), _convnet()
    last = last.to(memory_format=torch.channels_last)
    _train(dense, info.cls(dense.parameters(), **_kwargs(info, impl)))
    _train(last, info.cls(last.parameters(), **_kwargs(info, impl)), memory_format=torch.channels_last)
    assert last[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert max_rel_diff(list(dense.parameters()), list(last.parameters())) <= 1e-4


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_params_use_fp32_state_and_math(info, impl, dtype):
    model = _convnet().to(dtype)
    opt = info.cls(model.parameters(), **_kwargs(info, impl))
    losses = _train(model, opt, steps=8, dtype=dtype)
    assert losses[-1] < losses[0]
    for p in model.parameters():
        assert p.dtype == dtype and torch.isfinite(p).all()
        for key, value in opt.state[p].items():
            if torch.is_tensor(value):
                assert value.dtype == torch.float32, key
    # One step from the same state and grads: the half-precision result is the fp32 result, rounded.
    half = [p.detach().clone().requires_grad_() for p in model.parameters()]
    full = [p.detach().float().requires_grad_() for p in half]
    grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(half)]
    opt_half, opt_full = (info.cls(ps, **_kwargs(info, impl)) for ps in (half, full))
    for p_h, p_f, g in zip(half, full, grads):
        p_h.grad, p_f.grad = g.to(dtype), g.to(dtype).float()
    opt_half.step()
    opt_full.step()
    for p_h, p_f in zip(half, full):
        assert torch.equal(p_h.detach(), p_f.detach().to(dtype))


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_lr_scheduler_and_add_param_group(info, impl):
    model = _convnet()
    opt = info.cls(model[:3].parameters(), **_kwargs(info, impl))
    opt.add_param_group({"params": list(model[3:].parameters()), "lr": 1e-4})
    assert opt.param_groups[1]["delta"] == 0.1 and opt.param_groups[1]["wd_ratio"] == 0.1
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    lr0 = opt.param_groups[0]["lr"]
    _train(model, opt, steps=1)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(lr0 / 2)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.5e-4)
    _train(model, opt, steps=1)


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_grad_scaler_skips_steps_with_inf(info, impl):
    model = _convnet()
    opt = info.cls(model.parameters(), **_kwargs(info, impl))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x, y = _batch()
    loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    scaler.scale(F.cross_entropy(model(x), y)).backward()
    next(model.parameters()).grad[0].fill_(float("inf"))
    scaler.step(opt)
    scaler.update()
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    assert scaler.get_scale() < 2.0**8


@pytest.mark.parametrize("info,impl", CASES, ids=IDS)
def test_a_nan_gradient_row_blocks_the_projection_as_in_the_official_code(info, impl):
    """The official test is ``cos.max() < bound``: torch's max keeps a NaN and NaN < bound is False, so a
    tensor with a NaN row is not projected and its NaN stays where it was. (Triton's max drops NaN: the
    kernels projected the other rows and spread the NaN over the whole tensor until they counted it.)"""
    def run(impl):
        g = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.randn(4, 8, generator=g, dtype=torch.float64))
        grad = torch.randn(4, 8, generator=g, dtype=torch.float64)
        grad -= (grad * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w  # channel test would fire
        grad[0, 0] = float("nan")
        w.grad = grad
        info.cls([w], **_kwargs(info, impl)).step()
        return w.detach()

    expected, got = run("single"), run(impl)
    assert int(expected.isnan().sum()) == 1
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0, equal_nan=True)


@pytest.mark.parametrize("info,impl", EAGER_CASES, ids=[f"{i.name}-{m}" for i, m in EAGER_CASES])
def test_compiled_training_step_has_no_graph_break_in_step(info, impl):
    """torch.compile(fullgraph=True) of a whole training step: any graph break or host sync raises."""
    torch._dynamo.reset()
    model = _convnet()
    opt = info.cls(model.parameters(), **_kwargs(info, impl))
    x, y = _batch()
    _train(model, opt, steps=1)  # create the state eagerly, as torch's compiled-optimizer docs advise

    @torch.compile(fullgraph=True, backend="eager")
    def opt_step():
        opt.step()

    eager = _convnet()
    eager_opt = info.cls(eager.parameters(), **_kwargs(info, impl))
    _train(eager, eager_opt, steps=1)
    for _ in range(3):
        for m, o, compiled in ((model, opt, True), (eager, eager_opt, False)):
            o.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt_step() if compiled else o.step()
    assert max_rel_diff(list(eager.parameters()), list(model.parameters())) <= 1e-5


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
def test_sparse_and_complex_gradients_are_rejected(info):
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = info.cls(emb.parameters(), lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=f"^{info.name} does not support sparse gradients$"):
        opt.step()
    z = torch.nn.Parameter(torch.zeros(3, 3, dtype=torch.complex64))
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match=f"^{info.name} does not support complex parameters or gradients$"):
        info.cls([z], lr=0.1).step()


P = [torch.nn.Parameter(torch.zeros(2, 2))]
ERRORS = [
    (adamp.AdamP, dict(lr=-1.0), "Invalid lr: -1.0; expected a number >= 0.0"),
    (adamp.AdamP, dict(eps=-1e-8), "Invalid eps: -1e-08; expected a number >= 0.0"),
    (adamp.AdamP, dict(betas=(1.0, 0.999)), "Invalid betas[0]: 1.0; expected a number in [0.0, 1.0)"),
    (adamp.AdamP, dict(betas=(0.9, -0.1)), "Invalid betas[1]: -0.1; expected a number in [0.0, 1.0)"),
    (adamp.AdamP, dict(betas=0.9), "Invalid betas: 0.9; expected a pair (beta1, beta2)"),
    (adamp.AdamP, dict(weight_decay=-0.1), "Invalid weight_decay: -0.1; expected a number >= 0.0"),
    (adamp.AdamP, dict(delta=-0.1), "Invalid delta: -0.1; expected a number >= 0.0"),
    (adamp.AdamP, dict(wd_ratio=1.5), "Invalid wd_ratio: 1.5; expected a number in [0.0, 1.0]"),
    (adamp.AdamP, dict(lr="fast"), "Invalid lr: 'fast'; expected a number"),
    (adamp.SGDP, dict(), "Invalid lr: SGDP requires a learning rate: pass lr=... or set 'lr' in every param "
     "group (param group 0 has none)"),
    (adamp.SGDP, dict(lr=0.1, momentum=-0.9), "Invalid momentum: -0.9; expected a number >= 0.0"),
    (adamp.SGDP, dict(lr=0.1, momentum=1.0, weight_decay=1e-4),
     "Invalid momentum: 1.0 with weight_decay=0.0001; SGDP divides the decay by (1 - momentum), so "
     "momentum must be < 1 when weight_decay > 0"),
    (adamp.SGDP, dict(lr=0.1, wd_ratio=-0.5), "Invalid wd_ratio: -0.5; expected a number in [0.0, 1.0]"),
    (adamp.SGDP, dict(lr=0.1, delta=-1), "Invalid delta: -1; expected a number >= 0.0"),
    (adamp.AdamP, dict(lr=torch.tensor(1e-3, device="meta")),
     "Invalid lr: a tensor lr must be on the CPU (it is on meta); pass a float"),
]


@pytest.mark.parametrize("cls,kwargs,message", ERRORS, ids=[m[:40] for _, _, m in ERRORS])
def test_invalid_arguments_raise_value_error_naming_the_argument(cls, kwargs, message):
    with pytest.raises(ValueError) as excinfo:
        cls(P, **kwargs)
    assert str(excinfo.value) == message


@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
def test_fused_and_foreach_together_is_an_error(info):
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together."):
        info.cls(P, lr=0.1, fused=True, foreach=True)


# -- properties of the projection --------------------------------------------------------------------
shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 4)).map(lambda s: s[:2] if s[2] == 1 else s)


def _orthogonal_per_row(w, g):
    rows = w.shape[0]
    wv, gv = w.reshape(rows, -1), g.reshape(rows, -1)
    return (gv - (gv * wv).sum(1, keepdim=True) / (wv * wv).sum(1, keepdim=True) * wv).reshape(w.shape)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), which=st.sampled_from(["single", "multi"]))
def test_projected_update_is_orthogonal_to_each_weight_row(shape, seed, which):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    grad = _orthogonal_per_row(w, torch.randn(shape, generator=g, dtype=torch.float64))
    update = torch.randn(shape, generator=g, dtype=torch.float64)
    rows = w.shape[0]
    u_norm = update.reshape(rows, -1).norm(dim=1)
    if which == "single":
        flag = single_tensor_projection(w, grad, update, 0.1, 1e-8)
    else:
        flag = multi_tensor_projection([w], [grad], [update], 0.1, 1e-8)[0]
    assert bool(flag)
    dots = (update.reshape(rows, -1) * w.reshape(rows, -1)).sum(1)
    norms = u_norm * w.reshape(rows, -1).norm(dim=1)
    # w_hat = w / (||w|| + eps) is unit only up to eps, which leaves a radial residue of about 2 eps ||u|| (u before the projection)
    assert (dots.abs() <= 1e-10 * norms + 3e-8 * u_norm + 1e-300).all()


@settings(max_examples=60, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_unflagged_update_is_unchanged_and_paths_agree(shape, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    grad = w + 0.01 * torch.randn(shape, generator=g, dtype=torch.float64)  # |cos| ~ 1: never fires
    update = torch.randn(shape, generator=g, dtype=torch.float64)
    u1, u2 = update.clone(), update.clone()
    assert not bool(single_tensor_projection(w, grad, u1, 0.1, 1e-8))
    assert not bool(multi_tensor_projection([w], [grad], [u2], 0.1, 1e-8)[0])
    assert torch.equal(u1, update) and torch.equal(u2, update)


def test_one_dimensional_params_are_never_flagged():
    w = torch.randn(5)
    assert not bool(adamp.scale_invariant(w, torch.zeros(5)))
    assert math.isclose(float(adamp.scale_invariant(torch.randn(3, 4), torch.zeros(3, 4))), 1.0)


# aten ops that read a device value back to the host: on CUDA each is a synchronisation
HOST_READS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero", "aten::equal",
              "aten::allclose", "aten::masked_select", "aten::unique", "aten::_unique2", "aten::tolist"}
NO_READ_IMPLS = ["single-select", "foreach", "foreach-segmented", "fused", "fused-segmented", "fused-triton"]


@pytest.mark.parametrize("impl", NO_READ_IMPLS)
@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
def test_step_reads_nothing_back_to_the_host_on_cpu(info, impl):
    """The CPU half of "step() never synchronises": the profiler records every aten call a step makes,
    including those inside other kernels (``segment_reduce`` validating its lengths with two ``.item()``
    calls was found this way) and inside compiled code (inductor's fallbacks). Necessary, not sufficient: a
    CPU kernel may read its inputs directly where the CUDA kernel copies them (the CUDA test covers that)."""
    from torch.profiler import ProfilerActivity, profile

    model = _convnet()
    opt = info.cls(model.parameters(), **_kwargs(info, impl))
    _train(model, opt, steps=1)  # state created, compiled code built
    x, y = _batch()
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        opt.step()
    names = [e.name for e in prof.events()]
    assert any(n.startswith("aten::") for n in names), "the profiler recorded no aten call: the test is blind"
    assert not HOST_READS & set(names), sorted(HOST_READS & set(names))


def test_the_read_back_test_sees_reads_inside_kernels():
    """The detector of the test above, on a kernel known to read back: segment_reduce without unsafe=True."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        torch.segment_reduce(torch.ones(6), "sum", lengths=torch.tensor([2, 4]))
    assert HOST_READS & {e.name for e in prof.events()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
@pytest.mark.parametrize("impl", ["single", "foreach", "foreach-segmented", "foreach-per-tensor", "fused", "fused-segmented",
                                  "fused-triton"])
def test_step_never_synchronises_on_cuda(info, impl, monkeypatch):
    if impl == "fused-triton":
        monkeypatch.setattr(_fused, "BACKEND", "triton")
    model = _convnet().cuda().to(memory_format=torch.channels_last)
    opt = info.cls(model.parameters(), **_kwargs(info, impl))
    x, y = (t.cuda() for t in _batch())
    for step in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x.to(memory_format=torch.channels_last)), y).backward()
        if step > 0:  # the first step may compile (fused); every later step must not touch the host
            torch.cuda.set_sync_debug_mode("error")
        try:
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("impl", ["single", "foreach"])
def test_functional_api_equals_the_optimizer_step(impl):
    """adamp.functional.* with the optimizer's own state reproduces step() exactly (and needs no no_grad)."""
    a = PROBLEM.make_params(torch.float64)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    kw = dict(lr=1e-2, weight_decay=1e-2, nesterov=True)
    run_steps(adamp.AdamP(a, **kw, foreach=impl == "foreach"), a, PROBLEM.grad_fn, 3)
    m = [torch.zeros_like(p) for p in b]
    v = [torch.zeros_like(p) for p in b]
    for step in range(3):
        grads = PROBLEM.grad_fn(step, b)
        live = [i for i, g in enumerate(grads) if g is not None]
        adamp.functional.adamp([b[i] for i in live], [grads[i] for i in live], [m[i] for i in live],
                               [v[i] for i in live], [step + 1] * len(live), foreach=impl == "foreach",
                               lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2, delta=0.1,
                               wd_ratio=0.1, nesterov=True)
    assert max_rel_diff(a, b) == 0.0

    c = PROBLEM.make_params(torch.float64)
    d = [torch.nn.Parameter(p.detach().clone()) for p in c]
    skw = dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=1e-3)
    run_steps(adamp.SGDP(c, **skw, foreach=impl == "foreach"), c, PROBLEM.grad_fn, 3)
    bufs = [torch.zeros_like(p) for p in d]
    for step in range(3):
        grads = PROBLEM.grad_fn(step, d)
        live = [i for i, g in enumerate(grads) if g is not None]
        adamp.functional.sgdp([d[i] for i in live], [grads[i] for i in live], [bufs[i] for i in live],
                              foreach=impl == "foreach", nesterov=False, eps=1e-8, delta=0.1, wd_ratio=0.1,
                              **skw)
    assert max_rel_diff(c, d) == 0.0


def test_multi_tensor_projection_is_batched_on_gpus_and_per_tensor_elsewhere(monkeypatch):
    from adamp import _projection

    monkeypatch.setattr(_projection, "SEGMENTED", None)
    assert _projection.use_segmented(torch.device("cuda", 0))
    assert _projection.use_segmented(torch.device("xpu"))
    assert not _projection.use_segmented(torch.device("cpu"))
    assert not _projection.use_segmented(torch.device("mps"))  # no segment_reduce there
    for forced in (True, False):
        monkeypatch.setattr(_projection, "SEGMENTED", forced)
        assert _projection.use_segmented(torch.device("cpu")) is forced
        assert _projection.use_segmented(torch.device("cuda")) is forced



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on the GPU machine)")
@pytest.mark.parametrize("info", OPTIMS, ids=[i.name for i in OPTIMS])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_default_foreach_matches_single_on_cuda(info, dtype):
    """The CUDA default of the multi-tensor path (the batched projection, CUB's segmented sums) against the
    single-tensor path on the same device, on the parity problem (every branch of the test fires): the CPU
    parity matrix cannot see CUDA's summation orders."""
    from adamp import _projection

    assert _projection.use_segmented(torch.device("cuda"))
    runs = []
    for impl in ("single", "foreach"):
        params = [torch.nn.Parameter(p.detach().cuda()) for p in PROBLEM.make_params(dtype)]
        opt = info.cls(params, **_kwargs(info, impl))
        run_steps(opt, params, PROBLEM.grad_fn, 20)
        runs.append(params)
    assert max_rel_diff(*runs) <= (1e-12 if dtype == torch.float64 else 1e-5)


def test_tensor_subclasses_keep_the_per_tensor_projection(monkeypatch):
    """The batched projection copies every tensor into one plain buffer; a subclass (e.g. a DTensor shard)
    takes the per-tensor path instead, whatever SEGMENTED says."""
    from adamp import _projection

    class Tagged(torch.Tensor):
        pass

    monkeypatch.setattr(_projection, "SEGMENTED", True)
    monkeypatch.setattr(_projection, "segmented_projection", lambda *a, **k: pytest.fail("batched path taken"))
    w = torch.randn(4, 3, dtype=torch.float64)
    expected = w.clone()
    _projection.multi_tensor_projection([w], [torch.ones_like(w)], [expected], 0.1, 1e-8)
    update = w.clone()
    _projection.project_and_decay_([w.as_subclass(Tagged)], [torch.ones_like(w)], [update], 0.1, 1e-8, False,
                                   1.0, 1.0)
    assert torch.equal(update, expected)
