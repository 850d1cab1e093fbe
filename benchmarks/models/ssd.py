"""SSD detectors from torchvision, built without downloads.

* ``ssd300_vgg16``: torchvision's SSD300 (VGG-16 backbone; Liu et al., 2016). ImageNet weights for the
  backbone come only from a local file (``pretrained_path``): a torchvision ``vgg16`` state dict, e.g. the
  ``vgg16_features-amdegroot-88682ab5.pth`` file behind ``VGG16_Weights.IMAGENET1K_FEATURES`` (what
  ``ssd300_vgg16`` uses by default, with its caffe-style 0..255 input scaling) or ``vgg16-397923af.pth``
  (then set ``image_mean``/``image_std`` to ImageNet's). The file is first loaded strictly into a plain
  ``vgg16`` (so a wrong file fails with the keys that do not fit) and its 13 convolutions are then copied
  into the SSD backbone, which holds the same layers in the same order. As torchvision does for pretrained
  backbones, the first ``5 - trainable_backbone_layers`` VGG blocks are frozen (default 4 trainable).
* ``ssdlite320_mobilenet_v3_large``: torchvision's SSDlite (the small option; from scratch only: torchvision
  builds its reduced-tail backbone when no weights are given, which ImageNet weights do not fit).

``image_size`` changes the model's fixed input size (default 300 / 320); the anchors are relative to it.
Labels: torchvision's SSD reserves class 0 for the background, so the task passes ``num_classes + 1``
classes and shifts its labels by one.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from benchmarks.config.errors import ConfigError

SSD_MODELS = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large")
DEFAULT_SIZE = {"ssd300_vgg16": 300, "ssdlite320_mobilenet_v3_large": 320}
#: start index of each of the five VGG-16 blocks in ``features`` (freezing granularity, as torchvision's)
_VGG_BLOCK_STARTS = (0, 4, 9, 16, 23)


def _vgg_convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def load_vgg_backbone(ssd: nn.Module, path: str) -> None:
    """Copy a local torchvision ``vgg16`` state dict's convolutions into ``ssd.backbone`` (see module doc)."""
    import torchvision

    from benchmarks.models.vision import load_pretrained

    # the convolutional part of torchvision's vgg16 only (its 120M-parameter classifier is never used)
    vgg = nn.Module()
    vgg.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    load_pretrained(vgg, path, exclude=("classifier.",))
    source = _vgg_convs(vgg.features)
    backbone = ssd.backbone
    head = _vgg_convs(backbone.features)  # conv1_1 .. conv4_3; conv5_x open the first "extra" block
    target = head + _vgg_convs(backbone.extra[0])[: len(source) - len(head)]
    if len(source) != 13 or len(target) != 13:
        raise RuntimeError(f"expected 13 VGG-16 convolutions, found {len(source)} in the file's network and "
                           f"{len(target)} in the SSD backbone")
    with torch.no_grad():
        for src, dst in zip(source, target):
            if src.weight.shape != dst.weight.shape:
                raise ConfigError(f"model.pretrained_path: {path}: conv of shape {tuple(src.weight.shape)} does "
                                  f"not fit the SSD layer {tuple(dst.weight.shape)}")
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)


def _freeze_vgg_blocks(ssd: nn.Module, trainable: int) -> None:
    stop = len(ssd.backbone.features) if trainable == 0 else _VGG_BLOCK_STARTS[5 - trainable]
    for index, layer in enumerate(ssd.backbone.features):
        if index < stop:
            for p in layer.parameters():
                p.requires_grad_(False)


def build_ssd(cfg: Mapping[str, Any], num_classes: int, image_size: int | None = None,
              max_detections: int = 100) -> nn.Module:
    """The SSD named by ``cfg["name"]`` for ``num_classes`` object classes (+1 background)."""
    import torchvision.models.detection as det

    name = str(cfg["name"])
    if name not in SSD_MODELS:
        raise ConfigError(f"model.name: {name!r} is not an SSD; valid: {', '.join(SSD_MODELS)}")
    path = cfg.get("pretrained_path")
    trainable = cfg.get("trainable_backbone_layers")
    if name == "ssdlite320_mobilenet_v3_large":
        if path:
            raise ConfigError("model.pretrained_path: ssdlite320_mobilenet_v3_large is built from scratch only "
                              "(torchvision reduces its backbone tail without weights); use ssd300_vgg16 or null")
        model = det.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes + 1)
    else:
        model = det.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes + 1)
        if path:
            load_vgg_backbone(model, path)
        n = (4 if path else 5) if trainable is None else int(trainable)
        if not 0 <= n <= 5:
            raise ConfigError(f"model.trainable_backbone_layers must be in 0..5 (VGG blocks), got {trainable}")
        _freeze_vgg_blocks(model, n)
    size = int(image_size or DEFAULT_SIZE[name])
    model.transform.min_size = (size,)
    model.transform.max_size = size
    model.transform.fixed_size = (size, size)
    mean, std = cfg.get("image_mean"), cfg.get("image_std")
    if mean is not None:
        model.transform.image_mean = [float(v) for v in _three(mean, "model.image_mean")]
    if std is not None:
        model.transform.image_std = [float(v) for v in _three(std, "model.image_std")]
    model.detections_per_img = int(max_detections)
    return model


def _three(values: Sequence[Any], key: str) -> Sequence[Any]:
    if not isinstance(values, (list, tuple)) or len(values) != 3:
        raise ConfigError(f"{key}: three per-channel values (RGB, 0..1 scale) or null, got {values!r}")
    return values


__all__ = ["DEFAULT_SIZE", "SSD_MODELS", "build_ssd", "load_vgg_backbone"]
