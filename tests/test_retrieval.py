"""Retrieval task (paper Table 6): readers of the four official layouts, sampler, Recall@K, model, task."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.config.errors import ConfigError
from benchmarks.data.retrieval import (
    AnnotationError,
    check_retrieval_layout,
    ClassBalancedBatchSampler,
    ImageListDataset,
    RandomBatchSampler,
    image_transforms,
    load_retrieval_data,
    read_cars,
    read_cub,
    read_digits_retrieval,
    read_inshop,
    read_sop,
)
from benchmarks.metrics.retrieval import first_positive_rank, nmi, recall_at_k
from benchmarks.models.embedding import EmbeddingNet
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.retrieval import Retrieval

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


def _image(path: Path, seed: int, size: int = 32) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


# ------------------------------------------------------------------------------------------------------
# the four official layouts, in miniature
# ------------------------------------------------------------------------------------------------------
def make_cub(root: Path, classes=(1, 2, 3, 101, 102, 103), per_class: int = 3) -> Path:
    base = root / "CUB_200_2011"
    images, labels = [], []
    image_id = 0
    for c in classes:
        for j in range(per_class):
            image_id += 1
            rel = f"{c:03d}.Bird_{c}/Bird_{c}_{j}.jpg"
            _image(base / "images" / rel, image_id)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    return base


def make_cars(root: Path, classes=(1, 2, 97, 98, 99, 196), per_class: int = 2) -> list[tuple[str, int]]:
    import scipy.io

    rows = []
    for c in classes:
        for j in range(per_class):
            rel = f"car_ims/{len(rows) + 1:06d}.jpg"
            _image(root / rel, 1000 + len(rows))
            rows.append((rel, c))
    # the official struct array: one record per image with these fields, in this order
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annos = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (rel, c) in enumerate(rows):
        annos[0, i] = (rel, np.uint8(1), np.uint8(2), np.uint16(30), np.uint16(31), np.uint8(c), np.uint8(i % 2))
    class_names = np.array([f"Car {i}" for i in range(1, 197)], dtype=object)[None, :]
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": annos, "class_names": class_names})
    return rows


def make_sop(root: Path) -> Path:
    base = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path"
    for name, classes in (("Ebay_train.txt", (1, 2, 5)), ("Ebay_test.txt", (11319, 11320, 11325))):
        lines, image_id = [header], 0
        for c in classes:
            for j in range(2 + c % 3):
                image_id += 1
                rel = f"bicycle_final/{c}_{j}.JPG"
                _image(base / rel, c * 10 + j)
                lines.append(f"{image_id} {c} 1 {rel}")
        (base / name).write_text("\n".join(lines) + "\n")
    return base


def make_inshop(root: Path) -> Path:
    rows = []
    for item, status_list in ((1, ["train", "train", "train"]), (2, ["train", "train"]),
                              (7, ["query", "gallery", "gallery"]), (9, ["query", "query", "gallery"])):
        for j, status in enumerate(status_list):
            name = f"img/WOMEN/Dresses/id_{item:08d}/{j:02d}_1_front.jpg"
            _image(root / "Img" / name, item * 10 + j)
            rows.append(f"{name} id_{item:08d} {status}")
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "\n".join(rows) + "\n"
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Eval" / "list_eval_partition.txt").write_text(text)
    return root / "Eval" / "list_eval_partition.txt"


# ------------------------------------------------------------------------------------------------------
# readers
# ------------------------------------------------------------------------------------------------------
def test_cub_reader_splits_by_class(tmp_path):
    base = make_cub(tmp_path)
    for root in (tmp_path, base):  # the archive's parent folder or the archive folder itself
        data = read_cub(root)
        assert data.gallery is None
        assert len(data.train) == 9 and len(data.query) == 9
        assert sorted(set(data.train.labels.tolist())) == [0, 1, 2]  # contiguous for proxies
        assert sorted(set(data.query.labels.tolist())) == [101, 102, 103]
        assert all(Path(p).is_file() for p in data.train.paths + data.query.paths)
        assert "/101.Bird_101/" in data.query.paths[0]


def test_cars_reader_mat_and_text(tmp_path):
    rows = make_cars(tmp_path)
    data = read_cars(tmp_path)
    assert len(data.train) == 8 and len(data.query) == 4  # classes 1, 2, 97, 98 train; 99, 196 test
    assert sorted(set(data.query.labels.tolist())) == [99, 196]
    assert data.train.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data.train.paths[0] == str(tmp_path / "car_ims/000001.jpg")
    # the documented text alternative gives the same split
    (tmp_path / "annos.csv").write_text("relative_im_path,class\n" + "".join(f"{r},{c}\n" for r, c in rows))
    text = load_retrieval_data({"name": "cars196", "root": str(tmp_path), "annotation": "annos.csv"})
    assert text.train.paths == data.train.paths and text.query.labels.tolist() == data.query.labels.tolist()


def test_sop_reader(tmp_path):
    make_sop(tmp_path)
    data = read_sop(tmp_path)
    assert data.gallery is None
    assert sorted(Counter(data.train.labels.tolist()).items()) == [(0, 3), (1, 4), (2, 4)]
    assert sorted(Counter(data.query.labels.tolist()).items()) == [(11319, 2), (11320, 3), (11325, 2)]
    assert Path(data.train.paths[0]).is_file()


def test_inshop_reader_query_gallery(tmp_path):
    make_inshop(tmp_path)
    data = read_inshop(tmp_path)
    assert len(data.train) == 5 and data.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.query.labels.tolist() == [7, 9, 9] and data.gallery.labels.tolist() == [7, 7, 9]
    assert data.gallery.paths[0] == str(tmp_path / "Img" / "img/WOMEN/Dresses/id_00000007/01_1_front.jpg")


def test_one_root_holding_all_four_archives(tmp_path):
    # `make reproduce-retrieval DATA=<dir>` passes the same data.root to every table6 config
    make_cub(tmp_path)
    (tmp_path / "cars196").mkdir()
    make_cars(tmp_path / "cars196")
    make_sop(tmp_path)
    make_inshop(tmp_path / "InShop")
    sizes = {}
    for name in ("cub200", "cars196", "sop", "inshop"):
        data = load_retrieval_data({"name": name, "root": str(tmp_path), "annotation": None})
        assert all(Path(p).is_file() for p in data.train.paths + data.query.paths)
        sizes[name] = (len(data.train), len(data.query), None if data.gallery is None else len(data.gallery))
    assert sizes == {"cub200": (9, 9, None), "cars196": (8, 4, None), "sop": (11, 7, None), "inshop": (5, 3, 3)}


def test_digits_retrieval_is_class_disjoint():
    data = read_digits_retrieval()
    assert set(data.train.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(data.query.labels.tolist()) == {5, 6, 7, 8, 9}
    assert len(data.train) + len(data.query) == 1797
    assert data.train.images.shape[1:] == (3, 8, 8)


@pytest.mark.parametrize("size", [28, 14])
def test_mnist5k_retrieval_is_class_disjoint(size):
    data = load_retrieval_data({"name": "mnist5k_retrieval", "image_size": size})
    assert set(data.train.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(data.query.labels.tolist()) == {5, 6, 7, 8, 9}
    assert len(data.train) + len(data.query) == 5000 and data.gallery is None
    assert data.train.images.shape[1:] == (3, size, size)
    # standardised with the training split's statistics
    assert abs(float(data.train.images.mean())) < 1e-4 and abs(float(data.train.images.std()) - 1) < 1e-3
    check_retrieval_layout({"name": "mnist5k_retrieval", "root": None})  # in memory: no root needed


def test_mnist5k_retrieval_image_size_is_checked():
    config = {"data": {**Retrieval.defaults["data"], "name": "mnist5k_retrieval", "image_size": 32},
              "model": dict(Retrieval.defaults["model"], backbone="tiny_cnn"), "train": dict(Retrieval.defaults["train"])}
    with pytest.raises(ConfigError, match="data.image_size"):
        Retrieval.check_config(config)


@pytest.mark.parametrize("case", ["cub_fields", "cub_int", "cub_class", "sop_header", "sop_int",
                                  "inshop_count", "inshop_status", "inshop_header", "cars_text"])
def test_malformed_annotation_names_file_and_line(tmp_path, case):
    if case.startswith("cub"):
        base = make_cub(tmp_path)
        path = base / ("images.txt" if case == "cub_fields" else "image_class_labels.txt")
        lines = path.read_text().splitlines()
        lines[1] = {"cub_fields": "2 a.jpg extra", "cub_int": "2 two", "cub_class": "2 201"}[case]
        path.write_text("\n".join(lines) + "\n")
        reader, expect = read_cub, {"cub_fields": "expected 2", "cub_int": "class_id", "cub_class": "1..200"}[case]
        line = 2
    elif case.startswith("sop"):
        base = make_sop(tmp_path)
        path = base / "Ebay_train.txt"
        lines = path.read_text().splitlines()
        if case == "sop_header":
            lines[0], line, expect = "id class path", 1, "image_id class_id super_class_id path"
        else:
            lines[3], line, expect = "3 x 1 bicycle_final/1_2.JPG", 4, "class_id"
        path.write_text("\n".join(lines) + "\n")
        reader = read_sop
    elif case.startswith("inshop"):
        path = make_inshop(tmp_path)
        lines = path.read_text().splitlines()
        if case == "inshop_count":
            lines[0], line, expect = "99", 1, "announces 99 images"
        elif case == "inshop_header":
            lines[1], line, expect = "image item status", 2, "image_name item_id evaluation_status"
        else:
            lines[4] = lines[4].replace(" train", " val")
            line, expect = 5, "train, query or gallery"
        path.write_text("\n".join(lines) + "\n")
        reader = read_inshop
    else:
        path = tmp_path / "annos.txt"
        path.write_text("car_ims/000001.jpg 1\ncar_ims/000002.jpg\n")
        reader, line, expect = (lambda root: read_cars(root, "annos.txt")), 2, "relative_im_path class"
    with pytest.raises(AnnotationError) as info:
        reader(tmp_path)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and expect in message, message


def test_cars_mat_errors_name_file_and_record(tmp_path):
    import scipy.io

    annos = np.zeros((1, 2), dtype=[("relative_im_path", "O"), ("class", "O")])
    annos[0, 0] = ("car_ims/000001.jpg", np.uint8(1))
    annos[0, 1] = ("car_ims/000002.jpg", np.uint8(250))
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"annotations": annos})
    with pytest.raises(AnnotationError, match=r"cars_annos\.mat, annotations record 2: .*1\.\.196"):
        read_cars(tmp_path)
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"annotations": np.zeros((1, 2), dtype=[("path", "O")])})
    with pytest.raises(AnnotationError, match="no field `relative_im_path`"):
        read_cars(tmp_path)
    (tmp_path / "cars_annos.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(AnnotationError, match=r"cars_annos\.mat: cannot read"):
        read_cars(tmp_path)


def test_missing_files_and_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"images\.txt"):
        read_cub(tmp_path)
    make_sop(tmp_path)
    (tmp_path / "Stanford_Online_Products" / "Ebay_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"Ebay_test\.txt"):
        read_sop(tmp_path)
    with pytest.raises(ConfigError, match="data.root"):
        load_retrieval_data({"name": "cub200", "root": None})
    with pytest.raises(ConfigError, match="data.name"):
        load_retrieval_data({"name": "cub", "root": str(tmp_path)})
    # the images folder is not where the layout says: fail at read time with the annotation file named
    base = make_cub(tmp_path / "c")
    import shutil

    shutil.rmtree(base / "images")
    with pytest.raises(FileNotFoundError, match=r"images\.txt: the first listed image"):
        read_cub(base)


def test_image_dataset_loads_and_transforms(tmp_path):
    make_cub(tmp_path)
    data = read_cub(tmp_path)
    ds = ImageListDataset(data.query, image_transforms(24, 28, train=False))
    x, y = ds[0]
    assert x.shape == (3, 24, 24) and y == 101
    Path(data.query.paths[1]).write_bytes(b"broken")
    with pytest.raises(OSError, match=str(data.query.paths[1])):
        ds[1]


# ------------------------------------------------------------------------------------------------------
# samplers
# ------------------------------------------------------------------------------------------------------
def test_class_balanced_sampler():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), rng.integers(3, 9, size=10))
    sampler = ClassBalancedBatchSampler(labels, batch_size=12, samples_per_class=3, seed=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(labels) // 12
    class_visits = Counter()
    for batch in batches:
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}  # 4 distinct classes x 3 images
        assert len(set(batch)) == 12  # every class here has >= 3 images: no repeats inside a batch
        class_visits.update(counts.keys())
    assert max(class_visits.values()) - min(class_visits.values()) <= 1  # classes visited in rounds
    assert batches == list(sampler)  # deterministic: iterating again gives the same batches
    assert batches == list(ClassBalancedBatchSampler(labels, 12, 3, seed=5))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert list(ClassBalancedBatchSampler(labels, 12, 3, seed=6)) != batches
    # within a class, every image is drawn once before any is drawn again
    long = ClassBalancedBatchSampler(labels, 12, 3, seed=1, num_batches=60)
    for c in range(10):
        drawn = [i for b in long for i in b if labels[i] == c]
        n = int((labels == c).sum())
        for start in range(0, len(drawn) - n + 1, n):
            assert sorted(drawn[start:start + n]) == sorted(np.flatnonzero(labels == c).tolist())


def test_sampler_rejects_impossible_batches():
    labels = np.repeat(np.arange(3), 5)
    with pytest.raises(ConfigError, match="multiple of train.samples_per_class"):
        ClassBalancedBatchSampler(labels, batch_size=10, samples_per_class=4)
    with pytest.raises(ConfigError, match="only 3 classes"):
        ClassBalancedBatchSampler(labels, batch_size=8, samples_per_class=2)


def test_random_batch_sampler_is_a_deterministic_permutation():
    sampler = RandomBatchSampler(23, 5, seed=3, epoch=2)
    batches = list(sampler)
    assert len(batches) == 4 and all(len(b) == 5 for b in batches)
    assert len({i for b in batches for i in b}) == 20
    assert batches == list(RandomBatchSampler(23, 5, seed=3, epoch=2)) != list(RandomBatchSampler(23, 5, 3, 3))


# ------------------------------------------------------------------------------------------------------
# Recall@K
# ------------------------------------------------------------------------------------------------------
def brute_force_recall(q, ql, g=None, gl=None, ks=(1, 2, 4, 8)):
    """Full similarity matrix, explicit stable ranking (similarity desc, then gallery index asc)."""
    same = g is None
    g, gl = (q, ql) if same else (g, gl)
    sim = q @ g.T
    hits = {k: 0 for k in ks}
    for i in range(len(q)):
        index = np.arange(len(g))
        keep = index != i if same else np.ones(len(g), bool)
        order = np.lexsort((index[keep], -sim[i][keep]))  # last key is the primary key
        ranked = gl[keep][order]
        for k in ks:
            hits[k] += bool((ranked[:k] == ql[i]).any())
    return {k: hits[k] / len(q) for k in ks}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recall_chunked_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(57, 6))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    ql = rng.integers(0, 6, size=57)
    expected = brute_force_recall(q, ql)
    assert 0 < expected[1] < expected[8] < 1  # a non-trivial case
    for chunk in (1, 7, 57, 1000):
        got = recall_at_k(torch.from_numpy(q), torch.from_numpy(ql), ks=(1, 2, 4, 8), chunk_size=chunk)
        assert got == pytest.approx(expected, abs=0)
    g = rng.normal(size=(40, 6))
    gl = rng.integers(0, 6, size=40)
    expected = brute_force_recall(q, ql, g, gl, ks=(1, 10, 20))
    got = recall_at_k(torch.from_numpy(q), torch.from_numpy(ql), torch.from_numpy(g), torch.from_numpy(gl),
                      ks=(1, 10, 20), chunk_size=5)
    assert got == pytest.approx(expected, abs=0)


def test_recall_ties_are_broken_by_gallery_index():
    # integer embeddings: many exactly equal similarities; the query itself is never its own match
    rng = np.random.default_rng(3)
    q = rng.integers(-1, 2, size=(60, 3)).astype(np.float32)
    ql = rng.integers(0, 4, size=60)
    expected = brute_force_recall(q, ql, ks=(1, 2, 3, 5))
    for chunk in (1, 13, 60):
        assert recall_at_k(torch.from_numpy(q), torch.from_numpy(ql), ks=(1, 2, 3, 5), chunk_size=chunk) == expected
    # hand-made: gallery items 0 (negative) and 1 (positive) tie; index 0 ranks first -> miss at K=1
    gallery = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ranks = first_positive_rank(torch.tensor([[1.0, 0.0]]), torch.tensor([5]), gallery, torch.tensor([4, 5, 5]))
    assert ranks.tolist() == [1]
    # same set: a duplicate of the query (same label) ties with the query itself, which is excluded
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]])
    assert first_positive_rank(emb, torch.tensor([0, 0, 1])).tolist() == [0, 0, -1]
    assert recall_at_k(emb, torch.tensor([0, 0, 1]), ks=(1, 2)) == {1: 2 / 3, 2: 2 / 3}  # no positive = miss


def test_recall_and_nmi_on_separable_embeddings():
    centers = torch.eye(4)
    labels = torch.arange(4).repeat_interleave(10)
    emb = centers[labels] + 0.01 * torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    assert recall_at_k(emb, labels, ks=(1,)) == {1: 1.0}
    assert nmi(emb, labels) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive integers"):
        recall_at_k(emb, labels, ks=(0,))


def test_non_finite_embeddings_never_score_as_hits():
    # a model whose weights went NaN under triplet loss keeps a finite loss (the semi-hard miner finds no
    # triplets among NaN distances), so evaluation must not turn NaN similarities into perfect recall
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    nan = torch.full((6, 4), float("nan"))
    got = recall_at_k(nan, labels, ks=(1, 2))
    assert set(got) == {1, 2} and all(np.isnan(v) for v in got.values())
    # one NaN gallery item (a positive of the query) is enough to make the ranking undefined
    gallery = torch.eye(3)
    gallery[1] = float("nan")
    got = recall_at_k(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([7]), gallery, torch.tensor([1, 7, 2]),
                      ks=(1,))
    assert np.isnan(got[1])
    with pytest.raises(ValueError, match="non-finite"):
        first_positive_rank(nan, labels)
    assert np.isnan(nmi(nan, labels))


# ------------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------------
def test_pretrained_weights_only_from_a_local_file(tmp_path):
    missing = tmp_path / "resnet50-0676ba61.pth"
    with pytest.raises(ConfigError, match=f"model.pretrained_path: weights file {missing} does not exist"):
        EmbeddingNet("resnet50", pretrained_path=missing)
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "r18.pth")
    net = EmbeddingNet("resnet18", embedding_dim=8, pretrained_path=tmp_path / "r18.pth")
    assert torch.equal(net.backbone[0].weight, ref.conv1.weight)
    assert torch.equal(net.backbone[7][1].bn2.running_var, ref.layer4[1].bn2.running_var)
    torch.save({"conv1.weight": ref.conv1.weight}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="does not match backbone resnet18: missing"):
        EmbeddingNet("resnet18", pretrained_path=tmp_path / "partial.pth")


def test_embedding_net_normalises_and_freezes_bn():
    net = EmbeddingNet("tiny_cnn", embedding_dim=5, pool="avgmax", freeze_bn=True).train()
    out = net(torch.randn(4, 3, 16, 16))
    assert out.shape == (4, 5) and torch.allclose(out.norm(dim=1), torch.ones(4))
    bns = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns) and net.embedding.training
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bns)
    with pytest.raises(ConfigError, match="model.backbone"):
        EmbeddingNet("vgg", embedding_dim=5)


# ------------------------------------------------------------------------------------------------------
# task
# ------------------------------------------------------------------------------------------------------
def task_config(**sections) -> dict:
    cfg = {s: dict(Retrieval.defaults[s]) for s in ("data", "model", "train")}
    cfg["model"].update(backbone="tiny_cnn", embedding_dim=16)
    cfg["train"].update(batch_size=20, seed=0, num_workers=0, epochs=1)
    cfg["optimizer"] = {"name": "adam", "lr": 1e-3}
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def make_task(tmp_path, **sections) -> Retrieval:
    ctx = RunContext(run_dir=tmp_path, device=torch.device("cpu"), seed=0, log=lambda s: None)
    return Retrieval(task_config(**sections), ctx)


def manual_run(task: Retrieval, epochs: int, max_steps: int | None = None) -> tuple[list[float], dict]:
    """A minimal stand-in for the shared loop: train, then evaluate in eval mode under no_grad."""
    torch.manual_seed(0)
    model = task.build_model()
    opt = torch.optim.Adam(task.optimizer_params(model), lr=task.config["optimizer"]["lr"])
    losses, steps = [], 0
    for epoch in range(epochs):
        model.train()
        for batch in task.train_batches(epoch):
            loss, _ = task.loss(model, task.to_device(batch))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
    model.eval()
    with torch.no_grad():
        return losses, task.evaluate(model)


def test_proxy_anchor_proxies_are_optimised_with_their_own_lr(tmp_path):
    task = make_task(tmp_path, train={"loss": "proxy_anchor", "samples_per_class": 0, "proxy_lr_mult": 7.0})
    model = task.build_model()
    proxies = model.criterion.proxies
    assert proxies.shape == (5, 16)  # digits 0-4 train, embedding 16
    assert any(p is proxies for p in model.parameters())  # moved / checkpointed with the model
    groups = list(task.optimizer_params(model))
    assert [len(g["params"]) for g in groups][1] == 1 and groups[1]["params"][0] is proxies
    assert groups[1]["lr"] == pytest.approx(7e-3) and "lr" not in groups[0]
    opt = torch.optim.Adam(groups, lr=1e-3)
    before = proxies.detach().clone()
    loss, _ = task.loss(model, next(iter(task.train_batches(0))))
    loss.backward()
    opt.step()
    assert not torch.equal(before, proxies.detach())
    assert "criterion.proxies" in model.state_dict()
    # under bf16 autocast (train.precision: bf16) the loss itself is still computed in fp32
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss, _ = task.loss(model, next(iter(task.train_batches(0))))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_triplet_needs_positives_and_head_only_warmup(tmp_path):
    with pytest.raises(ConfigError, match="samples_per_class must be >= 2"):
        make_task(tmp_path, train={"loss": "triplet", "samples_per_class": 0})
    with pytest.raises(ConfigError, match="train.loss"):
        make_task(tmp_path, train={"loss": "arcface"})
    task = make_task(tmp_path, train={"loss": "triplet", "freeze_backbone_epochs": 1, "triplet_margin": 0.5})
    model = task.build_model().train()
    batch = next(iter(task.train_batches(0)))
    assert Counter(batch[1].tolist()) == {c: 4 for c in range(5)}
    loss, extra = task.loss(model, batch)
    loss.backward()
    assert extra["triplets"] > 0 and loss.item() > 0
    assert all(p.grad is None for p in model.embedder.backbone.parameters())
    assert model.embedder.embedding.weight.grad is not None
    next(iter(task.train_batches(1)))  # epoch 1: the warm-up is over
    loss, _ = task.loss(model, batch)
    loss.backward()
    assert all(p.grad is not None for p in model.embedder.backbone.parameters())


@pytest.mark.parametrize("loss_name", ["triplet", "proxy_anchor"])
def test_digits_end_to_end_learns(tmp_path, loss_name):
    train = {"loss": loss_name, "samples_per_class": 4, "nmi": True, "proxy_lr_mult": 10.0}
    task = make_task(tmp_path, train=train)
    losses, metrics = manual_run(task, epochs=2)
    assert set(metrics) == {"recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8", "nmi"}
    assert 0 <= metrics["recall_at_1"] <= metrics["recall_at_2"] <= metrics["recall_at_8"] <= 100
    assert metrics["recall_at_1"] > 60  # 5 unseen classes: chance is ~20 %
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


@pytest.mark.parametrize("layout", ["cub", "inshop"])
def test_image_files_end_to_end(tmp_path, layout):
    make_cub(tmp_path) if layout == "cub" else make_inshop(tmp_path)
    task = make_task(tmp_path, data={"name": "cub200" if layout == "cub" else "inshop", "root": str(tmp_path),
                                     "image_size": 16},
                     train={"loss": "proxy_anchor", "batch_size": 4, "samples_per_class": 2})
    assert task.resize == 18 and task.steps_per_epoch() == (9 if layout == "cub" else 5) // 4
    losses, metrics = manual_run(task, epochs=1)
    ks = (1, 2, 4, 8) if layout == "cub" else (1, 10, 20, 30, 40, 50)
    assert set(metrics) == {f"recall_at_{k}" for k in ks}
    assert metrics[f"recall_at_{ks[-1]}"] == 100.0  # every positive is within the (tiny) gallery
    assert len(losses) == task.steps_per_epoch() and np.isfinite(losses).all()


def test_smoke_overrides_and_batch_errors(tmp_path):
    assert Retrieval.primary_metric() == ("recall_at_1", "max")
    smoke = {k.split(".", 1)[1]: v for k, v in Retrieval.smoke.items()}
    assert smoke["backbone"] == "tiny_cnn"
    with pytest.raises(ConfigError, match="only 5 classes"):
        make_task(tmp_path, train={"batch_size": 40}).steps_per_epoch()
    with pytest.raises(ConfigError, match="larger than the training split"):
        make_task(tmp_path, train={"batch_size": 1000, "samples_per_class": 0, "loss": "proxy_anchor"}).steps_per_epoch()
    with pytest.raises(ConfigError, match="recall_ks"):
        make_task(tmp_path, train={"recall_ks": [0, 1]})


# ------------------------------------------------------------------------------------------------------
# paper configs
# ------------------------------------------------------------------------------------------------------
def test_table6_configs_cover_every_paper_cell():
    import pandas as pd

    from benchmarks.config.grid import expand
    from benchmarks.config.loader import load_config
    from benchmarks.config.validate import resolve_config

    paper = pd.read_csv(REPO / "results" / "paper" / "t06_image_retrieval.csv")
    cells = set()
    recipes: dict[tuple, list] = {}
    for path in sorted((REPO / "configs" / "paper").glob("table6_*.yaml")):
        for run, _ in expand(load_config(path)):
            tags = run["tags"]
            assert run["task"] == "retrieval" and tags["table"] == "t06"
            assert {"adam": "Adam", "adamp": "AdamP"}[run["optimizer"]["name"]] == tags["optimizer"]
            # every key known to the task and the loop, types right (the tags mapping is the config layer's)
            resolved = resolve_config({k: v for k, v in run.items() if k != "tags"})
            assert resolved["model"]["backbone"] == "resnet50" and resolved["model"]["pretrained_path"]
            loss = {"Triplet (semi-hard)": "triplet", "ProxyAnchor": "proxy_anchor"}[tags["loss"]]
            assert resolved["train"]["loss"] == loss
            cells.add((tags["dataset"], tags["loss"], tags["optimizer"]))
            # Adam and AdamP of one cell differ only in the optimizer
            key = (tags["dataset"], tags["loss"])
            recipes.setdefault(key, []).append({k: v for k, v in resolved.items() if k != "optimizer"})
    assert all(len(r) == 2 and r[0] == r[1] for r in recipes.values())
    expected = set(zip(paper["dataset"], paper["loss"], paper["optimizer"]))
    assert cells == expected and len(cells) == 16


def test_execute_run_end_to_end(tmp_path):
    spec_module = pytest.importorskip("benchmarks.engine.spec", reason="engine not written yet")
    from benchmarks.config.validate import resolve_config

    config = resolve_config({
        "task": "retrieval",
        "data": {"name": "digits_retrieval"},
        "model": {"backbone": "tiny_cnn", "embedding_dim": 16},
        "optimizer": {"name": "adamp", "lr": 1e-3},
        "train": {"epochs": 1, "max_steps": 6, "batch_size": 20, "loss": "proxy_anchor", "device": "cpu",
                  "num_threads": 1},
    })
    status = spec_module.execute_run(spec_module.RunSpec(run_id="retrieval-test", config=config, out_dir=tmp_path))
    record = json.loads((tmp_path / "runs" / "retrieval-test" / "record.json").read_text())
    assert status == "done", (tmp_path / "runs" / "retrieval-test" / "traceback.txt").read_text()
    assert record["status"] == "done" and 0 < record["metrics"]["recall_at_1"] <= 100
