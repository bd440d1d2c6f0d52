"""The vmapped fast path (torch.func) against the stateful clone/adapt loop, float64."""

import pytest

torch = pytest.importorskip("torch")

from l2l_multi.backends.torch.algorithms import _batched, _functional  # noqa: E402

import l2l_multi as l2l  # noqa: E402

F = torch.nn.functional
DOUBLE = torch.float64


def conv4(channels=4, ways=5, seed=0):
    """The Omniglot conv4 shape (3x3 conv, batch norm, ReLU, stride 2) at reduced width."""
    torch.manual_seed(seed)
    layers, in_channels = [], 1
    for _ in range(4):
        layers += [
            torch.nn.Conv2d(in_channels, channels, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(channels),
            torch.nn.ReLU(),
        ]
        in_channels = channels
    return torch.nn.Sequential(*layers, torch.nn.Flatten(), torch.nn.Linear(channels * 4, ways)).to(DOUBLE)


def _batch(tasks=3, ways=5, shots=1, queries=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    sx = torch.randn(tasks, ways * shots, 1, 28, 28, generator=generator, dtype=DOUBLE)
    qx = torch.randn(tasks, ways * queries, 1, 28, 28, generator=generator, dtype=DOUBLE)
    sy = torch.arange(ways).repeat(tasks, shots)
    qy = torch.arange(ways).repeat(tasks, queries)
    return sx, sy, qx, qy


def _both_paths(algorithm, batch, steps):
    results = {}
    for path in ("loop", "vmap"):
        algorithm.zero_grad()
        result = l2l.algorithms.meta_batch_loss(
            algorithm, algorithm.meta_parameters(), *batch, steps=steps, task_map=path
        )
        result.loss.backward()
        results[path] = (result, [p.grad.clone() for p in algorithm.parameters() if p.requires_grad])
    return results


def _relative(a_list, b_list):
    scale = max(b.abs().max().item() for b in b_list)
    return max((a - b).abs().max().item() for a, b in zip(a_list, b_list)) / scale


ALGORITHMS = {
    "maml": lambda: l2l.algorithms.MAML(conv4(), lr=0.4),
    "maml-first-order": lambda: l2l.algorithms.MAML(conv4(), lr=0.4, first_order=True),
    "metasgd": lambda: l2l.algorithms.MetaSGD(conv4(), lr=0.4),
    "anil": lambda: l2l.algorithms.ANIL(conv4()[:-1], torch.nn.Linear(16, 5).to(DOUBLE), lr=0.4),
}


@pytest.mark.parametrize("steps", [1, 2], ids=["1-step", "2-steps"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_fast_path_equals_the_loop(name, steps):
    algorithm = ALGORITHMS[name]()
    results = _both_paths(algorithm, _batch(), steps)
    (loop, loop_grads), (fast, fast_grads) = results["loop"], results["vmap"]
    torch.testing.assert_close(fast.task_losses, loop.task_losses, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast.query_logits, loop.query_logits, rtol=1e-10, atol=1e-12)
    assert _relative(fast_grads, loop_grads) < 1e-10


def test_fused_batch_norm_under_vmap_is_wrong_which_is_why_the_fast_path_avoids_it(monkeypatch):
    # pytorch/functorch issue 534: the affine part inside F.batch_norm gets a wrong second-order
    # meta-gradient under vmap. If this starts passing with a new torch, the workaround can go.
    def fused(layer, x):
        return F.batch_norm(x, None, None, layer.weight, layer.bias, True, 0.0, layer.eps)

    maml = l2l.algorithms.MAML(conv4(), lr=0.4)
    batch = _batch()
    exact = _both_paths(maml, batch, 1)
    monkeypatch.setattr(_functional, "_batch_norm_affine_outside", fused)
    buggy = _both_paths(maml, batch, 1)
    assert _relative(exact["vmap"][1], exact["loop"][1]) < 1e-10
    assert _relative(buggy["vmap"][1], buggy["loop"][1]) > 1e-6


def test_running_statistics_untouched_and_eval_mode_matches():
    maml = l2l.algorithms.MAML(conv4(), lr=0.4)
    with torch.no_grad():
        for layer in maml.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.1, 0.1)
                layer.running_var.uniform_(0.5, 1.5)
    buffers = [b.clone() for b in maml.buffers()]
    _both_paths(maml, _batch(), 1)
    assert all(torch.equal(a, b) for a, b in zip(buffers, maml.buffers()))
    maml.eval()  # running statistics used: still the same on both paths
    results = _both_paths(maml, _batch(), 1)
    assert _relative(results["vmap"][1], results["loop"][1]) < 1e-10


def test_frozen_parameters_stay_fixed_on_both_paths():
    net = conv4()
    net[0].weight.requires_grad_(False)
    maml = l2l.algorithms.MAML(net, lr=0.4, allow_nograd=True)
    results = _both_paths(maml, _batch(), 1)
    assert _relative(results["vmap"][1], results["loop"][1]) < 1e-10
    with pytest.raises(ValueError, match="allow_nograd=True"):
        frozen = l2l.algorithms.MAML(net, lr=0.4)
        l2l.algorithms.meta_batch_loss(frozen, frozen.meta_parameters(), *_batch(), task_map="vmap")


def test_with_a_task_dataset_batch():
    data = l2l.data.synthetic_classification(num_classes=10, samples_per_class=4, shape=(1, 28, 28), seed=0)
    dataset = l2l.data.MetaDataset(data)
    taskset = l2l.data.TaskDataset(
        dataset,
        [
            l2l.data.transforms.FusedNWaysKShots(dataset, n=5, k=3),
            l2l.data.transforms.LoadData(dataset),
            l2l.data.transforms.RemapLabels(dataset),
        ],
        seed=0,
    )
    x, y = taskset.sample_batch(4)
    (sx, sy), (qx, qy) = l2l.data.partition_task_batch(x.to(DOUBLE), y, shots=1)
    assert sx.shape == (4, 5, 1, 28, 28) and qx.shape == (4, 10, 1, 28, 28)
    results = _both_paths(l2l.algorithms.MAML(conv4(), lr=0.4), (sx, sy, qx, qy), 1)
    assert _relative(results["vmap"][1], results["loop"][1]) < 1e-10


def test_auto_path_and_errors():
    maml = l2l.algorithms.MAML(conv4(), lr=0.4)
    assert _batched.choose_path(maml, "auto") == "sequential"  # CPU parameters
    sx, sy, qx, qy = _batch()
    meta = maml.meta_parameters()
    with pytest.raises(ValueError, match="task_map='fast' is not one of"):
        l2l.algorithms.meta_batch_loss(maml, meta, sx, sy, qx, qy, task_map="fast")
    with pytest.raises(ValueError, match=r"query_x must have shape \[B, samples, ...\] with the same B as "):
        l2l.algorithms.meta_batch_loss(maml, meta, sx, sy, qx[:2], qy)
    with pytest.raises(ValueError, match="support_y must hold one label per sample of support_x"):
        l2l.algorithms.meta_batch_loss(maml, meta, sx, sy[:, :3], qx, qy)
    with pytest.raises(TypeError, match="algorithm must be an l2l learner"):
        l2l.algorithms.meta_batch_loss(conv4(), meta, sx, sy, qx, qy)
    gbml = l2l.algorithms.GBML(conv4(), l2l.optim.ModuleTransform(l2l.nn.Scale), lr=0.1, adapt_transform=True)
    with pytest.raises(TypeError, match="task_map='vmap' supports MAML, MetaSGD, ANIL, GBML, Reptile"):
        l2l.algorithms.meta_batch_loss(gbml, gbml.meta_parameters(), sx, sy, qx, qy, task_map="vmap")
    with pytest.raises(TypeError, match=r"the call is meta_batch_loss\(algorithm, meta_params, support_x"):
        l2l.algorithms.meta_batch_loss(maml, sx, sy, qx, qy)  # the old call form
    # numpy arrays are converted (the contract's rule on both backends)
    as_numpy = l2l.algorithms.meta_batch_loss(maml, meta, sx.numpy(), sy.numpy(), qx.numpy(), qy.numpy())
    assert as_numpy.loss.item() == l2l.algorithms.meta_batch_loss(maml, meta, sx, sy, qx, qy).loss.item()
