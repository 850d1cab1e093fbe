"""Compile the Triton kernels of adamp's fused path for a GPU architecture, without a GPU.

    python scripts/triton_aot_check.py [--arch 90] [--registers] [--ptx-grep sqrt]

Triton compiles ahead of time to PTX and a cubin with the ptxas it ships, so this catches any kernel that
would fail to compile on the device (type errors, unsupported operations) on a machine with no GPU. It
compiles every combination the optimizers launch: AdamP and SGDP, fp32/fp64/fp16/bf16 params, Nesterov,
maximize and SGDP's buffer projection. ``--registers`` also asks ptxas for each kernel's registers and
spills, prints them, and fails if a kernel working in float32 spills to local memory (the fp64 variants
may: they are for tests, not speed). Must run without ``TRITON_INTERPRET`` (the tests call it in a
subprocess with that variable removed).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability x10 (default 90: H100)")
    parser.add_argument("--registers", action="store_true",
                        help="report registers and spills (ptxas -v); fail if a float32 kernel spills")
    parser.add_argument("--ptx-grep", default=None, help="print the PTX lines containing this text (first kernel)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("unset TRITON_INTERPRET: the interpreter cannot compile kernels")
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget

    from adamp import _triton

    target = GPUTarget("cuda", args.arch, 32)
    tile = dict(BLOCK_R=_triton.BLOCK_R, BLOCK_C=_triton.BLOCK_C, CHUNK=_triton.CHUNK)
    jobs = []
    dtypes = [("fp32", tl.float32, "fp32"), ("fp64", tl.float64, "fp64"), ("fp16", tl.float16, "fp32"),
              ("bf16", tl.bfloat16, "fp32")]
    for algo, (pname, pdt, mname), nesterov, maximize in itertools.product(
            (_triton.ADAMP, _triton.SGDP), dtypes, (False, True), (False, True)):
        mdt = tl.float64 if mname == "fp64" else tl.float32
        flags = dict(ALGO=algo, P_DTYPE=pdt, M_DTYPE=mdt, NESTEROV=nesterov, MAXIMIZE=maximize, **tile)
        sig = {"addr": "*i64", "meta": "*i64", "tiles": "*i64", "scal": "*fp64", "stats": f"*{mname}"}
        jobs.append((_triton._stats_kernel, sig, flags))
        sig = {"addr": "*i64", "meta": "*i64", "tiles": "*i64", "scal": "*fp64", "coef": f"*{mname}",
               "tinfo": f"*{mname}"}
        for project_buffer in ((False, True) if algo == _triton.SGDP else (True,)):
            jobs.append((_triton._apply_kernel, sig, dict(flags, PROJECT_BUFFER=project_buffer)))
    for mname, mdt in (("fp32", tl.float32), ("fp64", tl.float64)):
        sig = {"meta": "*i64", "blocks": "*i64", "scal": "*fp64", "stats": f"*{mname}", "coef": f"*{mname}",
               "part": f"*{mname}"}
        jobs.append((_triton._rows_kernel, sig, dict(M_DTYPE=mdt, BLOCK_T=_triton.BLOCK_T)))
        sig = {"meta": "*i64", "bounds": f"*{mname}", "scal": "*fp64", "part": f"*{mname}", "tinfo": f"*{mname}"}
        jobs.append((_triton._decide_kernel, sig, dict(M_DTYPE=mdt, BLOCK_B=_triton.BLOCK_B)))
    t0 = time.perf_counter()
    spilling = []
    for i, (fn, sig, constexprs) in enumerate(jobs):
        signature = dict(sig, **{k: "constexpr" for k in constexprs})
        src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
        compiled = triton.compile(src, target=target, options={"num_warps": _triton.NUM_WARPS})
        if not compiled.asm.get("cubin"):
            raise SystemExit(f"{fn.__name__} {constexprs}: no cubin")
        if args.ptx_grep and i == 0:
            print("\n".join(line for line in compiled.asm["ptx"].splitlines() if args.ptx_grep in line))
        if args.registers:
            registers, spill = _ptxas_usage(compiled.asm["ptx"], args.arch)
            variant = " ".join(f"{k}={_short(v)}" for k, v in constexprs.items()
                               if not k.startswith(("BLOCK", "CHUNK")))
            print(f"{fn.__name__:15s} {variant:75s} registers {registers:3d}  spill bytes {spill}")
            if spill and constexprs["M_DTYPE"] != tl.float64:
                spilling.append(f"{fn.__name__} {variant}")
    print(f"compiled {len(jobs)} kernel variants for sm_{args.arch} in {time.perf_counter() - t0:.1f} s")
    if spilling:
        print("float32 kernels that spill registers:\n  " + "\n  ".join(spilling))
        return 1
    return 0


def _short(value) -> str:
    return str(value).replace("triton.language.", "").replace("constexpr[", "").rstrip("]")


def _ptxas_usage(ptx: str, arch: int) -> tuple[int, int]:
    """(registers per thread, spill-store bytes) of one kernel, as the ptxas Triton ships reports them."""
    import re
    import subprocess
    import tempfile

    import triton

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        suffix = "a" if arch >= 90 else ""
        out = subprocess.run([str(ptxas), f"-arch=sm_{arch}{suffix}", "-v", str(src), "-o", str(Path(tmp) / "k.o")],
                             capture_output=True, text=True, check=True)
    report = out.stdout + out.stderr
    registers = int(re.search(r"Used (\d+) registers", report).group(1))
    spill = int(re.search(r"(\d+) bytes spill stores", report).group(1))
    return registers, spill


if __name__ == "__main__":
    raise SystemExit(main())
