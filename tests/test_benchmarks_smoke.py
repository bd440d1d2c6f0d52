"""The benchmark scripts run end to end in their --quick form (seconds; numbers are not checked)."""

import os
import subprocess
import sys

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, REPO_ROOT


# under `pytest -m long` (21 s): the benchmark behind the README's speed rows, not a library path
@pytest.mark.long
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_maml_step_quick(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "L2L_BACKEND"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        # XLA's convolutions: the jax rows compile several times faster than with the CPU default
        # (matmul); both implementations are checked against torch in test_models
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "maml_step.py"),
            "--quick",
            "--device",
            "cpu",
            "--jax-conv",
            "xla",
            "--json",
            str(tmp_path / "maml_step.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| implementation" in result.stdout and "median s/step" in result.stdout
    for row in ("| l2l loop", "| l2l vmap (fast path)", "| clone-and-update loop", "| learn2learn 0.2.0"):
        assert row in result.stdout, result.stdout
    assert "check (float64) vs l2l loop: l2l vmap (fast path)" in result.stdout
    if HAVE_JAX:
        assert "| l2l jax (jit, vmap" in result.stdout, result.stdout
    assert (tmp_path / "maml_step.json").exists()


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_reptile_adam_moments_quick(tmp_path):
    """Both ways of keeping Adam's moments train and validate, one row per evaluation (a smoke
    run: the accuracies are not compared)."""
    from _helpers import OMNIGLOT_ROOT

    if not (OMNIGLOT_ROOT / "images_background.zip").exists():
        pytest.skip("the Omniglot archives are not there")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "reptile_adam_moments.py"),
            *("--root", str(OMNIGLOT_ROOT), "--iterations", "2", "--eval-every", "1", "--eval-tasks", "2"),
            *("--json", str(tmp_path / "moments.json")),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    rows = json.loads((tmp_path / "moments.json").read_text())["rows"]
    assert [(row["moments"], row["iteration"]) for row in rows] == [
        ("fresh", 1),
        ("fresh", 2),
        ("carried", 1),
        ("carried", 2),
    ]
    assert all(0.0 <= row["valid_accuracy"] <= 1.0 for row in rows)
