"""Detection task (paper Table 3): COCO reader, box transforms, CenterNet targets/loss/decoder, COCOeval,
SSD backbone weights, checks, configs, and one short training run per detector."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from benchmarks.config.errors import ConfigError
from benchmarks.data.coco import (
    CenterNetRandomCrop,
    CocoDetection,
    CocoFormatError,
    Letterbox,
    check_layout,
    coco_evaluate,
    detection_transforms,
    load_coco,
    open_split,
)
from benchmarks.models.centernet import (
    CenterNet,
    centernet_loss,
    decode,
    encode_targets,
    focal_loss,
    gaussian_radius,
)

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------------
# a miniature COCO folder: categories 1 and 5 (ids with a gap, as COCO's), a crowd box, an empty image
# ------------------------------------------------------------------------------------------------------
def _write_image(path: Path, h: int, w: int, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def make_coco(root: Path, split: str = "train2017") -> Path:
    images = [
        {"id": 7, "file_name": "a.jpg", "width": 40, "height": 30},  # one box + one crowd box
        {"id": 3, "file_name": "b.jpg", "width": 32, "height": 32},  # empty
        {"id": 9, "file_name": "c.jpg", "width": 32, "height": 24},  # two boxes, one of zero width
        {"id": 11, "file_name": "d.jpg", "width": 32, "height": 32},  # only a crowd box: empty for training
    ]
    anns = [
        {"id": 1, "image_id": 7, "category_id": 5, "bbox": [2, 3, 10, 8], "iscrowd": 0, "area": 80},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [20, 5, 15, 20], "iscrowd": 1, "area": 300},
        {"id": 3, "image_id": 9, "category_id": 1, "bbox": [0, 0, 16, 12], "iscrowd": 0},
        {"id": 4, "image_id": 9, "category_id": 5, "bbox": [5, 5, 0, 4], "iscrowd": 0},
        {"id": 5, "image_id": 11, "category_id": 5, "bbox": [1, 1, 10, 10], "iscrowd": 1},
    ]
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "one"}, {"id": 5, "name": "five"}]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    for k, image in enumerate(images):
        _write_image(root / split / image["file_name"], image["height"], image["width"], k)
    return root


def test_reader_crowd_and_empty_images(tmp_path):
    root = make_coco(tmp_path)
    index = open_split(root, "train2017")
    assert index.image_ids == [3, 7, 9, 11] and index.cat_ids == [1, 5] and index.num_classes == 2
    data = CocoDetection(index)
    by_id = {data.index.image_ids[i]: data[i] for i in range(len(data))}
    image, target = by_id[7]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and tuple(image.shape) == (3, 30, 40)
    # the crowd box is not a training target; xywh -> xyxy; category 5 -> label 1
    assert target["boxes"].tolist() == [[2.0, 3.0, 12.0, 11.0]] and target["labels"].tolist() == [1]
    assert target["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY and target["orig_size"] == (30, 40)
    assert by_id[3][1]["boxes"].shape == (0, 4) and by_id[3][1]["labels"].numel() == 0
    assert by_id[9][1]["labels"].tolist() == [0]  # the zero-width box is dropped
    assert by_id[11][1]["labels"].numel() == 0
    # skip_empty drops images without a non-crowd box (the torchvision reference's training filter)
    assert open_split(root, "train2017", skip_empty=True).image_ids == [7, 9]
    assert open_split(root, "train2017", max_images=2).image_ids == [3, 7]


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not valid json"),
    ("[]", "top level is a list"),
    ('{"images": [], "annotations": []}', "'categories'"),
    ('{"images": [{"id": 1}], "annotations": [], "categories": []}',
     "images[0] lacks ['file_name', 'width', 'height']"),
    ('{"images": [{"id": 1, "file_name": "x.jpg", "width": 4, "height": 4}], "categories": [{"id": 1}], '
     '"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2]}]}', "bbox is [0, 0, 2]"),
    ('{"images": [{"id": 1, "file_name": "x.jpg", "width": 4, "height": 4}], "categories": [{"id": 1}], '
     '"annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2]}]}', "image_id 2 is not in"),
])
def test_malformed_annotation_file_names_file_and_problem(tmp_path, text, needle):
    path = tmp_path / "instances_train2017.json"
    path.write_text(text)
    with pytest.raises(CocoFormatError) as info:
        load_coco(path)
    assert str(path) in str(info.value) and needle in str(info.value)
    assert isinstance(info.value, ConfigError)  # exit code 2, before anything runs


def test_layout_check_and_unreadable_image(tmp_path):
    with pytest.raises(ConfigError, match="data.root is not set"):
        check_layout(None, ["train2017"])
    with pytest.raises(ConfigError, match=r"instances_train2017\.json does not exist"):
        check_layout(tmp_path, ["train2017"])
    root = make_coco(tmp_path)
    check_layout(root, ["train2017"])
    (root / "train2017" / "a.jpg").write_bytes(b"not a jpeg")
    data = CocoDetection(open_split(root, "train2017"))
    with pytest.raises(OSError, match="a.jpg: cannot read image 7"):
        data[1]


# ------------------------------------------------------------------------------------------------------
# box transforms
# ------------------------------------------------------------------------------------------------------
def _sample(h: int, w: int, box: list[float]):
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    image[:, y1:y2, x1:x2] = 255  # the object is the only bright region
    target = {"boxes": tv_tensors.BoundingBoxes([box], format="XYXY", canvas_size=(h, w)),
              "labels": torch.tensor([0])}
    return tv_tensors.Image(image), target


def _bright_extent(image: torch.Tensor) -> list[float]:
    # half the brightest value: the colour jitter scales the object's brightness, not its extent
    ys, xs = torch.nonzero(image[0].float() > image[0].float().max() / 2, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def test_letterbox_maps_boxes_with_the_image():
    image, target = _sample(40, 80, [10, 10, 30, 20])
    out, t = Letterbox(64)(image, target)
    assert tuple(out.shape) == (3, 64, 64)
    # scale 0.8, the 32-pixel-high image centred (pad 16 at the top)
    assert t["boxes"].tolist() == [[8.0, 24.0, 24.0, 32.0]]
    assert _bright_extent(out) == pytest.approx(t["boxes"][0].tolist(), abs=1.0)


def test_random_crop_and_flip_move_boxes_with_the_image():
    torch.manual_seed(0)
    transform = detection_transforms("centernet", train=True, fixed_size=64)
    for _ in range(10):
        image, target = _sample(100, 120, [40, 30, 80, 70])
        out, t = transform(image, target)
        assert tuple(out.shape) == (3, 64, 64)
        if len(t["boxes"]) and (t["boxes"][0, 2:] - t["boxes"][0, :2]).min() > 4:
            box = t["boxes"][0].tolist()
            assert _bright_extent(out) == pytest.approx(box, abs=2.0)


def test_centernet_crop_keeps_the_code_scales():
    crop = CenterNetRandomCrop(64)
    assert crop.scales == (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)


@pytest.mark.parametrize("recipe", ["ssd", "ssdlite", "none"])
def test_ssd_recipes_keep_boxes_inside_the_image(recipe):
    torch.manual_seed(1)
    transform = detection_transforms(recipe, train=True)
    for _ in range(5):
        image, target = _sample(60, 80, [10, 10, 50, 40])
        out, t = transform(image, target)
        h, w = out.shape[-2:]
        boxes = t["boxes"]
        assert len(boxes) == len(t["labels"])
        if len(boxes):
            assert boxes[:, 0::2].min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h


# ------------------------------------------------------------------------------------------------------
# CenterNet: targets, loss, decoder
# ------------------------------------------------------------------------------------------------------
def test_gaussian_radius_matches_the_code_formula():
    # the official gaussian_radius for a 10 x 20 box at min_overlap 0.7, evaluated by hand
    h, w, m = 10.0, 20.0, 0.7
    r1 = (h + w + math.sqrt((h + w) ** 2 - 4 * w * h * (1 - m) / (1 + m))) / 2
    r2 = (2 * (h + w) + math.sqrt(4 * (h + w) ** 2 - 16 * (1 - m) * w * h)) / 2
    r3 = (-2 * m * (h + w) + math.sqrt(4 * m * m * (h + w) ** 2 - 16 * m * (m - 1) * w * h)) / 2
    assert gaussian_radius(h, w) == pytest.approx(min(r1, r2, r3))


def test_encode_targets_peak_size_offset_and_index():
    boxes = torch.tensor([[8.0, 12.0, 24.0, 20.0]])  # input pixels; stride 4 -> centre (4, 4), size (4, 2)
    t = encode_targets(boxes, torch.tensor([1]), num_classes=3, input_size=32)
    assert t["hm"].shape == (3, 8, 8) and t["hm"][1, 4, 4] == 1.0 and t["hm"][1].max() == 1.0
    assert t["hm"][0].sum() == 0 and t["hm"][2].sum() == 0
    assert t["wh"][0].tolist() == [4.0, 2.0] and t["reg"][0].tolist() == [0.0, 0.0]
    assert int(t["ind"][0]) == 4 * 8 + 4 and t["mask"].tolist()[:2] == [1.0, 0.0]
    off = encode_targets(torch.tensor([[9.0, 13.0, 23.0, 19.0]]), torch.tensor([0]), 3, 32)
    assert off["reg"][0].tolist() == pytest.approx([0.0, 0.0]) and off["wh"][0].tolist() == pytest.approx([3.5, 1.5])


def test_focal_loss_is_small_for_the_truth_and_large_otherwise():
    gt = torch.zeros(1, 1, 8, 8)
    gt[0, 0, 3, 3] = 1.0
    good = torch.full_like(gt, -12.0)
    good[0, 0, 3, 3] = 12.0
    assert float(focal_loss(good, gt)) < 1e-3
    assert float(focal_loss(torch.zeros_like(gt), gt)) > 1.0
    assert float(focal_loss(-good, gt)) > float(focal_loss(torch.zeros_like(gt), gt))


def _outputs(h: int = 8, w: int = 8, classes: int = 2) -> dict[str, torch.Tensor]:
    return {"hm": torch.full((1, classes, h, w), -10.0), "wh": torch.zeros(1, 2, h, w), "reg": torch.zeros(1, 2, h, w)}


def test_decoder_on_hand_made_heatmap():
    out = _outputs()
    out["hm"][0, 1, 2, 3] = 4.0  # class 1 peak at x=3, y=2
    out["hm"][0, 1, 2, 4] = 3.0  # its neighbour: not a local maximum, suppressed by the 3x3 max-pool
    out["hm"][0, 0, 6, 6] = 2.0  # a second, weaker peak of class 0 at x=6, y=6
    out["wh"][0, :, 2, 3] = torch.tensor([2.0, 4.0])
    out["reg"][0, :, 2, 3] = torch.tensor([0.5, 0.25])
    out["wh"][0, :, 6, 6] = torch.tensor([1.0, 1.0])
    boxes, scores, labels = decode(out, k=3)
    assert labels[0, :2].tolist() == [1, 0]
    assert scores[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item())
    assert scores[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    # centre (3.5, 2.25), size (2, 4) in output pixels, x4 to input pixels
    assert boxes[0, 0].tolist() == pytest.approx([(3.5 - 1) * 4, (2.25 - 2) * 4, (3.5 + 1) * 4, (2.25 + 2) * 4])
    assert boxes[0, 1].tolist() == pytest.approx([5.5 * 4, 5.5 * 4, 6.5 * 4, 6.5 * 4])
    assert scores[0, 2] < 1e-3  # the suppressed neighbour is not among the detections


def test_centernet_network_shapes_and_loss_backward():
    model = CenterNet(3, neck_channels=(16, 16, 16), head_channels=8)
    out = model(torch.randn(2, 3, 64, 64))
    assert out["hm"].shape == (2, 3, 16, 16) and out["wh"].shape == (2, 2, 16, 16)
    assert out["hm"].mean().item() == pytest.approx(-2.19, abs=0.05)  # the code's prior on the heat-map
    encoded = [encode_targets(torch.tensor([[8.0, 8.0, 30.0, 40.0]]), torch.tensor([2]), 3, 64) for _ in range(2)]
    targets = {k: torch.stack([e[k] for e in encoded]) for k in encoded[0]}
    loss, parts = centernet_loss(out, targets)
    loss.backward()
    assert torch.isfinite(loss) and set(parts) == {"loss_hm", "loss_wh", "loss_reg"}


def test_centernet_dcn_neck_runs():
    model = CenterNet(2, neck="dcn", neck_channels=(8, 8, 8), head_channels=4)
    assert model(torch.randn(1, 3, 64, 64))["reg"].shape == (1, 2, 16, 16)


def test_centernet_pretrained_backbone_from_a_local_file(tmp_path):
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    model = CenterNet(2, neck_channels=(8, 8, 8), head_channels=4, pretrained_path=str(path))
    assert torch.equal(model.backbone[0].weight, resnet.conv1.weight)
    with pytest.raises(ConfigError, match="does not exist"):
        CenterNet(2, pretrained_path=str(tmp_path / "missing.pth"))


# ------------------------------------------------------------------------------------------------------
# COCOeval against hand-checked cases
# ------------------------------------------------------------------------------------------------------
def _eval_set(tmp_path: Path, with_crowd: bool = False):
    images = [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 100}]
    anns = [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0}]
    if with_crowd:
        anns.append({"id": 2, "image_id": 1, "category_id": 3, "bbox": [60, 60, 30, 30], "area": 900, "iscrowd": 1})
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 3, "name": "c"}]}))
    return load_coco(path)


def test_coco_eval_perfect_prediction_is_ap_100(tmp_path):
    coco = _eval_set(tmp_path)
    metrics = coco_evaluate(coco, [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "score": 0.9}], [1])
    assert metrics["ap"] == pytest.approx(100.0) and metrics["ap50"] == pytest.approx(100.0)
    assert metrics["ap75"] == pytest.approx(100.0) and metrics["ap_medium"] == pytest.approx(100.0)
    assert math.isnan(metrics["ap_small"]) and math.isnan(metrics["ap_large"])  # no object of those sizes
    assert coco_evaluate(coco, [], [1])["ap"] == 0.0


def test_coco_eval_shifted_box_counts_only_thresholds_below_its_iou(tmp_path):
    coco = _eval_set(tmp_path)
    # shifted right by 8: IoU = 32*40 / (48*40) = 2/3, a hit at IoU 0.50, 0.55, 0.60, 0.65 of 0.50:0.95
    shifted = [{"image_id": 1, "category_id": 3, "bbox": [18, 10, 40, 40], "score": 0.9}]
    metrics = coco_evaluate(coco, shifted, [1])
    assert metrics["ap"] == pytest.approx(40.0) and metrics["ap50"] == pytest.approx(100.0)
    assert metrics["ap75"] == pytest.approx(0.0)


def test_coco_eval_crowd_region_is_ignored_and_a_false_positive_costs(tmp_path):
    coco = _eval_set(tmp_path, with_crowd=True)
    hit = {"image_id": 1, "category_id": 3, "bbox": [10, 10, 40, 40], "score": 0.5}
    on_crowd = {"image_id": 1, "category_id": 3, "bbox": [62, 62, 25, 25], "score": 0.9}
    assert coco_evaluate(coco, [hit, on_crowd], [1])["ap"] == pytest.approx(100.0)
    elsewhere = {"image_id": 1, "category_id": 3, "bbox": [0, 60, 20, 20], "score": 0.9}
    assert coco_evaluate(coco, [hit, elsewhere], [1])["ap"] < 60.0


# ------------------------------------------------------------------------------------------------------
# SSD builder
# ------------------------------------------------------------------------------------------------------
@pytest.mark.slow  # building torchvision's ssd300_vgg16 (a full VGG-16 inside) takes ~10-40 s on 2 cores
def test_ssd_vgg_backbone_weights_from_a_local_file(tmp_path):
    import torchvision

    from benchmarks.models.ssd import build_ssd

    vgg = torch.nn.Module()
    vgg.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    path = tmp_path / "vgg16_features.pth"
    torch.save(vgg.state_dict(), path)
    model = build_ssd({"name": "ssd300_vgg16", "pretrained_path": str(path)}, num_classes=3, image_size=300)
    assert torch.equal(model.backbone.features[0].weight, vgg.features[0].weight)
    assert torch.equal(model.backbone.extra[0][1].weight, vgg.features[24].weight)  # conv5_1 lives in extra
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["backbone.features.0.weight", "backbone.features.0.bias", "backbone.features.2.weight",
                      "backbone.features.2.bias"]  # torchvision's default: the first VGG block frozen
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="does not fit"):
        build_ssd({"name": "ssd300_vgg16", "pretrained_path": str(tmp_path / "bad.pth")}, num_classes=3)


# ------------------------------------------------------------------------------------------------------
# the task: checks, configs, training
# ------------------------------------------------------------------------------------------------------
def _resolve(**sections):
    from benchmarks.config.validate import resolve_config

    raw = {"task": "detection", "optimizer": {"name": "adam", "lr": 1e-3}, **sections}
    return resolve_config(raw)


def test_check_config_and_check_data(tmp_path):
    from benchmarks.tasks.detection import Detection

    with pytest.raises(ConfigError, match="model.name"):
        Detection.check_config(_resolve(model={"name": "yolo"}))
    with pytest.raises(ConfigError, match="multiple of 32"):
        Detection.check_config(_resolve(data={"image_size": 100}))
    with pytest.raises(ConfigError, match="from scratch only"):
        Detection.check_config(_resolve(model={"name": "ssdlite320_mobilenet_v3_large", "pretrained_path": "w.pth"}))
    with pytest.raises(ConfigError, match="data.augment"):
        Detection.check_config(_resolve(model={"name": "ssd300_vgg16"}, data={"augment": "centernet"}))
    config = _resolve(data={"root": str(tmp_path)})
    Detection.check_config(config)
    with pytest.raises(ConfigError, match="instances_train2017.json does not exist"):
        Detection.check_data(config)
    make_coco(tmp_path, "train2017")
    make_coco(tmp_path, "val2017")
    Detection.check_data(config)
    with pytest.raises(ConfigError, match="model.pretrained_path"):
        Detection.check_data(_resolve(data={"root": str(tmp_path)}, model={"pretrained_path": str(tmp_path / "x")}))


def test_table3_configs_cover_every_paper_cell_and_validate(tmp_path):
    import pandas as pd

    from benchmarks.config.grid import expand
    from benchmarks.config.loader import load_config
    from benchmarks.config.validate import resolve_config
    from benchmarks.tasks.detection import Detection

    make_coco(tmp_path, "train2017")
    make_coco(tmp_path, "val2017")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    paper = pd.read_csv(REPO / "results" / "paper" / "t03_coco_detection.csv")
    cells, recipes = set(), {}
    for path in sorted((REPO / "configs" / "paper").glob("table3_*.yaml")):
        for run, _ in expand(load_config(path)):
            tags = run["tags"]
            assert run["task"] == "detection" and tags["table"] == "t03"
            assert {"adam": "Adam", "adamp": "AdamP"}[run["optimizer"]["name"]] == tags["optimizer"]
            resolved = resolve_config({k: v for k, v in run.items() if k != "tags"})
            assert bool(resolved["model"]["pretrained_path"]) == (tags["initialization"] == "ImageNet-pretrained")
            resolved["data"]["root"] = str(tmp_path)
            if resolved["model"]["pretrained_path"]:
                resolved["model"]["pretrained_path"] = str(weights)
            Detection.check_config(resolved)
            Detection.check_data(resolved)
            cells.add((tags["model"], tags["initialization"], tags["optimizer"]))
            key = (tags["model"], tags["initialization"])
            recipes.setdefault(key, []).append({k: v for k, v in resolved.items() if k != "optimizer"})
    assert all(len(r) == 2 and r[0] == r[1] for r in recipes.values())
    assert cells == set(zip(paper["model"], paper["initialization"], paper["optimizer"])) and len(cells) == 8


def test_table3_dry_run_from_the_cli(tmp_path, capsys, monkeypatch):
    from benchmarks.cli import main

    # the pretrained cells name weights/<file> relative to the working folder; the dry-run checks they exist
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    for name in ("resnet18-f37072fd.pth", "vgg16_features-amdegroot-88682ab5.pth"):
        (tmp_path / "weights" / name).write_bytes(b"stand-in")
    make_coco(tmp_path / "coco", "train2017")
    make_coco(tmp_path / "coco", "val2017")
    configs = sorted(str(p) for p in (REPO / "configs" / "paper").glob("table3_*.yaml"))
    args = ["run", *configs, "--dry-run", "--set", f"data.root={tmp_path / 'coco'}", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    assert "8 runs" in capsys.readouterr().out


@pytest.fixture(scope="module")
def digit_root(tmp_path_factory):
    from benchmarks.data.digit_detection import generate

    return generate(tmp_path_factory.mktemp("digits") / "set", train=12, val=6, size=64, scale_range=(14, 30))


def test_digit_detection_set_is_coco_and_deterministic(digit_root, tmp_path):
    from benchmarks.data.digit_detection import generate

    index = open_split(digit_root, "train")
    assert index.num_classes == 10 and len(index.image_ids) == 12
    again = generate(tmp_path / "again", train=12, val=6, size=64, scale_range=(14, 30))
    assert (again / "annotations" / "instances_val.json").read_text() == \
        (digit_root / "annotations" / "instances_val.json").read_text()
    with pytest.raises(FileExistsError):
        generate(digit_root)


def test_untrained_categories_names_classes_validated_but_never_trained(tmp_path):
    from benchmarks.data.coco import untrained_categories

    root = make_coco(tmp_path)
    val = open_split(root, "train2017")
    assert untrained_categories(open_split(root, "train2017"), val) == []
    # image 3 is empty; image 7 adds category 5 and a crowd box of category 1 (crowd boxes teach nothing)
    assert untrained_categories(open_split(root, "train2017", max_images=1), val) == [1, 5]
    assert untrained_categories(open_split(root, "train2017", max_images=2), val) == [1]


def test_digit_detection_validates_on_every_digit_seen_in_training(tmp_path):
    # the wheel's 5,000 digits are sorted by class: a head/tail split validated on 8s and 9s only
    import json

    from benchmarks.data.digit_detection import cached_set

    root = cached_set(tmp_path, train=60, val=40, size=64, scale_range=(14, 30))
    classes = {}
    for split in ("train", "val"):
        doc = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
        classes[split] = {a["category_id"] for a in doc["annotations"]}
    assert classes["val"] <= classes["train"]
    assert len(classes["val"]) >= 8, classes


def test_digit_detection_cache_key_names_the_format_version(tmp_path, monkeypatch):
    from benchmarks.data import digit_detection

    first = digit_detection.cached_set(tmp_path, train=2, val=2, size=32, scale_range=(8, 16))
    monkeypatch.setattr(digit_detection, "FORMAT_VERSION", digit_detection.FORMAT_VERSION + 1)
    assert digit_detection.cached_set(tmp_path, train=2, val=2, size=32, scale_range=(8, 16)) != first


@pytest.mark.parametrize("model", [
    {"name": "centernet", "neck_channels": [16, 16, 16], "head_channels": 8},
    {"name": "ssdlite320_mobilenet_v3_large"},
])
def test_short_training_run_per_detector(digit_root, tmp_path, model):
    from benchmarks.training.loop import train

    config = _resolve(
        data={"name": "digit_detection", "root": str(digit_root), "image_size": 64},
        model=model,
        optimizer={"name": "adamp", "lr": 1e-3},
        train={"epochs": 1, "max_steps": 2, "batch_size": 4, "eval_batch_size": 3, "device": "cpu",
               "num_threads": 1},
    )
    result = train(config, tmp_path / "run")
    assert result["status"] == "done" and result["steps"] == 2, result
    assert set(result["metrics"]) >= {"ap", "ap50", "ap75", "ap_small", "train_loss"}
    assert 0.0 <= result["metrics"]["ap"] <= 100.0


def test_centernet_learns_one_batch(digit_root):
    """The loss falls when CenterNet fits one batch (a broken target or loss does not)."""
    from benchmarks.tasks.base import RunContext
    from benchmarks.tasks.detection import Detection

    config = _resolve(data={"name": "digit_detection", "root": str(digit_root), "image_size": 64, "augment": "none"},
                      model={"neck_channels": [32, 32, 32], "head_channels": 16},
                      train={"batch_size": 4, "device": "cpu"})
    torch.manual_seed(0)
    task = Detection(config, RunContext(run_dir=Path("."), device=torch.device("cpu"), seed=0))
    batch = next(iter(task.train_batches(0)))
    model = task.build_model().train()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    losses = []
    for _ in range(25):
        loss, _ = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_t03_table_layout_cells_and_cheap_tier_not_comparable():
    import pandas as pd

    from benchmarks.analysis import compare, tables

    rows = []
    for model, init, opt, value in (("CenterNet", "scratch", "adam", 26.6), ("CenterNet", "scratch", "adamp", 27.0),
                                    ("SSD", "ImageNet-pretrained", "adam", 28.4)):
        for seed in range(2):
            rows.append({"run_id": f"{model}-{init}-{opt}-{seed}", "status": "done", "task": "detection",
                         "data.name": "coco", "model.name": "centernet" if model == "CenterNet" else "ssd300_vgg16",
                         "model.pretrained_path": "/w/x.pth" if init != "scratch" else None,
                         "tags.table": "t03", "tags.model": model, "tags.initialization": init,
                         "optimizer.name": opt, "train.seed": seed, "metrics.ap": value + 0.05 * seed})
    # an untagged cheap-tier run: placed by its config (CenterNet, scratch, Adam), but on another data set
    rows.append({"run_id": "digits", "status": "done", "task": "detection", "data.name": "digit_detection",
                 "model.name": "centernet", "model.pretrained_path": None, "optimizer.name": "adam",
                 "train.seed": 5, "metrics.ap": 3.0})
    frame = pd.DataFrame(rows)
    t = tables.paper_table(frame, "t03")
    assert list(t.layout.columns) == ["model", "initialization", "Adam", "AdamP"]
    assert len(t.cells) == 8 and int(t.cells["n"].sum()) == 6  # the digits run is not counted

    def one(model: str, init: str, opt: str) -> pd.Series:
        c = t.cells
        return c[(c["model"] == model) & (c["initialization"] == init) & (c["column"] == opt)].iloc[0]

    adamp = one("CenterNet", "scratch", "AdamP")
    assert adamp["paper"] == pytest.approx(27.11) and adamp["verdict"] == "reproduced"
    assert adamp["delta_baseline"] == pytest.approx(0.4)
    assert one("CenterNet", "scratch", "Adam")["note"] == "1 shortened/other-data run(s) not used"
    assert one("SSD", "scratch", "Adam")["verdict"] == "missing"
    assert compare.PRIMARY_METRICS["detection"] == ("ap", "max")
    only_digits = tables.paper_table(frame[frame["run_id"] == "digits"], "t03")
    cheap = only_digits.cells[only_digits.cells["n"] > 0].iloc[0]
    assert cheap["verdict"] == "not comparable" and "digit_detection" in cheap["note"]


def test_centernet_stride16_backbone_option():
    model = CenterNet(2, neck_channels=(8, 8), head_channels=4, backbone_layers=3)
    assert len(model.backbone) == 7 and model(torch.randn(1, 3, 64, 64))["hm"].shape == (1, 2, 16, 16)
    with pytest.raises(ConfigError, match="2 positive widths"):
        CenterNet(2, neck_channels=(8, 8, 8), backbone_layers=3)
