"""Backend selection: defaults, scoping, errors, and that the core imports no framework."""

import threading

import pytest
from _helpers import REPO_ROOT, run_python

import l2l_multi as l2l
from l2l_multi import _backend


def test_import_loads_neither_framework():
    result = run_python(
        "import sys, l2l_multi, l2l_multi.data, l2l_multi.data.transforms\n"
        "print(sorted(m for m in ('torch', 'jax', 'flax', 'optax') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_default_is_torch_and_env_var_is_read_lazily():
    code = "import l2l_multi as l2l; print(l2l.get_backend())"
    assert run_python(code).stdout.strip() == "torch"
    pytest.importorskip("jax")
    assert run_python(code, env={"L2L_BACKEND": "jax"}).stdout.strip() == "jax"
    # read on first use, not at import: setting it after the import still counts
    late = "import os, l2l_multi as l2l; os.environ['L2L_BACKEND'] = 'jax'; print(l2l.get_backend())"
    assert run_python(late).stdout.strip() == "jax"


def test_bad_env_var_names_the_variable():
    result = run_python("import l2l_multi as l2l; l2l.get_backend()", env={"L2L_BACKEND": "mxnet"})
    assert result.returncode != 0
    assert "L2L_BACKEND='mxnet'" in result.stderr and "'torch', 'jax'" in result.stderr


@pytest.mark.parametrize("bad", ["numpy", "Torch", "", None, 3])
def test_unknown_backend_lists_available(bad):
    with pytest.raises(ValueError, match=r"available backends: 'torch', 'jax'"):
        l2l.set_backend(bad)
    with pytest.raises(ValueError, match="available backends"):
        with l2l.use_backend(bad):
            pass


def test_set_get_and_scopes_nest_and_restore():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    l2l.set_backend("torch")
    assert l2l.get_backend() == "torch"
    with l2l.use_backend("jax") as module:
        assert module.NAME == "jax" and l2l.get_backend() == "jax"
        with l2l.use_backend("torch"):
            assert l2l.get_backend() == "torch"
        assert l2l.get_backend() == "jax"
        with pytest.raises(RuntimeError):
            with l2l.use_backend("torch"):
                raise RuntimeError("boom")
        assert l2l.get_backend() == "jax"
    assert l2l.get_backend() == "torch"
    l2l.set_backend("jax")
    assert l2l.get_backend() == "jax"


def test_scope_is_per_thread():
    pytest.importorskip("jax")
    l2l.set_backend("torch")
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        with l2l.use_backend("jax"):
            entered.set()
            release.wait(10)
            seen["worker"] = l2l.get_backend()

    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait(10)
    seen["main"] = l2l.get_backend()
    release.set()
    thread.join()
    assert seen == {"main": "torch", "worker": "jax"}


def test_missing_framework_names_the_extra():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import l2l_multi as l2l\n"
        "try:\n    l2l.set_backend('torch')\n"
        "except ImportError as e:\n    print('ImportError:', e)\n"
    )
    result = run_python(code)
    assert "ImportError:" in result.stdout, result.stderr
    assert "pip install 'l2l_multi[torch]'" in result.stdout
    assert l2l.get_backend() in l2l.available_backends()


def test_failed_set_backend_keeps_previous_choice(monkeypatch):
    pytest.importorskip("torch")
    l2l.set_backend("torch")

    def missing(name):
        raise ImportError("the 'jax' backend needs 'jax'")

    monkeypatch.setattr(_backend, "load_backend", missing)
    with pytest.raises(ImportError):
        l2l.set_backend("jax")
    assert l2l.get_backend() == "torch"


def test_objects_bind_backend_at_creation():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    import jax
    import numpy as np
    import torch

    data = l2l.data.ArrayDataset(np.zeros((8, 2), np.float32), np.arange(8) % 4)
    l2l.set_backend("torch")
    torch_tasks = l2l.data.TaskDataset(data, seed=0)
    with l2l.use_backend("jax"):
        jax_tasks = l2l.data.TaskDataset(data, seed=0)
    l2l.set_backend("jax")  # later switches do not touch existing objects
    assert isinstance(torch_tasks.sample()[0], torch.Tensor)
    l2l.set_backend("torch")
    assert isinstance(jax_tasks.sample()[0], jax.Array)
    assert (torch_tasks.backend, jax_tasks.backend) == ("torch", "jax")


def test_backends_folder_is_not_a_top_level_package():
    result = run_python("import backends", cwd=REPO_ROOT)
    assert result.returncode != 0
    assert "installed as 'l2l_multi.backends'" in result.stderr


def test_backend_modules_declare_capabilities():
    for name in l2l.available_backends():
        try:
            module = l2l.load_backend(name)
        except ImportError:
            continue
        assert module.NAME == name
        assert isinstance(module.SUPPORTS_JIT, bool) and isinstance(module.SUPPORTS_VMAP, bool)
