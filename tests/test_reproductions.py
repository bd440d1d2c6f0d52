"""benchmarks/reproductions.py: the table is computed from results folders, verdicts included."""

import importlib.util
import json
import os

import pytest
from _helpers import REPO_ROOT

spec = importlib.util.spec_from_file_location("reproductions", REPO_ROOT / "benchmarks" / "reproductions.py")
reproductions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproductions)


def _write(folder, **fields):
    folder.mkdir(parents=True)
    results = {
        "method": "ProtoNets",
        "algorithm": "protonet",
        "dataset": "omniglot",
        "backend": "torch",
        "device": "torch cpu: x86_64",
        "train_setting": "60w1s",
        "model": "omniglot-cnn-pool",
        "iterations": 100,
        "quick": False,
        "wall_seconds": 120.0,
        "command": "python examples/vision/protonet_omniglot.py",
        "paper": {"5w1s": 0.988, "20w1s": 0.960},
        "test": {
            "5w1s": {"accuracy": 0.9850, "ci95": 0.004, "num_tasks": 600, "adaptation_steps": 0},
            "20w1s": {"accuracy": 0.9500, "ci95": 0.003, "num_tasks": 600, "adaptation_steps": 0},
        },
    }
    results.update(fields)
    (folder / "results.json").write_text(json.dumps(results))


def test_verdicts():
    assert reproductions.verdict(0.988, 0.995, 0.002) == "above"
    assert reproductions.verdict(0.988, 0.985, 0.004) == "reached (within interval)"
    assert reproductions.verdict(0.960, 0.950, 0.003).startswith("below by 0.70 points")


def test_table_from_results_folders(tmp_path, monkeypatch):
    # the planned runs' folders: none here (the repository's own run folders change as runs progress)
    monkeypatch.setattr(reproductions._sibling("fewshot_reproductions"), "RESULTS", tmp_path / "planned")
    _write(tmp_path / "protonet")
    _write(tmp_path / "quick", quick=True)
    (tmp_path / "sine").mkdir()
    (tmp_path / "sine" / "results.json").write_text(json.dumps({"backend": "jax", "test_mse_10_steps": 0.12}))
    output = tmp_path / "REPRODUCTIONS.md"
    text = reproductions.main(
        [str(tmp_path / "protonet"), str(tmp_path / "quick"), str(tmp_path / "sine"), "--output", str(output)]
    )
    # tracked settings without a run are listed with the paper's number (from the example) and a command
    assert "| MAML | omniglot | 5w1s | 98.70 | not run |" in text
    assert "| first-order MAML | omniglot | 20w1s | 89.40 | not run |" in text
    assert "--first-order --ways 20 --lr 2.0" in text  # the paper code's 0.1 on its summed loss
    assert output.read_text() == text
    rows = [line for line in text.splitlines() if line.startswith("| ProtoNets") and "not run" not in line]
    assert len(rows) == 2  # the quick run is left out
    # + the planned ProtoNets runs without results: the paper's protocol (1- and 5-shot), the jax 1-shot run
    assert sum(line.startswith("| ProtoNets") for line in text.splitlines()) == 8
    assert "| ProtoNets | omniglot | 20w5s running-statistics | 98.90 | not run |" in text
    five_way = next(row for row in rows if "5w1s (trained 60w1s, omniglot-cnn-pool)" in row)
    assert "| 98.80 | 98.50 ± 0.40 | reached (within interval) |" in five_way
    twenty_way = next(row for row in rows if "20w1s" in row)
    assert "below by 0.70 points" in twenty_way and "2 min" in twenty_way
    assert "| sine | jax |" in text and "test_mse_10_steps=0.12" in text


def test_rows_pin_training_splits_and_mark_time_budgets(tmp_path):
    _write(tmp_path / "old")  # before train_splits existed: trained on the train split
    _write(
        tmp_path / "new",
        train_splits=["train", "validation"],
        stopped_early="time budget of 60 s reached after 100 updates",
        command="python examples/vision/protonet_omniglot.py --train-splits train validation",
    )
    text = reproductions.main(
        [str(tmp_path / "old"), str(tmp_path / "new"), "--output", str(tmp_path / "R.md"), "--no-missing"]
    )
    rows = [line for line in text.splitlines() if line.startswith("| ProtoNets | omniglot | 5w1s")]
    old = next(row for row in rows if "on train+validation" not in row)
    new = next(row for row in rows if "(trained 60w1s on train+validation, omniglot-cnn-pool)" in row)
    assert old.count("--train-splits") == 1 and "--train-splits train`" in old
    assert new.count("--train-splits") == 1 and "(time budget)" in new and "(time budget)" not in old


def test_planned_runs_states_progress_and_costs(tmp_path, monkeypatch):
    planned = reproductions._sibling("fewshot_reproductions")
    monkeypatch.setattr(planned, "RESULTS", tmp_path)
    monkeypatch.setattr(planned, "COSTS", tmp_path / "fewshot_costs.json")
    jax_protonet = next(run for run in planned.PLANNED if run.name == "protonet_omniglot_60w1s_pool_jax")
    reptile = next(run for run in planned.PLANNED if run.name == "reptile_omniglot_5w_jax")
    assert planned.plan(jax_protonet, "data")[0] == "start"
    assert (
        jax_protonet.iterations() == 4000 and reptile.iterations() == 100000
    )  # given / the script's default
    folder = tmp_path / jax_protonet.name
    folder.mkdir()
    (folder / "checkpoint.npz").write_bytes(b"")
    (folder / "metrics.csv").write_text(
        "iteration,train_loss,valid_accuracy,elapsed_s\n500,0.5,0.9,60.0\n1000,0.4,0.9312,120.0\n"
    )
    state, argv = planned.plan(jax_protonet, "data")
    assert state == "resume" and argv[:4] == [
        "examples/vision/protonet_omniglot.py",
        "--resume",
        "--out",
        str(folder),
    ]
    assert planned.progress(jax_protonet) == 1000
    (tmp_path / "fewshot_costs.json").write_text(
        json.dumps({jax_protonet.name: {"seconds_per_update": 0.9, "device": "jax cpu: cpu", "cpu_count": 2}})
    )
    text = reproductions.main(["--output", str(tmp_path / "R.md")])
    # the planned rows (the repository's own finished folder of that name adds result rows)
    rows = [line for line in text.splitlines() if jax_protonet.name in line and "| in progress" in line]
    assert len(rows) == 2 and all("in progress: 1000/4000 it, 0.0 h so far (0.12 s/it" in row for row in rows)
    assert all("with validations); validation (5w1s) 93.1% at 1000 |" in row for row in rows)
    assert "about 1.0 h of training at 0.9 s/it on jax cpu: cpu (2 cores)" in rows[0]  # 4000 * 0.9 s
    assert "| ProtoNets | omniglot | 5w1s | 98.80 | in progress" in "\n".join(rows)
    # the planned rows (the repository's finished folder of that name adds result rows)
    reptile_rows = [
        line for line in text.splitlines() if f"/{reptile.name} " in line and "| not run |" in line
    ]
    # one training run, tested with 1 and 5 shots in both of Nichol et al.'s protocols
    assert [row.split(" | ")[2] for row in reptile_rows] == [
        "5w1s",
        "5w1s non-transductive",
        "5w5s",
        "5w5s non-transductive",
    ]
    assert "| MetaOptNet | omniglot | 5w1s | n/a | not run | no published number |" in text
    (folder / "results.json").write_text("{}")
    assert planned.plan(jax_protonet, "data") == ("done", None)


def test_a_finished_runs_finding_is_printed_under_the_table(tmp_path, monkeypatch):
    planned = reproductions._sibling("fewshot_reproductions")
    monkeypatch.setattr(planned, "RESULTS", tmp_path)
    run = planned.PlannedRun("protonet_x", "protonet_omniglot", "", ("5w1s",), "why", "found X")
    monkeypatch.setattr(planned, "PLANNED", (run,))
    _write(tmp_path / "other")  # finished, not this run
    (tmp_path / "protonet_x").mkdir()
    assert reproductions.finding_lines([tmp_path / "other", tmp_path / "protonet_x"]) == []  # not finished
    text = reproductions.main(["--output", str(tmp_path / "R.md"), str(tmp_path / "other")])
    assert "Findings" not in text and "| ProtoNets | omniglot | 5w1s | 98.80 | not run | why |" in text
    (tmp_path / "protonet_x" / "results.json").write_text(json.dumps({}))
    lines = reproductions.finding_lines([tmp_path / "protonet_x"])
    assert lines == ["", "Findings of finished runs:", "", "- `protonet_x`: found X"]


def _quoted(test: dict, setting: str, paper: float) -> str:
    """How a finding quotes one retested setting: "mean ± interval (setting; paper N)", in %."""
    return f"{100 * test['accuracy']:.2f} ± {100 * test['ci95']:.2f} ({setting}; paper {100 * paper:.2f})"


@pytest.mark.parametrize("protocol", ["transductive", "non-transductive"])
def test_the_reptile_findings_figures_are_those_of_its_saved_retests(protocol):
    # the finding quotes retests on 3,000 tasks; their results files lie in the run folder
    planned = reproductions._sibling("fewshot_reproductions")
    run = next(run for run in planned.PLANNED if run.name == "reptile_omniglot_5w_jax")
    retest = json.loads((run.folder / f"test3000_{protocol.replace('-', '_')}.json").read_text())
    assert f"--test-tasks 3000 --test-protocol {protocol}" in retest["command"]
    assert len(retest["test"]) == 2
    for setting, test in retest["test"].items():
        assert test["num_tasks"] == 3000 and test["transductive"] is (protocol == "transductive")
        assert _quoted(test, setting, retest["paper"][setting]) in run.finding


@pytest.mark.parametrize(
    "name", ["fomaml_omniglot_5w1s_jax", "maml_omniglot_5w1s_torch", "protonet_omniglot_60w1s_pool_jax"]
)
def test_a_retested_runs_finding_quotes_its_saved_retest(name):
    planned = reproductions._sibling("fewshot_reproductions")
    run = next(run for run in planned.PLANNED if run.name == name)
    retest = json.loads((run.folder / "test3000.json").read_text())
    assert "--test-tasks 3000" in retest["command"] and run.finding.startswith(planned.RETESTED)
    first = json.loads((run.folder / "results.json").read_text())["test"]
    for setting, test in retest["test"].items():
        assert test["num_tasks"] == 3000 and first[setting]["num_tasks"] == 600
        assert _quoted(test, setting, retest["paper"][setting]) in run.finding
        reached = test["accuracy"] + test["ci95"] >= retest["paper"][setting]
        assert ("still reached" in run.finding) is reached


def test_the_reptile_findings_shuffled_test_batch_figures_are_those_of_its_saved_retest():
    # the same model retested with the paper's random test batches: the 5-shot figures quoted,
    # the 1-shot ones equal to the interleaved retests' (a batch of 5 is the whole support set)
    planned = reproductions._sibling("fewshot_reproductions")
    run = next(run for run in planned.PLANNED if run.name == "reptile_omniglot_5w_jax")
    retest = json.loads((run.folder / "test3000_shuffled_test_batches.json").read_text())
    assert "--test-tasks 3000 --test-inner-order shuffled" in retest["command"]
    interleaved = {}
    for protocol in ("transductive", "non_transductive"):
        interleaved.update(json.loads((run.folder / f"test3000_{protocol}.json").read_text())["test"])
    assert set(retest["test"]) == set(interleaved) and len(interleaved) == 4
    for setting, test in retest["test"].items():
        assert test["num_tasks"] == 3000
        if setting.startswith("5w1s"):
            assert test["accuracy"] == interleaved[setting]["accuracy"]
            continue
        assert test["accuracy"] < interleaved[setting]["accuracy"]  # the finding says "lower"
        assert _quoted(test, setting, retest["paper"][setting]) in run.finding


def test_peer_table_puts_the_same_updates_side_by_side(tmp_path):
    peer_table = reproductions._sibling("_peer_table")
    peer = tmp_path / peer_table.PEER
    peer.mkdir()
    # learn2learn counts from iteration 0: its rows 0..4 are updates 1..5
    rows = "".join(f"{i},{10.0 * i},50.0\n" for i in range(5))
    (peer / "metrics.csv").write_text("iteration,adaptation_reward,wall_seconds\n" + rows)
    plain, dice = (folders for _, _, folders in peer_table.SETTINGS)

    def write(name, returns):  # our metrics.csv, counting from update 1
        (tmp_path / name).mkdir()
        lines = "".join(f"{i},0,{value}\n" for i, value in enumerate(returns, start=1))
        (tmp_path / name / "metrics.csv").write_text("iteration,pre_return,post_return\n" + lines)

    for seed, name in enumerate(plain[:2]):  # seed 2's folder missing: an empty cell
        write(name, [i + 100.0 * seed for i in range(1, 9)])
    write(dice[0], [-1.0] * 8)  # DiCE seed 0 only
    write(peer_table.ABLATIONS[0][1], [7.0, 8.0])  # a one-seed ablation stopped after 2 updates
    lines = peer_table.peer_lines(tmp_path, window=3)
    assert "5 of its 300 updates so far" in " ".join(lines)
    header = next(line for line in lines if line.startswith("| updates"))
    assert header.split(" | ")[1:5] == ["learn2learn's code"] + [
        f"ours, plain loss, seed {i}" for i in range(3)
    ]
    assert header.split(" | ")[5:9] == ["ours, DiCE, seed 0", "ours, DiCE, seed 1", "ours, DiCE, seed 2"] + [
        peer_table.ABLATIONS[0][0]
    ]
    table = [line for line in lines if line.startswith(("| 1-3 ", "| 4-6 "))]
    # updates 1-3: learn2learn 0, 10, 20; ours 1, 2, 3 (+100 for seed 1). Updates 4-5 only, as far
    # as learn2learn has come: 30, 40; ours 4, 5
    assert table == [
        "| 1-3 | 10.0 | 2.0 | 102.0 |  | -1.0 |  |  | 7.5 (2 updates) |  |",
        "| 4-6 | 35.0 (2 updates) | 4.5 (2 updates) | 104.5 (2 updates) |  | -1.0 (2 updates) |  |  |  |  |",
    ]
    # the last row: learn2learn's last 3 updates (3-5: 20, 30, 40) and ours over the same updates
    assert (
        peer_table.peer_lines(tmp_path, window=3, tail=3)[-1]
        == "| 3-5 (its last 3) | 30.0 | 4.0 | 104.0 |  | -1.0 |  |  |  |  |"
    )
    # fewer updates than tail: the row says how many the ablation holds
    assert lines[-1] == "| 1-5 (its last 5) | 20.0 | 3.0 | 103.0 |  | -1.0 |  |  | 7.5 (2 updates) |  |"
    # no verdict while a seed lacks the updates (seed 2's folders are missing)
    for extra in range(5, 300):  # a finished run says so
        rows += f"{extra},1.0,50.0\n"
    (peer / "metrics.csv").write_text("iteration,adaptation_reward,wall_seconds\n" + rows)
    assert "all 300 of its updates" in " ".join(peer_table.peer_lines(tmp_path))
    # the verdict: learn2learn's mean over updates 1-5 (20) against ours (3, 103, 53: seed 2 added);
    # the DiCE seeds have no sentence until all three hold those updates
    write(plain[2], [i + 50.0 for i in range(1, 9)])
    (peer / "metrics.csv").write_text("iteration,adaptation_reward,wall_seconds\n" + rows[: rows.index("5,")])
    half = 4.302652729911275 * 50.0 / 3**0.5  # t(0.975, 2) * std(3, 103, 53) / sqrt(3)
    verdict = (
        "Over updates 1-5, learn2learn's code averages 20.0; ours with learn2learn's settings 53.0 "
        f"± {half:.1f} over the same updates (3 seeds, 95% t interval): learn2learn's code is inside that "
        "interval."
    )
    assert peer_table.peer_lines(tmp_path, window=3)[-2:] == ["", verdict]
    write(dice[1], [1.0] * 8)  # with all three DiCE seeds (-1, 1, 3) their sentence follows
    write(dice[2], [3.0] * 8)
    half = 4.302652729911275 * 2.0 / 3**0.5
    assert peer_table.peer_lines(tmp_path, window=3)[-3:] == [
        "",
        verdict,
        f"Over updates 1-5, learn2learn's code averages 20.0; ours with the DiCE inner loss 1.0 ± {half:.1f} "
        "over the same updates (3 seeds, 95% t interval): learn2learn's code is above that interval.",
    ]
    assert peer_table.verdict_lines({1: 200.0}, [{1: 1.0}, {1: 3.0}], 1, 1)[-1].endswith(
        "is above that interval."
    )
    with pytest.raises(ValueError, match="tail=0 must be a positive int"):
        peer_table.peer_lines(tmp_path, tail=0)
    assert peer_table.peer_lines(tmp_path / "nothing") == []


def test_every_accuracy_the_documentation_quotes_is_in_the_generated_table():
    # README and docs quote results; REPRODUCTIONS.md is generated from the run folders, so a quoted
    # "mean ± interval" that it does not hold was typed by hand or has gone stale
    import re

    table = (REPO_ROOT / "benchmarks" / "REPRODUCTIONS.md").read_text()
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    quoted = {
        (page.name, figure)
        for page in pages
        for figure in re.findall(r"\d+\.\d+ ± \d+\.\d+", page.read_text())
    }
    assert quoted, "the README quotes no reproduced accuracy: this test has lost its subject"
    assert sorted(q for q in quoted if q[1] not in table) == []


def test_fewshot_measure_times_the_updates_between_the_two_validations(tmp_path, monkeypatch):
    """--measure N: the seconds between the validations at N/2 and N, over N/2 updates, in a
    temporary folder."""
    planned = reproductions._sibling("fewshot_reproductions")
    monkeypatch.setattr(planned, "ROOT", tmp_path)
    monkeypatch.setattr(planned, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(planned, "COSTS", tmp_path / "results" / "fewshot_costs.json")
    (tmp_path / "results").mkdir()
    script = tmp_path / "examples" / "vision" / "standin.py"  # validation i ends at 40 + 0.25 i s
    script.parent.mkdir(parents=True)
    script.write_text(
        "import argparse, json, pathlib\n"
        "p = argparse.ArgumentParser()\n"
        "for flag in ('--root', '--out', '--iterations', '--eval-every', '--eval-tasks', '--test-tasks'):\n"
        "    p.add_argument(flag)\n"
        "p.add_argument('--no-progress', action='store_true')\n"
        "a = p.parse_args()\n"
        "out = pathlib.Path(a.out)\n"
        "(out / 'config.json').write_text(json.dumps({'environment': {'device': 'jax cpu: test'}}))\n"
        "every, last = int(a.eval_every), int(a.iterations)\n"
        "rows = [f'{i},{40 + 0.25 * i}' for i in range(every, last + 1, every)]\n"
        "(out / 'metrics.csv').write_text('iteration,elapsed_s\\n' + '\\n'.join(rows) + '\\n')\n"
    )
    run = planned.PlannedRun("standin_run", "standin", "", ("5w1s",), "the paper's settings")
    monkeypatch.setattr(planned, "PLANNED", (run,))
    planned.main(["--root", "data", "--measure", "40"])
    costs = planned.read_costs()
    assert costs["standin_run"]["seconds_per_update"] == 0.25 and costs["standin_run"]["updates_timed"] == 20
    assert costs["standin_run"]["device"] == "jax cpu: test"
    assert not (tmp_path / "results" / "standin_run").exists()  # timed in a temporary folder
    if hasattr(os, "sched_getaffinity"):  # timed on one pinned CPU, as the runs train; the table says so
        assert costs["standin_run"]["cpus_used"] == 1
        run = run._replace(arguments="--iterations 1000")
        assert f"(one of {os.cpu_count()} cores, measured " in reproductions._cost(run, costs)
