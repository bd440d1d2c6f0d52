"""benchmarks/rl_step.py: its flags are checked before any work, and its results.json carries what the
"Other runs" table of benchmarks/reproductions.py shows (backend, device, command). The timed runs are
under ``-m long`` (the MJX iteration compiles for about 1.5 minutes on a CPU)."""

import importlib.util
import json
import math
import shlex

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, REPO_ROOT


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rl_step = _load("rl_step")
TINY = ["--meta-batch", "2", "--episodes", "2", "--horizon", "5", "--iterations", "1"]


@pytest.mark.parametrize(
    "text", ["[0.05]", "ctrl_cost_weight=0.05", '"x"'], ids=["list", "not-json", "string"]
)
def test_env_kwargs_must_be_a_json_object(text):
    with pytest.raises(SystemExit, match="--env-kwargs must be a JSON object"):
        rl_step.parse_args(["--env-kwargs", text])


def test_env_must_have_a_jax_twin(capsys):
    with pytest.raises(SystemExit):
        rl_step.parse_args(["--env", "HumanoidForwardBackward-v1"])
    assert "--env: invalid choice" in capsys.readouterr().err


def test_defaults_are_particles2d_at_the_published_sizes():
    args = rl_step.parse_args([])
    assert (args.env, args.env_kwargs, args.meta_batch, args.episodes, args.horizon) == (
        "Particles2D-v1",
        {},
        20,
        20,
        100,
    )


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_torch_refuses_an_unknown_env_kwarg_naming_the_flag():
    pytest.importorskip("mujoco")
    settings = dict(rl_step.SETTINGS, meta_batch=1, episodes=1, horizon=5)
    with pytest.raises(
        SystemExit, match=r"--env-kwargs .*bogus.* does not suit --env HalfCheetah.* on torch"
    ):
        rl_step.torch_runner(settings, 0, "HalfCheetahForwardBackward-v1", {"bogus": 1})


@pytest.mark.long
@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="needs torch and jax")
@pytest.mark.parametrize(
    ("env", "env_kwargs"),
    [("Particles2D-v1", {}), ("HalfCheetahForwardBackward-v1", {"ctrl_cost_weight": 0.05})],
    ids=["particles2d", "halfcheetah-mjx"],
)
def test_timed_run_records_env_command_and_device(tmp_path, use_jax_cache, env, env_kwargs):
    if env != "Particles2D-v1":
        pytest.importorskip("mujoco.mjx")
    argv = ["--env", env, "--env-kwargs", json.dumps(env_kwargs), *TINY, "--out", str(tmp_path)]
    results = rl_step.main(argv)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert (results["env"], results["env_kwargs"], results["backend"]) == (env, env_kwargs, "torch vs jax")
    assert results["command"].startswith("python benchmarks/rl_step.py --env " + env)
    rerun = rl_step.parse_args(shlex.split(results["command"])[2:])  # the command repeats the run
    assert (rerun.env, rerun.env_kwargs, rerun.meta_batch, rerun.out) == (env, env_kwargs, 2, str(tmp_path))
    assert "1 threads; jax" in results["device"] and "jax" in results["device"]
    for backend in ("torch", "jax"):
        assert results[backend]["iteration_s"]["n"] == 1
        assert all(math.isfinite(value) for value in results[backend]["pre_post_return_last"])
    expected = results["torch_iteration_median_s"] / results["jax_iteration_median_s"]
    assert results["speedup_median"] == pytest.approx(expected)
    # the "Other runs" row: backend, device and command filled in, the medians in its summary
    (row,) = _load("reproductions").other_rows("rl_step_tiny", results)
    cells = [cell.strip() for cell in row.strip("|").split(" | ")]
    assert cells[:3] == ["rl_step_tiny", "torch vs jax", results["device"]]
    assert "jax_iteration_median_s=" in cells[3] and cells[4] == f"`{results['command']}`"
