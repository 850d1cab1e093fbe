"""Language modelling: WikiText reader + cache, ordered batching with memory, Transformer-XL pieces, the task."""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.config.errors import ConfigError
from benchmarks.data import wikitext as wt
from benchmarks.models.transformer_xl import (RelMultiHeadAttn, TransformerXL, attention_mask,
                                              rel_shift)
from benchmarks.tasks.base import RunContext
from benchmarks.tasks.language_model import LanguageModel, evaluate_perplexity


pytestmark = pytest.mark.usefixtures("one_thread")


def _write(root: Path, train: str, valid: str = " a b \n", test: str = " b a \n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")
    return root


def _task(tmp_path: Path, **overrides) -> LanguageModel:
    cfg = {k: copy.deepcopy(dict(v)) for k, v in LanguageModel.defaults.items()}
    cfg["train"].update({"batch_size": 4, "epochs": 1})
    # the smoke settings (a tiny model) on a small synthetic corpus, as configs/lm/synthetic_demo.yaml names it
    small = {"data.name": "synthetic", "data.synthetic_vocab": 100, "data.synthetic_train_tokens": 20_000}
    for key, value in {**LanguageModel.smoke, **small, "data.root": str(tmp_path / "syn"), **overrides}.items():
        section, _, name = key.partition(".")
        cfg[section][name] = value
    ctx = RunContext(run_dir=tmp_path / "run", device=torch.device("cpu"), seed=0, log=lambda *_: None)
    return LanguageModel(cfg, ctx)


# --------------------------------------------------------------------------------------- reading + vocab
def test_tokenisation_eos_unk_and_frequency_order(tmp_path):
    train = " = Title = \n \n the cat sat on the mat \n the <unk> sat \nzebra the"  # no final newline
    root = _write(tmp_path / "d", train, valid=" the dog \n\n", test=" mat \n")
    corpus = wt.load_wikitext(root, use_cache=False)
    v = corpus.vocab
    # counts: <eos> 5 (every line, blank and unterminated last line included), the 4, "=" 2, sat 2, others 1;
    # equal counts are ordered by code point, so the order never depends on where a word first occurs
    assert v.itos == ["<eos>", "the", "=", "sat", "<unk>", "Title", "cat", "mat", "on", "zebra"]
    assert list(v.counts) == [5, 4, 2, 2, 1, 1, 1, 1, 1, 1]
    assert v.decode(corpus.train) == ["=", "Title", "=", "<eos>", "<eos>", "the", "cat", "sat", "on", "the", "mat",
                                      "<eos>", "the", "<unk>", "sat", "<eos>", "zebra", "the", "<eos>"]
    assert corpus.train.dtype == np.int32
    # a word missing from the training file ("dog") maps to <unk>; the blank line is one <eos>
    assert v.decode(corpus.valid) == ["the", "<unk>", "<eos>", "<eos>"]
    assert v.decode(corpus.test) == ["mat", "<eos>"]


def test_vocab_without_unk_in_train_still_has_unk(tmp_path):
    root = _write(tmp_path / "d", " a a b \n", valid=" c \n")
    corpus = wt.load_wikitext(root, use_cache=False)
    assert corpus.vocab.itos == ["a", "<eos>", "b", "<unk>"]
    assert corpus.vocab.decode(corpus.valid) == ["<unk>", "<eos>"]


def test_chunked_reading_equals_line_by_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    words = ["x", "yy", "<unk>", "@-@", "é", "Zz"]
    lines = [" ".join(rng.choice(words, size=rng.integers(0, 12))) for _ in range(300)]
    path = tmp_path / "f.tokens"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = [tok for line in lines for tok in line.split() + ["<eos>"]]
    monkeypatch.setattr(wt, "_CHUNK_CHARS", 37)  # many chunks, boundaries everywhere
    chunks = list(wt.iter_token_chunks(path))
    assert len(chunks) > 10
    assert [t for c in chunks for t in c] == expected


def test_missing_file_names_file_and_layout(tmp_path):
    root = _write(tmp_path / "d", " a \n")
    (root / "wiki.valid.tokens").unlink()
    with pytest.raises(wt.MissingDataError) as err:
        wt.load_wikitext(root, name="wikitext-103")
    msg = str(err.value)
    assert "wiki.valid.tokens" in msg and "wiki.train.tokens" in msg and "wiki.test.tokens" in msg
    assert str(root) in msg
    # through the task it is a ConfigError naming data.root
    task = _task(tmp_path, **{"data.name": "wikitext-2", "data.root": str(root)})
    with pytest.raises(ConfigError, match="data.root.*wiki.valid.tokens"):
        task.build_model()


def test_root_may_hold_the_named_subfolder(tmp_path):
    _write(tmp_path / "wikitext-2", " a b \n")
    corpus = wt.load_wikitext(tmp_path, name="wikitext-2", cache_dir=tmp_path / "c")
    assert corpus.root == (tmp_path / "wikitext-2").resolve()


# ---------------------------------------------------------------------------------------------- cache
def test_cache_is_reused_and_invalidated(tmp_path):
    root = _write(tmp_path / "d", " the cat \n the dog \n")
    first = wt.load_wikitext(root)
    assert not first.from_cache and first.cache_file is not None and first.cache_file.parent == root / ".cache"
    second = wt.load_wikitext(root)
    assert second.from_cache and second.vocab.itos == first.vocab.itos
    for s in wt.SPLITS:
        np.testing.assert_array_equal(second.split(s), first.split(s))
    np.testing.assert_array_equal(second.vocab.counts, first.vocab.counts)
    assert not [p for p in (root / ".cache").iterdir() if p.suffix == ".tmp"]

    # a changed file (size) is re-read, and the cache is rewritten
    with open(root / "wiki.train.tokens", "a", encoding="utf-8") as f:
        f.write(" dog dog dog \n")
    third = wt.load_wikitext(root)
    assert not third.from_cache and third.vocab.itos[0] == "dog"
    assert wt.load_wikitext(root).from_cache

    # same size, new mtime: also rebuilt
    st = (root / "wiki.test.tokens").stat()
    os.utime(root / "wiki.test.tokens", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not wt.load_wikitext(root).from_cache

    # a truncated cache file is rebuilt with a warning, never trusted
    path = third.cache_file
    path.write_bytes(path.read_bytes()[:50])
    with pytest.warns(UserWarning, match="unreadable WikiText cache"):
        fourth = wt.load_wikitext(root)
    assert not fourth.from_cache and fourth.vocab.itos == third.vocab.itos
    assert wt.load_wikitext(root).from_cache


def test_explicit_cache_dir_leaves_root_untouched(tmp_path):
    root = _write(tmp_path / "d", " a b \n")
    corpus = wt.load_wikitext(root, cache_dir=tmp_path / "cache")
    assert corpus.cache_file.parent == tmp_path / "cache"
    assert not (root / ".cache").exists()


# ------------------------------------------------------------------------------------------ batching
def test_batchify_and_segments_are_contiguous():
    tokens = np.arange(103, dtype=np.int32)
    streams = wt.batchify(tokens, 4)
    assert streams.shape == (4, 25)  # 3 tail tokens dropped
    segs = list(wt.iter_segments(streams, 7))
    assert len(segs) == wt.num_segments(25, 7) == 4
    assert [s[0].shape[1] for s in segs] == [7, 7, 7, 3]
    inputs = torch.cat([s[0] for s in segs], 1)
    targets = torch.cat([s[1] for s in segs], 1)
    # every row is one contiguous stream; consecutive segments continue where the previous one stopped
    for b in range(4):
        assert inputs[b].tolist() == list(range(25 * b, 25 * b + 24))
    assert torch.equal(targets, inputs + 1)
    assert segs[0][0].dtype == torch.int64
    # DDP: each rank takes its share of the streams; together they are the single-process batch
    parts = [wt.batchify(tokens, 4, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat(parts, 0), streams)
    with pytest.raises(ValueError):
        wt.batchify(tokens, 3, world_size=2)


def test_task_carries_memory_across_batches_and_resets_each_epoch(tmp_path):
    task = _task(tmp_path, **{"model.tgt_len": 8, "model.mem_len": 12, "model.dropout": 0.0})
    model = task.build_model()
    batches = task.train_batches(0)
    assert task.steps_per_epoch() == wt.num_segments(task._train_streams.size(1), 8)
    prev = None
    for k in range(3):
        inp, tgt = next(batches)
        assert inp.shape == (4, 8)
        if prev is not None:  # batch k starts where batch k-1 ended, in every stream
            assert torch.equal(inp[:, 0], prev[1][:, -1])
        loss, _ = task.loss(model, (inp, tgt))
        loss.backward()
        mems = task._mems
        assert len(mems) == 2 and all(not m.requires_grad for m in mems)
        assert mems[0].shape == (4, min(8 * (k + 1), 12), 32)
        # layer-0 memory is the embedded input of the latest tokens
        with torch.no_grad():
            np.testing.assert_allclose(mems[0][:, -8:], model.word_emb(inp), rtol=1e-5, atol=1e-6)
        prev = (inp, tgt)
    assert task._mems is not None
    first_next_epoch = next(task.train_batches(1))
    assert task._mems is None  # reset at the start of the epoch
    assert torch.equal(first_next_epoch[0], next(task.train_batches(0))[0])  # same order every epoch


# --------------------------------------------------------------------------------- model components
def test_rel_shift_matches_explicit_indexing():
    torch.manual_seed(0)
    qlen, mlen = 5, 3
    klen = qlen + mlen
    x = torch.randn(2, 3, qlen, klen)
    out = rel_shift(x)
    for i in range(qlen):
        for j in range(mlen + i + 1):  # every key the query may see
            # distance mlen+i-j; x lists distances klen-1 .. 0 along its last axis
            t = klen - 1 - (mlen + i - j)
            torch.testing.assert_close(out[..., i, j], x[..., i, t])


def test_relative_attention_matches_brute_force():
    torch.manual_seed(0)
    d_model, n_head, d_head, qlen, mlen, bsz = 12, 3, 4, 4, 3, 2
    attn = RelMultiHeadAttn(d_model, n_head, d_head, dropout=0.0).eval()
    for p in attn.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    h, mems = torch.randn(bsz, qlen, d_model), torch.randn(bsz, mlen, d_model)
    r = torch.randn(qlen + mlen, d_model)  # r[t] embeds distance klen-1-t
    u, v = torch.randn(n_head, d_head), torch.randn(n_head, d_head)
    mask = attention_mask(qlen, mlen, h.device)
    out = attn(h, r, u, v, mask, mems)

    klen = qlen + mlen
    cat = torch.cat([mems, h], 1)
    qkv = attn.qkv_net(cat).view(bsz, klen, 3, n_head, d_head)
    q, k, val = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    rk = attn.r_net(r).view(klen, n_head, d_head)
    expected = torch.zeros(bsz, qlen, n_head, d_head)
    for b in range(bsz):
        for n in range(n_head):
            for i in range(qlen):
                qi = q[b, mlen + i, n]
                scores = []
                for j in range(mlen + i + 1):
                    dist = mlen + i - j
                    pos = rk[klen - 1 - dist, n]
                    scores.append(((qi + u[n]) @ k[b, j, n] + (qi + v[n]) @ pos) / math.sqrt(d_head))
                prob = torch.softmax(torch.stack(scores), 0)
                expected[b, i, n] = (prob[:, None] * val[b, : mlen + i + 1, n]).sum(0)
    expected = attn.layer_norm(h + attn.o_net(expected.reshape(bsz, qlen, -1)))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_same_length_mask_gives_every_query_the_same_window():
    mask = attention_mask(3, 4, torch.device("cpu"), same_length=True, window=4)
    assert (~mask).sum(1).tolist() == [4, 4, 4]
    assert attention_mask(3, 4, torch.device("cpu")).logical_not().sum(1).tolist() == [5, 6, 7]


def test_memory_reproduces_full_context():
    """With memory at least as long as the past, two segments + memory == one long segment (eval mode)."""
    torch.manual_seed(0)
    model = TransformerXL(50, n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=32, cutoffs=[10, 30],
                          mem_len=20, dropout=0.0, init_std=0.3).eval()  # large weights: context matters
    seq = torch.randint(0, 50, (2, 13))
    inp, tgt = seq[:, :-1], seq[:, 1:]
    with torch.no_grad():
        full, _ = model(inp, tgt)
        a, mems = model(inp[:, :5], tgt[:, :5])
        b, mems2 = model(inp[:, 5:], tgt[:, 5:], mems)
        no_mem, _ = model(inp[:, 5:], tgt[:, 5:])
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(b, no_mem, atol=1e-3)  # the memory is really used
    assert [m.shape for m in mems2] == [torch.Size([2, 12, 16])] * 2


@pytest.mark.parametrize("kwargs", [dict(cutoffs=[]), dict(cutoffs=[5, 20]), dict(cutoffs=[5, 20], div_val=2),
                                    dict(cutoffs=[5, 20], div_val=2, tie_weight=False)])
def test_adaptive_softmax_is_a_distribution_and_tied(kwargs):
    torch.manual_seed(0)
    model = TransformerXL(40, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32, **kwargs).eval()
    h = torch.randn(7, 16)
    logp = model.crit.log_prob(h)
    torch.testing.assert_close(logp.exp().sum(1), torch.ones(7))
    target = torch.randint(0, 40, (7,))
    torch.testing.assert_close(model.crit(h, target), -logp.gather(1, target[:, None]).squeeze(1))
    tied = kwargs.get("tie_weight", True)
    emb_ptrs = {p.data_ptr() for p in model.word_emb.parameters()}
    crit_ptrs = {p.data_ptr() for p in model.crit.parameters()}
    assert bool(emb_ptrs & {model.crit._table(0)[0].data_ptr()}) == tied
    assert crit_ptrs.isdisjoint(emb_ptrs)  # shared tables are registered once


def test_base_model_has_151m_parameters():
    # Transformer-XL's WikiText-103 base model has 151M parameters (vocab 267,735, tied adaptive softmax)
    with torch.device("meta"):
        model = TransformerXL(267_735)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == 151


# ----------------------------------------------------------------------------------------- weight norm
def test_weight_norm_variant_is_parametrised_and_scale_invariant():
    torch.manual_seed(0)
    kw = dict(n_token=30, n_layer=2, d_model=16, n_head=2, d_head=8, d_inner=32, cutoffs=[10], dropout=0.0)
    plain, wn = TransformerXL(**kw), TransformerXL(**kw, weight_norm=True)
    linears = [m for m in wn.layers.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * 5  # qkv, r, o, ff1, ff2 per layer
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in linears)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())
    directions = [m.parametrizations.weight.original1 for m in linears]
    names = {n for n, _ in wn.named_parameters()}
    assert "layers.0.attn.qkv_net.parametrizations.weight.original1" in names

    inp, tgt = torch.randint(0, 30, (2, 6)), torch.randint(0, 30, (2, 6))
    wn.eval()
    with torch.no_grad():
        before, _ = wn(inp, tgt)
        for v in directions:  # positive per-row scaling of every direction: the function must not change
            v.mul_(torch.rand(v.shape[0], 1) * 5 + 0.1)
        after, _ = wn(inp, tgt)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)

    # hence the gradient of each direction row is orthogonal to that row (what AdamP's test detects)
    wn.train()
    nll, _ = wn(inp, tgt)
    nll.mean().backward()
    for v in directions:
        cos = torch.nn.functional.cosine_similarity(v.grad, v.detach(), dim=1)
        assert cos.abs().max() < 1e-4
    nll, _ = plain(inp, tgt)
    nll.mean().backward()
    qkv = plain.layers[0].attn.qkv_net.weight
    assert torch.nn.functional.cosine_similarity(qkv.grad, qkv.detach(), dim=1).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------- perplexity
class _FixedNLL(torch.nn.Module):
    """Returns NLL = target id (so the expected perplexity is easy to compute by hand); records memories."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, inp, target, mems=None, mem_len=None, **_):
        self.seen.append(mems)
        return target.double(), [inp.clone()]


def test_perplexity_of_a_fixed_model_output_by_hand():
    model = _FixedNLL()
    # 11 tokens, 2 streams of 5 ([0..4], [5..9]; token 10 dropped); predicted: 1,2,3,4 and 6,7,8,9
    nll, count = evaluate_perplexity(model, np.arange(11), batch_size=2, tgt_len=3, mem_len=3)
    assert count == 8 and nll == 40.0
    assert math.exp(nll / count) == pytest.approx(math.exp(5.0))
    # memory handed from segment to segment: None first, then the previous segment's output
    assert model.seen[0] is None and torch.equal(model.seen[1][0], torch.tensor([[0, 1, 2], [5, 6, 7]]))


def test_uniform_model_has_perplexity_equal_to_vocab_size():
    model = TransformerXL(37, n_layer=1, d_model=8, n_head=2, d_head=4, d_inner=16, cutoffs=[], mem_len=4).eval()
    with torch.no_grad():
        model.word_emb.emb_layers[0].weight.zero_()  # tied: zero logits everywhere
    nll, count = evaluate_perplexity(model, np.arange(60) % 37, batch_size=3, tgt_len=4, mem_len=4)
    assert count == 3 * 19
    assert math.exp(nll / count) == pytest.approx(37.0, rel=1e-5)


# ------------------------------------------------------------------------------------------------ task
def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.name"):
        _task(tmp_path, **{"data.name": "ptb"})
    with pytest.raises(ConfigError, match="data.root is required"):
        _task(tmp_path, **{"data.name": "wikitext-103", "data.root": None})
    with pytest.raises(ConfigError, match="batch_size"):
        LanguageModel(_task(tmp_path).config, RunContext(tmp_path, torch.device("cpu"), 0, rank=0, world_size=3))
    task = _task(tmp_path, **{"model.cutoffs": [50, 20000]})
    with pytest.raises(ConfigError, match="model.cutoffs.*vocabulary size"):
        task.build_model()


def test_end_to_end_through_the_shared_loop_beats_unigram(tmp_path):
    from benchmarks.config.validate import resolve_config
    from benchmarks.training.loop import train

    config = resolve_config({
        "task": "language_model",
        "data": {"name": "synthetic", "root": str(tmp_path / "syn"), "synthetic_vocab": 100,
                 "synthetic_train_tokens": 24_000},
        "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "d_head": 16, "d_inner": 64, "cutoffs": [20],
                  "dropout": 0.0, "tgt_len": 16, "mem_len": 16, "eval_tgt_len": 16, "eval_mem_len": 32},
        "optimizer": {"name": "adam", "lr": 3.0e-3},
        "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 4, "device": "cpu", "grad_clip": 0.25,
                  "schedule": {"name": "cosine"}, "log_every": 50},
    })
    result = train(config, tmp_path / "run")
    assert result["status"] == "done"
    corpus = wt.load_wikitext(tmp_path / "syn")
    unigram = wt.unigram_perplexity(corpus.vocab, corpus.valid)
    val, test = result["metrics"]["val_ppl"], result["metrics"]["test_ppl"]
    assert unigram > 20  # the corpus has real unigram entropy ...
    assert val < 0.4 * unigram and test < 0.4 * unigram  # ... and the model learned the bigram structure
    assert (tmp_path / "run" / "history.jsonl").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("weight_norm", [False, True])
def test_cuda_matches_cpu_and_bf16_trains(weight_norm):
    torch.manual_seed(0)
    model = TransformerXL(300, n_layer=2, d_model=32, n_head=2, d_head=16, d_inner=64, cutoffs=[50, 200],
                          div_val=2, mem_len=10, dropout=0.0, weight_norm=weight_norm, init_std=0.2).eval()
    seq = torch.randint(0, 300, (3, 21))
    with torch.no_grad():
        a, mems = model(seq[:, :10], seq[:, 1:11])
        b, _ = model(seq[:, 10:20], seq[:, 11:21], mems)
        gpu = model.cuda()
        torch.backends.cuda.matmul.allow_tf32 = False
        ga, gmems = gpu(seq[:, :10].cuda(), seq[:, 1:11].cuda())
        gb, _ = gpu(seq[:, 10:20].cuda(), seq[:, 11:21].cuda(), gmems)
    torch.testing.assert_close(ga.cpu(), a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gb.cpu(), b, rtol=1e-4, atol=1e-4)
    gpu.train()
    opt = torch.optim.AdamW(gpu.parameters(), lr=1e-3)
    mems = None
    for k in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            nll, mems = gpu(seq[:, :20].cuda(), seq[:, 1:21].cuda(), mems)
        loss = nll.float().mean()
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in gpu.parameters())
        opt.step()


def test_named_subfolder_wins_over_token_files_in_the_root(tmp_path):
    from benchmarks.data.wikitext import FILE_NAMES, SPLITS, resolve_root

    for folder in (tmp_path, tmp_path / "wikitext-103"):
        folder.mkdir(exist_ok=True)
        for split in SPLITS:
            (folder / FILE_NAMES[split]).write_text("a b\n")
    assert resolve_root(tmp_path, "wikitext-103") == tmp_path / "wikitext-103"
    assert resolve_root(tmp_path, "wikitext-2") == tmp_path
