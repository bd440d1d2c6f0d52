"""The README's main job, in its quick form, and the docstring examples of the public API."""

import doctest
import importlib
import importlib.util
import json
import pkgutil
import subprocess
import sys

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, REPO_ROOT

# modules whose examples convert between, or train with, both frameworks
NEEDS_BOTH_FRAMEWORKS = {
    "l2l_multi.interop",
    "l2l_multi._interop_layers",
    "l2l_multi.crosscheck",
    "l2l_multi._training",
}


def _have_mjx() -> bool:
    # mujoco-mjx installs into the mujoco package, so the rl extra alone has mujoco but not mujoco.mjx
    have_mujoco = importlib.util.find_spec("mujoco") is not None
    return have_mujoco and importlib.util.find_spec("mujoco.mjx") is not None


def _library_modules() -> list[str]:
    """Every module of the package whose framework is installed (doctests need it)."""
    import l2l_multi.backends

    import l2l_multi

    infos = list(pkgutil.walk_packages(l2l_multi.__path__, "l2l_multi."))
    for name, available in (("torch", HAVE_TORCH), ("jax", HAVE_JAX)):
        if available:  # walking a backend imports it
            package = importlib.import_module(f"l2l_multi.backends.{name}")
            infos.append(pkgutil.ModuleInfo(None, package.__name__, True))
            infos += pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
    names = []
    for info in infos:
        if info.name.startswith("l2l_multi.backends.torch") and not HAVE_TORCH:
            continue
        if info.name.startswith("l2l_multi.backends.jax") and not HAVE_JAX:
            continue
        if info.name.endswith("._kernels"):  # the compiled extension (its twin is tested)
            continue
        if ".lightning" in info.name and importlib.util.find_spec("lightning") is None:
            continue  # the optional lightning extra
        if info.name.endswith((".mjx_envs", "._mjx_rk4", "._mjx_forward")) and not _have_mjx():
            continue  # the optional mjx extra
        if info.name in NEEDS_BOTH_FRAMEWORKS and not (HAVE_TORCH and HAVE_JAX):
            continue
        names.append(info.name)
    return sorted(names)


LIBRARY_MODULES = _library_modules()


@pytest.mark.parametrize("module_name", LIBRARY_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert failures == 0


def test_public_modules_have_examples():
    tried = sum(
        doctest.DocTestFinder().find(importlib.import_module(name)).__len__() for name in LIBRARY_MODULES
    )
    assert tried > 50


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="needs torch and jax")
def test_main_job_quick(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "main_job.py"),
            "--quick",
            "--json",
            str(tmp_path / "results.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["cross_check"]["first_20_steps_max_relative_loss_difference"] < 1e-4
    for backend in ("torch", "jax"):
        # adaptation must help on unseen classes: far above chance (20%) after one step
        assert results[backend]["accuracy_after"] > results[backend]["accuracy_before"] + 0.3
    assert "[torch]" in result.stdout and "[jax  ]" in result.stdout
