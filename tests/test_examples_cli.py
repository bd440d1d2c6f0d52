"""How the few-shot examples behave for a user: per-script options, the recorded method, --quick,
--download, the learning-curve figure, plots without matplotlib, Ctrl-C and resume, TensorBoard."""

import csv
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest
from _helpers import HAVE_TORCH, OMNIGLOT_ROOT, REPO_ROOT, metrics_rows, run_script

from l2l_multi.experiment import RunFolder, fewshot
from l2l_multi.experiment._fewshot_options import adaptation_phrase, learning_curves, setting_title

VISION = REPO_ROOT / "examples" / "vision"
OMNIGLOT = OMNIGLOT_ROOT
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "images_background.zip").exists(), reason="the Omniglot archives are not there"
)
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")


def defaults_of(name: str) -> dict:
    """The DEFAULTS dict of ``examples/vision/<name>.py`` (the script is loaded, not run)."""
    return runpy.run_path(str(VISION / f"{name}.py"), run_name="not_main")["DEFAULTS"]


def options_of(name: str) -> set[str]:
    parser = fewshot.argument_parser(defaults_of(name), "")
    return {option for action in parser._actions for option in action.option_strings}


INNER_LOOP = {"--lr", "--adaptation-steps", "--test-adaptation-steps", "--inner", "--inner-beta1"}
# what each script must offer and must not offer, written out from the methods themselves:
# gradient-based methods adapt (and MAML, Meta-SGD and ANIL have a second order to drop),
# only Reptile takes inner minibatches, metric methods test with any number of classes, only
# MetaOptNet has a head to choose.
EXPECTED = {
    "maml_omniglot": (
        INNER_LOOP | {"--first-order"},
        {"--head", "--test-ways", "--dataset", "--inner-batch", "--inner-order"},
    ),
    "metasgd_omniglot": (
        INNER_LOOP | {"--first-order"},
        {"--head", "--test-ways", "--dataset", "--inner-batch", "--inner-order"},
    ),
    "anil_omniglot": (
        INNER_LOOP | {"--first-order"},
        {"--head", "--test-ways", "--dataset", "--inner-batch", "--inner-order"},
    ),
    "reptile_omniglot": (
        INNER_LOOP | {"--inner-batch", "--inner-order", "--test-inner-batch", "--test-inner-order"},
        {"--first-order", "--head", "--test-ways", "--dataset"},
    ),
    "protonet_omniglot": ({"--test-ways"}, INNER_LOOP | {"--first-order", "--head", "--dataset"}),
    "metaoptnet_omniglot": ({"--test-ways", "--head"}, INNER_LOOP | {"--first-order", "--dataset"}),
    "maml_miniimagenet": (INNER_LOOP | {"--first-order", "--dataset"}, {"--head", "--test-ways"}),
    "protonet_miniimagenet": ({"--test-ways", "--dataset"}, INNER_LOOP | {"--head", "--first-order"}),
    "metaoptnet_miniimagenet": ({"--head", "--dataset"}, INNER_LOOP | {"--first-order"}),
}
SHARED = {"--backend", "--root", "--download", "--quick", "--resume", "--out", "--tensorboard", "--seed"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_script_offers_only_its_options(name, capsys):
    offered, absent = EXPECTED[name]
    options = options_of(name)
    assert offered | SHARED <= options
    assert not options & (absent | {"--algorithm"})
    with pytest.raises(SystemExit) as exit_info:  # --help shows the same set
        fewshot.parse_arguments(defaults_of(name), "", ["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert all(option in shown for option in offered) and not any(f"{o} " in shown for o in absent)
    # the defaults, except a None one: its help says what no value means ("(default: shots)")
    assert "(default: None)" not in " ".join(shown.split())
    assert f"(default: {defaults_of(name)['meta_batch']})" in " ".join(shown.split())


def test_a_script_refuses_another_algorithm(capsys):
    with pytest.raises(SystemExit) as exit_info:
        fewshot.parse_arguments(defaults_of("maml_omniglot"), "", ["--algorithm", "protonet"])
    assert exit_info.value.code == 2
    assert "runs MAML only" in capsys.readouterr().err


def test_variants_record_their_own_name_and_numbers(tmp_path):
    maml = fewshot.parse_arguments(defaults_of("maml_omniglot"), "", ["--first-order"])
    assert maml.method == "first-order MAML" and maml.paper["5w1s"] == 0.983
    metasgd = fewshot.parse_arguments(defaults_of("metasgd_omniglot"), "", ["--first-order"])
    assert metasgd.method == "first-order Meta-SGD" and metasgd.paper == {}
    svm = fewshot.parse_arguments(defaults_of("metaoptnet_miniimagenet"), "", [])
    assert svm.method == "MetaOptNet-SVM" and svm.paper["5w1s"] == 0.6264
    ridge = fewshot.parse_arguments(defaults_of("metaoptnet_miniimagenet"), "", ["--head", "ridge"])
    assert ridge.method == "MetaOptNet-RR" and ridge.paper == {}
    # a resumed run gets the same name back (not "first-order first-order Meta-SGD")
    folder = tmp_path / "run"
    folder.mkdir()
    saved = {k: v for k, v in vars(metasgd).items() if k not in fewshot.OUTPUT_OPTIONS}
    (folder / "config.json").write_text(json.dumps(saved))
    resumed = fewshot.parse_arguments(defaults_of("metasgd_omniglot"), "", ["--resume", "--out", str(folder)])
    assert resumed.first_order and resumed.method == "first-order Meta-SGD"


@pytest.mark.parametrize(
    "name,steps", [("protonet_omniglot", 0), ("metaoptnet_omniglot", 0), ("anil_omniglot", 1)]
)
def test_quick_changes_adaptation_steps_only_where_there_is_an_inner_loop(name, steps):
    args = fewshot.parse_arguments(defaults_of(name), "", ["--quick"])
    fewshot.run_config(args)
    assert args.adaptation_steps == steps and args.test_adaptation_steps == steps
    assert args.iterations == fewshot.QUICK["iterations"]


def test_download_flag_reaches_the_dataset(tmp_path, monkeypatch):
    from l2l_multi.vision.datasets import FullOmniglot

    fetched = []

    def fetch(path, stem, md5, content):  # instead of the network: record and stop
        fetched.append(path)
        raise ConnectionAbortedError(f"test: would download {path}")

    monkeypatch.setattr(FullOmniglot, "_fetch", staticmethod(fetch))
    root = tmp_path / "empty"
    common = ["--quick", "--root", str(root), "--no-progress"]
    defaults = defaults_of("maml_omniglot")
    with pytest.raises(FileNotFoundError, match="download=True"):
        fewshot.main(defaults, "", [*common, "--out", str(tmp_path / "a")])
    assert fetched == []
    with pytest.raises(ConnectionAbortedError):
        fewshot.main(defaults, "", [*common, "--out", str(tmp_path / "b"), "--download"])
    assert fetched == [str(root / "images_background.zip")]
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert "download" not in config  # how the files arrived does not define the run


def test_curve_has_labels_band_and_title(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from l2l_multi.experiment import _plot

    drawn = {}
    save = _plot.save_figure

    def keep(figure, path):
        axes = figure.axes
        drawn["title"] = figure._suptitle.get_text()
        drawn["ylabels"] = [axis.get_ylabel() for axis in axes]
        drawn["legends"] = [[t.get_text() for t in axis.get_legend().get_texts()] for axis in axes]
        drawn["band"] = axes[0].collections[0].get_paths()[0].vertices.copy()
        drawn["ylim"] = axes[0].get_ylim()
        return save(figure, path)

    monkeypatch.setattr(_plot, "save_figure", keep)
    rows = [
        {
            "iteration": 2,
            "train_loss": 1.5,
            "train_accuracy": 0.4,
            "valid_loss": 1.4,
            "valid_accuracy": 0.5,
            "valid_ci95": 0.1,
        },
        {
            "iteration": 4,
            "train_loss": 1.0,
            "train_accuracy": 0.6,
            "valid_loss": 1.1,
            "valid_accuracy": 0.7,
            "valid_ci95": 0.05,
        },
    ]
    with RunFolder(tmp_path / "run", {"seed": 0}) as run:
        for row in rows:
            run.log_metrics(row)
        title = setting_title("MAML", "omniglot", 5, 1, "jax")
        path = run.plot("iteration", learning_curves(200, 5, 0.987, "Finn et al. 2017"), title=title)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert drawn["title"] == "MAML, Omniglot 5-way 1-shot, jax"
    assert drawn["ylabels"] == ["query accuracy (%)", "query loss (cross-entropy)"]
    legend = drawn["legends"][0]
    assert legend[1] == "validation (200 fixed tasks; band: 95% interval)"
    assert "chance (20%)" in legend and "published test accuracy 98.7% (Finn et al. 2017)" in legend
    assert not any("_" in text for texts in drawn["legends"] for text in texts)  # no raw column names
    # the band is valid_accuracy +- valid_ci95, in percent, at each iteration
    expected = {(2.0, 40.0), (2.0, 60.0), (4.0, 65.0), (4.0, 75.0)}
    assert expected <= {(round(x, 6), round(y, 6)) for x, y in drawn["band"]}
    assert drawn["ylim"] == (0.0, 100.0)
    assert adaptation_phrase(1) == "1 adaptation step" and adaptation_phrase(3) == "3 adaptation steps"


# a matplotlib that cannot be imported, as on an install without the [examples] extra
BLOCK_MATPLOTLIB = """
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Blocker())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@needs_torch
def test_without_matplotlib_results_are_written_and_the_plot_skipped(tmp_path):
    out = tmp_path / "run"
    script = REPO_ROOT / "examples" / "maml_sine.py"
    env = {k: v for k, v in os.environ.items() if k != "L2L_BACKEND"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_MATPLOTLIB,
            str(script),
            "--quick",
            "--no-progress",
            "--out",
            str(out),
            "--iterations",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "results.json").is_file() and (out / "metrics.csv").is_file()
    assert not (out / "curve.png").exists()
    assert "curve.png was skipped" in result.stderr and "pip install matplotlib" in result.stderr
    assert f"Results in {out}: results.json, metrics.csv, checkpoint.npz" in result.stdout


QUICK_MAML = ["--quick", "--root", OMNIGLOT, "--no-progress", "--iterations", "6"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A quick MAML run of 6 iterations (evaluations at 2, 4, 6), with a TensorBoard log."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    run_script(VISION / "maml_omniglot.py", *QUICK_MAML, "--out", out, "--tensorboard")
    return out


@needs_omniglot
@needs_torch
def test_ctrl_c_saves_a_checkpoint_and_resume_equals_an_uninterrupted_run(tmp_path, uninterrupted, capsys):
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "L2L_BACKEND"}
    # SIGINT at the start of the 4th iteration: after the first metrics row (iteration 2), between
    # two evaluations, so the checkpoint also holds the training losses of iteration 3
    env.update(L2L_TEST_KILL_AT="training:4", L2L_TEST_KILL_SIGNAL="SIGINT", OMP_NUM_THREADS="1")
    script = VISION / "maml_omniglot.py"
    result = subprocess.run(
        [sys.executable, str(script), *map(str, QUICK_MAML), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 130, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines() == [
        f"Interrupted: checkpoint saved at iteration 3; resume with: "
        f"{os.path.basename(sys.executable)} {script} --resume --out {out}"
    ]
    assert "Traceback" not in result.stderr
    assert [row["iteration"] for row in metrics_rows(out)] == ["2"] and not (out / "results.json").exists()
    capsys.readouterr()
    run_script(VISION / "maml_omniglot.py", "--resume", "--out", out, "--no-progress")
    assert "Results in" in capsys.readouterr().out
    assert metrics_rows(out) == metrics_rows(uninterrupted)
    resumed, straight = (json.loads((folder / "results.json").read_text()) for folder in (out, uninterrupted))
    assert resumed["test"] == straight["test"] and resumed["iterations"] == 6


@needs_omniglot
@needs_torch
def test_tensorboard_scalars_equal_the_metrics(uninterrupted):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(uninterrupted / "tensorboard"))
    events.Reload()
    with open(uninterrupted / "metrics.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    columns = [column for column in rows[0] if column != "iteration"]
    assert sorted(events.Tags()["scalars"]) == sorted(columns)
    for column in columns:
        logged = events.Scalars(column)
        assert [event.step for event in logged] == [int(row["iteration"]) for row in rows]
        # TensorBoard stores float32
        np.testing.assert_allclose([e.value for e in logged], [float(r[column]) for r in rows], rtol=1e-6)


def test_tensorboard_without_a_writer_names_what_to_install(monkeypatch):
    from l2l_multi.experiment import _tensorboard

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(SystemExit, match="pip install tensorboard"):
        _tensorboard.summary_writer_class()


def test_reptile_defaults_are_the_papers_and_inner_settings_are_checked():
    """reptile_omniglot.py's defaults are Nichol et al.'s Omniglot settings; flags that cannot
    go together are refused by name before any work."""
    args = fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", [])
    config = fewshot.run_config(args)
    assert (args.shots, args.test_shots, args.inner, args.inner_beta1, args.inner_batch) == (
        10,
        [1, 5],
        "adam",
        0.0,
        10,
    )
    assert (args.meta_optimizer, args.meta_lr, args.meta_lr_final, args.meta_batch) == ("sgd", 1.0, 0.0, 5)
    assert config["test_shots"] == [1, 5] and config["meta_optimizer"] == "sgd"
    assert config["inner_state"] == "carried"  # one Adam for all tasks, as the paper's code
    assert config["test_inner_batch"] == 5  # the paper's --eval-batch 5
    # a script left at the defaults records none of the new settings: older folders resume
    maml = fewshot.run_config(fewshot.parse_arguments(defaults_of("maml_omniglot"), "", []))
    new_settings = {"inner", "inner_beta1", "inner_batch", "meta_optimizer", "meta_lr_final", "inner_state"}
    new_settings.add("test_inner_batch")
    assert not new_settings & set(maml)
    assert maml["test_shots"] == 1  # one test setting: an int, as folders saved before recorded it
    for argv, message in (
        (["--inner", "sgd", "--inner-beta1", "0"], "--inner-beta1 0.0: applies to --inner adam only"),
        (["--inner-beta1", "1"], r"--inner-beta1 must lie in \[0, 1\)"),
        (["--inner-batch", "0"], "--inner-batch must be an integer >= 1"),
        (["--meta-lr-halve-every", "100"], "--meta-lr-final and --meta-lr-halve-every are two schedules"),
        (["--test-shots", "1", "0"], "--test-shots must be an integer >= 1"),
        (["--test-inner-batch", "0"], "--test-inner-batch must be an integer >= 1"),
    ):
        with pytest.raises(SystemExit, match=message):
            fewshot.run_config(fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", argv))


def test_a_folder_without_a_newer_setting_resumes_with_that_settings_old_default(tmp_path):
    """A folder saved before --inner-state and --test-inner-batch existed (or with them at "task"
    and None, which are not recorded) resumes under reptile_omniglot.py, whose defaults are now
    "carried" and 5, with the old values; --test-inner-batch may be given on resume (test time
    only); a hand-edited value is refused by name."""
    argv = ["--inner-state", "task"]
    saved = fewshot.run_config(fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", argv))
    saved.pop("test_inner_batch")
    assert "inner_state" not in saved
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(saved))
    resume = ["--resume", "--out", str(folder)]
    resumed = fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", resume)
    assert (resumed.inner_state, resumed.test_inner_batch) == ("task", None)
    assert fewshot.run_config(resumed) == saved
    given = fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", [*resume, "--test-inner-batch", "5"])
    assert given.test_inner_batch == 5 and "test_inner_batch" in fewshot.MAY_CHANGE
    smaller = fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", [*resume, "--eval-batch", "5"])
    assert smaller.eval_batch == 5 and "eval_batch" in fewshot.MAY_CHANGE  # memory, not results
    saved["inner_state"] = "kept"  # a hand-edited folder
    (folder / "config.json").write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="--inner-state 'kept' is not one of 'task', 'carried'"):
        fewshot.run_config(fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", resume))


def test_the_meta_step_anneals_linearly_to_its_final_value():
    """--meta-lr-final: update i (from 0) runs at meta_lr + i / iterations * (final - meta_lr),
    also when training resumes at update i (the rate depends on the update, not on the process)."""
    from l2l_multi.experiment import _fewshot_training

    args = fewshot.parse_arguments(defaults_of("reptile_omniglot"), "", ["--iterations", "8"])
    fewshot.run_config(args)
    rates = []

    class Learner:  # records the rate each update is queued with, then stops training
        iterations = 0

        def set_meta_lr(self, rate):
            rates.append(rate)

        def train_step(self, *batch, wait=True):
            raise KeyboardInterrupt

        def load_state_dict(self, state):
            pass

    class Tasks:
        def next(self, n, shots):
            return (None, None), (None, None)

        def load_state_dict(self, state):
            pass

        def close(self):
            pass

    class Run:
        def __init__(self, start):
            saved = {"iteration": start, "learner": {}, "train_tasks": {}, "elapsed": 0.0, "window": []}
            self.checkpoint = saved if start else None

    for start in range(8):
        with pytest.raises(KeyboardInterrupt):
            _fewshot_training.train_learner(args, Run(start), Learner(), Tasks(), None, processes=None)
    assert np.allclose(rates, [1.0 - i / 8 for i in range(8)])  # meta_lr 1 to meta_lr_final 0
