"""What produced a result: the git commit and the versions of the software and device that ran it."""

from __future__ import annotations

import importlib.metadata as _md
import os
import subprocess
import sys
from typing import Any

from kwsbench.paths import PROJECT_ROOT


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                             timeout=10)
        # outside a git checkout `git rev-parse HEAD` prints "HEAD" to stdout and fails: then the commit the
        # copy was made from, where whoever copied it says (KWSBENCH_GIT_COMMIT), else nothing
        if out.returncode == 0:
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("KWSBENCH_GIT_COMMIT", "")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    # triton: its kernels compute S-Edge's cells on a GPU (kwsbench.models.sedge_eval); "" where not installed
    for pkg in ("kwsbench", "torch", "torchaudio", "numpy", "scipy", "soundfile", "triton"):
        try:
            versions[pkg] = _md.version(pkg)
        except _md.PackageNotFoundError:
            versions[pkg] = ""
    return versions


def environment(device: str) -> dict[str, Any]:
    """Commit, package versions, torch / CUDA and the device's name, as stored with every run."""
    import torch

    dev_name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    return {"git_commit": git_commit(), "versions": package_versions(), "torch": torch.__version__,
            "cuda": torch.version.cuda or "", "device": f"{device} ({dev_name})"}
