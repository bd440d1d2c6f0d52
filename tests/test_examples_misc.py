"""examples/maml_sine.py and examples/optimization/*.py: each --quick run on both backends (torch
in a subprocess, through the command line end to end; jax in this process, where the frameworks
are already imported), MAML's exact resume, and each example's agreement across backends (same
tasks or minibatches, same initial weights). maml_sine's jax command line runs end to end in
subprocesses in test_conformance and test_faults."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest
from _helpers import REPO_ROOT, run_script

EXAMPLES = {
    "maml_sine": ("examples/maml_sine.py", ()),
    "meta_descent": ("examples/optimization/meta_descent.py", ("sklearn",)),
    "hypergradient_digits": ("examples/optimization/hypergradient_digits.py", ("sklearn",)),
}
FRAMEWORK_MODULES = {"torch": ("torch",), "jax": ("jax", "flax", "optax")}
RESULT_FILES = ("config.json", "metrics.csv", "results.json", "curve.png", "checkpoint.npz")
JAX_CACHE: dict[str, str] = {}  # the session's jax compilation cache, for every run of this module


@pytest.fixture(scope="module", autouse=True)
def _share_jax_cache(jax_cache_env):
    JAX_CACHE.update(jax_cache_env)
    yield
    JAX_CACHE.clear()


def _require(backend: str, extra=()) -> None:
    for module in (*FRAMEWORK_MODULES[backend], "tqdm", "matplotlib", *extra):
        pytest.importorskip(module)


def _run(script: str, out, *options, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "L2L_BACKEND"}
    env["OMP_NUM_THREADS"] = "1"
    env.update(JAX_CACHE)  # the same compiled meta-steps: load them instead of compiling again
    result = subprocess.run(
        [sys.executable, script, "--no-progress", "--out", str(out), *options],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, use_jax_cache):
    """``quick_run(example, backend)``: the folder of that example's --quick run (run once)."""
    folders = {}

    def get(example: str, backend: str):
        script, extra = EXAMPLES[example]
        _require(backend, extra)
        if (example, backend) not in folders:
            out = tmp_path_factory.mktemp(f"{example}_{backend}") / "run"
            if backend == "torch":
                _run(script, out, "--quick", "--backend", backend)
            else:
                run_script(REPO_ROOT / script, "--no-progress", "--out", out, "--quick", "--backend", backend)
            folders[example, backend] = out
        return folders[example, backend]

    return get


def _metrics(folder) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def _numbers(tree):
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in _numbers(value)]
    if isinstance(tree, (list, tuple)):
        return [x for value in tree for x in _numbers(value)]
    return [tree] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_quick_run_writes_finite_results(quick_run, example, backend):
    folder = quick_run(example, backend)
    for name in RESULT_FILES:
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = _metrics(folder)
    config = json.loads((folder / "config.json").read_text())
    assert len(rows) >= 2 and int(rows[-1]["iteration"]) == config["iterations"]
    assert all(math.isfinite(float(value)) for row in rows for value in row.values())
    results = json.loads((folder / "results.json").read_text())
    assert results["backend"] == backend and results["quick"] is True
    numbers = _numbers(results)
    assert numbers and all(math.isfinite(x) for x in numbers)
    if example == "maml_sine":
        assert sorted(results["test"]) == ["0_steps", "10_steps", "1_steps"]
        assert {r["num_tasks"] for r in results["test"].values()} == {12}
    if example == "hypergradient_digits":  # the rate moves away from alpha_0 = 0.001
        assert float(rows[-1]["hd_learning_rate"]) != pytest.approx(0.001)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_maml_sine_resume_equals_uninterrupted(quick_run, tmp_path, backend, use_jax_cache, capsys):
    """The cut and resumed runs go in this process (the frameworks are imported once; the quick
    run they are compared with went through the command line in a subprocess)."""
    straight = quick_run("maml_sine", backend)  # --quick: 6 iterations, evaluations every 3
    script = REPO_ROOT / EXAMPLES["maml_sine"][0]
    common = ("--no-progress", "--out", tmp_path / "b", "--quick", "--backend", backend)
    run_script(script, *common, "--iterations", "3")
    assert [row["iteration"] for row in _metrics(tmp_path / "b")] == ["3"]
    run_script(script, *common, "--iterations", "6", "--resume")
    assert "Results in" in capsys.readouterr().out
    drop = lambda rows: [{k: v for k, v in row.items() if not k.startswith("elapsed")} for row in rows]
    assert drop(_metrics(tmp_path / "b")) == drop(_metrics(straight))
    results = [json.loads((folder / "results.json").read_text()) for folder in (tmp_path / "b", straight)]
    assert results[0]["test"] == results[1]["test"]


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_backends_agree(quick_run, example):
    """Same numpy tasks or minibatches, torch's initial weights converted to flax: the float32
    runs agree up to rounding (summation orders, ~1e-6 relative here). Accuracies are compared to
    within 1% (one argmax flip would move them by one sample)."""
    torch_folder, jax_folder = quick_run(example, "torch"), quick_run(example, "jax")
    torch_rows, jax_rows = _metrics(torch_folder), _metrics(jax_folder)
    assert len(torch_rows) == len(jax_rows)
    for torch_row, jax_row in zip(torch_rows, jax_rows):
        assert torch_row.keys() == jax_row.keys()
        for key in torch_row:
            if key.startswith("elapsed"):
                continue
            expected = float(torch_row[key])
            tolerance = {"abs": 0.01} if key.endswith("accuracy") else {"rel": 1e-4}
            assert float(jax_row[key]) == pytest.approx(expected, **tolerance), (key, torch_row["iteration"])
    if example == "maml_sine":
        torch_test = json.loads((torch_folder / "results.json").read_text())["test"]
        jax_test = json.loads((jax_folder / "results.json").read_text())["test"]
        for steps, result in torch_test.items():
            assert jax_test[steps]["mse"] == pytest.approx(result["mse"], rel=1e-4), steps
