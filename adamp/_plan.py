"""The Triton step of a whole optimizer, with every launch input kept between steps.

A plan holds, for each set of tensors that can share one launch sequence (one device, param dtype and
kernel flags: all param groups that agree on them), the layout tables, the address table and the scalar
table on the device. A step then only checks that nothing they were built from has changed -- the groups
and their params, which params have grads, the addresses of params and grads, the optimizer's state dict,
the structural hyper-parameters (delta, nesterov, maximize, ...), the CUDA stream -- rebuilds the scalar
table if a hyper-parameter or the step count changed, and launches. Anything else changed: the plan says
so and the optimizer builds a new one (what a first step does).

Host time of a step (``scripts/bench_host_overhead.py``, launches stubbed) is then a few passes over the
params in Python: the grads' and params' addresses, and AdamP's per-param step counts in the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import torch
from torch import Tensor

from . import _fused, _triton
from ._multi_tensor import device_table, stream_key


_DATA_PTR = Tensor.data_ptr
_GRAD = attrgetter("grad")


@dataclass
class _LaunchSet:
    device: torch.device
    param_dtype: torch.dtype
    math_dtype: torch.dtype
    flags: tuple[bool, bool, bool]  # nesterov, maximize, project_buffer
    layout: Any
    addr: Tensor
    rows: list[tuple[int, int]]  # scalar rows: (index into the plan's groups, step count before the plan)
    stream: int | None
    members: list[int]  # position of each tensor in the plan's ``params``
    states: list[tuple[Tensor, Tensor]]  # each tensor's state 1 and state 2
    #: address tables by the grads' addresses (grads reallocated by autograd usually come back at the same
    #: addresses; a few alternating sets are kept)
    addr_by_grads: dict = field(default_factory=dict)
    scal: Tensor | None = None
    scal_key: Any = None


@dataclass
class Plan:
    opt: Any
    state: Any  # the optimizer's state dict the plan was built against (load_state_dict replaces it)
    groups: list[dict]
    group_params: list[Any]  # each group's "params" list object
    group_sizes: list[int]
    params: list[Tensor]  # all params of all groups, in order
    param_ptrs: list[int]
    grad_ptrs: list[int]  # 0 where a param had no grad
    structure: list[tuple]  # per group: hyper-parameters that change the tables
    backend: str
    sets: list[_LaunchSet] = field(default_factory=list)
    #: AdamP: the state dicts and the scalar row (set, row) of every stepped param, and each row's step count
    step_states: list[tuple[dict, int, int]] = field(default_factory=list)
    row_steps: list[list[int]] = field(default_factory=list)

    def valid(self) -> bool:
        opt = self.opt
        if opt.state is not self.state or _fused.BACKEND != self.backend or torch.compiler.is_compiling():
            return False
        groups = opt.param_groups
        if len(groups) != len(self.groups):
            return False
        structural = opt._plan_structural
        for g, mine, plist, n, struct in zip(groups, self.groups, self.group_params, self.group_sizes,
                                            self.structure):
            if g is not mine or g["params"] is not plist or len(plist) != n:
                return False
            if tuple(g[k] for k in structural) != struct:
                return False
        params = self.params
        if list(map(_DATA_PTR, params)) != self.param_ptrs:
            return False
        if not all(s.stream == stream_key(s.device) for s in self.sets):
            return False
        try:
            try:  # map() over C methods: a third of the time of a comprehension here
                grad_ptrs = list(map(_DATA_PTR, map(_GRAD, params)))
            except TypeError:  # some param has no grad
                grad_ptrs = [g.data_ptr() if (g := p.grad) is not None else 0 for p in params]
        except RuntimeError:  # a grad without storage (sparse): the full path says what is wrong
            return False
        return grad_ptrs == self.grad_ptrs or self._new_grads(grad_ptrs)

    def _new_grads(self, grad_ptrs: list[int]) -> bool:
        """Grads at other addresses (and the same params with grads): new address tables, nothing else."""
        if [x == 0 for x in grad_ptrs] != [x == 0 for x in self.grad_ptrs]:
            return False
        tables = []
        for s in self.sets:
            key = tuple(grad_ptrs[i] for i in s.members)
            addr = s.addr_by_grads.get(key)
            if addr is None:
                params = [self.params[i] for i in s.members]
                grads = [p.grad for p in params]
                if not _triton.supported(params, grads, [a for a, _ in s.states], [b for _, b in s.states]):
                    return False
                ptrs = [x.data_ptr() for p, g, (a, b) in zip(params, grads, s.states) for x in (p, g, a, b)]
                addr = device_table(ptrs, torch.int64, s.device)
            tables.append((key, addr))
        for s, (key, addr) in zip(self.sets, tables):
            if len(s.addr_by_grads) >= 4:
                s.addr_by_grads.pop(next(iter(s.addr_by_grads)))
            s.addr_by_grads[key] = s.addr = addr
        self.grad_ptrs = grad_ptrs
        return True

    def run(self) -> None:
        opt = self.opt
        hyper = [tuple(g[k] for k in opt._plan_scalar_keys) for g in self.groups]
        for k, s in enumerate(self.sets):
            steps = self.row_steps[k]
            if steps:  # AdamP: every stepped param advances one step
                for i in range(len(steps)):
                    steps[i] += 1
            key = (hyper, tuple(steps))
            if key != s.scal_key:
                values = [opt._plan_scalars(self.groups[gi], steps[r] if steps else None)
                          for r, (gi, _) in enumerate(s.rows)]
                s.scal = device_table(values, torch.float64, s.device)
                s.scal_key = key
            nesterov, maximize, project_buffer = s.flags
            _triton.launch(opt._triton_algo, s.layout, s.addr, s.scal, s.param_dtype, s.math_dtype,
                           nesterov=nesterov, maximize=maximize, project_buffer=project_buffer)
        for state, k, r in self.step_states:
            state["step"] = self.row_steps[k][r]


def build(opt, entries: list[tuple[dict, list[Tensor], list[Tensor]]]) -> tuple[Plan, list]:
    """A plan for the groups in ``entries`` ((group, params with grads, their grads), all chosen for the
    Triton kernels); returns it and the entries whose tensors the kernels decline (their layout), which the
    caller steps another way."""
    groups = list(opt.param_groups)
    all_params = [p for g in groups for p in g["params"]]
    plan = Plan(opt=opt, state=opt.state, groups=groups, group_params=[g["params"] for g in groups],
                group_sizes=[len(g["params"]) for g in groups], params=all_params,
                param_ptrs=[p.data_ptr() for p in all_params],
                grad_ptrs=[g.data_ptr() if (g := p.grad) is not None else 0 for p in all_params],
                structure=[tuple(g[k] for k in opt._plan_structural) for g in groups], backend=_fused.BACKEND)
    index = {id(g): i for i, g in enumerate(groups)}
    position = {id(p): i for i, p in enumerate(all_params)}
    by_key: dict[tuple, list] = {}
    declined = []
    for group, params, grads in entries:
        state1, state2, steps = opt._plan_state(group, params)
        if not _triton.supported(params, grads, state1, state2):
            declined.append((group, params, grads))
            continue
        for i, p in enumerate(params):
            key = (p.device, p.dtype, opt._plan_flags(group))
            by_key.setdefault(key, []).append((index[id(group)], group, p, grads[i], state1[i], state2[i],
                                               None if steps is None else steps[i], position[id(p)]))
    for (device, dtype, flags), items in by_key.items():
        rows: dict[tuple[int, int], int] = {}
        srows = [rows.setdefault((gi, step if step is not None else 0), len(rows))
                 for gi, _, _, _, _, _, step, _ in items]
        params = [it[2] for it in items]
        math_dtype = items[0][4].dtype
        layout = _triton.layout_for(params, math_dtype, [it[1]["delta"] for it in items], srows)
        ptrs = [x.data_ptr() for it in items for x in (it[2], it[3], it[4], it[5])]
        k = len(plan.sets)
        plan.sets.append(_LaunchSet(device=device, param_dtype=dtype, math_dtype=math_dtype, flags=flags,
                                    layout=layout, addr=device_table(ptrs, torch.int64, device),
                                    rows=list(rows), stream=stream_key(device), members=[it[7] for it in items],
                                    states=[(it[4], it[5]) for it in items]))
        plan.sets[-1].addr_by_grads[tuple(plan.grad_ptrs[it[7]] for it in items)] = plan.sets[-1].addr
        with_steps = items[0][6] is not None
        plan.row_steps.append([step for _, step in rows] if with_steps else [])
        if with_steps:
            plan.step_states += [(opt.state[it[2]], k, r) for it, r in zip(items, srows)]
    return plan, declined
