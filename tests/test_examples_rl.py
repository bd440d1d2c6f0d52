"""The meta-RL examples (``examples/rl/*.py``): their --quick runs, results folders and exact resume;
and gymnasium's environment checker on MetaWorld ML1."""

import csv
import json
import math
import os
import subprocess
import sys
import warnings

import pytest
from _helpers import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples" / "rl"
FILES = ("config.json", "metrics.csv", "results.json", "curve.png", "checkpoint.npz")
NEEDS = {
    "maml_trpo.py": ("torch", "gymnasium"),
    "promp.py": ("torch", "gymnasium"),
    "metasgd_a2c.py": ("torch", "gymnasium"),
    "maml_pg_jax.py": ("jax", "optax"),
}


def _skip_without(script: str) -> None:
    for module in (*NEEDS[script], "matplotlib", "tqdm"):
        pytest.importorskip(module)


def _run(script: str, out, *arguments: str, cache=None) -> subprocess.CompletedProcess:
    """One --quick run of ``script`` in a fresh interpreter, one thread per framework. ``cache``:
    the environment of jax's persistent compilation cache (conftest's ``jax_cache_env``): later
    runs load the compiled meta-step instead of compiling it again (same executable, same numbers)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    env.update(cache or {})
    command = [sys.executable, str(EXAMPLES / script), "--quick", "--no-progress", "--out", str(out)]
    result = subprocess.run(
        [*command, *arguments], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _check_folder(out, iterations: int) -> dict:
    for name in FILES:
        assert (out / name).is_file(), f"{name} missing in {out}"
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    for key in ("final_pre_return", "final_post_return", "final_adaptation_gain", "wall_seconds"):
        assert math.isfinite(results[key]), (key, results[key])
    assert results["final_adaptation_gain"] == pytest.approx(
        results["final_post_return"] - results["final_pre_return"]
    )
    assert results["iterations"] == iterations and results["quick"] is True
    assert "--quick" in results["command"] and results["device"]
    rows = _metrics(out)
    assert [int(row["iteration"]) for row in rows] == list(range(1, iterations + 1))
    for row in rows:
        assert all(math.isfinite(float(value)) for value in row.values()), row
    return results


def _metrics(out) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["maml_trpo.py", "maml_pg_jax.py"])
def test_quick_run_and_exact_resume(script, tmp_path, jax_cache_env):
    _skip_without(script)
    cache = jax_cache_env if script == "maml_pg_jax.py" else None
    total = 4
    _run(script, tmp_path / "a", "--iterations", str(total), cache=cache)
    _check_folder(tmp_path / "a", total)

    _run(script, tmp_path / "b", "--iterations", str(total // 2), cache=cache)
    assert len(_metrics(tmp_path / "b")) == total // 2
    _run(script, tmp_path / "b", "--iterations", str(total), "--resume", cache=cache)
    _check_folder(tmp_path / "b", total)

    uninterrupted, resumed = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert list(uninterrupted[0]) == list(resumed[0])
    strip = lambda rows: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]
    assert strip(resumed) == strip(uninterrupted)  # every logged number, bit for bit (as csv text)
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    for key in ("final_pre_return", "final_post_return", "env_steps"):
        assert first[key] == second[key]

    # Resuming with a different configuration (other than --iterations) is refused, not mixed in.
    with pytest.raises(AssertionError, match="seed"):
        _run(script, tmp_path / "b", "--iterations", str(total + 1), "--resume", "--seed", "1", cache=cache)
    assert len(_metrics(tmp_path / "b")) == total


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "arguments"),
    [
        ("promp.py", ["--workers", "2"]),  # the l2l_multi.gym.AsyncVectorEnv path, episodes in rounds
        ("metasgd_a2c.py", []),
    ],
)
def test_quick_run_writes_results_folder(script, arguments, tmp_path):
    _skip_without(script)
    result = _run(script, tmp_path / "run", *arguments)
    results = _check_folder(tmp_path / "run", 3)
    assert "after adaptation" in result.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["env"] == "Particles2D-v1" and config["quick"] is True
    if arguments:
        assert config["workers"] == 2
    assert results["backend"] == "torch"


def test_metaworld_ml1_passes_gymnasium_check_env():
    pytest.importorskip("metaworld")
    pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    import l2l_multi.gym as l2l_gym

    env = l2l_gym.MetaWorldML1("reach-v3", seed=0)
    try:
        env.set_task(env.sample_tasks(1, seed=3)[0])
        with warnings.catch_warnings():
            # metaworld's observation space has infinite and equal bounds in places: advice, not failures
            # (check_env raises on those).
            warnings.simplefilter("ignore", UserWarning)
            check_env(env, skip_render_check=True)
    finally:
        env.close()
