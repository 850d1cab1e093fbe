"""CenterNet ("Objects as Points", Zhou, Wang and Kraehenbuehl, 2019) on a torchvision ResNet.

Written after the official code, xingyizhou/CenterNet (``src/lib/models/networks/msra_resnet.py`` and
``resnet_dcn.py`` for the network, ``src/lib/models/losses.py`` for the losses, ``src/lib/utils/image.py``
for the target heat-maps, ``src/lib/models/decode.py`` for decoding); no code was copied. Pieces:

* backbone: torchvision ``resnet18/34/50/101`` without its pooling and classifier (stride 32); ImageNet
  weights only from a local file (``pretrained_path``, torchvision's state dict; never downloaded).
  ``backbone_layers=3`` (ours, for tiny CPU inputs only) stops after ``layer3`` (stride 16) and the neck
  then has two up-sampling stages;
* neck: three up-sampling stages back to stride 4. ``deconv`` = the code's ``res_*`` networks (transposed
  conv 4x4 stride 2 + BN + ReLU per stage, 256 channels each, weights N(0, 0.001)); ``dcn`` = the code's
  ``resdcn_*`` networks (modulated deformable 3x3 conv + BN + ReLU, then a transposed conv initialised as
  bilinear up-sampling + BN + ReLU; 256, 128, 64 channels);
* heads: per output a 3x3 conv (``head_channels``, 64 in the code) + ReLU + 1x1 conv: ``hm`` (one heat-map
  per class, bias -2.19 so that the initial sigmoid is about 0.1), ``wh`` (box width and height in output
  pixels) and ``reg`` (the sub-pixel offset of the centre); ``wh``/``reg`` weights N(0, 0.001);
* loss: the penalty-reduced pixel-wise focal loss on the heat-map (alpha 2, beta 4, normalised by the number
  of objects) + 0.1 x L1 on sizes + 1 x L1 on offsets, both only at the object centres;
* decoding: sigmoid, 3x3 max-pool peak extraction (a peak is a pixel equal to its neighbourhood maximum),
  top-K peaks over all classes, boxes from the regressed size and offset.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.config.errors import ConfigError

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
NECKS = ("deconv", "dcn")
#: default stage widths of each neck in the official code
NECK_CHANNELS = {"deconv": (256, 256, 256), "dcn": (256, 128, 64)}
DOWN_RATIO = 4
#: loss weights of the code's ctdet defaults (--hm_weight 1 --wh_weight 0.1 --off_weight 1)
LOSS_WEIGHTS = {"hm": 1.0, "wh": 0.1, "reg": 1.0}
#: most objects per image that get a size/offset target (the code's max_objs for COCO)
MAX_OBJECTS = 128


class ModulatedDeformConv(nn.Module):
    """3x3 deformable conv with a learnt modulation mask (DCNv2, as the code's ``DCN``), on
    ``torchvision.ops.deform_conv2d``; offsets and mask come from a zero-initialised 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        from torchvision.ops import DeformConv2d

        self.conv = DeformConv2d(cin, cout, 3, padding=1)
        self.offset_mask = nn.Conv2d(cin, 3 * 9, 3, padding=1)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.offset_mask(x)
        offset, mask = out[:, :18], torch.sigmoid(out[:, 18:])
        return self.conv(x, offset, mask)


def _bilinear_(deconv: nn.ConvTranspose2d) -> None:
    # up-sampling as bilinear interpolation per channel (the code's fill_up_weights)
    w = deconv.weight.data
    k = w.shape[-1]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    grid = torch.arange(k, dtype=torch.float32)
    line = 1 - (grid / f - c).abs()
    w.zero_()
    kernel = line[:, None] * line[None, :]
    for ch in range(min(w.shape[0], w.shape[1])):
        w[ch, ch] = kernel


def _neck(cin: int, kind: str, channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in channels:
        if kind == "dcn":
            up = nn.ConvTranspose2d(cout, cout, 4, stride=2, padding=1, bias=False)
            _bilinear_(up)
            layers += [ModulatedDeformConv(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       up, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        else:
            up = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
            nn.init.normal_(up.weight, std=0.001)
            layers += [up, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers)


def _head(cin: int, mid: int, cout: int, heatmap: bool) -> nn.Sequential:
    head = nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
    if heatmap:
        nn.init.constant_(head[-1].bias, -2.19)  # sigmoid(-2.19) ~ 0.1, the code's prior
    else:
        for m in head:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)
    return head


class CenterNet(nn.Module):
    """ResNet backbone + up-sampling neck + ``hm``/``wh``/``reg`` heads; ``forward`` returns their raw maps at
    stride :data:`DOWN_RATIO` (``hm`` as logits)."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", neck: str = "deconv",
                 neck_channels: Sequence[int] | None = None, head_channels: int = 64,
                 pretrained_path: str | None = None, backbone_layers: int = 4):
        super().__init__()
        import torchvision

        if backbone not in BACKBONES:
            raise ConfigError(f"model.backbone: {backbone!r} is not a CenterNet backbone; "
                              f"valid: {', '.join(BACKBONES)}")
        if neck not in NECKS:
            raise ConfigError(f"model.neck: {neck!r}; valid: {', '.join(NECKS)}")
        if backbone_layers not in (3, 4):
            raise ConfigError(f"model.backbone_layers: 4 (the code: stride 32) or 3 (stop after layer3, stride 16; "
                              f"small inputs), got {backbone_layers}")
        ups = backbone_layers - 1  # x2 up-sampling stages back to stride 4
        channels = tuple(int(c) for c in (neck_channels or NECK_CHANNELS[neck][:ups]))
        if len(channels) != ups or min(channels) < 1:
            raise ConfigError(f"model.neck_channels: {ups} positive widths (one per x2 up-sampling from stride "
                              f"{2 ** (backbone_layers + 1)} to 4), got {list(channels)}")
        resnet = torchvision.models.get_model(backbone, weights=None)
        if pretrained_path:
            from benchmarks.models.vision import load_pretrained

            load_pretrained(resnet, pretrained_path, exclude=("fc.",))
        layers = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4][:backbone_layers]
        self.backbone = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, *layers)
        width = layers[-1][-1].conv2.out_channels * (4 if backbone in ("resnet50", "resnet101") else 1)
        self.neck = _neck(width, neck, channels)
        self.num_classes = int(num_classes)
        self.heads = nn.ModuleDict({
            "hm": _head(channels[-1], head_channels, num_classes, heatmap=True),
            "wh": _head(channels[-1], head_channels, 2, heatmap=False),
            "reg": _head(channels[-1], head_channels, 2, heatmap=False),
        })

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.neck(self.backbone(x))
        return {name: head(features) for name, head in self.heads.items()}


# --------------------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------------------
def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """Radius of the heat-map Gaussian for a box of ``height`` x ``width`` output pixels: the smallest of the
    three CornerNet cases (corners moved so that the box keeps IoU ``min_overlap`` with the truth), with
    the official code's arithmetic (which divides each root by 2 rather than 2a; kept for fidelity)."""
    h, w, m = float(height), float(width), float(min_overlap)
    b1, c1 = h + w, w * h * (1 - m) / (1 + m)
    r1 = (b1 + math.sqrt(max(0.0, b1 ** 2 - 4 * c1))) / 2
    b2, c2 = 2 * (h + w), (1 - m) * w * h
    r2 = (b2 + math.sqrt(max(0.0, b2 ** 2 - 16 * c2))) / 2
    a3, b3, c3 = 4 * m, -2 * m * (h + w), (m - 1) * w * h
    r3 = (b3 + math.sqrt(max(0.0, b3 ** 2 - 4 * a3 * c3))) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Max-splat a Gaussian (sigma = diameter / 6, peak 1 at (cx, cy)) of ``radius`` into ``heatmap`` (H, W)."""
    d = 2 * radius + 1
    sigma = d / 6.0
    g = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(g[None, :] ** 2 + g[:, None] ** 2) / (2 * sigma * sigma))
    kernel[kernel < np.finfo(np.float32).eps * kernel.max()] = 0
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return
    region = heatmap[cy - top:cy + bottom, cx - left:cx + right]
    patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
    np.maximum(region, patch, out=region)


def encode_targets(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, input_size: int,
                   down_ratio: int = DOWN_RATIO, max_objects: int = MAX_OBJECTS) -> dict[str, torch.Tensor]:
    """Training targets of one image from its boxes (XYXY, input pixels) and labels (0..K-1):
    ``hm`` (K, S, S) Gaussians, ``wh``/``reg`` (M, 2), ``ind`` (M,) flat centre index and ``mask`` (M,)."""
    out = input_size // down_ratio
    hm = np.zeros((num_classes, out, out), dtype=np.float32)
    wh = np.zeros((max_objects, 2), dtype=np.float32)
    reg = np.zeros((max_objects, 2), dtype=np.float32)
    ind = np.zeros(max_objects, dtype=np.int64)
    mask = np.zeros(max_objects, dtype=np.float32)
    b = (boxes.detach().float().cpu().numpy().reshape(-1, 4) / down_ratio).clip(0, out - 1)
    for k, (box, label) in enumerate(zip(b[:max_objects], labels.tolist()[:max_objects])):
        bw, bh = box[2] - box[0], box[3] - box[1]
        if bw <= 0 or bh <= 0:
            continue
        radius = max(0, int(gaussian_radius(math.ceil(bh), math.ceil(bw))))
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)
        ci = centre.astype(np.int64)
        draw_gaussian(hm[int(label)], int(ci[0]), int(ci[1]), radius)
        wh[k] = (bw, bh)
        reg[k] = centre - ci
        ind[k] = ci[1] * out + ci[0]
        mask[k] = 1.0
    return {"hm": torch.from_numpy(hm), "wh": torch.from_numpy(wh), "reg": torch.from_numpy(reg),
            "ind": torch.from_numpy(ind), "mask": torch.from_numpy(mask)}


# --------------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------------
def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Penalty-reduced pixel-wise focal loss (alpha 2, beta 4) summed and divided by the number of peaks
    (target == 1); only the negative part when there is none. Probabilities are clamped to [1e-4, 1 - 1e-4]
    as in the code."""
    pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = (torch.log(pred) * (1 - pred).pow(2) * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred.pow(2) * (1 - target).pow(4) * neg).sum()
    num_pos = pos.sum()
    return -(pos_loss + neg_loss) / num_pos.clamp(min=1.0)


def gather_at(maps: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) maps read at flat indices ``ind`` (B, M) -> (B, M, C)."""
    b, c = maps.shape[:2]
    flat = maps.reshape(b, c, -1)
    return flat.gather(2, ind.unsqueeze(1).expand(b, c, ind.shape[1])).transpose(1, 2)


def reg_l1_loss(maps: torch.Tensor, ind: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the maps at the object centres and the targets, summed over objects and both coordinates,
    divided by the number of objects x 2 (the code's RegL1Loss with its 1e-4 guard)."""
    pred = gather_at(maps.float(), ind)
    m = mask.unsqueeze(2).expand_as(pred)
    return F.l1_loss(pred * m, target * m, reduction="sum") / (m.sum() + 1e-4)


def centernet_loss(outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                   weights: Mapping[str, float] = LOSS_WEIGHTS) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its parts (detached) for batched targets of :func:`encode_targets`."""
    parts = {
        "hm": focal_loss(outputs["hm"], targets["hm"]),
        "wh": reg_l1_loss(outputs["wh"], targets["ind"], targets["mask"], targets["wh"]),
        "reg": reg_l1_loss(outputs["reg"], targets["ind"], targets["mask"], targets["reg"]),
    }
    total = sum(float(weights[k]) * v for k, v in parts.items())
    return total, {f"loss_{k}": v.detach() for k, v in parts.items()}


# --------------------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------------------
def peaks(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Keep only local maxima of ``heat`` (B, K, H, W): the code's max-pool "NMS"."""
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (hmax == heat).to(heat.dtype)


def decode(outputs: Mapping[str, torch.Tensor], k: int = 100,
           down_ratio: int = DOWN_RATIO) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` detections per image: boxes (B, k, 4) XYXY in input pixels, scores (B, k), labels (B, k)."""
    heat = peaks(torch.sigmoid(outputs["hm"].float()))
    b, c, h, w = heat.shape
    k = min(int(k), c * h * w)
    scores, flat = heat.reshape(b, -1).topk(k)
    labels = torch.div(flat, h * w, rounding_mode="floor")
    pix = flat % (h * w)
    ys = torch.div(pix, w, rounding_mode="floor").float()
    xs = (pix % w).float()
    reg = gather_at(outputs["reg"].float(), pix)
    wh = gather_at(outputs["wh"].float(), pix)
    cx, cy = xs + reg[..., 0], ys + reg[..., 1]
    boxes = torch.stack([cx - wh[..., 0] / 2, cy - wh[..., 1] / 2, cx + wh[..., 0] / 2, cy + wh[..., 1] / 2], dim=-1)
    return boxes * down_ratio, scores, labels


def build_centernet(cfg: Mapping[str, Any], num_classes: int) -> CenterNet:
    """CenterNet from a detection ``model`` section (``backbone``, ``neck``, ``neck_channels``,
    ``head_channels``, ``pretrained_path``)."""
    return CenterNet(num_classes, backbone=str(cfg["backbone"] or "resnet18"), neck=str(cfg["neck"] or "deconv"),
                     neck_channels=cfg.get("neck_channels"), head_channels=int(cfg.get("head_channels") or 64),
                     pretrained_path=cfg.get("pretrained_path"), backbone_layers=int(cfg.get("backbone_layers") or 4))


__all__ = [
    "BACKBONES",
    "CenterNet",
    "DOWN_RATIO",
    "LOSS_WEIGHTS",
    "NECKS",
    "build_centernet",
    "centernet_loss",
    "decode",
    "draw_gaussian",
    "encode_targets",
    "focal_loss",
    "gaussian_radius",
    "peaks",
    "reg_l1_loss",
]
