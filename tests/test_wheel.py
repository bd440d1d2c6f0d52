"""Packaging: ``python -m build`` gives an sdist and, built from that sdist, a wheel with the
compiled kernel; the wheel installed into a fresh venv (no source tree on ``sys.path``) samples
tasks through that kernel, equal to the tasks sampled here from the same seed.

Built once per session without build isolation (the build requirements, setuptools and Cython,
come from this environment), so the test needs no network. The fresh venv gets no pip packages:
numpy and the other dependencies come from this environment's site-packages through PYTHONPATH,
whose entries do not run ``.pth`` files, so the editable install of the source tree stays unseen.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import numpy as np
import pytest
from _helpers import REPO_ROOT

import l2l_multi as l2l
from l2l_multi.data.transforms import KShots, LoadData, NWays, RemapLabels

pytestmark = pytest.mark.slow

SAMPLE = """
import json, sys
import l2l_multi as l2l
from l2l_multi.data import _kernel_mode
from l2l_multi.data.transforms import KShots, LoadData, NWays, RemapLabels
data = l2l.data.MetaDataset(l2l.data.synthetic_classification(num_classes=30, shape=(4,), seed=3))
tasks = l2l.data.TaskDataset(data, [NWays(data, 5), KShots(data, 2), LoadData(data), RemapLabels(data)],
                             seed=11, backend="numpy")
X, y = tasks.sample_batch(3)
json.dump({"package": l2l.__file__, "mode": l2l.data.kernel_mode(), "kernel": _kernel_mode._compiled.__file__,
           "torch_or_jax": sorted({"torch", "jax"} & set(sys.modules)), "X": X.tolist(), "y": y.tolist()},
          sys.stdout)
"""


def _in_process_tasks():
    data = l2l.data.MetaDataset(l2l.data.synthetic_classification(num_classes=30, shape=(4,), seed=3))
    tasks = l2l.data.TaskDataset(
        data, [NWays(data, 5), KShots(data, 2), LoadData(data), RemapLabels(data)], seed=11, backend="numpy"
    )
    return tasks.sample_batch(3)


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    """``(sdist, wheel)`` paths, built once per session."""
    for module in ("build", "setuptools", "Cython"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (it comes with the test extra)")
    if shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) is None:
        pytest.skip("no C compiler: the wheel would hold only the pure-Python kernels")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def _source_packages() -> set[str]:
    """Every package of the source tree, by its installed path (``backends/`` -> ``l2l_multi/backends/``)."""
    packages = set()
    for top, installed in (("l2l_multi", "l2l_multi"), ("backends", "l2l_multi/backends")):
        for folder, _, files in os.walk(REPO_ROOT / top):
            if "__init__.py" in files:
                relative = os.path.relpath(folder, REPO_ROOT / top)
                packages.add(installed if relative == "." else f"{installed}/{relative}")
    return packages


def test_wheel_contents(dists):
    _, wheel = dists
    names = zipfile.ZipFile(wheel).namelist()
    kernels = [n for n in names if n.startswith("l2l_multi/data/_kernels.") and n.endswith((".so", ".pyd"))]
    assert len(kernels) == 1, "the wheel has no compiled kernel"
    assert not [n for n in names if n.endswith(".c")], "generated C sources belong in the sdist only"
    packages = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    missing = _source_packages() - packages
    assert not missing, f"not in pyproject.toml's [tool.setuptools] packages: {sorted(missing)}"
    assert not [n for n in names if n.startswith(("backends/", "tests/"))]
    splits = "l2l_multi/vision/splits/omniglot/vinyals/test.txt"
    for required in ("l2l_multi/py.typed", "l2l_multi/__init__.pyi", splits):
        assert required in names, required
    if (REPO_ROOT / "LICENSE").exists():  # setuptools copies it into the .dist-info
        assert [n for n in names if ".dist-info/" in n and n.endswith("/LICENSE")], "LICENSE not in the wheel"


def test_sdist_contents(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for required in (
        "README.md",
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "l2l_multi/data/_kernels.pyx",
        "l2l_multi/vision/splits/omniglot/vinyals/trainval.txt",
        "backends/torch/__init__.py",
    ):
        assert required in names, required
    assert not [n for n in names if n.endswith((".so", ".pyd", ".pyc"))], "build products in the sdist"
    for document in ("LICENSE", "CHANGELOG.md", "CITATION.cff"):
        if (REPO_ROOT / document).exists():  # added by issue 18's README work; checked once present
            assert document in names, document


def test_wheel_installs_and_samples_with_compiled_kernel(dists, tmp_path):
    _, wheel = dists
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--no-compile",
            "--quiet",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("L2L_BACKEND", "L2L_PUREPYTHON", "PYTHONPATH")}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # numpy & co. from this environment
    run = subprocess.run(
        [str(python), "-c", SAMPLE], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    assert result["package"].startswith(str(venv)), result["package"]
    assert result["mode"] == "compiled"
    assert result["kernel"].startswith(str(venv)) and result["kernel"].endswith((".so", ".pyd"))
    assert result["torch_or_jax"] == []  # a numpy task stream needs neither framework
    X, y = _in_process_tasks()
    np.testing.assert_array_equal(np.asarray(result["X"], dtype=X.dtype), X)
    np.testing.assert_array_equal(np.asarray(result["y"], dtype=y.dtype), y)
