"""Helpers shared by the tests (importable because pytest adds tests/ to sys.path)."""

import csv
import os
import pathlib
import runpy
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Where the tests find real data sets (Omniglot's zips in <root>/omniglot): the folder named by
# L2L_MULTI_TEST_DATA, by default the `shared/data` folder beside the repository. Tests that need
# the data skip when it is absent.
TEST_DATA = pathlib.Path(os.environ.get("L2L_MULTI_TEST_DATA") or REPO_ROOT.parent / "shared" / "data")
OMNIGLOT_ROOT = TEST_DATA / "omniglot"

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
try:
    import jax  # noqa: F401

    HAVE_JAX = True
except ImportError:
    HAVE_JAX = False

FRAMEWORKS = [
    pytest.param("torch", marks=pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")),
    pytest.param("jax", marks=pytest.mark.skipif(not HAVE_JAX, reason="jax not installed")),
]


def run_script(script: pathlib.Path, *arguments) -> None:
    """Runs the example ``script`` in this process, as ``python script arguments`` would (the
    frameworks it imports stay imported for the next run)."""
    saved = sys.argv
    sys.argv = [str(script), *map(str, arguments)]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved


def metrics_rows(folder: pathlib.Path) -> list[dict]:
    """The rows of ``folder/metrics.csv`` without ``elapsed_s`` (which differs between runs)."""
    with open(folder / "metrics.csv", newline="") as stream:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(stream)]


def run_python(code: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (L2L_BACKEND unset unless ``env`` sets it)."""
    full_env = {k: v for k, v in os.environ.items() if k != "L2L_BACKEND"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=cwd,
        timeout=300,
    )
