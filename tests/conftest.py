"""Shared fixtures. One thread per framework: on 2 cores oversubscription slows torch ~25x."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
# XLA's CPU client hands some float32 dots to YNNPACK; on some CPUs (an Intel Xeon with AMX here) those
# put the jax conv4 meta-gradient 8.6e-4 (relative) away from float64 where XLA's own dots give 1.1e-6:
# a long contraction whose terms cancel, summed in another order. The cross-check's 1e-5 needs the
# latter. The flag comes first: XLA ignores what follows a token that is no flag (the recipe's last).
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_cpu_experimental_ynn_fusion_type=-individual_dot "
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
)


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


def pytest_report_header(config):
    """Says where the real data sets are looked for (tests that need them skip when absent)."""
    from _helpers import OMNIGLOT_ROOT, TEST_DATA

    found = "found" if (OMNIGLOT_ROOT / "images_background.zip").is_file() else "absent: those tests skip"
    return f"test data: {TEST_DATA} (set L2L_MULTI_TEST_DATA to change it; Omniglot {found})"


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Every test starts from the default backend and kernel mode and leaves them so."""
    backend, mode = _backend._process_default, _kernel_mode._mode
    yield
    _backend._process_default = backend
    _kernel_mode._mode = mode


@pytest.fixture(scope="session")
def jax_cache_env(tmp_path_factory):
    """Environment variables giving the example runs of one pytest session a shared jax persistent
    compilation cache: a later run with the same shapes loads the compiled executable instead of
    compiling it again (the same executable, so the same numbers). jax reads them at import;
    ``use_jax_cache`` applies them inside this process."""
    return {
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-compilation-cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # (default 1 s: most test compiles are shorter)
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }


@pytest.fixture(scope="module")
def use_jax_cache(jax_cache_env):
    """The session's jax compilation cache (``jax_cache_env``) for the jax runs inside this process,
    for one test module; jax's settings are restored afterwards."""
    try:
        import jax
        from jax._src import compilation_cache
    except ImportError:
        yield
        return
    names = [name.lower() for name in jax_cache_env]
    saved = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", jax_cache_env["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.reset_cache()  # jax decides once whether to use the cache: decide again
    yield
    for name, value in saved.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(params=KERNEL_MODES)
def kernel_mode(request):
    l2l.data.set_kernel_mode(request.param)
    return request.param
