"""Build step only (the project's metadata is in pyproject.toml): the wheel carries the top-level data folders that
users read and edit in a checkout -- noise/ definitions, baselines/ and checkpoints/ (manifests plus the project's
small trained weights) -- as kwsbench/_data/, where kwsbench.paths.packaged finds them once installed. An editable
install reads the top-level folders themselves, so nothing is copied for it."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# What ships: user data (noise/recordings/, imported public checkpoints) stays out.
PACKAGED = {
    "noise": ("*.yaml", "README.md"),
    "baselines": ("*.yaml", "protocols/*.yaml"),  # protocols/: class compositions for bridged verdicts
    "checkpoints": ("*.yaml", "README.md", "synth/*.pt", "gsc-mini/*.pt"),
}


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "kwsbench" / "_data"
        for folder, patterns in PACKAGED.items():
            for pattern in patterns:
                for src in sorted((ROOT / folder).glob(pattern)):
                    dst = target / folder / src.relative_to(ROOT / folder)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithData})
