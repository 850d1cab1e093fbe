"""Image retrieval / deep metric learning: the paper's Table 6 (CUB-200-2011, Cars-196, Stanford Online
Products, In-Shop Clothes; triplet loss with semi-hard mining and ProxyAnchor; Recall@K).

Model: ImageNet-pretrained ResNet-50 (weights from ``model.pretrained_path`` only), global pooling, a linear
embedding and L2 normalisation (``benchmarks.models.embedding``). Losses come from pytorch-metric-learning:

* ``triplet``: ``TripletMarginLoss(margin)`` on the triplets of ``TripletMarginMiner(margin, "semihard")``;
  batches hold ``samples_per_class`` images of each of ``batch_size / samples_per_class`` classes
  (``samples_per_class: 0`` = uniformly shuffled batches, the ProxyAnchor reference setting).
* ``proxy_anchor``: ``ProxyAnchorLoss(num_classes, embedding_dim, margin, alpha)``. Its proxies are
  parameters of the model (they are checkpointed and moved with it) and form a second optimizer param group
  with ``lr = optimizer.lr * train.proxy_lr_mult``.

Evaluation (there is no validation split in this protocol; the literature reports test Recall@K): embed the
test images (resize + centre crop) and compute exact Recall@K in query chunks, in percent, as
``recall_at_<K>``. CUB/Cars/SOP/digits rank the test set against itself without the query; In-Shop ranks
queries against the gallery. ``nmi`` (k-means, scikit-learn) is added when ``train.nmi`` is true.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from benchmarks.config.errors import ConfigError, did_you_mean
from benchmarks.data.retrieval import (
    DATASETS,
    ClassBalancedBatchSampler,
    ImageList,
    ImageListDataset,
    RandomBatchSampler,
    RetrievalData,
    check_retrieval_layout,
    image_transforms,
    load_retrieval_data,
)
from benchmarks.metrics.retrieval import STANDARD_KS, nmi, recall_at_k
from benchmarks.models.embedding import BACKBONES, POOLS, EmbeddingNet
from benchmarks.models.vision import check_weights_file

from .base import RunContext, Task

LOSSES = ("triplet", "proxy_anchor")
#: data.image_size / data.resize when left null
_IMAGE_SIZE = {"digits_retrieval": (8, 8), "mnist5k_retrieval": (28, 28)}
_DEFAULT_IMAGE_SIZE = (224, 256)


class RetrievalModel(nn.Module):
    """The embedding network plus the loss module, so that a loss's parameters (ProxyAnchor's proxies) are
    moved, checkpointed and handed to the optimizer with the network. ``forward`` returns embeddings."""

    def __init__(self, embedder: EmbeddingNet, criterion: nn.Module):
        super().__init__()
        self.embedder = embedder
        self.criterion = criterion

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedder(x)


def _unwrap(model: nn.Module) -> RetrievalModel:
    # DataParallel / DDP / torch.compile wrappers keep the real module under .module or ._orig_mod
    while not isinstance(model, RetrievalModel):
        inner = getattr(model, "module", None)
        if inner is None:
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"expected the RetrievalModel built by the retrieval task, got {type(model).__name__}")
        model = inner
    return model


class Retrieval(Task):
    """Deep metric learning with triplet (semi-hard) or ProxyAnchor loss, evaluated by Recall@K."""

    name: ClassVar[str] = "retrieval"
    description: ClassVar[str] = (
        "image retrieval (paper Table 6): CUB-200-2011, Cars-196, SOP, In-Shop or digits; triplet / ProxyAnchor; "
        "Recall@K"
    )
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "digits_retrieval",  # cub200 | cars196 | sop | inshop | digits_retrieval | mnist5k_retrieval
            "root": None,  # folder of the official archive (see benchmarks/data/retrieval.py)
            "annotation": None,  # cars196 only: a text annotation instead of cars_annos.mat
            "image_size": None,  # null: 224 (digits: 8, mnist5k: 28); crops; mnist5k_retrieval: digit size <= 28
            "resize": None,  # null: image_size * 8/7 (256 for 224); shorter side before the eval crop
        },
        "model": {
            "backbone": "resnet50",  # resnet18 | resnet34 | resnet50 | resnet101 | tiny_cnn
            "pretrained_path": None,  # local torchvision state dict; null = random init (never downloaded)
            "embedding_dim": 512,
            "pool": "avg",  # avg | max | avgmax (sum of both, the Proxy-Anchor reference)
            "freeze_bn": False,  # keep backbone BatchNorm statistics and affine parameters fixed
        },
        "train": {
            "loss": "triplet",  # triplet | proxy_anchor
            "samples_per_class": 4,  # images per class per batch; 0 = uniformly shuffled batches
            "triplet_margin": 0.1,  # margin of the loss and of the semi-hard miner
            "proxy_margin": 0.1,  # ProxyAnchor delta
            "proxy_alpha": 32.0,  # ProxyAnchor alpha
            "proxy_lr_mult": 100.0,  # proxies' lr = optimizer.lr * this
            "freeze_backbone_epochs": 0,  # first N epochs train only the embedding head (and proxies)
            "eval_batch_size": None,  # null: train.batch_size
            "eval_chunk_size": 1024,  # queries per block of the similarity matrix
            "recall_ks": None,  # null: the data set's standard Ks
            "nmi": False,  # also report NMI (k-means over the test embeddings; slow for SOP)
        },
    }
    #: shrink only: the configured data set, with a tiny backbone (so no pretrained weights; the configured
    #: weights file is still checked before launch) and a few steps
    smoke: ClassVar[Mapping[str, Any]] = {
        "model.backbone": "tiny_cnn",
        "model.pretrained_path": None,
        "model.embedding_dim": 16,
        "train.epochs": 1,
        "train.max_steps": 3,
        "train.batch_size": 20,
        "train.samples_per_class": 4,
        "train.freeze_backbone_epochs": 0,
        "train.num_workers": 0,
        "train.recall_ks": None,
        "train.nmi": False,
    }
    metrics: ClassVar[Mapping[str, str]] = {
        "recall_at_1": "max", "recall_at_2": "max", "recall_at_4": "max", "recall_at_8": "max",
        "recall_at_10": "max", "recall_at_20": "max", "recall_at_30": "max", "recall_at_40": "max",
        "recall_at_50": "max", "recall_at_100": "max", "recall_at_1000": "max", "nmi": "max",
    }

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        train, data, model = config["train"], config["data"], config["model"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: unknown retrieval data set {data['name']!r}; valid: {', '.join(DATASETS)}"
                              f"{did_you_mean(str(data['name']), DATASETS)}")
        if data["name"] == "mnist5k_retrieval" and data["image_size"] is not None and not (
                isinstance(data["image_size"], int) and 4 <= data["image_size"] <= 28):
            raise ConfigError(f"data.image_size: mnist5k_retrieval shrinks the 28x28 digits; give an integer in "
                              f"4..28 or null (28), got {data['image_size']!r}")
        if model["backbone"] not in BACKBONES:
            raise ConfigError(f"model.backbone: unknown backbone {model['backbone']!r}; valid: {', '.join(BACKBONES)}"
                              f"{did_you_mean(str(model['backbone']), BACKBONES)}")
        if model["pool"] not in POOLS:
            raise ConfigError(f"model.pool: {model['pool']!r}; valid: {', '.join(POOLS)}")
        if int(model["embedding_dim"]) < 1:
            raise ConfigError(f"model.embedding_dim must be >= 1, got {model['embedding_dim']}")
        if train["loss"] not in LOSSES:
            raise ConfigError(f"train.loss: unknown loss {train['loss']!r}; valid: {', '.join(LOSSES)}")
        m = int(train["samples_per_class"])
        if m < 0 or m == 1 or (train["loss"] == "triplet" and m < 2):
            raise ConfigError(f"train.samples_per_class must be >= 2 (class-balanced batches) or 0 (uniformly "
                              f"shuffled; not with train.loss=triplet, whose anchors need a positive in the "
                              f"batch), got {m}")
        ks = train["recall_ks"] if train["recall_ks"] is not None else STANDARD_KS.get(data["name"], (1, 2, 4, 8))
        if not isinstance(ks, (list, tuple)) or not ks or not all(isinstance(k, int) and k >= 1 for k in ks):
            raise ConfigError(f"train.recall_ks must be a non-empty list of positive integers or null, got {ks!r}")
        if int(train["eval_chunk_size"]) < 1:
            raise ConfigError(f"train.eval_chunk_size must be >= 1, got {train['eval_chunk_size']}")
        if int(train["freeze_backbone_epochs"]) < 0:
            raise ConfigError(f"train.freeze_backbone_epochs must be >= 0, got {train['freeze_backbone_epochs']}")

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """``data.root`` holds the data set's annotation files; ``model.pretrained_path`` exists."""
        check_retrieval_layout(config["data"])
        check_weights_file(config["model"].get("pretrained_path"))

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        train, data = config["train"], config["data"]
        if ctx.world_size > 1:
            raise ConfigError("retrieval runs in one process: the losses mine pairs within the local batch, so "
                              "data-parallel training would change the recipe; use a single GPU")
        self.check_config(config)
        self.loss_name: str = train["loss"]
        self.batch_size = int(train["batch_size"])
        self.eval_batch_size = int(train.get("eval_batch_size") or self.batch_size)
        self.samples_per_class: int | None = int(train["samples_per_class"]) or None
        ks = train["recall_ks"] if train["recall_ks"] is not None else STANDARD_KS.get(data["name"], (1, 2, 4, 8))
        self.recall_ks = tuple(int(k) for k in ks)
        size, resize = _IMAGE_SIZE.get(data["name"], _DEFAULT_IMAGE_SIZE)
        self.image_size = int(data["image_size"] or size)
        self.resize = int(data["resize"] or round(self.image_size * resize / size))
        self._epoch = 0

    # -- data -------------------------------------------------------------------------------------------
    @cached_property
    def data(self) -> RetrievalData:
        """The splits of ``data.name`` (read once per run)."""
        return load_retrieval_data(self.config["data"])

    @cached_property
    def num_train_classes(self) -> int:
        return self.data.train.num_classes

    def _sampler(self, epoch: int) -> ClassBalancedBatchSampler | RandomBatchSampler:
        labels = self.data.train.labels
        if self.samples_per_class is None:
            sampler: Any = RandomBatchSampler(len(labels), self.batch_size, seed=self.ctx.seed, epoch=epoch)
        else:
            sampler = ClassBalancedBatchSampler(labels, self.batch_size, self.samples_per_class,
                                                seed=self.ctx.seed, epoch=epoch)
        if len(sampler) == 0:
            raise ConfigError(f"train.batch_size ({self.batch_size}) is larger than the training split of "
                              f"{self.data.name} ({len(labels)} images): no full batch per epoch")
        return sampler

    def steps_per_epoch(self) -> int | None:
        return len(self._sampler(0))

    def _loader(self, items: ImageList, batch_sampler: Any = None, train: bool = False) -> Iterable[Any]:
        if items.images is not None:  # in-memory (digits): index the tensors, no worker processes needed
            if batch_sampler is None:
                batch_sampler = [list(range(s, min(s + self.eval_batch_size, len(items))))
                                 for s in range(0, len(items), self.eval_batch_size)]
            labels = torch.from_numpy(items.labels)
            return ((items.images[idx], labels[idx]) for idx in map(torch.as_tensor, batch_sampler))
        workers = int(self.config["train"].get("num_workers") or 0)
        dataset = ImageListDataset(items, image_transforms(self.image_size, self.resize, train=train))
        kwargs: dict[str, Any] = dict(num_workers=workers, pin_memory=self.ctx.device.type == "cuda")
        if batch_sampler is not None:
            # worker RNGs (random crops) derive from this generator's state: reproducible given (seed, epoch)
            gen = torch.Generator().manual_seed(int(np.random.SeedSequence(
                [self.ctx.seed, getattr(batch_sampler, "epoch", 0)]).generate_state(1)[0]))
            return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, generator=gen, **kwargs)
        return torch.utils.data.DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **kwargs)

    def train_batches(self, epoch: int) -> Iterator[Any]:
        self._epoch = epoch
        yield from self._loader(self.data.train, self._sampler(epoch), train=True)

    # -- model and loss ---------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from pytorch_metric_learning import losses

        m, t = self.config["model"], self.config["train"]
        embedder = EmbeddingNet(backbone=m["backbone"], embedding_dim=int(m["embedding_dim"]), pool=m["pool"],
                                pretrained_path=m["pretrained_path"], freeze_bn=bool(m["freeze_bn"]))
        if self.loss_name == "proxy_anchor":
            criterion: nn.Module = losses.ProxyAnchorLoss(
                num_classes=self.num_train_classes, embedding_size=int(m["embedding_dim"]),
                margin=float(t["proxy_margin"]), alpha=float(t["proxy_alpha"]))
        else:
            criterion = losses.TripletMarginLoss(margin=float(t["triplet_margin"]))
        return RetrievalModel(embedder, criterion)

    @cached_property
    def miner(self) -> Any:
        from pytorch_metric_learning import miners

        return miners.TripletMarginMiner(margin=float(self.config["train"]["triplet_margin"]),
                                         type_of_triplets="semihard")

    def optimizer_params(self, model: nn.Module) -> Iterable[Any]:
        """Network parameters in one group; loss parameters (proxies) in a second group with a larger lr."""
        net = _unwrap(model)
        loss_params = [p for p in net.criterion.parameters() if p.requires_grad]
        net_params = [p for p in net.embedder.parameters() if p.requires_grad]
        if not loss_params:
            return [{"params": net_params}]
        lr = self.config.get("optimizer", {}).get("lr")
        if not isinstance(lr, (int, float)):
            raise ConfigError(f"optimizer.lr must be a number to scale the proxies' lr by train.proxy_lr_mult, "
                              f"got {lr!r}")
        return [{"params": net_params},
                {"params": loss_params, "lr": float(lr) * float(self.config["train"]["proxy_lr_mult"])}]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        images, labels = batch
        net = _unwrap(model)
        if self._epoch < int(self.config["train"]["freeze_backbone_epochs"]):
            # head-only warm-up: no backbone gradient at all, so the optimizer skips those tensors
            with torch.no_grad():
                features = net.embedder.features(images)
            embeddings = net.embedder.head(features)
        else:
            embeddings = model(images)
        extra: dict[str, Any] = {}
        # the loss in fp32 even under mixed precision: ProxyAnchor exponentiates alpha * cosine (alpha 32),
        # and semi-hard mining compares distances that differ in the third decimal
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            if self.loss_name == "triplet":
                triplets = self.miner(embeddings, labels)
                loss = net.criterion(embeddings, labels, triplets)
                extra["triplets"] = float(triplets[0].numel())
            else:
                loss = net.criterion(embeddings, labels)
        return loss, extra

    # -- evaluation -------------------------------------------------------------------------------------
    def _embed(self, model: nn.Module, items: ImageList) -> tuple[torch.Tensor, torch.Tensor]:
        chunks, labels = [], []
        for images, y in self._loader(items):
            chunks.append(model(images.to(self.ctx.device, non_blocking=True)).float())
            labels.append(torch.as_tensor(y))
        return torch.cat(chunks), torch.cat(labels).to(self.ctx.device)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Recall@K (%) on the test protocol of ``data.name``; ``nmi`` too when ``train.nmi`` is set."""
        query, query_labels = self._embed(model, self.data.query)
        gallery = gallery_labels = None
        if self.data.gallery is not None:
            gallery, gallery_labels = self._embed(model, self.data.gallery)
        recalls = recall_at_k(query, query_labels, gallery, gallery_labels, ks=self.recall_ks,
                              chunk_size=int(self.config["train"]["eval_chunk_size"]))
        metrics = {f"recall_at_{k}": 100.0 * v for k, v in recalls.items()}
        if self.config["train"]["nmi"]:
            emb = query if gallery is None else torch.cat([query, gallery])
            lab = query_labels if gallery_labels is None else torch.cat([query_labels, gallery_labels])
            metrics["nmi"] = nmi(emb, lab, seed=self.ctx.seed)
        return metrics


__all__ = ["LOSSES", "Retrieval", "RetrievalModel"]
