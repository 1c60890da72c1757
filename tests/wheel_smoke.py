"""Build the wheel and use it as a user would: installed into a fresh environment, run from a folder outside the
checkout. Used by .ci/run and by tests/test_wheel.py.

    python tests/wheel_smoke.py OUT [--models LIST]

The fresh environment reuses this interpreter's installed dependencies instead of downloading torch again: the
wheel is installed with --no-deps into a new venv, and a .pth file then adds this interpreter's site-packages
behind the venv's own. (`venv --system-site-packages` would not do: run from a virtual environment it exposes the
base interpreter's packages, not the ones installed in that environment.) Any failure exits non-zero after
printing the command, its exit code and its output.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_MARK = "<!-- api-example -->"


def readme_api_example() -> str:
    """The README's notebook example: the python block after the API_MARK comment."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(re.escape(API_MARK) + r"\s*```python\n(.*?)```", text, re.S)
    if not match:
        raise SystemExit(f"README.md has no ```python block after {API_MARK}")
    return match.group(1)


def step(cmd: list[str], cwd: Path, env: dict[str, str], expect: str | None = None) -> str:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    shown = " ".join(shlex.quote(c) for c in cmd)
    print(f"[{time.perf_counter() - t0:6.1f} s] rc={res.returncode} {shown}", flush=True)
    if res.returncode != 0 or (expect is not None and expect not in res.stdout):
        print(res.stdout[-4000:], res.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"wheel smoke failed: {shown} (exit {res.returncode}"
                         + (f", output lacks {expect!r})" if expect and res.returncode == 0 else ")"))
    return res.stdout


def build_and_install(out: Path, env: dict[str, str]) -> Path:
    """Build the sdist and, from it, the wheel into out/dist (so the wheel holds what the sdist carries and nothing
    left over in build/), and install the wheel (no dependencies) into the venv out/venv; returns its python."""
    dist, venv = out / "dist", out / "venv"
    step([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], out, env)
    wheel = max(dist.glob("kwsbench-*.whl"), key=lambda p: p.stat().st_mtime)
    step([sys.executable, "-m", "venv", "--without-pip", str(venv)], out, env)
    python = venv / "bin" / "python"
    # this interpreter's pip installs into the new venv, which does not see the dependencies yet
    step([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], out, env)
    site = Path(step([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], out, env)
                .strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_kwsbench_smoke_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return python


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="empty working folder (wheel, venv, a working directory)")
    parser.add_argument("--models", help="evaluate only these synth-trained models in the run (default: the whole "
                                         "`kwsbench run --quick`)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KWSBENCH_STORE", "VIRTUAL_ENV")}
    python = build_and_install(out, env)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    cwd = out / "elsewhere"  # outside the checkout: nothing can be found through the source tree
    cwd.mkdir(exist_ok=True)
    where = step([str(python), "-c", "import kwsbench, kwsbench.paths as p; print(kwsbench.__file__); "
                  "print(p.packaged('noise')); print(p.packaged('checkpoints'))"], cwd, env)
    if str(ROOT) in where or "_data" not in where:
        raise SystemExit(f"the installed kwsbench is not the wheel's or lacks its data:\n{where}")
    kwsbench = str(python.parent / "kwsbench")
    step([kwsbench, "--version"], cwd, env, expect="kwsbench ")
    step([kwsbench, "noise", "list"], cwd, env, expect="factory")
    step([kwsbench, "checkpoints", "list"], cwd, env, expect="synth")
    step([str(python), "-m", "kwsbench", "reproduce", "--help"], cwd, env, expect="--quick")
    run = [kwsbench, "run", "--quick"] + (["--weights", "synth", "--models", args.models] if args.models else [])
    step(run, cwd, env, expect="0 failed")
    step([kwsbench, "leaderboard", "--format", "csv"], cwd, env, expect="accuracy")
    step([str(python), "-c", readme_api_example()], cwd, env)
    print(f"wheel smoke passed: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
