"""./bg: help and usage errors answer at once, without the set-up (nothing is installed, built or
started, and the cache folder is not even made)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bg(tmp_path, *args):
    cache = tmp_path / "cache"
    env = {**os.environ, "BLUEGREEN_CACHE": str(cache)}
    result = subprocess.run([os.path.join(ROOT, "bg"), *args], capture_output=True, text=True,
                            timeout=30, env=env)
    assert "==> [" not in result.stdout + result.stderr, "the set-up ran"
    assert not cache.exists(), "the set-up ran"
    return result


@pytest.mark.parametrize("command, usage", [
    ("rollback", "usage: ./bg rollback [-h] --stack STACK [--to VERSION]"),
    ("audit", "usage: ./bg audit [-h] --stack STACK [--since DURATION] [--json] [SERVICE]"),
    ("lock", "usage: ./bg lock [-h] --stack STACK {status,release} [SERVICE]"),
    ("releases", "usage: ./bg releases [-h] --stack STACK SERVICE"),
    ("promote", "usage: ./bg promote [-h] --stack STACK"),
    ("pipeline", "usage: ./bg pipeline [-h] --version VERSION"),
    ("preview", "usage: ./bg preview [-h] [--stack S]"),
])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_delivery_help_without_the_set_up(tmp_path, command, usage, flag):
    result = bg(tmp_path, command, flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(usage)


def test_help_after_other_arguments(tmp_path):
    result = bg(tmp_path, "rollback", "vizconfig", "--help")
    assert result.returncode == 0 and "--stack STACK" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["pipeline"], "the following arguments are required: SERVICE_REPO_DIR, --version"),
    (["rollback", "vizconfig"], "the following arguments are required: --stack"),
    (["preview", "--colour", "blue"], "unrecognized arguments: --colour blue"),
    (["rollback", "vizconfig", "--stack", "s", "--lock-wait", "soon"],
     "argument --lock-wait: 'soon' is not a duration; write e.g. 500ms, 2s or 1m, 2h or 30d"),
    (["lock", "hold", "vizconfig", "--stack", "s"], "argument action: invalid choice: 'hold'"),
    (["up", "--yes"], "'up' takes one stack name (default local), not '--yes'"),
    (["destroy", "local", "production"], "For other options: ./bg pulumi destroy --stack STACK"),
])
def test_usage_errors_without_the_set_up(tmp_path, args, message):
    result = bg(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize("args", [["help"], ["--help"], ["up", "--help"], ["destroy", "-h"],
                                  ["setup", "--help"]])
def test_bg_help(tmp_path, args):
    result = bg(tmp_path, *args)
    assert result.returncode == 0
    assert "./bg up [STACK]" in result.stdout and "./bg rollback SERVICE --stack S" in result.stdout


def test_help_in_a_fresh_clone_before_any_set_up(tmp_path):
    """No .venv yet: the help comes from whatever python3 is on PATH."""
    clone = tmp_path / "clone"
    (clone / "toolchain").mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "bg"), clone / "bg")
    shutil.copy(os.path.join(ROOT, "toolchain", "versions.env"), clone / "toolchain")
    shutil.copytree(os.path.join(ROOT, "bootstrap"), clone / "bootstrap")
    shutil.copytree(os.path.join(ROOT, "delivery"), clone / "delivery")
    shutil.copytree(os.path.join(ROOT, "bluegreen"), clone / "bluegreen", symlinks=True)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p)
    result = subprocess.run([str(clone / "bg"), "pipeline", "--help"], capture_output=True, text=True,
                            timeout=30, env={**os.environ, "PATH": path,
                                             "BLUEGREEN_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ./bg pipeline")
    assert not (clone / ".venv").exists() and not (tmp_path / "cache").exists()
