"""The few-shot examples (examples/vision): every script's --quick run on both backends (the jax
runs of protonet_miniimagenet and metaoptnet_miniimagenet under -m long), the results folder,
exact resume, and seeded repeatability. Scripts run in-process (runpy) so the frameworks are
imported once."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from _helpers import FRAMEWORKS, HAVE_JAX, HAVE_TORCH, OMNIGLOT_ROOT, REPO_ROOT, metrics_rows, run_script

pytest.importorskip("matplotlib")
# jax runs here repeat the same shapes (quick runs, resumes): the session's persistent
# compilation cache loads those executables instead of compiling them again
pytestmark = pytest.mark.usefixtures("use_jax_cache")
EXAMPLES = REPO_ROOT / "examples" / "vision"
OMNIGLOT = OMNIGLOT_ROOT
needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT / "images_background.zip").exists(),
    reason=f"the Omniglot archives are not in {OMNIGLOT_ROOT} (set L2L_MULTI_TEST_DATA)",
)


def run_example(name, *arguments):
    """Runs ``examples/vision/<name>.py`` with ``arguments``; returns its results.json."""
    run_script(EXAMPLES / f"{name}.py", *arguments)
    out = arguments[list(arguments).index("--out") + 1]
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def maml_run(tmp_path_factory):
    """``maml_run(backend, iterations)``: ``(folder, results, printed lines)`` of one
    maml_omniglot --quick run to ``iterations`` (4 is --quick's own count), run once per module:
    several tests start from the same run. A test that writes to the folder copies it first."""
    runs = {}

    def get(backend, iterations):
        if (backend, iterations) not in runs:
            out = tmp_path_factory.mktemp(f"maml_{backend}_{iterations}") / "run"
            printed = io.StringIO()
            arguments = ["--quick", "--backend", backend, "--root", OMNIGLOT, "--iterations", str(iterations)]
            with contextlib.redirect_stdout(printed):
                results = run_example("maml_omniglot", *arguments, "--out", out, "--no-progress")
            runs[backend, iterations] = out, results, printed.getvalue().splitlines()
        return runs[backend, iterations]

    return get


def copied(folder, to):
    """A copy of the run ``folder`` at ``to`` (resumed there: the shared run stays as it was)."""
    shutil.copytree(folder, to)
    return to


OMNIGLOT_CASES = [
    ("maml_omniglot", []),
    ("metasgd_omniglot", []),
    ("anil_omniglot", ["--ways", "5", "--adaptation-steps", "1", "--test-adaptation-steps", "1"]),
    ("protonet_omniglot", ["--ways", "10"]),
    ("reptile_omniglot", ["--adaptation-steps", "2", "--test-adaptation-steps", "2"]),
    ("metaoptnet_omniglot", ["--head", "ridge"]),
]


# left to `pytest -m long` on jax: algorithms whose jax programs the default suite runs elsewhere
# (test_conformance, test_crosscheck's conv4 checks) and whose example path maml_omniglot shares
LONG_OMNIGLOT_ON_JAX = ("metasgd_omniglot", "metaoptnet_omniglot")
OMNIGLOT_RUNS = [
    pytest.param(
        backend,
        name,
        extra,
        id=f"{name}-{backend}",
        marks=[
            *framework.marks,
            *([pytest.mark.long] if backend == "jax" and name in LONG_OMNIGLOT_ON_JAX else []),
        ],
    )
    for name, extra in OMNIGLOT_CASES
    for framework in FRAMEWORKS
    for backend in framework.values
]


@needs_omniglot
@pytest.mark.parametrize("backend,name,extra", OMNIGLOT_RUNS)
def test_omniglot_example_quick(tmp_path, backend, name, extra, capsys, maml_run):
    if name == "maml_omniglot":  # the same run as the resume tests start from
        out, results, printed = maml_run(backend, 4)
    else:
        out = tmp_path / "run"
        results = run_example(
            name, "--quick", "--backend", backend, "--root", OMNIGLOT, "--out", out, "--no-progress", *extra
        )
        printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"Results in {out}: results.json, metrics.csv, curve.png, checkpoint.npz"
    for file in ("config.json", "metrics.csv", "results.json", "curve.png", "checkpoint.npz"):
        assert (out / file).stat().st_size > 0, file
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["backend"] == backend and results["quick"] is True
    for setting, result in results["test"].items():
        assert 0.0 <= result["accuracy"] <= 1.0 and np.isfinite(result["ci95"]), setting
        assert result["num_tasks"] == 6 and result["adaptation_steps"] is not None
    assert len(metrics_rows(out)) == 2  # one row per evaluation (iterations 2 and 4)
    config = json.loads((out / "config.json").read_text())
    assert config["backend"] == backend and config["quick"] is True
    # Reptile tests 1 and 5 shots (--test-shots 1 5) with both protocols by default (--test-protocol
    # both), each with its own paper number, from one training run of 10 shots per class
    both = name == "reptile_omniglot"
    assert config["test_protocol"] == ("both" if both else "transductive")
    transductive = {key: value["transductive"] for key, value in results["test"].items()}
    expected = {"5w1s": True}
    if both:
        expected = {
            f"5w{k}s{protocol}": not protocol for k in (1, 5) for protocol in ("", " non-transductive")
        }
        assert results["train_setting"] == "5w10s" and config["test_shots"] == [1, 5]
    if name in ("maml_omniglot", "reptile_omniglot", "metasgd_omniglot", "anil_omniglot"):
        assert transductive == expected
    if both:  # the same learner and tasks: the protocols differ only in how queries meet batch norm
        assert set(results["paper"]) == set(expected)
        assert results["test"]["5w1s"]["loss"] != results["test"]["5w1s non-transductive"]["loss"]


@needs_omniglot
@pytest.mark.skipif(not HAVE_TORCH, reason="the SVM head is torch-only")
def test_metaoptnet_svm_head_quick(tmp_path):
    results = run_example(
        "metaoptnet_omniglot",
        "--quick",
        "--head",
        "svm",
        "--root",
        OMNIGLOT,
        "--out",
        tmp_path / "svm",
        "--no-progress",
    )
    assert set(results["test"]) == {"5w1s", "20w1s"}


@needs_omniglot
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_resume_equals_uninterrupted(tmp_path, backend, maml_run):
    common = ["--quick", "--backend", backend, "--root", OMNIGLOT, "--no-progress", "--iterations", "6"]
    straight_folder, straight, _ = maml_run(backend, 6)
    # an interrupted run restarts from its last checkpoint (written at every evaluation)
    cut = copied(maml_run(backend, 4)[0], tmp_path / "cut")
    resumed = run_example("maml_omniglot", *common, "--out", cut, "--resume")
    assert metrics_rows(straight_folder) == metrics_rows(tmp_path / "cut")
    assert len(metrics_rows(tmp_path / "cut")) == 3  # iterations 2, 4, 6: nothing logged twice
    assert straight["test"] == resumed["test"]
    if backend == "jax":
        return  # the same check on jax costs another compile; the resumed run above already repeats
    # and a seeded run repeats exactly
    again = run_example("maml_omniglot", *common, "--out", tmp_path / "again")
    assert metrics_rows(tmp_path / "again") == metrics_rows(straight_folder)
    assert again["test"] == straight["test"]


@needs_omniglot
def test_time_budget_stops_at_an_evaluation_and_resumes_exactly(tmp_path, maml_run):
    pytest.importorskip("torch")
    common = ["--quick", "--backend", "torch", "--root", OMNIGLOT, "--no-progress", "--iterations", "6"]
    straight_folder, straight, _ = maml_run("torch", 6)
    assert straight["iterations"] == 6 and straight["stopped_early"] is None
    # a budget already spent at the first evaluation (iteration 2): stop there, then test
    cut = run_example("maml_omniglot", *common, "--max-train-seconds", "1e-9", "--out", tmp_path / "cut")
    assert cut["iterations"] == 2 and "time budget" in cut["stopped_early"]
    assert set(cut["test"]) == set(straight["test"])
    assert len(metrics_rows(tmp_path / "cut")) == 1
    # the budget may change on resume (given explicitly: a flag left out comes back from the
    # folder); the run then continues as if never stopped
    budget = ["--max-train-seconds", "0"]
    resumed = run_example("maml_omniglot", *common, *budget, "--out", tmp_path / "cut", "--resume")
    assert metrics_rows(tmp_path / "cut") == metrics_rows(straight_folder)
    assert resumed["test"] == straight["test"] and resumed["iterations"] == 6


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_train_step_without_waiting_gives_the_same_metrics(backend):
    import l2l_multi as l2l

    x = np.random.default_rng(0).random((2, 6, 784), dtype=np.float32)
    y = np.tile(np.arange(3), (2, 2))
    batch = (x[:, :3], y[:, :3], x[:, 3:], y[:, 3:])
    waited, queued = (l2l.MetaLearner("maml", "omniglot-fc", 3, seed=1, backend=backend) for _ in range(2))
    for _ in range(2):
        expected = waited.train_step(*batch)
        lazy = queued.train_step(*batch, wait=False)
        assert not isinstance(lazy["loss"], float)
        assert {k: float(v) for k, v in lazy.items()} == expected


@needs_omniglot
def test_resume_refuses_a_different_configuration(tmp_path, maml_run):
    pytest.importorskip("torch")
    common = ["--quick", "--root", OMNIGLOT, "--no-progress", "--out", tmp_path / "run"]
    copied(maml_run("torch", 4)[0], tmp_path / "run")
    with pytest.raises(ValueError, match=r"differs .* in \['lr'\]"):
        run_example("maml_omniglot", *common, "--resume", "--lr", "0.1")
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_example("maml_omniglot", *common)
    # a folder saved before --test-protocol existed resumes (its test phase only: 4 of 4 updates
    # done), with the script's default protocol
    config_file = tmp_path / "run" / "config.json"
    config = json.loads(config_file.read_text())
    del config["test_protocol"]
    config_file.write_text(json.dumps(config))
    resumed = run_example("maml_omniglot", *common, "--resume")
    assert set(resumed["test"]) == {"5w1s"} and resumed["test"]["5w1s"]["transductive"] is True


def _write_mini_imagenet(root):
    from test_vision_benchmarks import _write_mini_imagenet_caches

    _write_mini_imagenet_caches(root, classes=6, per_class=4)


def _write_cifar(root):
    from test_vision_datasets import _write_cifar100

    _write_cifar100(root, train_per_class=2, test_per_class=1)


IMAGE_CASES = [
    ("maml_miniimagenet", "mini-imagenet", _write_mini_imagenet, []),
    ("anil_miniimagenet", "cifarfs", _write_cifar, []),
    ("protonet_miniimagenet", "fc100", _write_cifar, ["--ways", "5"]),
    ("metaoptnet_miniimagenet", "cifarfs", _write_cifar, ["--head", "ridge", "--shots", "1"]),
]


# left to `pytest -m long`: jax runs whose paths the default suite already takes: the same
# algorithms on jax (test_omniglot_example_quick), three-channel images and cnn4-32 on jax
# (anil_miniimagenet on cifarfs), 84-pixel conv4 models on jax (test_models), fc100 and
# mini-ImageNet on torch
LONG_ON_JAX = ("protonet_miniimagenet", "metaoptnet_miniimagenet", "maml_miniimagenet")
IMAGE_RUNS = [
    pytest.param(
        backend,
        *case,
        id=f"{case[0]}-{backend}",
        marks=[
            *framework.marks,
            *([pytest.mark.long] if backend == "jax" and case[0] in LONG_ON_JAX else []),
        ],
    )
    for case in IMAGE_CASES
    for framework in FRAMEWORKS
    for backend in framework.values
]


@pytest.mark.parametrize("backend,name,dataset,write,extra", IMAGE_RUNS)
def test_image_dataset_example_quick(tmp_path, backend, name, dataset, write, extra):
    if backend == "jax" and name == "maml_miniimagenet" and not HAVE_JAX:
        pytest.skip("jax not installed")
    write(tmp_path)
    out = tmp_path / "run"
    results = run_example(
        name,
        "--quick",
        "--backend",
        backend,
        "--dataset",
        dataset,
        "--root",
        tmp_path,
        "--out",
        out,
        "--no-progress",
        "--meta-batch",
        "1",
        *extra,
    )
    assert results["dataset"] == dataset and set(results["test"]) == {"5w1s"}
    assert 0.0 <= results["test"]["5w1s"]["accuracy"] <= 1.0


@needs_omniglot
def test_readme_resume_command_works_as_printed(tmp_path, maml_run):
    """The README's resume line, with only its folder and iteration count replaced: every other
    setting (--root, --quick, the seed, ...) comes back from the folder's config.json. Then the
    data root moves and the test-task count changes, both allowed on resume."""
    pytest.importorskip("torch")
    import shlex

    readme = (REPO_ROOT / "README.md").read_text()
    line = next(x for x in readme.splitlines() if "--resume" in x and x.startswith("python examples/vision/"))
    words = shlex.split(line.split("#")[0])
    name = words[1].rsplit("/", 1)[-1].removesuffix(".py")
    out = tmp_path / "run"
    replaced = {"--out": out, "--iterations": "6"}
    printed = [replaced.get(words[i - 1], word) if i > 2 else word for i, word in enumerate(words)][2:]
    assert set(printed[::2]) >= {"--out", "--resume"}, printed
    if name == "maml_omniglot":  # the module's run of 4 iterations
        copied(maml_run("torch", 4)[0], out)
    else:
        run_example(name, "--quick", "--root", OMNIGLOT, "--no-progress", "--iterations", "4", "--out", out)
    resumed = run_example(name, *printed)
    assert [row["iteration"] for row in metrics_rows(out)] == ["2", "4", "6"]
    assert resumed["iterations"] == 6 and resumed["quick"] is True
    moved = tmp_path / "moved-omniglot"
    moved.symlink_to(OMNIGLOT, target_is_directory=True)
    tested = run_example(
        name, "--resume", "--out", out, "--root", moved, "--test-tasks", "8", "--no-progress"
    )
    assert {result["num_tasks"] for result in tested["test"].values()} == {8}
    config = json.loads((out / "config.json").read_text())
    assert config["root"] == str(moved) and config["test_tasks"] == 8 and config["iterations"] == 6


@needs_omniglot
@pytest.mark.skipif(not HAVE_TORCH, reason="the jax path is tested in test_running_statistics.py")
def test_protonet_running_statistics_quick_and_resume(tmp_path):
    """``--batch-norm running``: one test per setting, keyed '5w1s running-statistics' with the
    paper's number; config.json records it and a resumed run continues from the checkpoint (the
    running statistics included); --test-protocol is refused with it. A default run's config has
    no batch_norm key, as folders saved before the option have."""
    common = ["--quick", "--backend", "torch", "--root", OMNIGLOT, "--no-progress", "--ways", "10"]
    out = tmp_path / "running"
    results = run_example("protonet_omniglot", *common, "--batch-norm", "running", "--out", out)
    assert set(results["test"]) == {"5w1s running-statistics", "20w1s running-statistics"}
    assert results["paper"] == {"5w1s running-statistics": 0.988, "20w1s running-statistics": 0.960}
    assert json.loads((out / "config.json").read_text())["batch_norm"] == "running"
    with np.load(out / "checkpoint.npz") as checkpoint:  # the tree's names are in its structure
        assert b"running_mean" in checkpoint["structure.json"]
    resumed = run_example("protonet_omniglot", *common, "--iterations", "6", "--out", out, "--resume")
    assert resumed["iterations"] == 6 and set(resumed["test"]) == set(results["test"])
    with pytest.raises(SystemExit, match="--test-protocol both: with --batch-norm running"):
        run_example(
            "protonet_omniglot",
            *common,
            "--batch-norm",
            "running",
            "--test-protocol",
            "both",
            "--out",
            tmp_path / "x",
        )
