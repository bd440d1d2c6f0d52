"""The README's main job, in its quick form, and the docstring examples of the public API."""

import doctest
import importlib
import json
import subprocess
import sys

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, REPO_ROOT

PUBLIC_MODULES = [
    "l2l_multi._backend",
    "l2l_multi.data._datasets",
    "l2l_multi.data._meta_dataset",
    "l2l_multi.data._random",
    "l2l_multi.data._task_dataset",
    "l2l_multi.data._transforms",
    "l2l_multi.data._utils",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
    assert tried > 0 or module_name == "l2l_multi.data._random"


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="needs torch and jax")
def test_main_job_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "main_job.py"), "--quick",
         "--json", str(tmp_path / "results.json")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["cross_check"]["first_20_steps_max_relative_loss_difference"] < 1e-4
    for backend in ("torch", "jax"):
        # adaptation must help on unseen classes: far above chance (20%) after one step
        assert results[backend]["accuracy_after"] > results[backend]["accuracy_before"] + 0.3
    assert "[torch]" in result.stdout and "[jax  ]" in result.stdout
