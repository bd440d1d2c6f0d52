"""The install footprints (`[jax]` only, `[torch]` only, neither, no gymnasium, no matplotlib), each
simulated in a fresh interpreter whose import system refuses the absent packages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, REPO_ROOT

# Installed first in the child: a meta-path finder that refuses the packages of a smaller install,
# as an interpreter without them would (ModuleNotFoundError naming the package).
BLOCKER = """
import sys
class _Absent:
    def __init__(self, names):
        self.names = frozenset(names)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Absent(sys.argv[1].split(",")))
sys.argv = sys.argv[2:]
"""

# What a user of that footprint does first: the backend it gets, a task from the data layer, and
# every entry point that needs something absent, whose error is printed.
SESSION = """
import numpy as np
import l2l_multi as l2l
from l2l_multi.data.transforms import KShots, LoadData, NWays
print("backend:", l2l.get_backend())
inputs = np.arange(40, dtype=np.float32).reshape(20, 2)
data = l2l.data.MetaDataset(l2l.data.ArrayDataset(inputs, np.arange(20) % 4))
pipeline = [NWays(data, 2), KShots(data, 1), LoadData(data)]
X, y = l2l.data.TaskDataset(data, pipeline, seed=0, backend="numpy").sample()
print("numpy task:", type(X).__name__, X.shape, y.tolist())
def attempt(what, call):
    try:
        result = call()
        print(what, "ok:", type(result).__module__.split(".")[0])
    except ImportError as error:
        print(what, "ImportError:", error)
attempt("default task", lambda: l2l.data.TaskDataset(data, pipeline, seed=0).sample()[0])
attempt("set_backend torch", lambda: l2l.set_backend("torch"))
attempt("set_backend jax", lambda: l2l.set_backend("jax"))
attempt("gym", lambda: __import__("l2l_multi.gym"))
from l2l_multi import crosscheck
attempt("crosscheck", lambda: crosscheck.crosscheck("maml", "omniglot-fc", ways=2, meta_batch=1))
print("crosscheck main exit:", crosscheck.main(["--model", "omniglot-fc"]))
print("imported:", [name for name in ("torch", "jax", "gymnasium", "matplotlib") if name in sys.modules])
"""


WITHOUT_TORCH = ("torch", "gymnasium", "matplotlib")
WITHOUT_JAX = ("jax", "jaxlib", "flax", "optax", "gymnasium", "matplotlib")
BARE = ("torch", *WITHOUT_JAX)


def _run(absent: tuple[str, ...], *arguments: str, code: str = SESSION, cwd=None, env=None):
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER + code, ",".join(absent), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", "L2L_BACKEND": "", **(env or {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _lines(result) -> dict[str, str]:
    return dict(line.split(": ", 1) if ": " in line else (line, "") for line in result.stdout.splitlines())


@pytest.mark.skipif(not HAVE_JAX, reason="needs jax")
def test_jax_only_install(tmp_path, jax_cache_env):
    # then the sine example as its docstring runs it (test_examples_misc runs the same command with
    # the same compilation cache, so its meta-steps are loaded, not compiled)
    out = tmp_path / "sine"
    script = (REPO_ROOT / "examples" / "maml_sine.py").as_posix()
    example = "import runpy; runpy.run_path(sys.argv[0], run_name='__main__')\n"
    # no --backend: the examples' default follows the installed framework
    result = _run(
        WITHOUT_TORCH,
        script,
        "--quick",
        "--no-progress",
        "--out",
        str(out),
        code=SESSION + example,
        cwd=tmp_path,
        env=jax_cache_env,
    )
    lines = _lines(result)
    assert lines["backend"] == "jax" and lines["numpy task"].startswith("ndarray (2, 2)")
    assert lines["default task ok"] == "jaxlib"
    assert lines["set_backend torch ImportError"] == (
        "the 'torch' backend needs 'torch', which is not installed; install it with: "
        """pip install 'l2l_multi[torch]', or use the installed one: l2l.set_backend("jax")"""
    )
    assert lines["set_backend jax ok"] == "builtins"  # returned None
    assert lines["gym ImportError"] == (
        'l2l_multi.gym needs gymnasium, which is not installed; install it with: pip install "l2l_multi[rl]"'
    )
    assert (
        "'torch' is not installed; install with: pip install 'l2l_multi[torch]'"
        in lines["crosscheck ImportError"]
    )
    assert lines["crosscheck main exit"] == "2"
    assert lines["imported"] == "['jax']"
    assert (out / "results.json").is_file() and not (out / "curve.png").exists()
    assert "MAML sine K=10 (jax): MSE after 10 steps" in result.stdout


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_torch_only_install():
    result = _run(WITHOUT_JAX)
    lines = _lines(result)
    assert lines["backend"] == "torch" and lines["default task ok"] == "torch"
    assert lines["set_backend jax ImportError"] == (
        "the 'jax' backend needs 'jax', which is not installed; install it with: "
        """pip install 'l2l_multi[jax]', or use the installed one: l2l.set_backend("torch")"""
    )
    assert lines["crosscheck ImportError"] == (
        "the cross-check runs both the torch and the jax backend; 'jax', 'flax', 'optax' are not "
        "installed; install with: pip install 'l2l_multi[jax]'"
    )
    assert lines["crosscheck main exit"] == "2" and "pip install 'l2l_multi[jax]'" in result.stderr
    assert lines["gym ImportError"].endswith('pip install "l2l_multi[rl]"')
    assert lines["imported"] == "['torch']"


def test_bare_install():
    result = _run(BARE)
    lines = _lines(result)
    assert lines["backend"] == "torch" and lines["numpy task"].startswith("ndarray (2, 2)")
    for what in ("default task", "set_backend torch"):
        assert lines[f"{what} ImportError"] == (
            "the 'torch' backend needs 'torch', which is not installed; install it with: pip install "
            """'l2l_multi[torch]', or pip install 'l2l_multi[jax]' and l2l.set_backend("jax")"""
        )
    assert lines["set_backend jax ImportError"].startswith(
        "the 'jax' backend needs 'jax', which is not installed; install it with: pip install 'l2l_multi[jax]'"
    )
    assert "install with: pip install 'l2l_multi[jax,torch]'" in lines["crosscheck ImportError"]
    assert lines["gym ImportError"].endswith('pip install "l2l_multi[rl]"')
    assert lines["imported"] == "[]"
