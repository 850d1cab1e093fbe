"""Embedding networks for deep metric learning: a CNN backbone, global pooling, a linear embedding head and
L2 normalisation (the standard architecture of the metric-learning benchmarks).

Pretrained weights are read ONLY from a local file (``model.pretrained_path``): nothing is ever downloaded.
The file holds a torchvision-style state dict of the backbone (e.g. torchvision's ``resnet50-0676ba61.pth``);
a checkpoint dict with ``state_dict`` or ``model`` inside, and a ``module.`` prefix, are accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.config.errors import ConfigError

#: backbone name -> number of output channels of its last feature map
BACKBONES: dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "tiny_cnn": 64}
POOLS = ("avg", "max", "avgmax")


class TinyCNN(nn.Module):
    """Three conv-BN-ReLU blocks (16-32-64 channels, strides 1-2-2): a CPU-sized backbone for tests and
    demos. The BN layers make its conv weights scale-invariant, as in the ResNets the paper uses."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        channels = [in_channels, width, 2 * width, 4 * width]
        for i, stride in enumerate((1, 2, 2)):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(channels[i + 1]), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict from a local file; a missing file is a ConfigError naming ``model.pretrained_path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"model.pretrained_path: weights file {path} does not exist. Weights are never downloaded: put the "
            f"backbone's torchvision state dict there (for ResNet-50, torchvision's IMAGENET1K_V1 file "
            f"resnet50-0676ba61.pth) or set model.pretrained_path: null to train from scratch."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / non-torch files
        raise ValueError(f"model.pretrained_path: cannot load {path} as a torch state dict: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"model.pretrained_path: {path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_backbone_weights(backbone: nn.Module, path: str | os.PathLike, name: str) -> None:
    """Load every backbone tensor from ``path``; the classifier (``fc.*``) is ignored, anything else that is
    missing or left over is an error (a wrong file should not silently give a half-initialised network)."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("fc.")}
    expected = {k for k in backbone.state_dict() if not k.startswith("fc.")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"model.pretrained_path: {path} does not match backbone {name}: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    backbone.load_state_dict(state, strict=False)


def build_backbone(name: str, pretrained_path: str | os.PathLike | None = None) -> nn.Module:
    """Return a module mapping images (N, 3, H, W) to a feature map (N, BACKBONES[name], h, w)."""
    if name not in BACKBONES:
        raise ConfigError(f"model.backbone: unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    if name == "tiny_cnn":
        net = TinyCNN()
        if pretrained_path is not None:
            net.load_state_dict(read_state_dict(pretrained_path))
        return net
    import torchvision

    resnet = getattr(torchvision.models, name)(weights=None)
    if pretrained_path is not None:
        _load_backbone_weights(resnet, pretrained_path, name)
    # everything up to (not including) global pooling and the classifier
    return nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                         resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)


class EmbeddingNet(nn.Module):
    """Backbone -> global pooling -> linear embedding -> L2 normalisation.

    ``pool="avgmax"`` sums global average and max pooling (the Proxy-Anchor reference model). With
    ``freeze_bn`` every backbone BatchNorm keeps its pretrained statistics and affine parameters: it stays in
    eval mode even when the model is put in train mode, and its parameters do not require gradients.
    """

    def __init__(self, backbone: str = "resnet50", embedding_dim: int = 512, pool: str = "avg",
                 pretrained_path: str | os.PathLike | None = None, freeze_bn: bool = False):
        super().__init__()
        if pool not in POOLS:
            raise ConfigError(f"model.pool: unknown pooling {pool!r}; valid: {', '.join(POOLS)}")
        if int(embedding_dim) < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
        self.backbone = build_backbone(backbone, pretrained_path)
        self.pool = pool
        self.freeze_bn = bool(freeze_bn)
        self.embedding = nn.Linear(BACKBONES[backbone], int(embedding_dim))
        nn.init.kaiming_normal_(self.embedding.weight, mode="fan_out")
        nn.init.zeros_(self.embedding.bias)
        if self.freeze_bn:
            for m in self._backbone_bns():
                for p in m.parameters():
                    p.requires_grad_(False)
        self.train()

    def _backbone_bns(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def train(self, mode: bool = True) -> "EmbeddingNet":
        super().train(mode)
        if self.freeze_bn:
            for m in self._backbone_bns():
                m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (N, C), before the embedding head."""
        fmap = self.backbone(x)
        if self.pool == "avg":
            return fmap.mean(dim=(2, 3))
        if self.pool == "max":
            return fmap.amax(dim=(2, 3))
        return fmap.mean(dim=(2, 3)) + fmap.amax(dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Linear embedding of pooled features, L2-normalised (unit-norm rows)."""
        return F.normalize(self.embedding(features), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


__all__ = ["BACKBONES", "POOLS", "EmbeddingNet", "TinyCNN", "build_backbone", "read_state_dict"]
