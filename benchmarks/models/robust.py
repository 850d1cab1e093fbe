"""Models of the robustness experiments (paper Table 4): ReBias's networks and the adversarial-training ones.

* :class:`SimpleConvNet`: ReBias's Biased-MNIST network (clovaai/rebias ``models/mnist_models.py``): four
  conv-BN-ReLU layers of 16, 32, 64, 128 channels (times ``width``) with one kernel size throughout, global
  average pooling and a linear classifier. ReBias's main network ``f`` uses kernel 7, its biased network ``g``
  kernel 1 (a 1x1 receptive field sees colour, never shape). Features for HSIC: the pooled vector ("post").
* :class:`ReBiasPair`: ``f`` and ``g`` in one module (clovaai/rebias ``models/rebias_models.py`` keeps them in
  a container too). ``forward`` returns ``f``'s logits only, so evaluation and attacks see the main network.
* :func:`bagnet18`: a ResNet-18 whose later blocks use 1x1 convolutions, a small-receptive-field biased network
  for 9-Class ImageNet in the spirit of ReBias's BagNet-18 (ours: not the exact BagNet layout).
* :func:`bn_cnn`: the small BN-CNN of the cheap adversarial-training tier (28x28 grey digits).
* :class:`WideResNet`: WRN-depth-k (Zagoruyko and Komodakis, 2016) as in Madry et al.'s CIFAR-10 model used
  by louis2889184/pytorch-adversarial-training (depth 34, widen factor 10 in the paper's setting).
"""

from __future__ import annotations

import torch
from torch import nn


class SimpleConvNet(nn.Module):
    """ReBias's stacked conv net; ``features(x)`` returns ``(logits, pooled features)``."""

    def __init__(self, num_classes: int = 10, kernel_size: int = 7, width: float = 1.0, in_channels: int = 3):
        super().__init__()
        chans = [max(1, round(c * width)) for c in (16, 32, 64, 128)]
        layers: list[nn.Module] = []
        cin = in_channels
        for cout in chans:
            layers += [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.extractor = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = torch.flatten(self.pool(self.extractor(x)), 1)
        return self.fc(feats), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[0]


class ReBiasPair(nn.Module):
    """The main network ``f`` and the biased network ``g`` of ReBias; ``forward`` is ``f``'s logits."""

    def __init__(self, f: nn.Module, g: nn.Module | None):
        super().__init__()
        self.f = f
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class _FeatureResNet(nn.Module):
    """A torchvision ResNet exposing ``features(x) -> (logits, pooled features)``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        feats = torch.flatten(n.avgpool(x), 1)
        return n.fc(feats), feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[0]


def resnet18(num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (random init) with ``features``; ReBias's ``f`` on 9-Class ImageNet."""
    import torchvision

    return _FeatureResNet(torchvision.models.resnet18(weights=None, num_classes=num_classes))


def bagnet18(num_classes: int) -> nn.Module:
    """ResNet-18 with every 3x3 convolution of stages 2-4 replaced by a 1x1 one and no stem max-pool: a
    receptive field of a few dozen pixels that sees local texture, not global shape (ours, approximating
    ReBias's BagNet-18, whose exact layout is not reproduced here)."""
    import torchvision

    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    for stage in (net.layer2, net.layer3, net.layer4):
        for block in stage:
            for name in ("conv1", "conv2"):
                conv: nn.Conv2d = getattr(block, name)
                setattr(block, name, nn.Conv2d(conv.in_channels, conv.out_channels, 1, stride=conv.stride, bias=False))
    net.maxpool = nn.Identity()
    return _FeatureResNet(net)


def bn_cnn(num_classes: int = 10, in_channels: int = 1, width: float = 1.0) -> nn.Module:
    """Small BN-CNN for 28x28 digits: (conv-BN-ReLU x2, max-pool) x2, global pool, linear (32/64 channels)."""
    c = max(1, round(32 * width))

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(in_channels, c), *block(c, c), nn.MaxPool2d(2),
        *block(c, 2 * c), *block(2 * c, 2 * c), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, num_classes),
    )


class _WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, drop: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.drop(self.relu(self.bn2(self.conv1(pre)))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """Pre-activation Wide-ResNet for 32x32 inputs (depth = 6n + 4)."""

    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10, drop_rate: float = 0.0,
                 in_channels: int = 3):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"Wide-ResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for stage, stride in zip(widths[1:], (1, 2, 2)):
            for i in range(n):
                blocks.append(_WideBlock(cin, stage, stride if i == 0 else 1, drop_rate))
                cin = stage
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.blocks(self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
