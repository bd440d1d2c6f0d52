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
    "maml_pg.py": ("torch", "gymnasium"),
    "--backend jax": ("jax", "optax"),  # any script's jax path
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
@pytest.mark.parametrize("script", ["maml_trpo.py"])  # the jax path's resume: test_maml_trpo_on_jax_...
def test_quick_run_and_exact_resume(script, tmp_path):
    _skip_without(script)
    total = 4
    _run(script, tmp_path / "a", "--iterations", str(total))
    _check_folder(tmp_path / "a", total)

    _run(script, tmp_path / "b", "--iterations", str(total // 2))
    assert len(_metrics(tmp_path / "b")) == total // 2
    _run(script, tmp_path / "b", "--iterations", str(total), "--resume")
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
        _run(script, tmp_path / "b", "--iterations", str(total + 1), "--resume", "--seed", "1")
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


# -- the shared driver on the jax backend (examples/rl/_jax_driver.py) ------------------------------
TORCH_COLUMNS = ["iteration", "pre_return", "post_return", "adaptation_gain", "loss_before", "loss_after"]
TORCH_COLUMNS += ["kl", "accepted", "env_steps", "elapsed_s"]


def _run_here(monkeypatch, script: str, out, *arguments) -> None:
    """``python examples/rl/<script> --quick --no-progress --out <out> <arguments>`` in this process (the
    compiled programs stay in memory for the next run; ``use_jax_cache`` serves the ones traced anew)."""
    from _helpers import run_script

    monkeypatch.syspath_prepend(str(EXAMPLES))  # the script's folder, as `python script.py` puts first
    run_script(EXAMPLES / script, "--quick", "--no-progress", "--out", out, *arguments)


def _final_state(out) -> list:
    from l2l_multi.experiment import _checkpoint

    return _checkpoint.loads((out / "checkpoint.npz").read_bytes())["state"]["state"]


@pytest.mark.slow
def test_maml_trpo_on_jax_writes_the_folder_and_resumes_exactly(tmp_path, monkeypatch, use_jax_cache):
    """--backend jax --quick on Particles2D: the torch path's folder and columns; stopped after 2 of 4
    iterations and resumed, every metric and the final weights equal the uninterrupted run's."""
    _skip_without("--backend jax")
    total = 4
    # the shapes of test_jax_rl's meta-iteration and trpo_meta_update's doctest: one compiled TRPO update
    sizes = ["--backend", "jax", "--meta-batch", "2", "--episodes", "2", "--horizon", "4", "--hiddens", "8"]
    _run_here(monkeypatch, "maml_trpo.py", tmp_path / "a", *sizes, "--iterations", str(total))
    results = _check_folder(tmp_path / "a", total)
    assert results["backend"] == "jax" and results["device"].startswith("jax ")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["backend"] == "jax" and config["environment"]["device"] == results["device"]
    rows = _metrics(tmp_path / "a")
    assert list(rows[0]) == TORCH_COLUMNS
    # 2 tasks x 2 episodes x 2 phases x 4 steps (no goal is reached in 4 steps from these starts)
    assert [int(row["env_steps"]) for row in rows] == [32 * i for i in range(1, total + 1)]

    _run_here(monkeypatch, "maml_trpo.py", tmp_path / "b", *sizes, "--iterations", str(total // 2))
    assert len(_metrics(tmp_path / "b")) == total // 2
    _run_here(monkeypatch, "maml_trpo.py", tmp_path / "b", "--resume", "--iterations", str(total))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]  # noqa: E731
    assert strip(_metrics(tmp_path / "b")) == strip(rows)  # bit for bit, as csv text
    uninterrupted, resumed = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert len(uninterrupted) == len(resumed) == 2 * 2 + 1  # two layers' weights and biases, log_std
    for one, other in zip(uninterrupted, resumed):
        assert one.dtype == other.dtype and (one == other).all()


def test_jax_backend_refuses_envs_and_env_kwargs_it_cannot_run(tmp_path, monkeypatch):
    pytest.importorskip("jax")
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match="--env Humanoid.*no jax twin.*Particles2D-v1, HalfCheetah"):
        _run_here(monkeypatch, "maml_trpo.py", out, "--backend", "jax", "--env", "HumanoidDirection-v1")
    with pytest.raises(SystemExit, match="--env-kwargs .*size.* does not suit --env Particles2D-v1"):
        _run_here(monkeypatch, "maml_trpo.py", out, "--backend", "jax", "--env-kwargs", '{"size": 3}')
    with pytest.raises(SystemExit, match="--workers 4: environment processes are the torch backend's"):
        _run_here(monkeypatch, "maml_trpo.py", out, "--backend", "jax", "--workers", "4")
    assert not out.exists()  # refused before the results folder is made


def _maml_trpo_parse_and_config():
    """maml_trpo.py's ``(parse(argv) -> args, config(args) -> config.json's settings)`` through the shared
    driver (examples/rl on sys.path)."""
    import _driver
    import maml_trpo

    defaults = maml_trpo.DEFAULTS
    parser = lambda: _driver.argument_parser(defaults, "", maml_trpo.add_arguments)  # noqa: E731
    parse = lambda argv: _driver.parse_arguments(parser(), defaults, argv)  # noqa: E731
    return parse, lambda args: _driver._config(args, defaults)


def test_help_shows_each_default_once(monkeypatch, capsys):
    """--iterations' default (None until a resume decides) is in its help text, not "(default: None)"."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import _driver
    import maml_trpo

    with pytest.raises(SystemExit):
        _driver.argument_parser(maml_trpo.DEFAULTS, "", maml_trpo.add_arguments).parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"meta-updates (default: {maml_trpo.DEFAULTS['iterations']}) --" in shown
    assert "(default: None)" not in shown and "(default: dice)" in shown


def test_run_folders_without_a_backend_resume_on_torch(tmp_path, monkeypatch):
    """A config.json written before --backend existed resumes as torch (even with L2L_BACKEND=jax), and
    the settings compared on resume still equal the saved ones; asking it for jax is refused."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setenv("L2L_BACKEND", "jax")
    parse, config = _maml_trpo_parse_and_config()
    out = tmp_path / "old"
    args = parse(["--quick", "--out", str(out)])
    assert args.backend == "jax"  # the environment variable chooses for new runs
    old = config(args)
    del old["backend"]
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**old, "environment": {"device": "torch cpu"}}))

    resumed = parse(["--resume", "--out", str(out)])
    assert resumed.backend == "torch"
    assert config(resumed) == old
    assert parse(["--resume", "--out", str(out), "--backend", "torch"]).backend == "torch"
    with pytest.raises(SystemExit, match="made before --backend existed and ran with --backend torch"):
        parse(["--resume", "--out", str(out), "--backend", "jax"])


def test_config_records_the_script_and_folders_from_before_resume_without_it(tmp_path, monkeypatch):
    """config.json names the method script (maml_pg.py and metasgd_a2c.py record the same settings); a
    folder written before that resumes with its config unchanged, and another script's folder is refused."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from l2l_multi.experiment import RunFolder

    parse, config = _maml_trpo_parse_and_config()
    out = tmp_path / "old"
    new = config(parse(["--quick", "--backend", "torch", "--out", str(out)]))
    assert new["script"] == "maml_trpo.py"
    old = {key: value for key, value in new.items() if key != "script"}
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**old, "environment": {"device": "torch cpu"}}))
    assert config(parse(["--resume", "--out", str(out)])) == old

    (out / "config.json").write_text(json.dumps({**new, "script": "maml_pg.py"}))
    resumed = config(parse(["--resume", "--out", str(out)]))
    with pytest.raises(ValueError, match="script: saved 'maml_pg.py', given 'maml_trpo.py'"):
        RunFolder(out, resumed, resume=True)  # checked on opening, before any file is written


# the columns each method script's torch path logs between adaptation_gain and env_steps
METHOD_COLUMNS = {
    "maml_pg.py": ["loss"],
    "promp.py": ["loss_before", "loss_after", "inner_kl"],
    "metasgd_a2c.py": ["loss", "mean_abs_inner_lr"],
}


@pytest.mark.slow
# metasgd_a2c.py's jax path is maml_pg.py's with Meta-SGD's meta-parameters (compared with torch in the
# default suite); its run, a compile of seconds more, is in pytest -m long
@pytest.mark.parametrize(
    "script", ["maml_pg.py", "promp.py", pytest.param("metasgd_a2c.py", marks=pytest.mark.long)]
)
def test_method_scripts_run_on_jax(script, tmp_path, monkeypatch, use_jax_cache):
    """--backend jax --quick of the scripts whose jax update is l2l_multi.backends.jax.rl's
    promp_meta_update / a2c_meta_update (compared with torch in tests/test_rl_crosscheck_methods.py): the
    torch path's columns, the env steps of the sizes run, and Meta-SGD's rates learned; maml_pg.py (new)
    on torch too."""
    _skip_without("--backend jax")
    sizes = ["--backend", "jax", "--meta-batch", "2", "--episodes", "2", "--horizon", "4", "--hiddens", "8"]
    _run_here(monkeypatch, script, tmp_path / "run", *sizes)
    results = _check_folder(tmp_path / "run", 3)
    assert results["backend"] == "jax" and results["env"] == "Particles2D-v1"
    rows = _metrics(tmp_path / "run")
    head, tail = ["iteration", "pre_return", "post_return", "adaptation_gain"], ["env_steps", "elapsed_s"]
    assert list(rows[0]) == head + METHOD_COLUMNS[script] + tail
    assert [int(row["env_steps"]) for row in rows] == [32, 64, 96]  # 2 tasks x 2 episodes x 2 phases x 4
    if script == "metasgd_a2c.py":  # 3 Adam steps of 3e-3 moved the rates from 0.1
        assert abs(float(rows[-1]["mean_abs_inner_lr"]) - 0.1) > 1e-3
    if script == "maml_pg.py":  # its torch path (no other test runs it): the same columns
        _run_here(monkeypatch, script, tmp_path / "torch", *sizes[2:], "--backend", "torch")
        assert list(_metrics(tmp_path / "torch")[0]) == list(rows[0])


@pytest.mark.long
def test_maml_trpo_on_jax_runs_the_mjx_half_cheetah(tmp_path, jax_cache_env):
    """The MJX twin of HalfCheetahForwardBackward-v1 through the example (tiny sizes: minutes to compile)."""
    pytest.importorskip("mujoco.mjx")
    _skip_without("--backend jax")
    arguments = ["--env", "HalfCheetahForwardBackward-v1", "--horizon", "5", "--meta-batch", "2"]
    arguments += ["--episodes", "2", "--hiddens", "8", "--iterations", "2"]
    _run("maml_trpo.py", tmp_path / "run", "--backend", "jax", *arguments, cache=jax_cache_env)
    results = _check_folder(tmp_path / "run", 2)
    assert results["backend"] == "jax" and results["env"] == "HalfCheetahForwardBackward-v1"
    rows = _metrics(tmp_path / "run")
    assert [int(row["env_steps"]) for row in rows] == [40, 80]  # 2 tasks x 2 episodes x 2 phases x 5 steps


# -- --adapt-steps (learn2learn's adapt_steps) on both backends --------------------------------------------
SMALL = ["--meta-batch", "2", "--episodes", "2", "--horizon", "4", "--hiddens", "8", "--iterations", "2"]


def test_maml_trpo_takes_adapt_steps_and_old_folders_resume_with_one(tmp_path, monkeypatch):
    """--adapt-steps 2 (and --policy-init xavier, --inner-loss plain) on torch collects three phases per
    task and records the settings; a config.json written before the flags existed resumes with one step,
    torch's init and DiCE, and asking it for others is refused."""
    _skip_without("maml_trpo.py")
    arguments = (
        "--backend",
        "torch",
        *SMALL,
        "--adapt-steps=2",
        "--policy-init=xavier",
        "--inner-loss=plain",
    )
    _run_here(monkeypatch, "maml_trpo.py", tmp_path / "two", *arguments)
    # 2 tasks x 2 episodes x (2 adaptation phases + 1 evaluation) x 4 steps
    assert [int(row["env_steps"]) for row in _metrics(tmp_path / "two")] == [48, 96]
    recorded = json.loads((tmp_path / "two" / "config.json").read_text())
    assert recorded["adapt_steps"] == 2 and recorded["policy_init"] == "xavier"
    assert recorded["inner_loss"] == "plain"

    parse, config = _maml_trpo_parse_and_config()
    out = tmp_path / "old"
    old = config(parse(["--quick", "--backend", "torch", "--out", str(out)]))
    del old["adapt_steps"], old["policy_init"], old["inner_loss"]
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**old, "environment": {"device": "torch cpu"}}))
    resumed = parse(["--resume", "--out", str(out)])
    assert resumed.adapt_steps == 1 and resumed.policy_init == "torch" and resumed.inner_loss == "dice"
    assert config(resumed) == old
    with pytest.raises(SystemExit, match="made before --adapt-steps existed and ran with --adapt-steps 1"):
        parse(["--resume", "--out", str(out), "--adapt-steps", "2"])
    refusal = "made before --policy-init existed and ran with --policy-init torch"
    with pytest.raises(SystemExit, match=refusal):
        parse(["--resume", "--out", str(out), "--policy-init", "xavier"])
    with pytest.raises(SystemExit, match="made before --inner-loss existed and ran with --inner-loss dice"):
        parse(["--resume", "--out", str(out), "--inner-loss", "plain"])


@pytest.mark.long
def test_maml_trpo_on_jax_takes_adapt_steps(tmp_path, monkeypatch, use_jax_cache):
    """--backend jax --adapt-steps 2 (the second-order update through two steps compiles for ~40 s here)."""
    _skip_without("--backend jax")
    _run_here(monkeypatch, "maml_trpo.py", tmp_path / "two", "--backend", "jax", *SMALL, "--adapt-steps", "2")
    results = _check_folder(tmp_path / "two", 2)
    assert results["backend"] == "jax"
    assert [int(row["env_steps"]) for row in _metrics(tmp_path / "two")] == [48, 96]
