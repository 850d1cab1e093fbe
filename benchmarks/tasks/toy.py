"""The paper's mechanism experiments: two tiny scale-invariant problems (project page, "Toy problems").

Both toys are trained by the shared loop with the real optimizers from the registry; the task only defines
the weight, the objective and the metrics. The weight is a ``(1, d)`` parameter on purpose: AdamP/SGDP only
test and project tensors with at least two dims, and with one row the channel view and the layer view of the
scale-invariance test coincide, so SGDP projects exactly as it would a conv weight followed by BN.

* ``toy2d``: ``loss(w) = -cos(w, w*)`` for ``w`` in R^2 (optimum set ``{c w*, c > 0}``). The start is the unit
  vector at ``data.init_angle_deg`` degrees from ``w* = (1, 0)``, scaled to ``model.init_norm``. The paper
  reports the norm growth of momentum SGD (1 -> 2.93 at momentum 0.9, 1 -> 27.87 at 0.99) without lr or step
  count; ``configs/toy/toy2d.yaml`` documents the values chosen here to match it.
* ``toy3d``: the Rosenbrock function on the upper hemisphere with a redundant radial axis. ``w`` in R^3 maps
  to the angles ``psi = S * atan2(w1, w3)``, ``phi = S * atan2(w2, w3)`` with ``S = 6 / pi``: each angle is the
  elevation of ``w`` in one vertical coordinate plane, so the open hemisphere ``w3 > 0`` maps one-to-one onto
  ``(psi, phi) in (-3, 3)^2``, the start ``(-2, 2)`` (60 degrees from the pole in both planes) and the optimum
  ``(1, 1)`` (30 degrees) lie well inside it, and both angles depend on ``w / ||w||`` only (scale-invariant).
  The objective is ``(a - psi)^2 + b (phi - psi^2)^2`` with its minimum at ``(a, a^2)``; the radius
  ``r = ||w||`` is the redundant axis whose growth the paper's trajectories show.

Tracking without device syncs: the per-step quantities (norm, angle, distance) are returned from
:meth:`loss` as extra metrics, which the loop writes into history.jsonl every ``train.log_every`` steps. A
history row at step ``s`` describes the weight the ``s``-th gradient was computed at, i.e. after ``s - 1``
updates; the final weight (after the last update) is in the evaluation metrics. Convergence bookkeeping
(first step below the tolerance, last step above it, largest radius) lives in buffers of the model, so it is
saved with every checkpoint and a resumed run reports the same numbers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import Tensor, nn

from benchmarks.config.errors import ConfigError
from benchmarks.tasks.base import RunContext, Task

#: angle scale of the 3-D toy: the hemisphere's edge (pi/2 from the pole) maps to psi or phi = 3
SPHERE_ANGLE_SCALE = 6.0 / math.pi


# -- objectives (pure functions: tested against autograd and finite differences) ------------------------

def cosine_loss(w: Tensor, target: Tensor) -> Tensor:
    """``-cos(w, target)`` over the last dim (one value per row); invariant to positive scaling of ``w``."""
    return -(w * target).sum(-1) / (w.norm(dim=-1) * target.norm(dim=-1))


def cosine_loss_grad(w: Tensor, target: Tensor) -> Tensor:
    """Analytic gradient of :func:`cosine_loss`: ``-(t_hat - cos * w_hat) / ||w||`` (orthogonal to ``w``)."""
    w_norm = w.norm(dim=-1, keepdim=True)
    w_hat = w / w_norm
    t_hat = target / target.norm(dim=-1, keepdim=True)
    cos = (w_hat * t_hat).sum(-1, keepdim=True)
    return -(t_hat - cos * w_hat) / w_norm


def angle_deg(w: Tensor, target: Tensor) -> Tensor:
    """Unsigned angle between ``w`` and ``target`` in degrees (0..180), one value per row."""
    cos = (w * target).sum(-1) / (w.norm(dim=-1) * target.norm(dim=-1))
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def sphere_angles(w: Tensor) -> tuple[Tensor, Tensor]:
    """``(psi, phi)`` of ``w = (w1, w2, w3)`` (last dim): ``S * atan2(w1, w3)``, ``S * atan2(w2, w3)``."""
    return (SPHERE_ANGLE_SCALE * torch.atan2(w[..., 0], w[..., 2]),
            SPHERE_ANGLE_SCALE * torch.atan2(w[..., 1], w[..., 2]))


def angles_to_weight(psi: float, phi: float, radius: float = 1.0) -> Tensor:
    """The inverse of :func:`sphere_angles` on the upper hemisphere: a ``(1, 3)`` float tensor of norm ``radius``.

    Valid for ``|psi|, |phi| < 3`` (inside the open hemisphere).
    """
    limit = SPHERE_ANGLE_SCALE * math.pi / 2
    if not (abs(psi) < limit and abs(phi) < limit):
        raise ValueError(f"(psi, phi) = ({psi}, {phi}) is outside the hemisphere; both must be in (-{limit:g}, {limit:g})")
    direction = torch.tensor([[math.tan(psi / SPHERE_ANGLE_SCALE), math.tan(phi / SPHERE_ANGLE_SCALE), 1.0]],
                             dtype=torch.float64)
    return (direction / direction.norm() * radius).float()


def rosenbrock(psi: Tensor, phi: Tensor, a: float = 1.0, b: float = 1.0) -> Tensor:
    """``(a - psi)^2 + b (phi - psi^2)^2``; minimum 0 at ``(a, a^2)``."""
    return (a - psi) ** 2 + b * (phi - psi**2) ** 2


def sphere_rosenbrock(w: Tensor, a: float = 1.0, b: float = 1.0) -> Tensor:
    """The 3-D toy's objective: Rosenbrock of the hemisphere angles of ``w`` (one value per row)."""
    psi, phi = sphere_angles(w)
    return rosenbrock(psi, phi, a, b)


# -- models ---------------------------------------------------------------------------------------------

class _TrackedWeight(nn.Module):
    """A single ``(1, d)`` weight plus the bookkeeping buffers of the convergence metrics.

    ``record(value, below)`` is called once per training step with the tracked quantity of the current weight
    (before the update) and whether it is within the tolerance; it only does tensor ops, so a GPU run never
    waits for the host.
    """

    def __init__(self, init: Tensor):
        super().__init__()
        self.weight = nn.Parameter(init.clone())
        self.register_buffer("steps_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("first_below", torch.full((), -1, dtype=torch.long))
        self.register_buffer("last_above", torch.full((), -1, dtype=torch.long))
        self.register_buffer("max_norm", init.norm().detach().clone())
        self.register_buffer("max_norm_step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def record(self, below: Tensor) -> None:
        step = self.steps_seen
        norm = self.weight.norm()
        self.first_below.copy_(torch.where((self.first_below < 0) & below, step, self.first_below))
        self.last_above.copy_(torch.where(below, self.last_above, step))
        grew = norm > self.max_norm
        self.max_norm_step.copy_(torch.where(grew, step, self.max_norm_step))
        self.max_norm.copy_(torch.maximum(norm, self.max_norm))
        self.steps_seen.add_(1)

    @torch.no_grad()
    def convergence(self, final_below: bool) -> dict[str, float]:
        """Step counts including the current (final) weight, which no training step has recorded yet.

        ``steps_to_reach``: first number of updates after which the quantity was within the tolerance;
        ``steps_to_converge``: number of updates after which it stayed within it until the end. Both -1 if not.
        """
        steps = int(self.steps_seen)
        first = int(self.first_below)
        if first < 0 and final_below:
            first = steps
        last_above = steps if not final_below else int(self.last_above)
        converged = last_above + 1 if last_above < steps else -1
        norm = float(self.weight.norm())
        max_norm, max_step = float(self.max_norm), int(self.max_norm_step)
        if norm > max_norm:
            max_norm, max_step = norm, steps
        return {"steps_to_reach": float(first), "steps_to_converge": float(converged),
                "max_norm": max_norm, "max_norm_step": float(max_step)}


class CosineToy(_TrackedWeight):
    """``w`` in R^2 as a ``(1, 2)`` parameter; ``forward()`` returns ``-cos(w, w*)``."""

    def __init__(self, init_angle_deg: float, init_norm: float):
        theta = math.radians(init_angle_deg)
        super().__init__(torch.tensor([[math.cos(theta), math.sin(theta)]]) * init_norm)
        self.register_buffer("target", torch.tensor([[1.0, 0.0]]))

    def forward(self) -> Tensor:
        return cosine_loss(self.weight, self.target).sum()

    def angle(self) -> Tensor:
        return angle_deg(self.weight, self.target).squeeze(0)


class SphereRosenbrockToy(_TrackedWeight):
    """``w`` in R^3 as a ``(1, 3)`` parameter; ``forward()`` returns the Rosenbrock value of its angles."""

    def __init__(self, start_psi: float, start_phi: float, init_norm: float, a: float, b: float):
        super().__init__(angles_to_weight(start_psi, start_phi, init_norm))
        self.a, self.b = a, b

    def forward(self) -> Tensor:
        return sphere_rosenbrock(self.weight, self.a, self.b).sum()

    def angles(self) -> tuple[Tensor, Tensor]:
        psi, phi = sphere_angles(self.weight)
        return psi.squeeze(0), phi.squeeze(0)

    def distance(self) -> Tensor:
        psi, phi = self.angles()
        return torch.hypot(psi - self.a, phi - self.a**2)


# -- tasks ----------------------------------------------------------------------------------------------

def _positive(config: Mapping[str, Any], section: str, key: str) -> float:
    value = config[section][key]
    if not value > 0:
        raise ConfigError(f"`{section}.{key}` must be > 0, got {value!r}")
    return float(value)


class _ToyTask(Task):
    """Shared parts: dummy batches (the objective has no data), steps per epoch from ``train.steps_per_epoch``."""

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        steps = config["train"]["steps_per_epoch"]
        if not (isinstance(steps, int) and steps >= 1):
            raise ConfigError(f"`train.steps_per_epoch` must be an integer >= 1, got {steps!r}")
        _positive(config, "model", "init_norm")

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)

    def steps_per_epoch(self) -> int:
        return int(self.config["train"]["steps_per_epoch"])

    def train_batches(self, epoch: int) -> Iterator[Tensor]:
        # The batch is only the step's index: the objective is deterministic and needs no data.
        start = epoch * self.steps_per_epoch()
        for i in range(self.steps_per_epoch()):
            yield torch.tensor(start + i)

    def batch_size_of(self, batch: Any) -> int:
        return 1


class Toy2D(_ToyTask):
    """2-D toy of the paper: maximise the cosine similarity of a 2-D weight with a fixed target."""

    name: ClassVar[str] = "toy2d"
    description: ClassVar[str] = "paper's 2-D toy: min -cos(w, w*) for a (1, 2) weight; norm growth under momentum"
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # init_angle_deg: angle between the start and w* = (1, 0); angle_tol_deg: tolerance of the
        # convergence step counts
        "data": {"init_angle_deg": 90.0, "angle_tol_deg": 1.0},
        "model": {"init_norm": 1.0},
        "train": {"steps_per_epoch": 450},
    }
    smoke: ClassVar[Mapping[str, Any]] = {"train.steps_per_epoch": 20, "train.epochs": 1}
    #: evaluation also returns the final weight ``w_x``, ``w_y`` (no direction: not listed)
    metrics: ClassVar[Mapping[str, str]] = {
        "cosine_similarity": "max",
        "angle_deg": "min",
        "w_norm": "min",
        "norm_growth": "min",
        "loss": "min",
        "steps_to_converge": "min",
        "steps_to_reach": "min",
        "max_norm": "min",
    }

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        super().check_config(config)
        angle = config["data"]["init_angle_deg"]
        if not 0.0 <= angle < 180.0:
            raise ConfigError(
                f"`data.init_angle_deg` must be in [0, 180) (180 is the saddle where the gradient vanishes), got {angle!r}"
            )
        _positive(config, "data", "angle_tol_deg")

    def build_model(self) -> CosineToy:
        return CosineToy(float(self.config["data"]["init_angle_deg"]), float(self.config["model"]["init_norm"]))

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Any]]:
        toy: CosineToy = getattr(model, "module", model)
        loss = toy()
        with torch.no_grad():
            w = toy.weight.detach()
            angle = toy.angle()
            toy.record(angle < self.config["data"]["angle_tol_deg"])
        return loss, {"w_norm": w.norm(), "angle_deg": angle, "w_x": w[0, 0], "w_y": w[0, 1]}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        toy: CosineToy = getattr(model, "module", model)
        angle = float(toy.angle())
        w_norm = float(toy.weight.norm())
        loss = float(toy())
        out = {
            "cosine_similarity": -loss,
            "angle_deg": angle,
            "w_norm": w_norm,
            "norm_growth": w_norm / float(self.config["model"]["init_norm"]),
            "loss": loss,
        }
        tracked = toy.convergence(angle < self.config["data"]["angle_tol_deg"])
        out.update(steps_to_converge=tracked["steps_to_converge"], steps_to_reach=tracked["steps_to_reach"],
                   max_norm=tracked["max_norm"])
        # The final point of the trajectory (history rows hold the weights before each update).
        out.update(w_x=float(toy.weight[0, 0]), w_y=float(toy.weight[0, 1]))
        return out


class Toy3D(_ToyTask):
    """3-D toy of the paper: Rosenbrock on the upper hemisphere with a redundant radial axis."""

    name: ClassVar[str] = "toy3d"
    description: ClassVar[str] = "paper's 3-D toy: Rosenbrock of the hemisphere angles of a (1, 3) weight"
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        # start in (psi, phi); Rosenbrock (a - psi)^2 + b (phi - psi^2)^2 with optimum (a, a^2);
        # optimum_tol: distance in (psi, phi) counted as "at the optimum"
        "data": {"start_psi": -2.0, "start_phi": 2.0, "rosenbrock_a": 1.0, "rosenbrock_b": 1.0,
                 "optimum_tol": 0.05},
        "model": {"init_norm": 1.0},
        "train": {"steps_per_epoch": 200},
    }
    smoke: ClassVar[Mapping[str, Any]] = {"train.steps_per_epoch": 20, "train.epochs": 1}
    #: evaluation also returns the final angles ``psi``, ``phi`` (no direction: not listed)
    metrics: ClassVar[Mapping[str, str]] = {
        "objective": "min",
        "distance": "min",
        "r": "min",
        "max_r": "min",
        "max_r_step": "min",
        "steps_to_converge": "min",
        "steps_to_reach": "min",
    }

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        super().check_config(config)
        d = config["data"]
        limit = SPHERE_ANGLE_SCALE * math.pi / 2
        for key in ("start_psi", "start_phi"):
            if not abs(d[key]) < limit:
                raise ConfigError(f"`data.{key}` must be in (-{limit:g}, {limit:g}) (inside the hemisphere), got {d[key]!r}")
        a = d["rosenbrock_a"]
        if not (abs(a) < limit and a**2 < limit):
            raise ConfigError(f"`data.rosenbrock_a` puts the optimum ({a}, {a * a}) outside the hemisphere; "
                              f"|a| and a^2 must be < {limit:g}")
        _positive(config, "data", "rosenbrock_b")
        _positive(config, "data", "optimum_tol")

    def build_model(self) -> SphereRosenbrockToy:
        d = self.config["data"]
        return SphereRosenbrockToy(float(d["start_psi"]), float(d["start_phi"]),
                                   float(self.config["model"]["init_norm"]),
                                   float(d["rosenbrock_a"]), float(d["rosenbrock_b"]))

    def loss(self, model: nn.Module, batch: Any) -> tuple[Tensor, dict[str, Any]]:
        toy: SphereRosenbrockToy = getattr(model, "module", model)
        loss = toy()
        with torch.no_grad():
            psi, phi = toy.angles()
            distance = toy.distance()
            r = toy.weight.norm()
            toy.record(distance < self.config["data"]["optimum_tol"])
        w = toy.weight.detach().reshape(-1)
        # the weight's coordinates too, so that analysis draws the paths without this module's geometry
        return loss, {"psi": psi, "phi": phi, "r": r, "distance": distance, "w1": w[0], "w2": w[1], "w3": w[2]}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        toy: SphereRosenbrockToy = getattr(model, "module", model)
        psi, phi = (float(x) for x in toy.angles())
        distance = float(toy.distance())
        tracked = toy.convergence(distance < self.config["data"]["optimum_tol"])
        return {
            "objective": float(toy()),
            "distance": distance,
            "r": float(toy.weight.norm()),
            "max_r": tracked["max_norm"],
            "max_r_step": tracked["max_norm_step"],
            "psi": psi,
            "phi": phi,
            **{f"w{i + 1}": float(v) for i, v in enumerate(toy.weight.detach().reshape(-1).tolist())},
            "steps_to_converge": tracked["steps_to_converge"],
            "steps_to_reach": tracked["steps_to_reach"],
        }


__all__ = [
    "SPHERE_ANGLE_SCALE",
    "CosineToy",
    "SphereRosenbrockToy",
    "Toy2D",
    "Toy3D",
    "angle_deg",
    "angles_to_weight",
    "cosine_loss",
    "cosine_loss_grad",
    "rosenbrock",
    "sphere_angles",
    "sphere_rosenbrock",
]
