"""Shared fixtures. One thread per framework: on 2 cores oversubscription slows torch ~25x."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


import pytest  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi import _backend  # noqa: E402
from l2l_multi.data import _kernel_mode  # noqa: E402

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # the "core" tox environment has no torch
    pass

KERNEL_MODES = ["compiled", "python"] if l2l.data.compiled_available() else ["python"]


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Every test starts from the default backend and kernel mode and leaves them so."""
    backend, mode = _backend._process_default, _kernel_mode._mode
    yield
    _backend._process_default = backend
    _kernel_mode._mode = mode


@pytest.fixture(params=KERNEL_MODES)
def kernel_mode(request):
    l2l.data.set_kernel_mode(request.param)
    return request.param
