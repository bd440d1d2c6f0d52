"""The Meta-RL rows of REPRODUCTIONS.md (benchmarks/meta_rl_summary.py, benchmarks/rl_reproductions.py)
on small run folders written here in the RL driver's format: interval math against hand computations,
in-progress rows, missing seeds, and the start/resume plan."""

import csv
import fcntl
import importlib.util
import json
import math
import os
import sys

import pytest
from _helpers import REPO_ROOT


def _load(name):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


summary = _load("meta_rl_summary")
rl_reproductions = _load("rl_reproductions")
reproductions = _load("reproductions")

COLUMNS = (
    "iteration,pre_return,post_return,adaptation_gain,loss_before,loss_after,kl,accepted,env_steps,elapsed_s"
)
# learn2learn's HalfCheetah settings as examples/rl/maml_trpo.py records them (no adapt_steps/backend keys:
# the format of runs started before those options existed)
CONFIG = {
    "cg_damping": 1e-05,
    "cg_iterations": 10,
    "env": "HalfCheetahForwardBackward-v1",
    "env_kwargs": {"ctrl_cost_weight": 0.05},
    "episodes": 20,
    "gamma": 0.95,
    "hiddens": [100, 100],
    "horizon": 100,
    "inner_lr": 0.1 / 6,  # learn2learn's lr 0.1 and max KL 0.01 in our convention (rl_reproductions.py)
    "iterations": 12,
    "line_search_steps": 15,
    "max_kl": 0.06,
    "meta_batch": 20,
    "quick": False,
    "seed": 0,
    "tau": 1.0,
    "workers": 1,
    "environment": {"device": "torch 2.13.0+cpu cpu: x86_64, 1 threads", "cpu_count": 2},
}


def _returns(seed, iteration):
    """Made-up returns with a different trend per seed: (pre, post)."""
    return -20.0 + 3.0 * iteration + seed, -10.0 + (5.0 + seed) * iteration


def _write_run(folder, seed, done, planned=12, finished=False, cut_short=False, **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({**CONFIG, "seed": seed, "iterations": planned, **config}))
    lines = [COLUMNS]
    for iteration in range(1, done + 1):
        pre, post = _returns(seed, iteration)
        lines.append(
            f"{iteration},{pre},{post},{post - pre},0.0,-0.01,0.008,1,{80000 * iteration},{60.0 * iteration}"
        )
    if cut_short:
        lines.append(f"{done + 1},1.0,2.0")  # what a reader could see of a row being written
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    if finished:
        (folder / "results.json").write_text(json.dumps({"wall_seconds": 1500.0, "quick": False}))
    return folder


def test_t_quantile_against_closed_forms_and_the_density():
    # P(|T| <= t) = 0.95: 1 dof is the Cauchy, t = tan(0.475 pi); 2 dof has F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    assert summary.t_quantile_95(1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-10)
    p = 0.975
    assert summary.t_quantile_95(2) == pytest.approx(
        (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p))), rel=1e-10
    )
    for dof in (3, 4, 5, 9, 30):  # the density integrated from 0 to t (Simpson's rule) holds 0.475
        t = summary.t_quantile_95(dof)
        log_norm = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
        density = lambda x, n=dof, c=log_norm: math.exp(c - (n + 1) / 2 * math.log1p(x * x / n))  # noqa: E731
        steps = 2000
        h = t / steps
        weights = [1 if i in (0, steps) else 4 if i % 2 else 2 for i in range(steps + 1)]
        mass = h / 3 * sum(w * density(i * h) for i, w in enumerate(weights))
        assert mass == pytest.approx(0.475, abs=1e-10), dof
    with pytest.raises(ValueError, match="dof must be an int >= 1"):
        summary.t_quantile_95(0)


def test_interval_over_three_seeds_by_hand():
    mean, half = summary.mean_interval([250.0, 260.0, 280.0])
    deviations = [250 - 790 / 3, 260 - 790 / 3, 280 - 790 / 3]
    standard_error = math.sqrt(sum(d * d for d in deviations) / 2) / math.sqrt(3)
    assert mean == pytest.approx(790 / 3)
    assert half == pytest.approx(4.302652729911275 * standard_error, rel=1e-9)  # t(0.975, 2 dof)
    assert summary.mean_interval([5.0]) == (5.0, None)


def test_rows_in_progress_missing_seeds_and_curves(tmp_path):
    results = tmp_path / "results"
    name = "maml_trpo_halfcheetah_fb_1step"
    finished = _write_run(results / f"{name}_seed0", 0, done=12, finished=True)
    running = _write_run(results / f"{name}_seed1", 1, done=5, cut_short=True)  # seed 2 never started
    other = _write_run(results / "maml_trpo_halfcheetah_gamma90_seed0", 0, done=3, gamma=0.9)
    runs = [summary.read_run(folder) for folder in (finished, running, other)]
    defaults = reproductions._rl_defaults("examples/rl/maml_trpo.py")
    table = summary.section(runs, rl_reproductions.TRACKED, tmp_path, REPO_ROOT, lambda script: defaults)
    rows = [line for line in table if line.startswith("| HalfCheetahForwardBackward-v1")]
    # the two 1-step seeds are one group: pre/post over their windows (10 rows and the 5 complete rows)
    grouped = next(row for row in rows if "in progress: 5/12" in row)
    post = [
        sum(_returns(0, i)[1] for i in range(3, 13)) / 10,
        sum(_returns(1, i)[1] for i in range(1, 6)) / 5,
    ]
    pre = [sum(_returns(0, i)[0] for i in range(3, 13)) / 10, sum(_returns(1, i)[0] for i in range(1, 6)) / 5]
    # two seeds: 1 dof, t = tan(0.475 pi), standard error |a - b| / 2
    t1 = math.tan(0.475 * math.pi)
    expected_post = f"{sum(post) / 2:.1f} ± {t1 * abs(post[0] - post[1]) / 2:.1f} (last 5 it.)"
    expected_pre = f"{sum(pre) / 2:.1f} ± {t1 * abs(pre[0] - pre[1]) / 2:.1f} (last 5 it.)"
    assert f"| {expected_post} | {expected_pre} | 2 | 0: 12/12; 1: in progress: 5/12 |" in grouped
    assert "| 0: 25 min; 1: 5 min |" in grouped  # results.json's wall time; the last elapsed_s
    assert "about 250-270 at update 300" in grouped  # learn2learn's settings: its reference
    assert "torch 2.13.0+cpu cpu: x86_64, 1 threads" in grouped
    assert "`for S in 0 1; do python examples/rl/maml_trpo.py --env HalfCheetahForwardBackward-v1" in grouped
    assert "--iterations 12 --seed $S" in grouped
    assert "--inner-lr 0.016666666666666666 --max-kl 0.06" in grouped
    assert f"--out {results}/{name}_seed$S --no-progress; done`" in grouped
    # a run given up says so instead of "in progress"
    (running / summary.STOPPED_FILE).write_text("ablation answered\n")
    assert summary.progress(summary.read_run(running)) == "stopped at 5/12 (ablation answered)"
    # other settings are their own group, without learn2learn's number; the quick run is left out
    gamma = next(row for row in rows if "in progress: 3/12" in row)
    assert "| 1 | n/a |" in gamma and "--gamma 0.9 " in gamma and "(last 3 it.)" in gamma
    # tracked settings without folders: "not run" rows with their commands
    assert any("| 3 | about 400 at update 300" in row and "not run" in row for row in rows)
    # the Ant row, with learn2learn's inner loss as all learn2learn-settings rows
    assert any("--adapt-steps 3 --inner-loss plain --iterations 600 --seed $S" in row for row in table)
    assert any("--policy-init xavier --iterations 300" in row and "not run" in row for row in rows)
    assert any("--inner-loss plain --iterations 300" in row and "not run" in row for row in rows)
    # header, separator, two groups, the tracked settings not run: 1 step with xavier init, with rootx
    # observed and with the plain inner loss, the two 3-step
    assert len(table) == 2 + 2 + 5
    # each row says how it differs from learn2learn's settings; the DiCE group is an ablation of them,
    # the untracked group says so; learn2learn's settings lead the rows not run
    assert "| MAML-TRPO (torch) | ablation: DiCE inner loss (our default) | 1 |" in grouped
    assert "| other settings | 1 | n/a |" in gamma
    not_run = [row for row in table if "not run" in row]
    assert [row.split(" | ")[2] for row in not_run] == [
        "learn2learn's settings (its plain inner loss)",
        "learn2learn's settings (its plain inner loss)",
        "learn2learn's settings (its plain inner loss)",
        "ablation: DiCE + learn2learn's initialisation",
        "ablation: DiCE + torso x observed",
    ]
    # one curve per group, beside the runs, linked relative to the output file
    assert f"[png](results/{name}.png)" in grouped
    assert (results / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_an_ablation_row_names_its_own_change_and_tracked_rows_come_in_order(tmp_path):
    """A Xavier-init run also matches the DiCE setting it ablates: its row takes the most specific
    tracked setting's words; rows follow TRACKED's order (learn2learn's settings first), whatever the
    folder names."""
    results = tmp_path / "results"
    xavier = _write_run(results / "a_xavier_seed0", 0, done=2, inner_loss="dice", policy_init="xavier")
    dice = _write_run(results / "b_dice_seed0", 0, done=2, inner_loss="dice")
    plain = _write_run(results / "c_plain_seed0", 0, done=2, inner_loss="plain")
    runs = [summary.read_run(folder) for folder in (xavier, dice, plain)]
    table = summary.section(runs, rl_reproductions.TRACKED, tmp_path, REPO_ROOT)
    variants = [row.split(" | ")[2] for row in table[2:] if "not run" not in row]
    assert variants == [
        "learn2learn's settings (its plain inner loss)",
        "ablation: DiCE inner loss (our default)",
        "ablation: DiCE + learn2learn's initialisation",
    ]


def test_quick_runs_are_left_out(tmp_path):
    quick = _write_run(tmp_path / "quick_seed0", 0, done=3, quick=True)
    text = reproductions.main([str(quick), "--output", str(tmp_path / "R.md"), "--no-missing"])
    assert "## Meta-RL" not in text and "quick_seed0" not in text
    text = reproductions.main(
        [str(quick), "--output", str(tmp_path / "R.md"), "--no-missing", "--include-quick"]
    )
    assert "## Meta-RL" in text and "Student t interval" in text


def test_group_command_restarts_the_run_it_describes(tmp_path):
    """The rebuilt command is the one rl_reproductions.py starts (the same settings, same order)."""
    folder = _write_run(tmp_path / "maml_trpo_halfcheetah_fb_1step_seed2", 2, done=1, planned=300)
    run = summary.read_run(folder)
    defaults = reproductions._rl_defaults("examples/rl/maml_trpo.py")
    line = summary._seed_command([run], tmp_path, defaults)
    tracked = next(r for r in rl_reproductions.TRACKED if r.name == "maml_trpo_halfcheetah_fb_1step")
    assert line == tracked.command(2, tmp_path).replace(f"{tmp_path}/", "")
    assert line == (
        "python examples/rl/maml_trpo.py --env HalfCheetahForwardBackward-v1 --horizon 100 --gamma 0.95 "
        "--inner-lr 0.016666666666666666 --max-kl 0.06 "
        "--env-kwargs '{\"ctrl_cost_weight\": 0.05}' --iterations 300 --seed 2 "
        "--out maml_trpo_halfcheetah_fb_1step_seed2 --no-progress"
    )
    assert summary.settings_key(run.config) == summary.settings_key({**run.config, "adapt_steps": 1})
    assert summary.settings_key(run.config) != summary.settings_key({**run.config, "adapt_steps": 3})


def test_recorded_script_names_the_method_and_groups_with_folders_from_before_it(tmp_path):
    """config.json's "script" (written since examples/rl/_driver.py) tells maml_pg.py's runs from
    metasgd_a2c.py's (the same keys); without it the keys decide, and both forms of one run group together."""
    a2c = {key: value for key, value in CONFIG.items() if key not in ("max_kl", "cg_damping")}
    a2c["meta_lr"] = 1e-3
    assert summary.method_and_script(a2c) == ("Meta-SGD-A2C", "examples/rl/metasgd_a2c.py")  # before
    pg = {**a2c, "script": "maml_pg.py"}
    assert summary.method_and_script(pg) == ("MAML-PG", "examples/rl/maml_pg.py")
    assert summary.command(pg, "out").startswith("python examples/rl/maml_pg.py --env ")
    assert "--script" not in summary.command(pg, "out")  # a record, not a flag
    assert summary.settings_key(pg) != summary.settings_key(a2c)
    assert summary.settings_key({**CONFIG, "script": "maml_trpo.py"}) == summary.settings_key(CONFIG)
    with pytest.raises(ValueError, match="script 'other.py' is none of"):
        summary.method_and_script({**CONFIG, "script": "other.py"})


def test_plan_starts_resumes_skips_running_and_done(tmp_path):
    tracked = rl_reproductions.TRACKED[0]
    assert rl_reproductions.plan(tracked, 0, tmp_path)[0] == "start"
    _write_run(tracked.folder(1, tmp_path), 1, done=4, planned=300)
    state, argv = rl_reproductions.plan(tracked, 1, tmp_path)
    assert state == "resume" and argv[1:3] == ["--resume", "--out"] and argv[-2:] == ["--iterations", "300"]
    _write_run(tracked.folder(2, tmp_path), 2, done=300, planned=300, finished=True)
    assert rl_reproductions.plan(tracked, 2, tmp_path) == ("done", None)
    descriptor = os.open(tracked.folder(1, tmp_path) / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as RunFolder does while a run writes
        assert rl_reproductions.plan(tracked, 1, tmp_path) == ("running", None)
    finally:
        os.close(descriptor)
    assert rl_reproductions.plan(tracked, 1, tmp_path)[0] == "resume"
    report = rl_reproductions.main(["--dry-run", "--results", str(tmp_path), "--only", tracked.name])
    assert report == [(tracked.name, 0, "start"), (tracked.name, 1, "resume"), (tracked.name, 2, "done")]
    (tracked.folder(1, tmp_path) / summary.STOPPED_FILE).write_text("given up\n")  # not resumed
    assert rl_reproductions.plan(tracked, 1, tmp_path) == ("stopped", None)


def test_missing_options_reads_the_scripts_help(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--env')\np.parse_args()\n"
    )
    argv = [str(script), "--env", "X", "--adapt-steps", "3"]
    assert rl_reproductions.missing_options(str(script), argv) == ["--adapt-steps"]


def test_metrics_reader_keeps_complete_rows(tmp_path):
    folder = _write_run(tmp_path / "run_seed0", 0, done=2, cut_short=True)
    with (folder / "metrics.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == 3
    assert [row["iteration"] for row in summary.read_run(folder).rows] == [1.0, 2.0]
    assert summary.read_run(tmp_path) is None  # no config.json: not a run folder


def test_default_folders_take_meta_rl_runs_in_progress_only(tmp_path):
    rl = _write_run(tmp_path / "rl_seed0", 0, done=2)
    vision = tmp_path / "vision"  # a few-shot run in progress: no results.json yet, not listed
    vision.mkdir()
    (vision / "config.json").write_text(json.dumps({"ways": 5, "shots": 1}))
    (vision / "metrics.csv").write_text("iteration,valid_accuracy\n1,0.5\n")
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "results.json").write_text("{}")
    assert reproductions.default_folders(tmp_path) == [finished, rl]


def test_main_starts_runs_and_skips_options_a_script_lacks(tmp_path, monkeypatch):
    driver = tmp_path / "driver.py"  # stands in for examples/rl/maml_trpo.py: records its arguments
    driver.write_text(
        "import argparse, json, os, pathlib\n"
        "p = argparse.ArgumentParser()\n"
        "for flag in ('--env', '--horizon', '--iterations', '--seed', '--out'):\n"
        "    p.add_argument(flag)\n"
        "p.add_argument('--no-progress', action='store_true')\n"
        "a = p.parse_args()\n"
        "pathlib.Path(a.out, 'args.json').write_text(json.dumps([vars(a), os.environ['OMP_NUM_THREADS']]))\n"
    )
    make = lambda name, settings: rl_reproductions.Reproduction(  # noqa: E731
        name, "MAML-TRPO", str(driver), settings, 7, (0, 1), "", 0.0
    )
    tracked = (make("plain", {"env": "E-v1", "horizon": 5}), make("steps", {"env": "E-v1", "adapt_steps": 3}))
    monkeypatch.setattr(rl_reproductions, "TRACKED", tracked)
    rl_reproductions.main(["--results", str(tmp_path / "results"), "--parallel", "2"])
    for seed in (0, 1):
        arguments, threads = json.loads(
            (tmp_path / "results" / f"plain_seed{seed}" / "args.json").read_text()
        )
        assert (
            arguments["seed"] == str(seed) and arguments["iterations"] == "7" and arguments["horizon"] == "5"
        )
        assert threads == "1"
    assert not (tmp_path / "results" / "steps_seed0").exists()  # the driver has no --adapt-steps


def test_measure_times_updates_after_the_first_and_not_run_rows_show_the_hours(tmp_path, monkeypatch):
    driver = tmp_path / "driver.py"  # stands in for maml_trpo.py: update i ends at 30 + 12 i seconds
    driver.write_text(
        "import argparse, json, pathlib\n"
        "p = argparse.ArgumentParser()\n"
        "for flag in ('--env', '--iterations', '--seed', '--out'):\n"
        "    p.add_argument(flag)\n"
        "p.add_argument('--no-progress', action='store_true')\n"
        "a = p.parse_args()\n"
        "out = pathlib.Path(a.out); out.mkdir(parents=True)\n"
        "(out / 'config.json').write_text(json.dumps({'environment': {'device': 'cpu: test'}}))\n"
        "rows = [f'{i},{30 + 12 * i}' for i in range(1, int(a.iterations) + 1)]\n"
        "(out / 'metrics.csv').write_text('iteration,elapsed_s\\n' + '\\n'.join(rows) + '\\n')\n"
    )
    tracked = (
        rl_reproductions.Reproduction("e", "MAML-TRPO", str(driver), {"env": "E-v1"}, 300, (0,), "", 0.0),
    )
    monkeypatch.setattr(rl_reproductions, "TRACKED", tracked)
    results = tmp_path / "results"
    results.mkdir()
    with pytest.raises(SystemExit):
        rl_reproductions.main(["--results", str(results), "--measure", "1"])
    rl_reproductions.main(["--results", str(results), "--measure", "4"])
    costs = rl_reproductions.read_costs(results / "rl_costs.json")
    assert costs["e"]["seconds_per_update"] == 12.0 and costs["e"]["updates_timed"] == 3
    assert costs["e"]["device"] == "cpu: test"
    assert not any(results.glob("e_seed*"))  # timed in a temporary folder
    # a "not run" row: 300 updates at 12 s are 1.0 h per seed
    table = summary.section([], tracked, tmp_path, REPO_ROOT, costs=costs)
    assert "| 300 planned | about 1.0 h per seed at 12 s/update on cpu: test (" in table[-1]
    assert "| 300 planned |  |" in summary.section([], tracked, tmp_path, REPO_ROOT)[-1]  # untimed


def test_the_scripts_learn2learn_command_is_the_tracked_one():
    """maml_trpo.py's docstring shows learn2learn's HalfCheetah setting: the tracked command's words."""
    import shlex

    doc = (REPO_ROOT / "examples" / "rl" / "maml_trpo.py").read_text()
    start = doc.index("    python examples/rl/maml_trpo.py --env HalfCheetahForwardBackward-v1 --horizon 100")
    lines = []
    for line in doc[start:].splitlines():
        lines.append(line.strip().rstrip("\\"))
        if not line.endswith("\\"):
            break
    shown = shlex.split(" ".join(lines))
    tracked = next(r for r in rl_reproductions.TRACKED if r.name == "maml_trpo_halfcheetah_fb_1step_plain")
    expected = shlex.split(tracked.command(0))
    expected = expected[: expected.index("--out")]
    assert shown == expected
