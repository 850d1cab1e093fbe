"""pytest plugin for timm's own tests/test_optim.py: timm's registry entries ``adamp`` and ``sgdp`` build ours.

Only the class changes; the registry's own defaults for them stay (``adamp``: wd_ratio=0.01, nesterov=True;
``sgdp``: nesterov=True), so timm's tests exercise ours exactly as ``timm.optim.create_optimizer_v2`` would.
"""

import dataclasses

from timm.optim._optim_factory import default_registry

import adamp

for _name, _cls in (("adamp", adamp.AdamP), ("sgdp", adamp.SGDP)):
    default_registry._optimizers[_name] = dataclasses.replace(default_registry._optimizers[_name], opt_class=_cls)
