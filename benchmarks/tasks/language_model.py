"""Word-level language modelling: the paper's WikiText-103 experiment (Table 7, Transformer-XL +/- WN).

Data (``data.name``):

* ``wikitext-103`` / ``wikitext-2``: ``wiki.{train,valid,test}.tokens`` under ``data.root`` (or
  ``data.root/<name>/``), read by :mod:`benchmarks.data.wikitext` and cached (``data.cache_dir``).
* ``synthetic``: a first-order Markov language written in the same file format (tests); it goes to
  ``data.root`` if set, else to the user cache.
* ``kjv``: the King James Bible of Debian's ``bible-kjv`` package (real English, 0.95M tokens; CPU demo and
  battery), written once in the same format under ``data.root`` (else the user cache) by
  :mod:`benchmarks.data.kjv`, with a vocabulary of 5,000 words (fixed: a new data key would change the run
  id of every language-modelling config).

Training follows Transformer-XL: the training stream is cut into ``train.batch_size`` contiguous streams
(the GLOBAL batch; each process takes an equal share of the streams), visited in order in segments of
``model.tgt_len`` tokens. The task keeps the model's memory (the previous segment's hidden states, detached)
between ``loss`` calls and resets it when an epoch starts, so every segment attends to up to ``model.mem_len``
tokens of its past. Evaluation does the same on the validation and test streams (batch
``train.eval_batch_size``, segments of ``model.eval_tgt_len``, memory ``model.eval_mem_len``) and reports
``exp(mean NLL over all predicted tokens)``.

Metrics: ``test_ppl`` (primary, lower is better) and ``val_ppl``. With ``train.select: best`` (Transformer-XL's
rule, set in ``configs/lm/base.yaml``) both are those of the evaluation with the lowest ``val_ppl``; the last
evaluation's are kept as ``last_*``. Nothing is ever selected on ``test_ppl``.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping

import torch

from benchmarks.config.errors import ConfigError, did_you_mean
from benchmarks.data import kjv
from benchmarks.data import wikitext as wt

from .base import RunContext, Task

DATASETS = ("wikitext-103", "wikitext-2", "synthetic", "kjv")
#: written on first use into data.root (its output folder) rather than read from it
_GENERATED = ("synthetic", "kjv")
MODELS = ("transformer_xl",)

#: keys of ``model`` that go straight to :class:`benchmarks.models.transformer_xl.TransformerXL`
_ARCH_KEYS = ("n_layer", "d_model", "n_head", "d_head", "d_inner", "dropout", "dropatt", "d_embed", "cutoffs",
              "div_val", "tie_weight", "tie_projs", "pre_lnorm", "mem_len", "clamp_len", "same_length",
              "untie_r", "weight_norm", "init_std", "proj_init_std")


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model under DDP / torch.compile wrappers (evaluation needs the extra forward arguments)."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _dist_ready(world_size: int) -> bool:
    return world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


@torch.no_grad()
def evaluate_perplexity(model: Callable[..., Any], tokens: Any, batch_size: int, tgt_len: int, mem_len: int,
                        device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                        **forward_kwargs: Any) -> tuple[float, int]:
    """Sum of NLL (nats) and number of predicted tokens over ``tokens``, Transformer-XL style.

    The stream is cut into ``batch_size`` contiguous streams and read in consecutive segments of ``tgt_len``
    tokens; the memory returned by ``model(inp, target, mems, mem_len=..., **forward_kwargs)`` is fed to the
    next segment. Every token but the first of each stream is predicted exactly once. With ``world_size > 1``
    this process scores only its share of the streams (sum the results over processes).
    Perplexity = ``exp(nll_sum / count)``.
    """
    streams = wt.batchify(tokens, batch_size, rank, world_size)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    mems = None
    for inp, tgt in wt.iter_segments(streams, tgt_len):
        nll, mems = model(inp.to(device), tgt.to(device), mems, mem_len=mem_len, **forward_kwargs)
        total += nll.double().sum()
        count += nll.numel()
    return float(total), count


def _kjv_out_root(data: Mapping[str, Any]) -> Path:
    return Path(data["root"]).expanduser() if data["root"] else wt.user_cache_dir().parent / "kjv"


class LanguageModel(Task):
    """Transformer-XL on WikiText (word level), with memory carried across consecutive segments."""

    name: ClassVar[str] = "language_model"
    description: ClassVar[str] = (
        "word-level language modelling: Transformer-XL (+/- weight norm) on WikiText-103/-2 or a synthetic corpus"
    )
    # The defaults are Transformer-XL's WikiText-103 "base" model (run_wt103_base.sh of the Transformer-XL
    # release); the evaluation settings are the ones of its training-time evaluation.
    defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "data": {
            "name": "wikitext-103",  # wikitext-103 | wikitext-2 | synthetic | kjv
            "root": None,  # folder with wiki.{train,valid,test}.tokens (or root/<name>/); synthetic, kjv: output
            "cache_dir": None,  # null: <root>/.cache (user cache if root is read-only)
            "max_train_tokens": None,  # use only the first N training tokens (quick runs); null: all
            "max_eval_tokens": None,  # evaluate on the first N tokens of valid/test; null: all
            "synthetic_vocab": 500,  # synthetic: number of words
            "synthetic_train_tokens": 200_000,  # synthetic: training tokens (valid/test get a tenth each)
            "synthetic_seed": 0,  # synthetic: seed of the language and of the text; NOT the run seed
        },
        "model": {
            "name": "transformer_xl",
            "n_layer": 16,
            "d_model": 410,
            "n_head": 10,
            "d_head": 41,
            "d_inner": 2100,
            "d_embed": None,  # null: d_model
            "dropout": 0.1,
            "dropatt": 0.0,
            "cutoffs": [20000, 40000, 200000],  # adaptive softmax/input clusters; []: full softmax
            "div_val": 1,  # adaptive input: cluster i has d_embed / div_val^i dims
            "tie_weight": True,  # output word vectors = input word vectors
            "tie_projs": True,  # output projections = input projections (only when there are any)
            "pre_lnorm": False,
            "untie_r": False,  # False: one r_w_bias/r_r_bias shared by all layers
            "weight_norm": False,  # True: the "+ WN" variant (weight_norm on every linear layer of the blocks)
            "init_std": 0.02,
            "proj_init_std": 0.01,
            "tgt_len": 150,  # training segment length
            "mem_len": 150,  # training memory length
            "clamp_len": -1,  # >0: relative distances above this share one embedding
            "same_length": False,  # every query sees the same number of keys
            "eval_tgt_len": 150,
            "eval_mem_len": 150,
            "eval_clamp_len": -1,
            "eval_same_length": False,
        },
        "train": {
            "eval_batch_size": 10,  # global number of evaluation streams
        },
    }
    #: shrink only: the configured corpus (its first tokens) with a tiny model
    smoke: ClassVar[Mapping[str, Any]] = {
        "data.max_train_tokens": 20_000,
        "data.max_eval_tokens": 2_000,
        "model.n_layer": 2,
        "model.d_model": 32,
        "model.n_head": 2,
        "model.d_head": 16,
        "model.d_inner": 64,
        "model.cutoffs": [20],
        "model.tgt_len": 16,
        "model.mem_len": 16,
        "model.eval_tgt_len": 16,
        "model.eval_mem_len": 16,
        "train.epochs": 1,
        "train.max_steps": 4,
        "train.batch_size": 4,
        "train.eval_batch_size": 4,
    }
    metrics: ClassVar[Mapping[str, str]] = {"test_ppl": "min", "val_ppl": "min"}
    #: Transformer-XL's reference keeps the model with the best validation loss and reports its test perplexity
    selection_metric: ClassVar[str | None] = "val_ppl"

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        data, model, train = config["data"], config["model"], config["train"]
        if data["name"] not in DATASETS:
            raise ConfigError(f"data.name: {data['name']!r} is not a language-modelling data set; "
                              f"valid: {', '.join(DATASETS)}{did_you_mean(str(data['name']), DATASETS)}")
        if model["name"] not in MODELS:
            raise ConfigError(f"model.name: {model['name']!r} is not a language model; valid: {', '.join(MODELS)}")
        for key in ("n_layer", "d_model", "n_head", "d_head", "d_inner", "tgt_len", "eval_tgt_len", "div_val"):
            if not isinstance(model[key], int) or model[key] < 1:
                raise ConfigError(f"model.{key} must be a positive integer, got {model[key]!r}")
        for key in ("mem_len", "eval_mem_len"):
            if not isinstance(model[key], int) or model[key] < 0:
                raise ConfigError(f"model.{key} must be an integer >= 0, got {model[key]!r}")
        if model["d_model"] % 2:
            raise ConfigError(f"model.d_model must be even (sinusoidal positions), got {model['d_model']}")
        if not isinstance(model["cutoffs"], (list, tuple)) or not all(isinstance(c, int) for c in model["cutoffs"]):
            raise ConfigError(f"model.cutoffs must be a list of integers, got {model['cutoffs']!r}")
        for key in ("dropout", "dropatt"):
            if not 0.0 <= float(model[key]) < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {model[key]!r}")
        if train["eval_batch_size"] is not None and int(train["eval_batch_size"]) < 1:
            raise ConfigError(f"train.eval_batch_size must be >= 1, got {train['eval_batch_size']!r}")
        for key in ("max_train_tokens", "max_eval_tokens"):
            if data[key] is not None and int(data[key]) < 1:
                raise ConfigError(f"data.{key} must be null or >= 1, got {data[key]!r}")

    @classmethod
    def check_data(cls, config: Mapping[str, Any]) -> None:
        """WikiText: ``data.root`` (or ``data.root/<name>``) holds ``wiki.{train,valid,test}.tokens``."""
        data = config["data"]
        if data["name"] == "synthetic":
            return  # written on first use (data.root is its output folder)
        if data["name"] == "kjv":
            cls._check_kjv(data)
            return
        if not data["root"]:
            raise ConfigError(f"data.root is required for data.name={data['name']!r}: the folder holding "
                              "wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens")
        root = Path(data["root"]).expanduser()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise ConfigError(f"data.root: {root} {what} (data.name={data['name']}: the folder holding "
                              "wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens)")
        try:
            wt.resolve_root(root, name=data["name"])
        except wt.MissingDataError as exc:
            raise ConfigError(f"data.root: {exc}") from None

    @staticmethod
    def _check_kjv(data: Mapping[str, Any]) -> None:
        """kjv: the bible program to build the corpus from, unless it is already built."""
        folder = kjv.corpus_dir(_kjv_out_root(data), kjv.VOCAB_SIZE)
        if not kjv.is_built(folder, kjv.signature(kjv.VOCAB_SIZE)) and kjv.find_program() is None:
            raise ConfigError(f"data.name=kjv needs Debian's bible-kjv package (the '{kjv.PROGRAM}' program "
                              f"prints the text): {kjv.INSTALL_HINT}")

    def __init__(self, config: Mapping[str, Any], ctx: RunContext):
        super().__init__(config, ctx)
        self.check_config(config)
        data, train = config["data"], config["train"]
        if data["name"] not in _GENERATED and not data["root"]:
            raise ConfigError(f"data.root is required for data.name={data['name']!r}: the folder holding "
                              "wiki.train.tokens, wiki.valid.tokens and wiki.test.tokens")
        self.world = max(1, ctx.world_size)
        batch = int(train["batch_size"])
        if batch < 1 or batch % self.world:
            raise ConfigError(f"train.batch_size ({batch}) must be a positive multiple of the number of "
                              f"processes ({self.world}): it is the global number of token streams")
        self.batch_size = batch
        self.eval_batch_size = int(train["eval_batch_size"] or batch)
        if self.eval_batch_size < 1:
            raise ConfigError(f"train.eval_batch_size must be >= 1, got {train['eval_batch_size']!r}")
        self._mems: list[torch.Tensor] | None = None

    # -- data ----------------------------------------------------------------------------------------------
    def _data_root(self) -> Path:
        data = self.config["data"]
        if data["name"] == "kjv":
            try:
                return kjv.build_kjv_wikitext(_kjv_out_root(data), kjv.VOCAB_SIZE)
            except kjv.KJVSourceError as exc:
                raise ConfigError(f"data.name=kjv: {exc}") from None
        if data["name"] != "synthetic":
            return Path(data["root"])
        n_train = int(data["synthetic_train_tokens"])
        params = dict(vocab_size=int(data["synthetic_vocab"]), train_tokens=n_train,
                      valid_tokens=max(n_train // 10, 100), test_tokens=max(n_train // 10, 100),
                      seed=int(data["synthetic_seed"]))
        if data["root"]:
            root = Path(data["root"])
        else:
            tag = "-".join(str(v) for v in params.values())
            base = Path(data["cache_dir"]) if data["cache_dir"] else wt.user_cache_dir()
            root = base / f"synthetic-wikitext-{tag}"
        return wt.write_synthetic_wikitext(root, **params)

    def _load(self) -> wt.Corpus:
        data = self.config["data"]
        name = None if data["name"] in _GENERATED else data["name"]
        try:
            return wt.load_wikitext(self._data_root(), name=name, cache_dir=data["cache_dir"])
        except wt.MissingDataError as exc:
            raise ConfigError(f"data.root: {exc}") from None

    @cached_property
    def corpus(self) -> wt.Corpus:
        """The corpus; under DDP rank 0 builds the cache first while the others wait, then they read it."""
        dist = _dist_ready(self.world)
        if dist and self.ctx.rank != 0:
            torch.distributed.barrier()
        try:
            corpus = self._load()
        finally:
            if dist and self.ctx.rank == 0:
                torch.distributed.barrier()
        data = self.config["data"]
        if data["max_train_tokens"]:
            corpus.train = corpus.train[: int(data["max_train_tokens"])]
        if data["max_eval_tokens"]:
            corpus.valid = corpus.valid[: int(data["max_eval_tokens"])]
            corpus.test = corpus.test[: int(data["max_eval_tokens"])]
        if self.ctx.is_main:
            v = corpus.vocab
            self.ctx.log(f"{data['name']}: vocab {len(v)}, tokens train {corpus.train.size:,} valid "
                         f"{corpus.valid.size:,} test {corpus.test.size:,} "
                         f"({'cache ' + str(corpus.cache_file) if corpus.from_cache else 'built from text'})")
        return corpus

    @cached_property
    def _train_streams(self) -> torch.Tensor:
        try:
            return wt.batchify(self.corpus.train, self.batch_size, self.ctx.rank, self.world)
        except ValueError as exc:
            raise ConfigError(f"train.batch_size: {exc}") from None

    # -- the Task contract ---------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """A Transformer-XL sized by ``model.*`` over the corpus vocabulary (+ WN if ``model.weight_norm``)."""
        from benchmarks.models.transformer_xl import TransformerXL

        model = self.config["model"]
        n_token = len(self.corpus.vocab)
        cutoffs = list(model["cutoffs"])
        if any(b <= a for a, b in zip([0, *cutoffs], [*cutoffs, n_token])):
            raise ConfigError(
                f"model.cutoffs {cutoffs} must be strictly increasing, > 0 and below the vocabulary size "
                f"{n_token} of {self.config['data']['name']}; WikiText-103 uses [20000, 40000, 200000], "
                "[] gives a full softmax")
        kwargs = {k: model[k] for k in _ARCH_KEYS}
        return TransformerXL(n_token, **kwargs)

    def steps_per_epoch(self) -> int | None:
        return wt.num_segments(self._train_streams.size(1), int(self.config["model"]["tgt_len"]))

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive ``(input, target)`` segments ``(B/world, tgt_len)``; the same order every epoch.

        The memory is reset when the epoch's first batch is requested, so each epoch starts from scratch.
        """
        self._mems = None
        yield from wt.iter_segments(self._train_streams, int(self.config["model"]["tgt_len"]))

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Mean NLL per token of the segment; the (detached) memory is kept for the next segment."""
        inp, tgt = batch
        mems = self._mems
        if mems is not None and (mems[0].size(0) != inp.size(0) or mems[0].device != inp.device):
            mems = None  # a batch that does not continue the previous one (e.g. after a resume)
        nll, self._mems = model(inp, tgt, mems)
        return nll.float().mean(), {}

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        """Validation and test perplexity with memory (see :func:`evaluate_perplexity`)."""
        net = _unwrap(model)
        m = self.config["model"]
        # split streams over processes only when they divide evenly; otherwise every process scores all
        share = _dist_ready(self.world) and self.eval_batch_size % self.world == 0
        out = {}
        for split, key in (("valid", "val_ppl"), ("test", "test_ppl")):
            nll, count = evaluate_perplexity(
                net, self.corpus.split(split), self.eval_batch_size, int(m["eval_tgt_len"]),
                int(m["eval_mem_len"]), self.ctx.device, rank=self.ctx.rank if share else 0,
                world_size=self.world if share else 1, clamp_len=int(m["eval_clamp_len"]),
                same_length=bool(m["eval_same_length"]))
            if share:
                totals = torch.tensor([nll, float(count)], dtype=torch.float64, device=self.ctx.device)
                torch.distributed.all_reduce(totals)
                nll, count = float(totals[0]), int(totals[1])
            if count == 0:
                raise RuntimeError(f"the {split} split has no tokens to predict")
            out[key] = math.exp(nll / count)
        return out

    def batch_size_of(self, batch: Any) -> int:
        """Tokens in a training segment (so the loop's throughput reads as tokens/s)."""
        return int(batch[0].numel())


__all__ = ["LanguageModel", "evaluate_perplexity", "DATASETS"]
