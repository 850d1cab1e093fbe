#!/usr/bin/env python
"""Language-modelling benchmarks on this machine: training tokens/s of a small Transformer-XL, and the time
and peak memory of building the WikiText-103 vocabulary + token arrays.

1. ``--tokens-per-s``: a small Transformer-XL (4 layers, d_model 256, vocab 10k, adaptive softmax, segments
   of 64 tokens with 64 of memory, batch 8) trained with AdamW and AdamP, with and without WN; median over
   the timed steps (after warm-up) of forward + backward + optimizer step, memory carried across segments.
   ``--base --device cuda [--precision bf16]`` does the same for the WikiText-103 base model on a GPU.
2. ``--vocab``: writes a synthetic WikiText-103-sized ``wiki.train.tokens`` (103M tokens in ~1.8M lines,
   ~267k distinct words with Zipf-like frequencies, ~540 MB; plus small valid/test files) into ``--data-dir``
   (default /tmp/wt103_synthetic, reused when present), then builds the corpus in a fresh child process
   exactly as the task does (count, vocabulary, encode to int32, atomic cache write) and reloads it from the
   cache, printing the time of each phase and the child's peak RSS (``resource.getrusage``).

Usage: ``python scripts/bench_lm.py`` (both), ``--tokens-per-s`` or ``--vocab`` alone, ``--threads N``.
The CPU numbers are only meaningful on an otherwise idle machine: the script prints the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# WikiText-103 train split: 103,227,021 tokens (with one <eos> per line), 1,801,350 lines, 267,735 words
WT103_TOKENS = 103_227_021
WT103_LINES = 1_801_350
WT103_VOCAB = 267_735


# ------------------------------------------------------------------------------------------ tokens/s
def bench_tokens_per_s(threads: int, steps: int, warmup: int, base: bool = False, device: str = "cpu",
                       precision: str = "fp32") -> list[dict]:
    """Training tokens/s of Transformer-XL on random tokens (the data does not change the cost).

    ``base=False``: a small model (4 layers, d_model 256, vocab 10k, batch 8 x 64 tokens, memory 64) for
    CPUs; ``base=True``: the WikiText-103 base model (151M parameters, vocab 267,735, batch 60 x 150 tokens,
    memory 150), for GPUs. Each row: median step time of forward + backward + clip + optimizer step.
    """
    import torch

    from benchmarks.models.transformer_xl import TransformerXL
    from benchmarks.registry import build_optimizer

    torch.set_num_threads(threads)
    dev = torch.device(device)
    if base:
        vocab, bsz, tgt_len, arch = WT103_VOCAB, 60, 150, {}
    else:
        vocab, bsz, tgt_len = 10_000, 8, 64
        arch = dict(n_layer=4, d_model=256, n_head=4, d_head=64, d_inner=1024, cutoffs=[2000], mem_len=64)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    rows = []
    for weight_norm in (False, True):
        for opt_name in ("adamw", "adamp"):
            torch.manual_seed(0)
            model = TransformerXL(vocab, dropout=0.1, weight_norm=weight_norm, **arch).to(dev)
            opt = build_optimizer({"name": opt_name, "lr": 2.5e-4, "weight_decay": 1e-2}, model.parameters())
            data = torch.randint(0, vocab, (bsz, (warmup + steps) * tgt_len + 1), device=dev)
            mems, times, cpu_times = None, [], []
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            for k in range(warmup + steps):
                inp = data[:, k * tgt_len:(k + 1) * tgt_len]
                tgt = data[:, k * tgt_len + 1:(k + 1) * tgt_len + 1]
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t0, c0 = time.perf_counter(), time.process_time()
                with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                    nll, mems = model(inp, tgt, mems)
                    loss = nll.float().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                opt.step()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                if k >= warmup:
                    times.append(time.perf_counter() - t0)
                    cpu_times.append(time.process_time() - c0)
            step_s = statistics.median(times)
            row = {"model": "base" if base else "small", "device": str(dev), "precision": precision,
                   "weight_norm": weight_norm, "optimizer": opt_name,
                   "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                   "step_ms": round(step_s * 1e3, 1), "tokens_per_s": round(bsz * tgt_len / step_s),
                   "final_loss": round(float(loss.detach()), 3)}
            if dev.type == "cuda":
                row["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                row["hours_for_200k_steps"] = round(step_s * 200_000 / 3600, 1)
            else:
                row["cpu_s_per_step"] = round(statistics.median(cpu_times), 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
            del model, opt, mems
    return rows


# ----------------------------------------------------------------------------------------- vocabulary
def _zipf_words(n_words: int, rng: np.random.Generator) -> list[str]:
    """Distinct lowercase words, short for frequent ranks and longer for rare ones (like real text)."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words, seen = ["the", ",", ".", "of", "<unk>", "and", "in", "to", "a", "=", "@-@", '"'], set()
    seen.update(words)
    ranks = np.arange(len(words), n_words)
    lengths = np.clip(2 + np.log2(ranks + 2) * 0.4 + rng.normal(0, 1.2, ranks.size), 2, 16).astype(int)
    for length in lengths:
        while True:
            w = "".join(rng.choice(letters, size=length))
            if w not in seen:
                seen.add(w)
                words.append(w)
                break
    return words


def write_synthetic_wt103(folder: Path, n_tokens: int, n_lines: int, n_words: int, seed: int = 0) -> Path:
    """Write wiki.{train,valid,test}.tokens with Zipf(1.0)-distributed words; ``n_tokens`` counts <eos>."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array(_zipf_words(n_words, rng), dtype=object)
    p = 1.0 / np.arange(1, n_words + 1) ** 1.0
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0
    words_per_line = (n_tokens - n_lines) / n_lines
    for split, tokens, lines in (("train", n_tokens, n_lines), ("valid", 217_646, 3_760), ("test", 245_569, 4_358)):
        path = folder / f"wiki.{split}.tokens"
        tmp = path.with_suffix(".tmp")
        left_tokens, left_lines = tokens, lines
        with open(tmp, "w", encoding="utf-8") as f:
            while left_lines > 0:
                k = min(left_lines, 20_000)
                # about a third of WikiText lines are blank; the rest share the words
                blank = rng.random(k) < 0.33
                lengths = np.where(blank, 0, rng.poisson(words_per_line / 0.67, k))
                if k == left_lines:  # last chunk: hit the exact token count
                    lengths[-1] = max(0, left_tokens - k - int(lengths[:-1].sum()))
                ids = np.searchsorted(cdf, rng.random(int(lengths.sum())))
                chunk = words[ids].tolist()
                out, pos = [], 0
                for n in lengths.tolist():
                    out.append(" " + " ".join(chunk[pos:pos + n]) + " \n" if n else " \n")
                    pos += n
                f.write("".join(out))
                left_tokens -= int(lengths.sum()) + k
                left_lines -= k
        os.replace(tmp, path)
    return folder


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def build_child(data_dir: Path, cache_dir: Path) -> dict:
    """Run in a fresh process: build like ``load_wikitext`` does, phase by phase, then reload from the cache."""
    from benchmarks.data import wikitext as wt

    out: dict = {"rss_start_mb": round(_peak_rss_mb(), 1)}
    root = wt.resolve_root(data_dir)
    t0 = time.perf_counter()
    counter = wt.count_tokens(root / "wiki.train.tokens")
    out["count_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    vocab = wt.build_vocab(counter)
    out["vocab_s"] = time.perf_counter() - t
    t = time.perf_counter()
    train = wt.encode_file(root / "wiki.train.tokens", vocab, n_tokens=sum(counter.values()))
    del counter
    valid = wt.encode_file(root / "wiki.valid.tokens", vocab)
    test = wt.encode_file(root / "wiki.test.tokens", vocab)
    out["encode_s"] = time.perf_counter() - t
    t = time.perf_counter()
    corpus = wt.Corpus(vocab=vocab, train=train, valid=valid, test=test, root=root)
    path = wt.cache_path(root, cache_dir)
    wt.save_cache(corpus, path, wt.source_signature(root))
    out["cache_write_s"] = time.perf_counter() - t
    out["build_total_s"] = time.perf_counter() - t0
    out["peak_rss_build_mb"] = round(_peak_rss_mb(), 1)
    out.update(vocab_size=len(vocab), train_tokens=int(train.size), cache_mb=round(path.stat().st_size / 2**20, 1))
    del corpus, train, valid, test, vocab
    t = time.perf_counter()
    again = wt.load_wikitext(data_dir, cache_dir=cache_dir)
    out["cache_reload_s"] = time.perf_counter() - t
    out["reloaded_from_cache"] = again.from_cache
    out["peak_rss_total_mb"] = round(_peak_rss_mb(), 1)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def bench_vocab(data_dir: Path, n_tokens: int, n_lines: int, n_words: int) -> dict:
    train = data_dir / "wiki.train.tokens"
    stamp = data_dir / "params.json"
    params = {"tokens": n_tokens, "lines": n_lines, "words": n_words, "version": 1}
    if not (train.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == params):
        t = time.perf_counter()
        write_synthetic_wt103(data_dir, n_tokens, n_lines, n_words)
        stamp.write_text(json.dumps(params))
        print(f"wrote {data_dir} in {time.perf_counter() - t:.0f} s", flush=True)
    size_mb = train.stat().st_size / 2**20
    cache_dir = Path(tempfile.mkdtemp(prefix="wt103_cache_", dir=data_dir.parent))
    try:
        proc = subprocess.run([sys.executable, __file__, "--build-child", str(data_dir), str(cache_dir)],
                              capture_output=True, text=True, check=True)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["train_file_mb"] = round(size_mb, 1)
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens-per-s", action="store_true", help="only the training throughput benchmark")
    ap.add_argument("--vocab", action="store_true", help="only the vocabulary-build benchmark")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the throughput benchmark")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps (after the warm-up steps)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps")
    ap.add_argument("--base", action="store_true",
                    help="throughput of the WikiText-103 base model (151M parameters; meant for a GPU)")
    ap.add_argument("--device", default="cpu", help="device of the throughput benchmark (cpu, cuda)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                    help="autocast precision of the throughput benchmark")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/wt103_synthetic"))
    ap.add_argument("--train-tokens", type=int, default=WT103_TOKENS)
    ap.add_argument("--build-child", nargs=2, metavar=("DATA", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.build_child:
        print(json.dumps(build_child(Path(args.build_child[0]), Path(args.build_child[1]))))
        return 0
    both = not (args.tokens_per_s or args.vocab or args.base)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, python "
          f"{sys.version.split()[0]}", flush=True)
    if args.tokens_per_s or args.base or both:
        bench_tokens_per_s(args.threads, args.steps, args.warmup, base=args.base, device=args.device,
                           precision=args.precision)
    if args.vocab or both:
        lines = max(10, round(WT103_LINES * args.train_tokens / WT103_TOKENS))
        words = min(WT103_VOCAB, max(100, args.train_tokens // 100))
        bench_vocab(args.data_dir, args.train_tokens, lines, words)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
