"""One conformance body for every registered algorithm on both backends: build, one train_step,
evaluate, a state_dict round trip through the checkpoint codec, and agreement of the meta-loss and
meta-gradients between backends on the same converted weights (small model, float64). A second
test runs ``l2l.MetaLearner(..., backend="jax")`` and the jax examples in a process in which
``import torch`` fails."""

import numpy as np
import pytest

pytest.importorskip("torch")
jax = pytest.importorskip("jax")

from _helpers import OMNIGLOT_ROOT, run_python  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi._registry import ALGORITHM_SPECS, ModelSpec  # noqa: E402
from l2l_multi.crosscheck import compare_trees  # noqa: E402
from l2l_multi.experiment import _checkpoint as codec  # noqa: E402

WAYS, SHOTS, QUERIES, TASKS, FEATURES = 3, 2, 2, 2, 12
# small enough that each jax compile takes a fraction of a second
TINY = ModelSpec(
    "tiny-fc",
    "OmniglotFC",
    {"input_size": FEATURES, "sizes": (8, 8)},
    (FEATURES,),
    False,
    "a small OmniglotFC for the conformance test",
)
ROWS = [
    pytest.param(name, dict(options), id="-".join([name, *map(str, options.values())]))
    for name, spec in ALGORITHM_SPECS.items()
    for options in spec.crosscheck
]


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((TASKS, WAYS * (SHOTS + QUERIES), FEATURES))
    y = np.tile(np.arange(WAYS), (TASKS, SHOTS + QUERIES))
    cut = WAYS * SHOTS
    return x[:, :cut], y[:, :cut], x[:, cut:], y[:, cut:]


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def _state_leaves(state):
    """Arrays of a state dict (torch's nested state dicts included), in a fixed order."""
    if isinstance(state, dict):
        return [leaf for key in sorted(state, key=str) for leaf in _state_leaves(state[key])]
    if isinstance(state, (list, tuple)):
        return [leaf for value in state for leaf in _state_leaves(value)]
    if hasattr(state, "detach"):
        return [state.detach().cpu().numpy()]
    return [np.asarray(state)]


@pytest.mark.parametrize("algorithm, options", ROWS)
def test_every_algorithm_conforms_on_both_backends(algorithm, options):
    batch = _batch()
    with jax.enable_x64(True):
        learners = {
            name: l2l.MetaLearner(
                algorithm, TINY, WAYS, lr=0.1, dtype="float64", seed=3, backend=name, **options
            )
            for name in ("torch", "jax")
        }
        # the same converted weights: the meta-loss and meta-gradients agree between backends
        (torch_loss, torch_grads), (jax_loss, jax_grads) = (
            learners[name].meta_gradients(*batch, layout="flax") for name in ("torch", "jax")
        )
        assert abs(torch_loss - jax_loss) <= 1e-10 * abs(torch_loss)
        assert compare_trees(torch_grads, jax_grads) < 1e-9
        flax_trees = [learners[name].meta_parameters("flax") for name in ("torch", "jax")]
        assert compare_trees(*flax_trees) == 0
        for name, learner in learners.items():
            before = learner.meta_parameters()
            metrics = learner.train_step(*batch)
            assert sorted(metrics) == ["accuracy", "loss"] and np.isfinite(metrics["loss"]), name
            assert learner.iterations == 1
            # a meta-update moved the parameters
            after = _leaves(learner.meta_parameters())
            assert any(not np.array_equal(a, b) for a, b in zip(_leaves(before), after)), name
            result = learner.evaluate(*batch)
            assert result["task_losses"].shape == result["task_accuracies"].shape == (TASKS,), name
            # the checkpoint codec round trip restores every array of another seed's learner
            state = learner.state_dict()
            other = l2l.MetaLearner(
                algorithm, TINY, WAYS, lr=0.1, dtype="float64", seed=4, backend=name, **options
            )
            other.load_state_dict(codec.loads(codec.dumps(state)))
            assert other.iterations == 1
            restored = _state_leaves(other.state_dict())
            assert len(restored) == len(_state_leaves(state)) > 0
            for a, b in zip(_state_leaves(state), restored):
                np.testing.assert_array_equal(a, b)


def test_regression_learner_agrees_between_backends():
    """``loss="mse"`` on the sine MLP spec (what examples/maml_sine.py runs): the same meta-loss,
    meta-gradients and adapted parameters on both backends, no accuracy reported."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (TASKS, 10, 1))
    y = np.sin(x)
    batch = (x[:, :5], y[:, :5], x[:, 5:], y[:, 5:])
    with jax.enable_x64(True):
        learners = [
            l2l.MetaLearner(
                "maml", "sine-mlp", 1, lr=0.01, loss="mse", dtype="float64", adaptation_steps=2, backend=name
            )
            for name in ("torch", "jax")
        ]
        (torch_loss, torch_grads), (jax_loss, jax_grads) = (
            learner.meta_gradients(*batch, layout="flax") for learner in learners
        )
        assert abs(torch_loss - jax_loss) <= 1e-12 * torch_loss
        assert compare_trees(torch_grads, jax_grads) < 1e-10
        adapted = [learner.adapted_parameters(*batch[:2], layout="flax") for learner in learners]
        assert compare_trees(*adapted) < 1e-12
        for learner in learners:
            assert sorted(learner.train_step(*batch)) == ["loss"]
            result = learner.evaluate(*batch, adaptation_steps=1)
            assert "accuracy" not in result and result["task_losses"].shape == (TASKS,)


BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, _NoTorch())
"""

NO_TORCH = (
    BLOCK_TORCH
    + """
import runpy, pathlib
import numpy as np
import l2l_multi as l2l
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the blocker did not work")
learner = l2l.MetaLearner("maml", "omniglot-fc", 5, backend="jax")
x = np.random.default_rng(0).random((2, 10, 784), dtype=np.float32)
y = np.tile(np.arange(5), (2, 2))
print("step", learner.train_step(x[:, :5], y[:, :5], x[:, 5:], y[:, 5:])["loss"])
def run(script, *arguments):
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")
out, roots = pathlib.Path(sys.argv[1]), sys.argv[2:]
run("examples/maml_sine.py", "--backend", "jax", "--quick", "--no-progress", "--out", str(out / "sine"))
if roots:
    run("examples/vision/protonet_omniglot.py", "--backend", "jax", "--quick", "--no-progress",
        "--ways", "10", "--root", roots[0], "--out", str(out / "protonet"))
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules), "torch was imported"
print("done without torch")
"""
)


def test_jax_backend_and_examples_run_where_torch_cannot_be_imported(tmp_path, jax_cache_env):
    """The session's jax compilation cache: the same quick runs as test_examples_misc (maml_sine)
    and test_examples_vision (protonet_omniglot, 10 ways) compile once between them."""
    from _helpers import REPO_ROOT

    arguments = [str(tmp_path)]
    omniglot = OMNIGLOT_ROOT
    if (omniglot / "images_background.zip").exists():
        arguments.append(str(omniglot))
    code = f"import sys; sys.argv = ['-c', *{arguments!r}]\n" + NO_TORCH
    result = run_python(code, cwd=REPO_ROOT, env={"OMP_NUM_THREADS": "1", **jax_cache_env})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "done without torch" in result.stdout
    assert (tmp_path / "sine" / "results.json").exists()
    if len(arguments) > 1:
        assert (tmp_path / "protonet" / "results.json").exists()
