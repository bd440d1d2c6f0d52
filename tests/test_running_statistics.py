"""``MetaLearner(..., batch_norm="running")``: metric learners whose backbone keeps running
batch-norm statistics (torch's default BatchNorm2d, momentum 0.1) and is evaluated with them, as
Snell et al.'s ProtoNets code does (``model.eval()``), on both backends.

Checked against: a hand fold of torch's momentum rule over the convolutions' outputs recorded
during training, the other backend (the statistics after a step; the evaluation losses with the
same converted weights and statistics), the protocol's defining property (a query's loss depends
on that query and the support images only, not on the batch either is in; it does with batch
statistics), a state_dict round trip, and the refusals."""

import numpy as np
import pytest
from _helpers import FRAMEWORKS, blocky_images, task_batch, tiny_conv_spec

import l2l_multi as l2l

# two blocks of 3x3 conv (8 channels) -> batch norm -> ReLU -> 4x4 max-pool (16 -> 4 -> 1)
TINY = tiny_conv_spec(16)
WAYS, SHOTS, QUERIES, TASKS = 3, 1, 4, 4


def _images(rng, count: int) -> np.ndarray:
    """``[count, 1, 16, 16]`` float32 images whose features differ from image to image."""
    return blocky_images(rng, count, 16)


def _batch(seed: int):
    """``(sx [TASKS, 3, 1, 16, 16] float32, sy [.., 3] int, qx [.., 4, ...], qy [.., 4])``."""
    return task_batch(seed, TASKS, WAYS, SHOTS, QUERIES, 16)


def _learner(backend: str, algorithm: str = "protonet", batch_norm: str = "running", seed: int = 0):
    options = {"conv": "xla"} if backend == "jax" else {}  # xla compiles faster on CPU
    return l2l.MetaLearner(
        algorithm, TINY, WAYS, seed=seed, backend=backend, batch_norm=batch_norm, **options
    )


@pytest.fixture(scope="module")
def trained():
    """``trained(backend)``: one running-statistics ProtoNet per backend for the module, after a
    train step on ``_batch(0)`` (so jax compiles its step once); tests must not change it."""
    made = {}

    def get(backend):
        if backend not in made:
            made[backend] = _learner(backend)
            made[backend].first_loss = made[backend].train_step(*_batch(0))["loss"]
        return made[backend]

    return get


def _torch_statistics(learner) -> dict[str, np.ndarray]:
    """``{"0.mean": [8], "0.var": [8], "0.count": [], ...}`` of a torch learner's two blocks."""
    out = {}
    for block in ("0", "1"):
        norm = learner.model.features[int(block)].normalize
        out[f"{block}.mean"] = norm.running_mean.numpy()
        out[f"{block}.var"] = norm.running_var.numpy()
        out[f"{block}.count"] = np.asarray(norm.num_batches_tracked.item())
    return out


def _jax_statistics(learner) -> dict[str, np.ndarray]:
    out = {}
    for block in ("0", "1"):
        stats = learner.batch_stats["features"][block]["normalize"]
        out[f"{block}.mean"] = np.asarray(stats["mean"])
        out[f"{block}.var"] = np.asarray(stats["var"])
        out[f"{block}.count"] = np.asarray(stats["num_batches_tracked"])
    return out


def test_torch_statistics_follow_the_momentum_rule():
    """Two train steps: every batch-norm call (each task's support set, then each query set) folds
    the batch mean and unbiased variance of its convolution's output into the running values,
    ``r = 0.9 r + 0.1 batch``, from 0 and 1. An evaluation and a meta-gradient in between
    change nothing."""
    torch = pytest.importorskip("torch")
    learner = _learner("torch")
    recorded = {"0": [], "1": []}
    recording = [False]

    def record(block):
        def hook(module, inputs, output):
            if recording[0]:
                recorded[block].append(output.detach().double())

        return hook

    for block in recorded:
        learner.model.features[int(block)].conv.register_forward_hook(record(block))
    for step in range(2):
        recording[0] = True
        learner.train_step(*_batch(step))
        recording[0] = False
        learner.evaluate(*_batch(10))
        learner.meta_gradients(*_batch(11))
    statistics = _torch_statistics(learner)
    for block, outputs in recorded.items():
        assert len(outputs) == 2 * 2 * TASKS  # steps x (support, query) x tasks
        mean, var = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
        for output in outputs:
            mean = 0.9 * mean + 0.1 * output.mean((0, 2, 3))
            var = 0.9 * var + 0.1 * output.transpose(0, 1).reshape(8, -1).var(1, unbiased=True)
        np.testing.assert_allclose(statistics[f"{block}.mean"], mean.numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(statistics[f"{block}.var"], var.numpy(), rtol=1e-5)
        assert statistics[f"{block}.count"] == len(outputs)


def _check_jax_against_torch(jax_learner, torch_learner, first_loss):
    """See ``test_jax_agrees_with_torch``; ``jax_learner`` is put back as it was."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from l2l_multi import interop

    np.testing.assert_allclose(first_loss, torch_learner.train_step(*_batch(0))["loss"], rtol=1e-5)
    jax_learner.evaluate(*_batch(10))
    expected, got = _torch_statistics(torch_learner), _jax_statistics(jax_learner)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-4, atol=1e-7, err_msg=name)
    torch_learner.train_step(*_batch(1))
    saved = jax_learner.state_dict()
    try:
        variables = interop.torch_to_flax(torch_learner.model, jax_learner.model)
        jax_learner.meta_params = jax.tree_util.tree_map(jnp.asarray, torch_learner.meta_parameters("flax"))
        jax_learner.batch_stats = jax.tree_util.tree_map(  # the learner's dtypes (a float count)
            lambda new, old: jnp.asarray(new, old.dtype), variables["batch_stats"], jax_learner.batch_stats
        )
        expected = torch_learner.evaluate(*_batch(5))["task_losses"]
        np.testing.assert_allclose(jax_learner.evaluate(*_batch(5))["task_losses"], expected, rtol=1e-4)
    finally:
        jax_learner.load_state_dict(saved)
    torch_learner.algorithm.train()  # batch statistics instead: another number
    batch = torch_learner._impl.convert(*_batch(5))
    batch_losses = torch_learner._impl._losses(batch, 0)[1].detach().numpy()
    assert np.abs(batch_losses - expected).max() > 1e-2


def test_jax_agrees_with_torch(trained):
    """The same start (torch's seeded weights) and batch: after a train step jax's running
    statistics and loss are torch's (an evaluation after it changes neither). Then, given
    torch's weights and statistics after a second step (converted by ``l2l_multi.interop``), jax
    evaluates to torch's losses; with batch statistics they would differ."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    jax_learner = trained("jax")
    _check_jax_against_torch(jax_learner, _learner("torch"), jax_learner.first_loss)


@pytest.mark.long
def test_jax_agrees_with_torch_metaoptnet():
    """As ``test_jax_agrees_with_torch`` for MetaOptNet's ridge head (its learned scale and bias
    converted too)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    jax_learner = _learner("jax", "metaoptnet")
    first_loss = jax_learner.train_step(*_batch(0))["loss"]
    _check_jax_against_torch(jax_learner, _learner("torch", "metaoptnet"), first_loss)


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_a_query_depends_on_itself_and_the_support_images_only(backend, trained):
    """Task A: support [a, b, c], queries [q0, q1, q2, q3]. Tasks B_j: support [a, b, c, b]
    (class 1's prototype is still b, but the set's batch statistics differ) and the query q_j
    alone. With running statistics A's loss is the mean of the B_j's; with batch statistics
    (the default; checked on torch, which jax's evaluation agrees with) it is not."""
    pytest.importorskip(backend)
    rng = np.random.default_rng(3)
    support, queries = _images(rng, WAYS), _images(rng, QUERIES)
    labels, query_labels = np.arange(WAYS), np.arange(QUERIES) % WAYS
    joint = (support[None], labels[None], queries[None], query_labels[None])
    doubled = np.concatenate([support, support[1:2]])[None].repeat(QUERIES, 0)
    doubled_labels = np.tile(np.r_[labels, 1], (QUERIES, 1))
    alone = (doubled, doubled_labels, queries[:, None], query_labels[:, None])
    learner = trained(backend)
    together = learner.evaluate(*joint)["loss"]
    assert abs(together - learner.evaluate(*alone)["loss"]) < 1e-5 * (1 + together)
    if backend == "torch":
        learner = _learner(backend, batch_norm="batch")
        learner.train_step(*_batch(0))
        assert abs(learner.evaluate(*joint)["loss"] - learner.evaluate(*alone)["loss"]) > 1e-3


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_state_dict_round_trip_keeps_the_statistics(backend, trained):
    """Another learner loading ``state_dict()`` has the same statistics and evaluates alike; a
    batch-statistics learner's state is refused."""
    pytest.importorskip(backend)
    source, target = trained(backend), _learner(backend, seed=1)
    target.load_state_dict(source.state_dict())
    read = _torch_statistics if backend == "torch" else _jax_statistics
    for name, value in read(source).items():
        np.testing.assert_array_equal(read(target)[name], value)
    assert read(target)["0.count"] == 2 * TASKS
    np.testing.assert_array_equal(
        target.evaluate(*_batch(5))["task_losses"], source.evaluate(*_batch(5))["task_losses"]
    )
    with pytest.raises((ValueError, RuntimeError), match="batch_stats|running_mean"):
        target.load_state_dict(_learner(backend, batch_norm="batch").state_dict())


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_bad_values_are_refused_naming_batch_norm(backend):
    pytest.importorskip(backend)
    with pytest.raises(ValueError, match=r"batch_norm='moving' is not one of 'batch', 'running'"):
        _learner(backend, batch_norm="moving")
    with pytest.raises(ValueError, match=r"batch_norm='running' applies to the metric learners"):
        _learner(backend, algorithm="maml")
    with pytest.raises(ValueError, match=r"batch_norm='running' needs a conv4 model .*'omniglot-fc'"):
        l2l.MetaLearner("protonet", "omniglot-fc", 3, backend=backend, batch_norm="running")


@pytest.mark.parametrize("backend", FRAMEWORKS)
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_a_refused_step_leaves_the_statistics(backend, wait, trained):
    """A non-finite query image makes the step non-finite: it is refused and the running
    statistics stay as they were (not NaN), as the meta-parameters do."""
    pytest.importorskip(backend)
    learner = trained(backend)
    read = _torch_statistics if backend == "torch" else _jax_statistics
    before = {name: value.copy() for name, value in read(learner).items()}
    support_x, support_y, query_x, query_y = _batch(0)
    query_x = query_x.copy()
    query_x[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(FloatingPointError):
        learner.train_step(support_x, support_y, query_x, query_y, wait=wait)
        learner.check_finite()
    for name, value in read(learner).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
