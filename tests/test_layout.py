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


def test_every_project_path_the_readme_names_exists():
    """A path in backticks or a link (kwsbench/..., benchmarks/..., tests/..., docs/...) names a real file or folder
    (`kwsbench/allocator.py` outlived its move to kwsbench/run/)."""
    text = (PROJECT_ROOT / "README.md").read_text()
    named = set(re.findall(r"[`(]((?:kwsbench|benchmarks|tests|docs)/[\w./-]*\w/?)[`)]", text))
    assert len(named) > 20, named  # the pattern still finds the README's paths
    missing = sorted(p for p in named if not (PROJECT_ROOT / p).exists() and not p.startswith("kwsbench/_data"))
    assert missing == [], f"named in the README but not in the checkout: {missing}"


def test_every_environment_variable_the_package_reads_is_in_the_readme():
    """The README's table is where a user looks up what a KWSBENCH_* variable does."""
    text = (PROJECT_ROOT / "README.md").read_text()
    table = text.split("## Environment variables")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(KWSBENCH_\w+)`", table, re.M))
    read = set()
    for path in PACKAGE.rglob("*.py"):
        read |= set(re.findall(r"\"(KWSBENCH_[A-Z_]+)\"", path.read_text()))
    hooks = {name for name in read if name.startswith("KWSBENCH_TEST_")}  # test hooks, not for users
    assert read - hooks - documented == set()
