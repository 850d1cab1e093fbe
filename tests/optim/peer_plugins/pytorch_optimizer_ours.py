"""pytest plugin for pytorch_optimizer's own tests: its registry names ``adamp`` and ``sgdp`` build ours.

Adapted, and nothing else (docs/compatibility.md says why):

* exception classes: where its tests expect its own ``NoSparseGradientError`` / ``NoComplexParameterError``
  (ours raise ``RuntimeError``, as torch's optimizers do) and ``NegativeLRError`` (ours: ``ValueError``),
  either is accepted: the names are tuples while its test modules are imported (its capability probe runs
  then, over all of its optimizers), and ours alone once they are collected (one of its tests nests the
  name in a tuple, which ``pytest.raises`` does not take);
* options: its harness gives torch's SGD ``lr=1e-3`` where a case passes no learning rate; SGDP, which has
  no default learning rate (as in the official package and timm), gets the same.
"""

import adamp
from pytorch_optimizer import optimizer as _registry
from pytorch_optimizer.base import exception as _exception

_registry.OPTIMIZERS["adamp"] = adamp.AdamP
_registry.OPTIMIZERS["sgdp"] = adamp.SGDP

_OURS = {"NoSparseGradientError": RuntimeError, "NoComplexParameterError": RuntimeError,
         "NegativeLRError": ValueError}
for _name, _ours in _OURS.items():
    setattr(_exception, _name, (getattr(_exception, _name), _ours))

import tests.utils as _harness  # noqa: E402 - pytorch_optimizer's test package (the sdist's, first on sys.path)

_build = _harness.build_optimizer


def _build_optimizer(name, params, **options):
    if name.lower() == "sgdp":
        options.setdefault("lr", 1e-3)
    return _build(name, params, **options)


_harness.build_optimizer = _build_optimizer


def pytest_collection_modifyitems(items):
    for module in {item.module for item in items if getattr(item, "module", None) is not None}:
        for name, ours in _OURS.items():
            if isinstance(getattr(module, name, None), tuple):
                setattr(module, name, ours)
