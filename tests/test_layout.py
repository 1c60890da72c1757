"""The README's Layout section lists exactly the package's modules, and the layer contracts hold."""

from __future__ import annotations

import re
import shutil
import subprocess

from kwsbench.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "kwsbench"


def _readme_tree() -> set[str]:
    """Paths (relative to kwsbench/) of the tree block under '## Layout', from its two-space indentation."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)[1]
    lines = block.splitlines()
    assert lines[0] == "kwsbench/", lines[0]
    stack: list[str] = []
    out = set()
    for line in lines[1:]:
        name = line.split()[0]
        depth = (len(line) - len(line.lstrip(" "))) // 2 - 1
        stack = stack[:depth] + [name.rstrip("/")]
        out.add("/".join(stack) + ("/" if name.endswith("/") else ""))
    return out


def _package_tree() -> set[str]:
    out = set()
    for path in PACKAGE.rglob("*"):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or rel.name.startswith("__"):
            continue
        if path.is_dir() and (path / "__init__.py").is_file():
            out.add(f"{rel.as_posix()}/")
        elif path.suffix == ".py":
            out.add(rel.as_posix())
    return out


def test_readme_layout_lists_every_module_and_nothing_else():
    listed, present = _readme_tree(), _package_tree()
    assert listed - present == set(), "listed in the README's Layout, but not in kwsbench/"
    assert present - listed == set(), "in kwsbench/, but missing from the README's Layout"


def test_import_layers_hold():
    lint = shutil.which("lint-imports")
    assert lint is not None, "lint-imports (import-linter, a dev dependency) is not installed"
    res = subprocess.run([lint], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout
