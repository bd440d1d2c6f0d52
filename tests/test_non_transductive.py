"""``MetaLearner.evaluate(..., transductive=False)``: each query scored on a batch of its task's
support set and itself (Nichol, Achiam and Schulman 2018, Sec. 5), on both backends.

Checked against: the protocol's defining property (a query's loss does not depend on the other
queries; it does when transductive), a hand loop over the queries with the backend's own model,
and the other backend with the same weights. A tiny conv net with batch norm keeps it fast."""

import numpy as np
import pytest
from _helpers import FRAMEWORKS, blocky_images, task_batch, tiny_conv_spec

import l2l_multi as l2l

# two blocks of 3x3 conv (8 channels) -> batch norm -> ReLU -> max-pool (28 -> 7 -> 1), a Linear head
TINY = tiny_conv_spec(28)
WAYS, SHOTS, QUERIES = 3, 1, 4  # QUERIES: per task


def _images(rng, count: int) -> np.ndarray:
    """``[count, 1, 28, 28]`` float32 images whose features differ from image to image."""
    return blocky_images(rng, count, 28)


def _batch(seed: int):
    """``(sx [4, 3, 1, 28, 28] float32, sy [.., 3] int, qx [.., 4, ...], qy [.., 4])``."""
    return task_batch(seed, 4, WAYS, SHOTS, QUERIES, 28)


def _learner(algorithm: str, backend: str, **options):
    if backend == "jax":
        options.setdefault("conv", "xla")  # compiles several times faster on CPU
    return l2l.MetaLearner(
        algorithm, TINY, WAYS, lr=0.4, adaptation_steps=1, seed=0, backend=backend, **options
    )


@pytest.fixture(scope="module")
def learners():
    """``learners(algorithm, backend)``: one learner per pair for the module, so the jax tests
    reuse its compiled evaluators (every test below scores [4, 3, ...] / [4, 4, ...] batches)."""
    made = {}

    def get(algorithm, backend):
        if (algorithm, backend) not in made:
            made[algorithm, backend] = _learner(algorithm, backend)
        return made[algorithm, backend]

    return get


# (protonet on jax follows from protonet on torch and the cross-backend agreement below)
@pytest.mark.parametrize("backend, algorithm", [("torch", "maml"), ("jax", "maml"), ("torch", "protonet")])
def test_a_query_does_not_depend_on_the_other_queries(backend, algorithm, learners):
    """Four tasks share a support set S; their queries are [A, B1, B2, B3], [A, C1, C2, C3],
    [D, B1, B2, B3] and [D, C1, C2, C3]. A task's loss is the mean of its query losses, so when
    each query is scored on its own, loss1 - loss2 = loss3 - loss4 (both are the B's minus the C's
    over 4). When a task's queries share batch statistics, A and D move the B's and C's."""
    pytest.importorskip(backend)
    rng = np.random.default_rng(1)
    support_x, (a, d), b, c = (
        _images(rng, WAYS * SHOTS),
        _images(rng, 2)[:, None],
        _images(rng, 3),
        _images(rng, 3),
    )
    query_x = np.stack([np.concatenate([first, rest]) for first in (a, d) for rest in (b, c)])
    query_y = np.zeros((4, 4), dtype=np.int64)  # any labels: the losses are what is compared
    support_x = np.repeat(support_x[None], 4, axis=0)
    support_y = np.tile(np.arange(WAYS), (4, SHOTS))
    learner = learners(algorithm, backend)
    for transductive in (False, True):
        losses = learner.evaluate(support_x, support_y, query_x, query_y, transductive=transductive)[
            "task_losses"
        ]
        gap = (losses[0] - losses[1]) - (losses[2] - losses[3])
        if transductive:
            assert abs(gap) > 1e-3, (losses, "the transductive protocol should couple the queries")
        else:
            assert abs(gap) < 1e-5, losses


def _torch_by_hand(learner, algorithm: str, batch, steps: int):
    """Per-task (losses, accuracies): SGD on the support set with torch.autograd, then each query
    on ``[support ; query]`` through ``torch.func.functional_call`` (ProtoNets: class means)."""
    import torch
    import torch.nn.functional as F

    model = learner.model
    losses, accuracies = [], []
    for sx, sy, qx, qy in zip(*(torch.as_tensor(a) for a in batch)):
        params = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
        adapted = {
            "maml": params,
            "reptile": params,
            "anil": {n: p for n, p in params.items() if "classifier" in n},
        }
        for _ in range(steps if algorithm in adapted else 0):
            loss = F.cross_entropy(torch.func.functional_call(model, params, (sx,)), sy)
            grads = torch.autograd.grad(loss, list(adapted[algorithm].values()))
            params = {**params, **{n: p - 0.4 * g for (n, p), g in zip(adapted[algorithm].items(), grads)}}
            adapted = {key: {n: params[n] for n in value} for key, value in adapted.items()}
        with torch.no_grad():
            if algorithm == "protonet":
                features = {n[len("features.") :]: p for n, p in params.items() if n.startswith("features.")}

                def embed(x, features=features):
                    return torch.func.functional_call(model.features, features, (x,)).flatten(1)

                prototypes = torch.stack([embed(sx)[sy == k].mean(0) for k in range(WAYS)])
                query = torch.stack([embed(torch.cat([sx, x[None]]))[-1] for x in qx])
                logits = -((query[:, None] - prototypes[None]) ** 2).sum(-1)
            else:
                logits = torch.stack(
                    [torch.func.functional_call(model, params, (torch.cat([sx, x[None]]),))[-1] for x in qx]
                )
        losses.append(F.cross_entropy(logits, qy).item())
        accuracies.append((logits.argmax(-1) == qy).float().mean().item())
    return np.array(losses), np.array(accuracies)


@pytest.mark.parametrize(
    "algorithm, steps", [("maml", 1), ("maml", 0), ("anil", 2), ("reptile", 2), ("protonet", 0)]
)
def test_torch_equals_a_hand_loop_over_the_queries(algorithm, steps, learners):
    pytest.importorskip("torch")
    batch = _batch(2)
    learner = learners(algorithm, "torch")
    result = learner.evaluate(*batch, adaptation_steps=steps, transductive=False)
    losses, accuracies = _torch_by_hand(learner, algorithm, batch, steps)
    np.testing.assert_allclose(result["task_losses"], losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["task_accuracies"], accuracies)
    transductive = learner.evaluate(*batch, adaptation_steps=steps)["task_losses"]
    assert np.abs(transductive - losses).max() > 1e-3  # the hand loop tells the protocols apart


def test_jax_equals_a_hand_loop_over_the_queries(learners):
    """MAML, one step: the adapted variables (jitted ``adapt``), then each query on
    ``[support ; query]`` through the flax model, one query after another."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    batch = _batch(3)
    learner = learners("maml", "jax")
    result = learner.evaluate(*batch, transductive=False)
    algorithm, meta = learner.algorithm, learner.meta_params
    adapt = jax.jit(lambda sx, sy: algorithm.adapt(meta, sx, sy, steps=1))
    forward = jax.jit(lambda variables, x: algorithm.apply_model(variables, x, True))
    losses, accuracies = [], []
    for sx, sy, qx, qy in zip(*(jnp.asarray(a) for a in batch)):
        adapted = adapt(sx, sy)
        logits = jnp.stack([forward(adapted, jnp.concatenate([sx, x[None]]))[-1] for x in qx])
        losses.append(float(-jax.nn.log_softmax(logits)[jnp.arange(len(qy)), qy].mean()))
        accuracies.append(float((logits.argmax(-1) == qy).mean()))
    np.testing.assert_allclose(result["task_losses"], losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["task_accuracies"], accuracies)


@pytest.mark.parametrize("algorithm", ["maml", "protonet", "anil"])
def test_backends_agree_with_the_same_weights(algorithm, learners):
    """Both backends start from the same weights (the jax one converts torch's seeded model)."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    batch = _batch(4)
    results = {
        backend: learners(algorithm, backend).evaluate(*batch, transductive=False)
        for backend in ("torch", "jax")
    }
    np.testing.assert_allclose(
        results["torch"]["task_losses"], results["jax"]["task_losses"], rtol=1e-5, atol=2e-6
    )
    np.testing.assert_array_equal(results["torch"]["task_accuracies"], results["jax"]["task_accuracies"])


@pytest.mark.parametrize("backend", FRAMEWORKS)
@pytest.mark.parametrize("value", ["no", 1, None, np.bool_(False)])
def test_a_transductive_that_is_not_a_bool_is_refused(backend, value, learners):
    batch = _batch(5)
    with pytest.raises(TypeError, match=r"transductive=.* must be a bool"):
        learners("maml", backend).evaluate(*batch, transductive=value)


def test_evaluate_tasks_records_the_protocol(learners):
    pytest.importorskip("torch")
    from l2l_multi import data
    from l2l_multi.experiment import evaluate_tasks

    rng = np.random.default_rng(6)
    images, labels = _images(rng, 5 * (SHOTS + 1)), np.repeat(np.arange(5), SHOTS + 1)
    dataset = data.MetaDataset(data.ArrayDataset(images, labels))
    pipeline = [
        data.transforms.FusedNWaysKShots(dataset, n=WAYS, k=SHOTS + 1),
        data.transforms.LoadData(dataset),
        data.transforms.RemapLabels(dataset),
    ]
    tasks = data.TaskDataset(dataset, pipeline, num_tasks=4, seed=0, backend="numpy")
    learner = learners("maml", "torch")
    common = {"shots": SHOTS, "num_tasks": 4, "batch_size": 2}
    both = {flag: evaluate_tasks(learner, tasks, transductive=flag, **common) for flag in (True, False)}
    assert both[True]["transductive"] is True and both[False]["transductive"] is False
    assert abs(both[True]["loss"] - both[False]["loss"]) > 1e-4
    # each task is scored on its own: the tasks per call (--eval-batch) change no result
    whole = evaluate_tasks(learner, tasks, transductive=True, **{**common, "batch_size": 4})
    assert whole["accuracy"] == pytest.approx(both[True]["accuracy"], abs=1e-12)
    assert whole["loss"] == pytest.approx(both[True]["loss"], rel=1e-6)
    with pytest.raises(TypeError, match="transductive"):
        evaluate_tasks(learner, tasks, transductive="both", **common)


@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_each_query_in_chunks_with_a_remainder(backend, monkeypatch):
    """7 queries on a support set of 3 in chunks of 2 (8 inputs per call): 4 chunks, the last one
    short; every query's row equals its own pass over [support ; query] (a batch statistic)."""
    rng = np.random.default_rng(7)
    support, queries = rng.normal(size=(3, 2)), rng.normal(size=(7, 2))
    expected = [(np.vstack([support, q]) - np.vstack([support, q]).mean(0))[-1] for q in queries]
    if backend == "torch":
        torch = pytest.importorskip("torch")
        from l2l_multi.backends.torch import _non_transductive as module

        convert, back = torch.as_tensor, np.asarray
    else:
        jnp = pytest.importorskip("jax.numpy")
        from l2l_multi.backends.jax import _non_transductive as module

        convert, back = jnp.asarray, np.asarray
    monkeypatch.setattr(module, "IMAGES_PER_CALL", 8)
    out = module.each_query(lambda x: x - x.mean(0), convert(support), convert(queries))
    np.testing.assert_allclose(back(out), np.array(expected), rtol=1e-6, atol=1e-7)
