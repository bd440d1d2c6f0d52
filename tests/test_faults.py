"""Runs that survive faults: SIGKILL at named points of a run and exact resume (both backends),
two processes racing for one results folder, damaged and crafted files, checkpoints that cannot
run code, flags refused before any work.

The kills use the private hook ``L2L_TEST_KILL_AT`` (``l2l_multi.experiment._faults``). The kill
chains run ``examples/maml_sine.py --quick`` (no data needed) in subprocesses, the torch and the
jax chain side by side; the race runs two small interpreters that import only
``l2l_multi.experiment``.
"""

import csv
import io
import json
import os
import pickle
import runpy
import signal
import subprocess
import sys
import threading
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _helpers import FRAMEWORKS, HAVE_JAX, HAVE_TORCH, REPO_ROOT

from l2l_multi.experiment import RunFolder, RunFolderError
from l2l_multi.experiment import _checkpoint as codec

SINE = REPO_ROOT / "examples" / "maml_sine.py"
BACKENDS = [name for name, have in (("torch", HAVE_TORCH), ("jax", HAVE_JAX)) if have]
# the kill chain: each step runs once (plain, then --resume with no other setting) and is killed
# at its point (None: runs to the end); what the folder must hold afterwards is checked below
CHAIN = [
    "metrics_written:1",  # row 3 in metrics.csv, its checkpoint not written: a failed start
    "training:5",  # resumed from scratch, checkpointed at 3, killed in the training step after it
    "checkpoint_write:1",  # row 6 logged, the checkpoint's temporary file written, not renamed
    "results_write:1",  # trained to the end, results.json's temporary file written
    None,  # (metrics.csv is damaged before this one)
]


def _sine(out, *options, kill=None, cache=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("L2L_BACKEND", "L2L_TEST_KILL_AT")}
    env.update(OMP_NUM_THREADS="1", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    if cache is not None:  # the same executable, so the same numbers; saves the repeated compiles
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    if kill is not None:
        env["L2L_TEST_KILL_AT"] = kill
    return subprocess.run(
        [sys.executable, str(SINE), "--no-progress", "--out", str(out), *options],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _rows(folder):
    with open(folder / "metrics.csv", newline="") as stream:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(stream)]


def _temporaries(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def _kill_chain(backend, base, cache):
    """The uninterrupted run and the killed-and-resumed one; returns what each step left."""
    cache = cache if backend == "jax" else None
    straight = _sine(base / "straight", "--quick", "--backend", backend, cache=cache)
    assert straight.returncode == 0, straight.stderr[-3000:]
    steps = []
    for index, kill in enumerate(CHAIN):
        # resumed with no other flag: every setting comes back from the folder's config.json
        options = ["--quick", "--backend", backend] if index == 0 else ["--resume"]
        result = _sine(base / "cut", *options, kill=kill, cache=cache)
        folder = base / "cut"
        steps.append(
            {
                "returncode": result.returncode,
                "stderr": result.stderr,
                "files": sorted(p.name for p in folder.iterdir()),
                "rows": _rows(folder) if (folder / "metrics.csv").exists() else None,
            }
        )
        if kill == "results_write:1":  # a damaged csv before the last resume: rebuilt, not spliced
            text = (folder / "metrics.csv").read_text()
            (folder / "metrics.csv").write_text(text[: len(text) - 7])
    return base / "straight", base / "cut", steps


@pytest.fixture(scope="module")
def kill_chains(tmp_path_factory, jax_cache_env):
    """Both backends' chains, run side by side (each is a sequence of short subprocesses); the
    jax chain uses the session's compilation cache (the same maml_sine --quick program as
    test_examples_misc and test_conformance run)."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")
    base = tmp_path_factory.mktemp("kills")
    cache = jax_cache_env["JAX_COMPILATION_CACHE_DIR"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {b: pool.submit(_kill_chain, b, base / b, cache) for b in BACKENDS}
        return {backend: future.result() for backend, future in futures.items()}


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_sigkill_at_each_point_then_resume_equals_uninterrupted(kill_chains, backend):
    straight, cut, steps = kill_chains[backend]
    killed = -signal.SIGKILL
    assert [s["returncode"] for s in steps] == [killed] * 4 + [0], [s["stderr"][-2000:] for s in steps]
    # killed after a metrics row, before its checkpoint: a failed start, resumed from scratch
    assert "checkpoint.npz" not in steps[0]["files"] and [r["iteration"] for r in steps[0]["rows"]] == ["3"]
    assert "never wrote a checkpoint; resuming it starts from scratch" in steps[1]["stderr"]
    # killed in training after the first checkpoint
    assert "checkpoint.npz" in steps[1]["files"] and [r["iteration"] for r in steps[1]["rows"]] == ["3"]
    # killed inside the second checkpoint's write: the first one stands, a temporary file is left
    assert any(name.startswith(".checkpoint.npz.") for name in steps[2]["files"])
    assert [r["iteration"] for r in steps[2]["rows"]] == ["3", "6"]
    # the next open removed it (and dropped row 6, logged after the checkpoint); killed in the
    # results write
    assert not any(name.startswith(".checkpoint.npz.") for name in steps[3]["files"])
    assert any(name.startswith(".results.json.") for name in steps[3]["files"])
    assert "results.json" not in steps[3]["files"]
    # the last resume: nothing left to train, tested, and the damaged csv rebuilt from the checkpoint
    assert not any(name.startswith(".") and name != ".lock" for name in steps[4]["files"])
    assert _rows(cut) == _rows(straight)
    results = [json.loads((folder / "results.json").read_text()) for folder in (straight, cut)]
    assert results[0]["test"] == results[1]["test"]
    config = json.loads((cut / "config.json").read_text())
    assert config["iterations"] == results[1]["iterations"] == 6 and config["quick"] is True
    assert config["environment"]["variables"]["OMP_NUM_THREADS"] == "1"
    assert config["environment"]["data_kernels"] in ("compiled", "python")


# -- two processes, one folder ---------------------------------------------------------------------

WORKER = r"""
import sys, warnings
from l2l_multi.experiment import RunFolder
warnings.simplefilter("ignore")
held = None
for line in sys.stdin:
    command, *rest = line.split()
    if command == "open":
        try:
            held = RunFolder(rest[0], {"trial": rest[0]}, resume=rest[1] == "resume")
            print("won", flush=True)
        except Exception as error:
            print("lost", type(error).__name__, str(error).replace("\n", " "), flush=True)
    elif command == "close":
        if held is not None:
            held.close()
            held = None
        print("closed", flush=True)
    elif command == "modules":
        print("frameworks", sorted({"torch", "jax"} & set(sys.modules)), flush=True)
"""


class _Worker:
    def __init__(self):
        env = {k: v for k, v in os.environ.items() if k != "L2L_TEST_KILL_AT"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def send(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self):
        return self.process.stdout.readline().strip()

    def stop(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def test_two_writers_race_for_one_folder_exactly_one_wins(tmp_path):
    workers = [_Worker(), _Worker()]
    try:
        for trial in range(50):
            folder = tmp_path / f"race{trial}"
            barrier = threading.Barrier(2)

            def go(worker, folder=folder, barrier=barrier):
                barrier.wait()
                worker.send(f"open {folder} new")

            threads = [threading.Thread(target=go, args=(w,)) for w in workers]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            answers = [w.read() for w in workers]
            assert sorted(a.split()[0] for a in answers) == ["lost", "won"], answers
            lost = next(a for a in answers if a.startswith("lost"))
            assert f"lost RunFolderError {folder} is in use" in lost, lost
            # a running job plus an accidental --resume of its folder: refused while it runs
            loser = workers[[a.startswith("lost") for a in answers].index(True)]
            loser.send(f"open {folder} resume")
            assert loser.read().startswith(f"lost RunFolderError {folder} is in use")
            for worker in workers:
                worker.send("close")
                assert worker.read() == "closed"
        workers[0].send("modules")
        assert workers[0].read() == "frameworks []"  # the race costs no framework import
        # a holder killed by SIGKILL releases the folder (the OS drops the lock)
        workers[0].send(f"open {tmp_path / 'killed'} new")
        assert workers[0].read() == "won"
        workers[0].process.send_signal(signal.SIGKILL)
        workers[0].process.wait(timeout=30)
        workers[1].send(f"open {tmp_path / 'killed'} resume")
        assert workers[1].read() == "won"  # a failed start: resumed from scratch
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.stop()


# -- damaged, orphaned and crafted folders ---------------------------------------------------------


def _finished_folder(path, rows=3):
    """A folder with ``rows`` metrics rows and a checkpoint at the last of them (numpy state)."""
    with RunFolder(path, {"seed": 0, "iterations": 10}) as run:
        for iteration in range(1, rows + 1):
            run.log_metrics({"iteration": iteration, "loss": 1.0 / iteration, "name": "a,b"})
            run.save_checkpoint({"iteration": iteration, "weights": np.arange(iteration, dtype=np.float32)})
    return path


def _expected_csv(rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", "loss", "name"])
    for iteration in range(1, rows + 1):
        writer.writerow([iteration, repr(1.0 / iteration), "a,b"])
    return buffer.getvalue()


def _resume(path, **options):
    return RunFolder(path, {"seed": 0, "iterations": 10, **options}, resume=True)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: text.rindex("\n")], id="last-row-without-newline"),
        pytest.param(lambda text: text[:12], id="cut-inside-header"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: text + "99,0.5,extra\n", id="row-after-checkpoint"),
    ],
)
def test_damaged_metrics_are_rebuilt_from_the_checkpoint(tmp_path, damage):
    folder = _finished_folder(tmp_path / "run")
    csv_file = folder / "metrics.csv"
    csv_file.write_text(damage(csv_file.read_text()))
    with _resume(folder) as run:
        assert run.load_checkpoint()["iteration"] == 3
        assert csv_file.read_text() == _expected_csv(3)
        run.log_metrics({"iteration": 4, "loss": 0.25, "name": "a,b"})
    assert csv_file.read_text() == _expected_csv(4)


def _object_array_member(marker):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    array = np.empty(1, dtype=object)
    array[0] = Payload()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _replace_member(file, name, data):
    members = {}
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            members[info.filename] = archive.read(info.filename)
    members[name] = data
    with zipfile.ZipFile(file, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)


def _structure(file):
    with zipfile.ZipFile(file) as archive:
        return json.loads(archive.read("structure.json"))


@pytest.mark.parametrize(
    "damage, match",
    [
        pytest.param(
            lambda f: f.write_bytes(f.read_bytes()[:100]), "checkpoint.npz is damaged", id="truncated"
        ),
        pytest.param(lambda f: f.write_bytes(b""), "checkpoint.npz is damaged", id="empty"),
        pytest.param(
            lambda f: _replace_member(
                f, "structure.json", b'{"format": "l2l_multi-checkpoint", "version": 1, '
            ),
            "checkpoint.npz is damaged",
            id="cut-structure",
        ),
        pytest.param(
            lambda f: _replace_member(
                f,
                "structure.json",
                json.dumps({**_structure(f), "tree": {"t": "os.system", "v": "touch x"}}).encode(),
            ),
            "unknown node type 'os.system'",
            id="unknown-type",
        ),
        pytest.param(
            lambda f: _replace_member(
                f, "structure.json", json.dumps({**_structure(f), "version": 9}).encode()
            ),
            "format version 9",
            id="future-version",
        ),
    ],
)
def test_damaged_checkpoint_raises_one_error_naming_the_file(tmp_path, damage, match):
    folder = _finished_folder(tmp_path / "run")
    damage(folder / "checkpoint.npz")
    with pytest.raises(RunFolderError, match=match) as info:
        _resume(folder)
    assert str(folder / "checkpoint.npz") in str(info.value) and "another folder" in str(info.value)
    with pytest.raises(RunFolderError, match=match):  # the refused open released the folder
        _resume(folder)


@pytest.mark.parametrize(
    "content, match",
    [
        pytest.param('{"seed": 0, "iter', r"config.json is damaged", id="truncated"),
        pytest.param("", r"config.json is damaged", id="empty"),
        pytest.param("[1, 2]", r"config.json holds a list", id="not-an-object"),
    ],
)
def test_damaged_config_raises_one_error_naming_the_file(tmp_path, content, match):
    folder = _finished_folder(tmp_path / "run")
    (folder / "config.json").write_text(content)
    with pytest.raises(RunFolderError, match=match) as info:
        _resume(folder)
    assert str(folder / "config.json") in str(info.value)


@pytest.mark.parametrize("keep", ["checkpoint.npz", "metrics.csv"])
@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resume"])
def test_folder_that_lost_its_config_is_not_empty(tmp_path, keep, resume):
    folder = _finished_folder(tmp_path / "run")
    for name in ("config.json", "checkpoint.npz", "metrics.csv"):
        if name != keep:
            (folder / name).unlink()
    before = (folder / keep).read_bytes()
    with pytest.raises(RunFolderError, match=rf"config.json is missing but .* holds {keep}"):
        RunFolder(folder, {"seed": 0, "iterations": 10}, resume=resume)
    assert (folder / keep).read_bytes() == before  # nothing mixed in or overwritten


def test_failed_start_is_reused_by_a_new_run_and_by_resume(tmp_path):
    RunFolder(tmp_path / "run", {"seed": 0, "iterations": 5}).close()  # config only: a failed start
    with pytest.warns(RuntimeWarning, match="never wrote a checkpoint; the new run starts from scratch"):
        RunFolder(tmp_path / "run", {"seed": 1, "iterations": 5}).close()
    with pytest.warns(RuntimeWarning, match="never wrote a checkpoint; resuming it starts from scratch"):
        with RunFolder(tmp_path / "run", {"seed": 1, "iterations": 7}, resume=True) as run:
            assert run.checkpoint is None
            with pytest.raises(FileNotFoundError, match="checkpoint.npz does not exist"):
                run.load_checkpoint()


def test_temporaries_of_killed_writes_are_removed_on_open(tmp_path):
    folder = _finished_folder(tmp_path / "run")
    left = [".checkpoint.npz.k2j3h4", ".metrics.csv.abc", ".results.json.x1", ".curve.png.q.png"]
    for name in left:
        (folder / name).write_bytes(b"half")
    (folder / ".keep-me").write_text("not ours")
    _resume(folder).close()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".keep-me", ".lock"]


def test_resume_refuses_fewer_iterations_than_the_checkpoint(tmp_path):
    folder = _finished_folder(tmp_path / "run")
    with pytest.raises(ValueError, match=r"--iterations 2 is below the iteration of the checkpoint .* \(3\)"):
        _resume(folder, iterations=2)
    assert json.loads((folder / "config.json").read_text())["iterations"] == 10  # not rewritten
    _resume(folder, iterations=3).close()


def test_resume_in_another_environment_warns(tmp_path):
    folder = _finished_folder(tmp_path / "run")
    config = json.loads((folder / "config.json").read_text())
    config["environment"]["variables"]["OMP_NUM_THREADS"] = "7"
    config["environment"]["data_kernels"] = "other"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(
        RuntimeWarning, match=r"another environment .*data_kernels: 'other' ->.*OMP_NUM_THREADS"
    ):
        _resume(folder).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now recorded: the next resume is quiet
        _resume(folder).close()


def test_crafted_pickle_checkpoint_runs_no_code(tmp_path):
    folder = _finished_folder(tmp_path / "run")
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "checkpoint.npz").unlink()
    (folder / "checkpoint.pkl").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(RunFolderError, match=r"checkpoint.pkl is a pickle checkpoint .* never loaded"):
        _resume(folder)
    # the same payload inside the new format, as a pickled object array
    _finished_folder(tmp_path / "new")
    _replace_member(tmp_path / "new" / "checkpoint.npz", "0.npy", _object_array_member(marker))
    with pytest.raises(RunFolderError, match=r"checkpoint.npz is damaged .*allow_pickle"):
        _resume(tmp_path / "new")
    assert not marker.exists()


def test_checkpoint_codec_round_trips_exactly():
    state = {
        "ints": {0: {"step": np.float32(3.0)}, 1: (1, 2)},
        "floats": [0.1, float("nan"), float("inf"), -0.0],
        "array": np.arange(6, dtype=np.int16).reshape(2, 3)[:, ::2],
        "scalar0d": np.asarray(7, dtype=np.int32),
        "bytes": b"\x00\xff",
        "nested": ((), None, True, "text"),
    }
    restored = codec.loads(codec.dumps(state))
    assert restored["ints"][0]["step"].dtype == np.float32 and restored["ints"][1] == (1, 2)
    assert (
        restored["floats"][0] == 0.1 and np.isnan(restored["floats"][1]) and restored["floats"][2] == np.inf
    )
    assert np.array_equal(restored["array"], state["array"]) and restored["array"].dtype == np.int16
    assert restored["scalar0d"].shape == () and restored["bytes"] == b"\x00\xff"
    assert restored["nested"] == ((), None, True, "text")
    with pytest.raises(TypeError, match=r"checkpoint\['bad'\]: a builtins.set cannot be stored"):
        codec.dumps({"bad": {1}})


def _shifted(tree):
    """Every array leaf plus 1 (values no fresh learner holds), containers kept."""
    if isinstance(tree, dict):
        return {k: _shifted(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)) and not hasattr(tree, "_fields"):
        return type(tree)(_shifted(v) for v in tree)
    if hasattr(tree, "_fields"):
        return type(tree)(*(_shifted(v) for v in tree))
    return np.asarray(tree) + 1 if isinstance(tree, np.ndarray) else tree


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_learner_state_round_trips_through_the_checkpoint(backend):
    import l2l_multi as l2l

    learner = l2l.MetaLearner("metasgd", "omniglot-fc", 3, seed=1, backend=backend)
    if backend == "torch":  # Adam state with moments and a step count
        x = np.random.default_rng(0).random((2, 6, 784), dtype=np.float32)
        y = np.tile(np.arange(3), (2, 2))
        learner.train_step(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:])
        state = learner.state_dict()
    else:  # no compile: the values of a state a step would have changed
        state = _shifted(learner.state_dict())
    other = l2l.MetaLearner("metasgd", "omniglot-fc", 3, seed=2, backend=backend)
    other.load_state_dict(codec.loads(codec.dumps(state)))
    if backend == "torch":
        import torch

        again = other.state_dict()
        for name, tensor in state["algorithm"].items():
            assert torch.equal(again["algorithm"][name], tensor), name
        assert again["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
        for index, moments in state["optimizer"]["state"].items():
            for key, value in moments.items():
                assert torch.equal(again["optimizer"]["state"][index][key], value), (index, key)
    else:
        import jax

        assert jax.tree_util.tree_structure(other.opt_state) == jax.tree_util.tree_structure(
            learner.opt_state
        )
        expected, got = jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(other.state_dict())
        assert len(expected) == len(got) and all(np.array_equal(a, b) for a, b in zip(expected, got))
    # another model's state is refused by name (torch's own message lists the keys)
    error, match = (RuntimeError, "Unexpected key") if backend == "torch" else (ValueError, "another model")
    with pytest.raises(error, match=match):
        l2l.MetaLearner("maml", "omniglot-fc", 5, backend=backend).load_state_dict(
            codec.loads(codec.dumps(state))
        )


# -- flags refused before any work -----------------------------------------------------------------

FEWSHOT_FLAGS = [
    (["--test-tasks", "1"], r"--test-tasks must be an integer >= 2 \(a 95% interval"),
    (["--eval-tasks", "1"], r"--eval-tasks must be an integer >= 2"),
    (["--eval-batch", "0"], r"--eval-batch must be an integer >= 1"),
    (["--meta-batch", "-1"], r"--meta-batch must be an integer >= 1, got -1"),
    (["--ways", "1"], r"--ways must be an integer >= 2"),
    (["--eval-every", "0"], r"--eval-every must be an integer >= 1"),  # (--test-ways: metric scripts only)
    (["--lr", "nan"], r"--lr must be a finite number, got nan"),
    (["--max-train-seconds", "-5"], r"--max-train-seconds must be >= 0"),
    (["--skip-nonfinite", "-1"], r"--skip-nonfinite must be an integer >= 0 \(0: the first refused"),
]


@pytest.mark.parametrize("flags, match", FEWSHOT_FLAGS, ids=[f[0][0] for f in FEWSHOT_FLAGS])
def test_fewshot_flags_refused_before_any_work(tmp_path, flags, match):
    from l2l_multi.experiment import fewshot

    script = runpy.run_path(str(REPO_ROOT / "examples" / "vision" / "maml_omniglot.py"))
    out = tmp_path / "run"
    argv = ["--quick", "--root", str(tmp_path / "no-data"), "--out", str(out), *flags]
    with pytest.raises(SystemExit, match=match):
        fewshot.main(script["DEFAULTS"], "MAML", argv)
    assert not out.exists()  # refused before the folder, the data or a framework


def test_example_flags_refused_and_quick_keeps_explicit_values(tmp_path):
    sine = runpy.run_path(str(SINE))
    args = sine["parse_arguments"](["--quick", "--iterations", "9", "--meta-batch", "2"])
    config = sine["configure"](args)
    assert config["iterations"] == 9 and config["meta_batch"] == 2 and config["eval_every"] == 3
    for flags, match in (
        (["--test-tasks", "1"], "--test-tasks must be an integer >= 2"),
        (["--hidden", "40", "0"], r"--hidden must be an integer >= 1, got \[40, 0\]"),
        (["--lr", "inf"], "--lr must be a finite number"),
    ):
        with pytest.raises(SystemExit, match=match):
            sine["configure"](sine["parse_arguments"](flags))
    sys.path.insert(0, str(REPO_ROOT / "examples" / "rl"))
    try:
        trpo = runpy.run_path(str(REPO_ROOT / "examples" / "rl" / "maml_trpo.py"))
    finally:
        sys.path.remove(str(REPO_ROOT / "examples" / "rl"))
    driver = trpo["_driver"]  # the meta-RL driver maml_trpo.py imports
    parser = driver.argument_parser(trpo["DEFAULTS"], "trpo", trpo["add_arguments"])
    args = driver.parse_arguments(parser, trpo["DEFAULTS"], ["--quick", "--meta-batch", "5", "--out", "x"])
    assert args.meta_batch == 5 and args.iterations == 3  # --quick no longer overrides a given flag
    for flags, match in (
        (["--gamma", "2"], r"--gamma must be in \[0, 1\]"),
        (["--max-kl", "0"], "--max-kl must be > 0"),
    ):
        parser = driver.argument_parser(trpo["DEFAULTS"], "trpo", trpo["add_arguments"])
        with pytest.raises(SystemExit, match=match):
            driver.check_arguments(driver.parse_arguments(parser, trpo["DEFAULTS"], flags))
