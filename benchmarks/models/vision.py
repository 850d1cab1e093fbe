"""Image classifiers for the classification task (and any task that needs a vision backbone).

Names accepted by :func:`build_model` (``model.name``):

* ``digits_cnn``: a small 4-conv CNN with BatchNorm for tiny (e.g. 8x8) inputs;
* ``resnet_tiny``: a width-reduced 3-stage ResNet (torchvision's ``BasicBlock``) for tiny inputs;
* any torchvision classification model, e.g. the paper's ``resnet18``, ``resnet50``, ``mobilenet_v2``;
* ``timm:<name>``: any timm model, e.g. ``timm:efficientnet_b0``.

Every model is built WITHOUT downloading weights (``weights=None`` / ``pretrained=False``). Pretrained
weights come only from a local file (``model.pretrained_path``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from benchmarks.config.errors import ConfigError

#: defaults of the ``model`` section for tasks that use this factory
MODEL_DEFAULTS: dict[str, Any] = {
    "name": "digits_cnn",
    "pretrained_path": None,
    "pretrained_exclude": [],
    "width": 1.0,
    "kwargs": {},
}

SMALL_MODELS = ("digits_cnn", "resnet_tiny")


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    # bias=False: BatchNorm follows, so the conv weight is scale-invariant (the case AdamP/SGDP target)
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def digits_cnn(num_classes: int, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    """Small CNN for 8x8 inputs: 2 conv-BN-ReLU, max-pool, 2 conv-BN-ReLU, global pool, linear.

    ``width`` scales the channel counts (32 and 64 at width 1).
    """
    c = max(1, round(32 * width))
    return nn.Sequential(
        *_conv_bn_relu(in_channels, c),
        *_conv_bn_relu(c, c),
        nn.MaxPool2d(2),
        *_conv_bn_relu(c, 2 * c),
        *_conv_bn_relu(2 * c, 2 * c),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * c, num_classes),
    )


class TinyResNet(nn.Module):
    """3-stage ResNet (one torchvision ``BasicBlock`` per stage, strides 1/2/2) with a 3x3 stem, no max-pool.

    Meant for tiny inputs such as 8x8 digits; ``width`` scales the channels (16/32/64 at width 1).
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: float = 1.0):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        widths = [max(1, round(16 * width * m)) for m in (1, 2, 4)]
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, widths[0]))
        blocks: list[nn.Module] = []
        cin = widths[0]
        for cout, stride in zip(widths, (1, 2, 2)):
            downsample = None
            if stride != 1 or cin != cout:
                downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            blocks.append(BasicBlock(cin, cout, stride=stride, downsample=downsample))
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def torchvision_names() -> list[str]:
    """Names of torchvision's classification models (not detection/segmentation/video)."""
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def check_model_config(cfg: Mapping[str, Any]) -> None:
    """The checks of :func:`build_model` that need neither the data nor the weights (run before launch):
    a known name, a positive width where the model has one, no kwargs for the small models."""
    name = str(cfg.get("name", MODEL_DEFAULTS["name"]))
    width = cfg.get("width")
    width = 1.0 if width is None else float(width)
    if width <= 0:
        raise ConfigError(f"model.width must be > 0, got {width}")
    if name in SMALL_MODELS:
        if cfg.get("kwargs"):
            raise ConfigError(f"model.kwargs: {name} takes no extra options (got {sorted(cfg['kwargs'])}); "
                              f"use model.width")
        return
    if name.startswith("timm:"):
        import timm

        model = name[len("timm:"):]
        if not timm.is_model(model):
            close = timm.list_models(f"*{model}*")[:8]
            raise ConfigError(f"model.name: timm has no model {model!r}"
                              + (f"; close: {', '.join('timm:' + c for c in close)}" if close else ""))
        if width != 1.0:
            raise ConfigError("model.width: not supported for timm models; pass timm's own options in model.kwargs")
        return
    names = torchvision_names()
    if name not in names:
        close = [n for n in names if name.lower().replace("-", "_") in n][:8]
        import difflib

        close = close or difflib.get_close_matches(name, names, n=3)
        raise ConfigError(
            f"model.name: unknown model {name!r}; valid: {', '.join(SMALL_MODELS)}, a torchvision classification "
            f"model (e.g. resnet18, resnet50, mobilenet_v2{'; close: ' + ', '.join(close) if close else ''}) "
            f"or timm:<name>"
        )
    if width != 1.0 and not name.startswith("mobilenet_v2"):
        raise ConfigError(
            f"model.width: {name} has no width option (only digits_cnn, resnet_tiny and mobilenet_v2 do); "
            f"remove model.width or set it to 1.0"
        )


def check_weights_file(path: Any, key: str = "model.pretrained_path") -> None:
    """A weights file named in the config must exist (it is only ever read from local disk)."""
    if path is None or str(path) == "":
        return
    file = Path(str(path)).expanduser()
    if not file.is_file():
        what = "is a folder, not a file" if file.is_dir() else "does not exist"
        raise ConfigError(f"{key}: {file} {what} (weights are only read from a local file and never "
                          f"downloaded); set it to an existing .pt/.pth file or to null")


def build_model(cfg: Mapping[str, Any], num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build the classifier described by the ``model`` section ``cfg`` (keys of :data:`MODEL_DEFAULTS`).

    Raises ``ConfigError`` for an unknown name, an option the model does not take, or a missing weights file.
    """
    name = str(cfg.get("name", MODEL_DEFAULTS["name"]))
    width = float(cfg.get("width", 1.0) if cfg.get("width") is not None else 1.0)
    kwargs = dict(cfg.get("kwargs") or {})
    if width <= 0:
        raise ConfigError(f"model.width must be > 0, got {width}")

    if name in SMALL_MODELS and kwargs:
        raise ConfigError(f"model.kwargs: {name} takes no extra options (got {sorted(kwargs)}); use model.width")
    if name == "digits_cnn":
        model: nn.Module = digits_cnn(num_classes, in_channels, width)
    elif name == "resnet_tiny":
        model = TinyResNet(num_classes, in_channels, width)
    elif name.startswith("timm:"):
        model = _build_timm(name[len("timm:") :], num_classes, in_channels, width, kwargs)
    else:
        model = _build_torchvision(name, num_classes, in_channels, width, kwargs)

    if cfg.get("pretrained_path"):
        load_pretrained(model, cfg["pretrained_path"], cfg.get("pretrained_exclude") or ())
    return model


def _build_torchvision(
    name: str, num_classes: int, in_channels: int, width: float, kwargs: dict[str, Any]
) -> nn.Module:
    import torchvision

    names = torchvision_names()
    if name not in names:
        close = [n for n in names if name.lower().replace("-", "_") in n][:8]
        raise ConfigError(
            f"model.name: unknown model {name!r}; valid: {', '.join(SMALL_MODELS)}, a torchvision classification "
            f"model (e.g. resnet18, resnet50, mobilenet_v2{'; close: ' + ', '.join(close) if close else ''}) "
            f"or timm:<name>"
        )
    if in_channels != 3:
        raise ConfigError(
            f"model.name: torchvision's {name} takes 3-channel images but the data has {in_channels}; "
            f"use {' or '.join(SMALL_MODELS)} or a timm:<name> model (timm adapts the input channels)"
        )
    if width != 1.0:
        if name.startswith("mobilenet_v2"):
            kwargs.setdefault("width_mult", width)
        else:
            raise ConfigError(
                f"model.width: {name} has no width option (only digits_cnn, resnet_tiny and mobilenet_v2 do); "
                f"remove model.width or set it to 1.0"
            )
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.kwargs: {name} rejected {sorted(kwargs)}: {exc}") from exc


def _build_timm(name: str, num_classes: int, in_channels: int, width: float, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        raise ConfigError(
            f"model.name: timm has no model {name!r}"
            + (f"; close: {', '.join('timm:' + c for c in close)}" if close else "")
        )
    if width != 1.0:
        raise ConfigError("model.width: not supported for timm models; pass timm's own options in model.kwargs")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model.kwargs: timm:{name} rejected {sorted(kwargs)}: {exc}") from exc


def load_pretrained(model: nn.Module, path: str | os.PathLike[str], exclude: Iterable[str] = ()) -> None:
    """Load weights from the local file ``path`` into ``model`` (never downloads).

    Accepts a plain state dict or a checkpoint holding one under ``state_dict``, ``model`` or ``model_state``;
    a ``module.`` prefix (DistributedDataParallel) is removed. Keys starting with a prefix in ``exclude``
    (e.g. ``fc.`` to drop a 1000-class head) are skipped and keep their fresh initialisation. Every other key
    must match in name and shape.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"model.pretrained_path: {file} does not exist (weights are only read from a local file and "
            f"never downloaded); set it to an existing .pt/.pth file or to null"
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"model.pretrained_path: {file} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    prefixes = tuple(exclude)
    state = {k: v for k, v in state.items() if not (prefixes and k.startswith(prefixes))}
    own = model.state_dict()
    expected = {k for k in own if not (prefixes and k.startswith(prefixes))}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        details = "; ".join(
            f"{label}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched))
            if keys
        )
        raise ConfigError(
            f"model.pretrained_path: {file} does not fit the model ({details}); "
            f"skip keys with model.pretrained_exclude, e.g. [fc.] for a head with another number of classes"
        )
    model.load_state_dict(state, strict=False)
