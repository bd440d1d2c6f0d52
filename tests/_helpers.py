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
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


def tiny_conv_spec(size: int):
    """A ``ModelSpec`` of two blocks of 3x3 conv (8 channels) -> batch norm -> ReLU -> max-pool
    over ``[1, size, size]`` images, then a Linear head: small enough for batch-norm protocol tests."""
    from l2l_multi._registry import ModelSpec

    options = {"channels": 1, "hidden_size": 8, "layers": 2, "embedding_size": 8}
    return ModelSpec("tiny-conv", "CNN4", options, (1, size, size), True, "tests")


def blocky_images(rng, count: int, size: int):
    """``[count, 1, size, size]`` float32 images of 4x4 blocks at random levels (``size`` a multiple
    of 4): unlike pixel noise, their features differ from image to image, so batch statistics
    visibly move a network's outputs."""
    import numpy as np

    coarse = rng.normal(size=(count, 1, 4, 4)) * rng.uniform(0.5, 3.0, size=(count, 1, 1, 1))
    return np.kron(coarse, np.ones((size // 4, size // 4))).astype(np.float32)


def task_batch(seed: int, tasks: int, ways: int, shots: int, queries: int, size: int):
    """``(support_x [tasks, ways*shots, 1, size, size] float32, support_y [tasks, ways*shots] int,
    query_x [tasks, queries, ...], query_y [tasks, queries])`` of ``blocky_images``, labels cycling
    through the ways."""
    import numpy as np

    rng = np.random.default_rng(seed)
    per_task = ways * shots + queries
    x = blocky_images(rng, tasks * per_task, size).reshape(tasks, per_task, 1, size, size)
    y = np.tile(np.arange(per_task) % ways, (tasks, 1))
    cut = ways * shots
    return x[:, :cut], y[:, :cut], x[:, cut:], y[:, cut:]


def class_by_class_tasks(tasks=3, ways=5, shots=4, queries=1, seed=0, features=784):
    """``(sx [tasks, ways * shots, features], sy, qx [tasks, ways * queries, features], qy)``:
    float64 normal inputs, support labels class by class (as ``TaskDataset`` samples them), query
    labels cycling through the classes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(tasks, ways * shots, features))
    sy = np.tile(np.repeat(np.arange(ways), shots), (tasks, 1))
    qx = rng.normal(size=(tasks, ways * queries, features))
    qy = np.tile(np.arange(ways), (tasks, queries))
    return sx, sy, qx, qy
