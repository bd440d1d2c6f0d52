"""The main job: few-shot tasks from built-in synthetic data, meta-trained with MAML on both
backends from the same initial weights and the same seeded tasks, then cross-checked.

    python examples/main_job.py            # ~1 minute on 2 CPU cores
    python examples/main_job.py --quick    # a few seconds

Task distribution: 100 Gaussian-cluster classes (``l2l.data.synthetic_classification``), 64 for
meta-training and 36 disjoint ones for testing; 5-way 1-shot tasks with 5 query samples per
class, labels shuffled per task. Model: a 16-32-5 MLP. MAML (Finn et al., 2017), second order:
one inner SGD step on the support set, Adam on the query loss.

Both sides run the library's ``l2l.algorithms.MAML``: torch through ``meta_batch_loss`` (the
stateful clone/adapt loop on CPU), jax through ``make_meta_train_step`` (inner loop, tasks and the
Adam update in one jit-compiled function).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi.data import FilteredMetaDataset, MetaDataset, TaskDataset  # noqa: E402
from l2l_multi.data.transforms import (  # noqa: E402
    ConsecutiveLabels,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
)

WAYS, SHOTS, QUERIES, HIDDEN = 5, 1, 5, 32


def make_tasksets(seed: int) -> tuple[TaskDataset, TaskDataset]:
    data = MetaDataset(l2l.data.synthetic_classification(100, 20, shape=(16,), noise=0.6, seed=0))
    splits = []
    for labels, stream_seed in ((range(64), seed), (range(64, 100), seed + 1)):
        split = FilteredMetaDataset(data, list(labels))
        transforms = [
            NWays(split, WAYS),
            KShots(split, SHOTS + QUERIES),
            LoadData(split),
            RemapLabels(split),
            ConsecutiveLabels(split),
        ]
        splits.append(TaskDataset(split, transforms, seed=stream_seed))
    return splits[0], splits[1]


def initial_weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    glorot = lambda fan_in, fan_out: rng.uniform(-1, 1, (fan_in, fan_out)) * np.sqrt(6 / (fan_in + fan_out))
    return {
        "w1": glorot(16, HIDDEN).astype(np.float32),
        "b1": np.zeros(HIDDEN, np.float32),
        "w2": glorot(HIDDEN, WAYS).astype(np.float32),
        "b2": np.zeros(WAYS, np.float32),
    }


# samples are class-major (ConsecutiveLabels): the first SHOTS of every class adapt, the rest test
_POSITIONS = np.arange(WAYS * (SHOTS + QUERIES)).reshape(WAYS, SHOTS + QUERIES)
SUPPORT, QUERY = _POSITIONS[:, :SHOTS].ravel(), _POSITIONS[:, SHOTS:].ravel()


def torch_maml(weights, train, test, iterations, meta_batch, inner_lr, outer_lr):
    import torch

    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(16, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, WAYS))
    with torch.no_grad():  # the shared initial weights (torch stores linear weights as [out, in])
        for layer, (w, b) in zip((model[0], model[2]), (("w1", "b1"), ("w2", "b2"))):
            layer.weight.copy_(torch.from_numpy(weights[w]).t())
            layer.bias.copy_(torch.from_numpy(weights[b]))
    maml = l2l.algorithms.MAML(model, lr=inner_lr)
    optimizer = torch.optim.Adam(maml.parameters(), lr=outer_lr)

    def split(inputs, labels):
        return inputs[:, SUPPORT], labels[:, SUPPORT], inputs[:, QUERY], labels[:, QUERY]

    losses = []
    for _ in range(iterations):
        optimizer.zero_grad()
        batch = split(*train.sample_batch(meta_batch))
        result = l2l.algorithms.meta_batch_loss(maml, maml.meta_parameters(), *batch)
        result.loss.backward()
        optimizer.step()
        losses.append(result.loss.item())

    def evaluate(tasks):
        sx, sy, qx, qy = split(*test.sample_batch(tasks))
        with torch.no_grad():
            before = (maml(qx).argmax(-1) == qy).float().mean().item()
        adapted = l2l.algorithms.meta_batch_loss(maml, maml.meta_parameters(), sx, sy, qx, qy)
        after = (adapted.query_logits.argmax(-1) == qy).float().mean().item()
        return before, after

    final = {
        "w1": model[0].weight.detach().t().numpy(),
        "b1": model[0].bias.detach().numpy(),
        "w2": model[2].weight.detach().t().numpy(),
        "b2": model[2].bias.detach().numpy(),
    }
    return losses, evaluate, final


def jax_maml(weights, train, test, iterations, meta_batch, inner_lr, outer_lr):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from l2l_multi.backends.jax import algorithms

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            hidden = nn.relu(nn.Dense(HIDDEN, name="hidden")(x))
            return nn.Dense(WAYS, name="output")(hidden)

    maml = l2l.algorithms.MAML(MLP(), lr=inner_lr)  # the jax backend's MAML
    variables = {
        "params": {
            "hidden": {"kernel": jnp.asarray(weights["w1"]), "bias": jnp.asarray(weights["b1"])},
            "output": {"kernel": jnp.asarray(weights["w2"]), "bias": jnp.asarray(weights["b2"])},
        }
    }
    meta = maml.from_variables(variables)
    optimizer = optax.adam(outer_lr)
    state = optimizer.init(meta)
    step = algorithms.make_meta_train_step(maml, optimizer)  # one compiled function per shape

    def split(inputs, labels):
        return inputs[:, SUPPORT], labels[:, SUPPORT], inputs[:, QUERY], labels[:, QUERY]

    losses = []
    for _ in range(iterations):
        meta, state, metrics = step(meta, state, *split(*train.sample_batch(meta_batch)))
        losses.append(float(metrics.loss))

    evaluate_after = algorithms.make_evaluate(maml)

    def evaluate(tasks):
        sx, sy, qx, qy = split(*test.sample_batch(tasks))
        logits = jax.vmap(lambda x: maml.apply_model(meta["model"], x))(qx)
        before = float((logits.argmax(-1) == qy).mean())
        return before, float(evaluate_after(meta, sx, sy, qx, qy).accuracy)

    params = meta["model"]["params"]
    final = {
        "w1": np.asarray(params["hidden"]["kernel"]),
        "b1": np.asarray(params["hidden"]["bias"]),
        "w2": np.asarray(params["output"]["kernel"]),
        "b2": np.asarray(params["output"]["bias"]),
    }
    return losses, evaluate, final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds instead of a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    iterations, test_tasks = (30, 100) if args.quick else (600, 600)
    meta_batch, inner_lr, outer_lr = 8, 0.5, 3e-3
    weights = initial_weights(args.seed)
    print(
        f"l2l_multi main job: MAML, {WAYS}-way {SHOTS}-shot, {QUERIES} queries/class, "
        f"meta-batch {meta_batch}, {iterations} iterations, data kernels: "
        f"{l2l.data.kernel_mode()}"
    )
    results = {}
    for backend, run in (("torch", torch_maml), ("jax", jax_maml)):
        l2l.set_backend(backend)
        train, test = make_tasksets(args.seed)  # same seed: the same tasks on both backends
        start = time.perf_counter()
        losses, evaluate, final = run(weights, train, test, iterations, meta_batch, inner_lr, outer_lr)
        seconds = time.perf_counter() - start
        before, after = evaluate(test_tasks)
        results[backend] = {
            "losses": losses,
            "final": final,
            "seconds": seconds,
            "accuracy_before": before,
            "accuracy_after": after,
        }
        print(
            f"[{backend:5}] sample type {type(train.sample()[0]).__module__}; meta-loss "
            f"{losses[0]:.4f} -> {np.mean(losses[-10:]):.4f} in {seconds:.1f} s; "
            f"{test_tasks} test tasks from unseen classes: query accuracy "
            f"{before:.1%} before adaptation, {after:.1%} after one step"
        )
    # The first steps must agree to float32 precision; over hundreds of Adam steps, rounding
    # differences between the two frameworks' kernels grow, as between any two float32 runs.
    pairs = list(zip(results["torch"]["losses"], results["jax"]["losses"]))
    early_gap = max(abs(a - b) / max(abs(a), 1e-12) for a, b in pairs[:20])
    weight_gap = max(
        float(np.max(np.abs(results["torch"]["final"][k] - results["jax"]["final"][k]))) for k in weights
    )
    print(
        f"cross-check torch vs jax (same initial weights, same tasks): meta-losses of the first "
        f"20 steps agree to {early_gap:.1e} relative; after {iterations} steps float32 rounding "
        f"has moved the weights apart by at most {weight_gap:.1e}"
    )
    if early_gap > 1e-4:
        raise SystemExit(f"cross-check failed: relative meta-loss difference {early_gap:.2e} > 1e-4")
    if args.json:
        summary = {b: {k: v for k, v in r.items() if k != "final"} for b, r in results.items()}
        summary["cross_check"] = {
            "first_20_steps_max_relative_loss_difference": early_gap,
            "final_max_weight_difference": weight_gap,
        }
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=1)
        print(f"Results written to {args.json}")


if __name__ == "__main__":
    main()
