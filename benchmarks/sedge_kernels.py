#!/usr/bin/env python
"""S-Edge's GPU kernels compiled without a GPU: registers, spilled bytes and instruction mix per layer.

For each size, every layer's scan kernel and, where the layer has one, its fused read-out are compiled by Triton
for a GPU architecture (--arch, default sm_90a: H100 and H200) with the compile-time arguments the eval path
launches them with (`kwsbench.models.sedge_eval`). ptxas, which ships with Triton, reports each kernel's
registers per thread and spill bytes; the SASS (cuobjdump) gives its FFMA instructions (the fp32 arithmetic),
shared-memory loads (LDS) and global loads (LDG). Device time is scarce: this shows what a kernel change does to
registers and work before a GPU measures its speed. It does not measure speed: on 2026-12-05 a change that cut
registers from 236-255 to 168 and FFMAs by 20-60 % ran slower on an H200 (docs/performance-history.md).

    python benchmarks/sedge_kernels.py --sizes large,medium
    python benchmarks/sedge_kernels.py --sizes large --set _K_STEP=0     # with a module setting changed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

NATIVE_LENGTH = 16000  # samples of a 1-s clip at 16 kHz, the first layer's steps


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="large,medium,small,tiny,naive-large,full")
    p.add_argument("--arch", default="sm_90a", help="GPU architecture to compile for (sm_80, sm_90a, ...)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=INT",
                   help="a module setting of kwsbench.models.sedge_eval for this run, e.g. _K_STEP=0 (repeatable)")
    p.add_argument("--out", help="write the rows as JSON here")
    return p.parse_args(argv)


def _tools() -> dict[str, str]:
    import triton

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    return {name: str(bin_dir / name) for name in ("ptxas", "cuobjdump")}


def _compile(fn, constants: dict, num_warps: int, arch: str, tools: dict, work: Path) -> dict:
    """Compile one kernel; its registers, spill bytes and SASS instruction counts."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = {name: "constexpr" if name in constants else "i32" if name == "rows" else "*fp32"
                 for name in fn.arg_names}
    capability = int(re.sub(r"\D", "", arch))
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constants),
                            target=GPUTarget("cuda", capability, 32), options={"num_warps": num_warps})
    (work / "k.ptx").write_text(kernel.asm["ptx"])
    (work / "k.cubin").write_bytes(kernel.asm["cubin"])
    ptxas = subprocess.run([tools["ptxas"], "-v", f"-arch={arch}", str(work / "k.ptx"), "-o", str(work / "v.cubin")],
                           capture_output=True, text=True, check=True).stderr
    sass = subprocess.run([tools["cuobjdump"], "-sass", str(work / "k.cubin")], capture_output=True, text=True,
                          check=True).stdout
    ops = Counter(m.split(".")[0] for m in re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9.]*)", sass))
    regs = re.search(r"Used (\d+) registers", ptxas)
    spill = re.search(r"(\d+) bytes spill stores", ptxas)
    return {"registers": int(regs.group(1)) if regs else None, "spill_bytes": int(spill.group(1)) if spill else 0,
            "instructions": sum(ops.values()), "ffma": ops["FFMA"], "lds": ops["LDS"], "ldg": ops["LDG"]}


def size_rows(size: str, arch: str, tools: dict, work: Path) -> list[dict]:
    """One row per kernel of the size's eval forward (scan per layer, fused read-outs)."""
    from kwsbench.models import sedge_eval as se
    from kwsbench.models.sedge import build_sedge

    model = build_sedge(size)
    rows, length = [], NATIVE_LENGTH
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        length = -(-length // layer.decimation)
        source, residual = se.layer_kinds(layer, pool=i == last)
        h_in = layer.h_in if source == se._PROJECTED else 1
        kernels = [("scan", se._scan_kernel, se.scan_constants(layer.n_state, length, source, h_in), se._SCAN_WARPS)]
        if residual is not None:
            kernels.append(("readout", se._readout_kernel,
                            se.readout_constants(2 * layer.n_state, layer.h_in, layer.h_out, residual),
                            se._READOUT_WARPS))
        for name, fn, constants, warps in kernels:
            row = {"size": size, "layer": i, "kernel": name, "h_in": layer.h_in, "states": layer.n_state,
                   "h_out": layer.h_out}
            rows.append(row | _compile(fn, constants, warps, arch, tools, work))
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    return (f"{r['size']:<18} L{r['layer']} {r['kernel']:<8} in {r['h_in']:>3} states {r['states']:>3} "
            f"out {r['h_out']:>3}  regs {r['registers']:>4}  spill B {r['spill_bytes']:>5}  "
            f"FFMA {r['ffma']:>5}  LDS {r['lds']:>4}  LDG {r['ldg']:>4}  instr {r['instructions']:>6}")


def main(argv=None) -> int:
    args = _args(argv)
    from kwsbench.models import sedge_eval

    if sedge_eval.triton is None:
        print("error: Triton is not installed (it ships with torch's CUDA wheels on Linux)", file=sys.stderr)
        return 5
    for text in args.set:
        setting = sedge_eval.parse_setting(text)
        if setting is None:
            print(f"error: --set {text}: expected NAME=INT with NAME a tunable setting of kwsbench.models.sedge_eval "
                  f"({', '.join(sedge_eval.TUNABLE)})", file=sys.stderr)
            return 2
        setattr(sedge_eval, *setting)
    tools = _tools()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TRITON_CACHE_DIR", str(Path(tmp) / "triton"))  # kernels for another GPU: not kept
        for size in args.sizes.split(","):
            rows += size_rows(size, args.arch, tools, Path(tmp))
    if args.out:
        Path(args.out).write_text(json.dumps({"arch": args.arch, "settings": args.set, "kernels": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
