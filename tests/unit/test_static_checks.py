"""Static checks of the tree, run with every unit test: ruff with the rules in pyproject.toml (undefined
names, unused imports and variables, syntax) on all Python, mypy with pyproject.toml's settings on
the product code, and shellcheck (warnings and errors) on every shell script. They come from the
project's set-up (requirements.txt, Debian's shellcheck); a missing one fails here rather than
skipping."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

from consul_image import IMAGE
from unit_harness import ROOT

PYTHON_TREES = ("components", "delivery", "policies", "images", "tests", "benchmarks", "lab", "provider",
                "__main__.py", "bluegreen/__init__.py")


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


def is_shell(path: str) -> bool:
    if path.endswith(".sh"):
        return True
    try:
        with open(os.path.join(ROOT, path), "rb") as handle:
            first = handle.readline()
    except OSError:
        return False
    return first.startswith(b"#!") and (first.rstrip().endswith((b"/sh", b"/bash", b" bash", b" sh")))


def test_python_passes_pyflakes_rules():
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    assert os.path.exists(ruff), "ruff is missing: ./bg setup installs requirements.txt"
    result = subprocess.run([ruff, "check", "--no-cache", "--output-format",
                             "concise", *PYTHON_TREES], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


MYPY_TREES = ("bluegreen",)   # components/, delivery/ and policies/ by their import path


def test_python_passes_mypy():
    """The product code and the consul image's scripts (top-level modules on the project's
    package, as the image installs it). Incremental: .mypy_cache/ makes a rerun quick."""
    mypy = os.path.join(os.path.dirname(sys.executable), "mypy")
    assert os.path.exists(mypy), "mypy is missing: ./bg setup installs requirements.txt"
    scripts = sorted(os.path.relpath(os.path.join(IMAGE, f), ROOT) for f in os.listdir(IMAGE)
                     if f.endswith(".py"))
    result = subprocess.run([mypy, *MYPY_TREES, *scripts], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck():
    assert shutil.which("shellcheck"), "shellcheck is missing: ./bg setup installs it from Debian"
    scripts = [path for path in tracked_files() if is_shell(path)]
    assert {"bg", ".ci/run", "lab/lab.sh", "bootstrap/provision.sh"} <= set(scripts)
    result = subprocess.run(["shellcheck", "--severity=warning", *scripts], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_modules_have_unique_names():
    """pytest imports test modules by their base name (pyproject's pythonpath holds every tier's
    folder): two of one name stop the whole run at collection."""
    names = [os.path.basename(p) for p in tracked_files()
             if p.startswith("tests/") and os.path.basename(p).startswith("test_") and p.endswith(".py")]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []


MAX_FUNCTION_LINES = 60
SHORT_TREES = ("components", "delivery", "images")


def test_functions_in_the_product_code_are_short():
    """Functions read as a sequence of named steps: none over MAX_FUNCTION_LINES lines (its
    decorators, docstring and body) in components/, delivery/ or images/."""
    long = []
    for path in tracked_files():
        if not (path.startswith(SHORT_TREES) and path.endswith(".py")):
            continue
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        long += [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                 for node in ast.walk(tree)
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], "split these into named steps:\n" + "\n".join(long)
