"""MAML-family learners on the torch backend: meta-gradients against finite differences and closed
forms (float64), the paper's snippet 4, and the errors of adapt()."""

import pytest

torch = pytest.importorskip("torch")

from _gradcheck import directional_check  # noqa: E402

import l2l_multi as l2l  # noqa: E402

F = torch.nn.functional
DOUBLE = torch.float64


def _task(seed=0, ways=3, shots=2, queries=3, features=4):
    generator = torch.Generator().manual_seed(seed)
    xs = torch.randn(ways * shots, features, generator=generator, dtype=DOUBLE)
    xq = torch.randn(ways * queries, features, generator=generator, dtype=DOUBLE)
    ys = torch.arange(ways).repeat_interleave(shots)
    yq = torch.arange(ways).repeat_interleave(queries)
    return xs, ys, xq, yq


def _mlp(batch_norm=False, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(4, 5)]
    if batch_norm:
        layers.append(torch.nn.BatchNorm1d(5))
    layers += [torch.nn.Tanh(), torch.nn.Linear(5, 3)]
    return torch.nn.Sequential(*layers).double()


def _meta_loss(algorithm, steps=1, task=None, loss=F.cross_entropy):
    xs, ys, xq, yq = task or _task()

    def compute():
        learner = algorithm.clone()
        for _ in range(steps):
            learner.adapt(loss(learner(xs), ys))
        return loss(learner(xq), yq)

    return compute


@pytest.mark.parametrize("steps", [1, 3], ids=["1-step", "3-steps"])
@pytest.mark.parametrize("batch_norm", [False, True], ids=["mlp", "mlp-batchnorm"])
def test_maml_second_order_matches_finite_differences(steps, batch_norm):
    maml = l2l.algorithms.MAML(_mlp(batch_norm), lr=0.5)
    assert directional_check(_meta_loss(maml, steps), maml.parameters()) < 1e-6


def test_maml_on_a_conv_net_with_batch_norm():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 3),
    ).double()
    generator = torch.Generator().manual_seed(2)
    task = (
        torch.randn(6, 1, 8, 8, generator=generator, dtype=DOUBLE),
        torch.arange(3).repeat(2),
        torch.randn(9, 1, 8, 8, generator=generator, dtype=DOUBLE),
        torch.arange(3).repeat(3),
    )
    maml = l2l.algorithms.MAML(net, lr=0.4)
    assert directional_check(_meta_loss(maml, 2, task), maml.parameters()) < 1e-6


def _linear_regression(seed=3, n=10, d=4):
    generator = torch.Generator().manual_seed(seed)
    xs, xq = (
        torch.randn(n, d, generator=generator, dtype=DOUBLE),
        torch.randn(n, d, generator=generator, dtype=DOUBLE),
    )
    w_true = torch.randn(d, 1, generator=generator, dtype=DOUBLE)
    return xs, xs @ w_true, xq, xq @ w_true + 0.1


@pytest.mark.parametrize("first_order", [True, False], ids=["first-order", "second-order"])
def test_maml_equals_the_closed_form_on_linear_regression(first_order):
    xs, ys, xq, yq = _linear_regression()
    model = torch.nn.Linear(4, 1, bias=False).double()
    lr = 0.05
    maml = l2l.algorithms.MAML(model, lr=lr, first_order=first_order)
    _meta_loss(maml, 1, (xs, ys, xq, yq), F.mse_loss)().backward()
    # closed form for L(w) = mean((X w - y)^2): grad = 2/n X^T (X w - y), Hessian = 2/n X^T X
    w = model.weight.detach().t()
    n, m = len(xs), len(xq)
    w_adapted = w - lr * 2 / n * xs.t() @ (xs @ w - ys)
    query_grad = 2 / m * xq.t() @ (xq @ w_adapted - yq)
    if not first_order:
        query_grad = (torch.eye(4, dtype=DOUBLE) - lr * 2 / n * xs.t() @ xs) @ query_grad
    torch.testing.assert_close(model.weight.grad, query_grad.t(), rtol=1e-12, atol=1e-12)


def test_metasgd_matches_finite_differences_and_learns_rates():
    meta_sgd = l2l.algorithms.MetaSGD(_mlp(), lr=0.3)
    with torch.no_grad():
        for rate in meta_sgd.lrs:
            rate.add_(0.1 * torch.rand_like(rate))
    assert directional_check(_meta_loss(meta_sgd, 2), meta_sgd.parameters()) < 1e-6
    assert all(rate.grad is not None and rate.grad.abs().sum() > 0 for rate in meta_sgd.lrs)


def test_metasgd_step_is_elementwise():
    meta_sgd = l2l.algorithms.MetaSGD(torch.nn.Linear(2, 1).double(), lr=0.1)
    with torch.no_grad():
        meta_sgd.lrs[0].copy_(torch.tensor([[0.1, 0.2]]))
    x = torch.ones(3, 2, dtype=DOUBLE)
    learner = meta_sgd.clone()
    before = learner.module.weight.clone()
    loss = learner(x).sum()
    (grad,) = torch.autograd.grad(loss, learner.module.weight, retain_graph=True)
    learner.adapt(loss)
    torch.testing.assert_close(
        learner.module.weight, before - torch.tensor([[0.1, 0.2]], dtype=DOUBLE) * grad
    )


@pytest.mark.parametrize(
    "factory, adapt_transform",
    [
        ("kronecker", True),
        ("kronecker", False),
        ("meta-curvature", False),
        ("scale", False),
    ],
)
def test_gbml_matches_finite_differences(factory, adapt_transform):
    transform = {
        "kronecker": l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear),
        "meta-curvature": l2l.optim.MetaCurvatureTransform,
        "scale": l2l.optim.ModuleTransform(l2l.nn.Scale),
    }[factory]
    gbml = l2l.algorithms.GBML(_mlp(), transform, lr=0.3, adapt_transform=adapt_transform)
    with torch.no_grad():  # move the transforms off identity so every term matters
        for p in gbml.compute_update.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert directional_check(_meta_loss(gbml, 2), gbml.parameters()) < 1e-6
    assert all(p.grad is not None for p in gbml.compute_update.parameters())


def test_gbml_adapt_transform_changes_the_transform():
    gbml = l2l.algorithms.GBML(
        _mlp(), l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear), lr=0.3, adapt_transform=True
    )
    xs, ys, _, _ = _task()
    learner = gbml.clone()
    first = [p.clone() for p in learner.compute_update.parameters()]
    learner.adapt(F.cross_entropy(learner(xs), ys))
    learner.adapt(F.cross_entropy(learner(xs), ys))
    moved = [not torch.allclose(a, b) for a, b in zip(first, learner.compute_update.parameters())]
    assert any(moved)
    assert all(torch.equal(a, b) for a, b in zip(first, gbml.compute_update.parameters()))


def test_snippet_4_verbatim():
    model = _mlp()
    # --- snippet 4 of the paper, as printed ---
    meta_sgd = l2l.algorithms.GBML(
        model,
        l2l.optim.ModuleTransform(l2l.nn.Scale),
    )
    meta_curvature = l2l.algorithms.GBML(
        model,
        l2l.optim.MetaCurvatureTransform,
    )
    meta_kfo = l2l.algorithms.GBML(
        model,
        l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear),
        adapt_transform=True,
    )
    # ---
    xs, ys, xq, yq = _task()
    for gbml in (meta_sgd, meta_curvature, meta_kfo):
        gbml.zero_grad()
        learner = gbml.clone()
        learner.adapt(F.cross_entropy(learner(xs), ys))
        F.cross_entropy(learner(xq), yq).backward()
        assert all(p.grad is not None for p in model.parameters())
        assert all(p.grad is not None for p in gbml.compute_update.parameters())


def test_anil_matches_finite_differences_and_shares_features():
    torch.manual_seed(0)
    features = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh()).double()
    anil = l2l.algorithms.ANIL(features, torch.nn.Linear(6, 3).double(), lr=0.5)
    learner = anil.clone()
    assert learner.features is features and learner.head is not anil.head
    assert directional_check(_meta_loss(anil, 2), anil.parameters()) < 1e-6
    xs, ys, _, _ = _task()
    before = [p.clone() for p in features.parameters()]
    learner.adapt(F.cross_entropy(learner(xs), ys))
    assert all(torch.equal(a, b) for a, b in zip(before, learner.features.parameters()))
    torch.testing.assert_close(learner(xs), learner(features=features(xs)))


def test_mamlpp_matches_finite_differences():
    net = _mlp(batch_norm=True)
    mamlpp = l2l.algorithms.MAMLpp(net, lr=0.4, adaptation_steps=2)
    with torch.no_grad():
        for rates in mamlpp.lrs:
            rates.copy_(torch.tensor([0.4, 0.2]))
        for layer in net.modules():
            if isinstance(layer, l2l.algorithms.PerStepBatchNorm):
                layer.weight.add_(0.1 * torch.randn_like(layer.weight))
    assert directional_check(_meta_loss(mamlpp, 2), mamlpp.parameters()) < 1e-6
    # every rate of both steps is learned, the batch-norm weight's and bias's included (their
    # updates used to land in a row that no later forward read)
    assert all(r.grad.abs().min() > 0 for r in mamlpp.lrs)


def test_mamlpp_uses_each_steps_rates_and_batch_norm():
    net = _mlp(batch_norm=True)
    mamlpp = l2l.algorithms.MAMLpp(net, lr=0.1, adaptation_steps=2)
    with torch.no_grad():
        for rates in mamlpp.lrs:
            rates.copy_(torch.tensor([0.1, 0.7]))
    xs, ys, _, _ = _task()
    learner = mamlpp.clone()
    learner.adapt(F.cross_entropy(learner(xs), ys))
    assert learner.step == 1 and learner.module[1].step == 1 and net[1].step == 0
    before = learner.module[0].weight.clone()
    loss = F.cross_entropy(learner(xs), ys)
    (grad,) = torch.autograd.grad(loss, learner.module[0].weight, retain_graph=True)
    learner.adapt(loss)
    torch.testing.assert_close(learner.module[0].weight, before - 0.7 * grad)
    # per-step running statistics: the model's rows 0 and 1 were updated (shared), row 2 not yet
    stats = net[1].running_mean
    assert stats[0].abs().sum() > 0 and stats[1].abs().sum() > 0 and stats[2].abs().sum() == 0
    with pytest.raises(RuntimeError, match="adaptation_steps=2"):
        learner.adapt(F.cross_entropy(learner(xs), ys))


def test_msl_weights_sum_to_one():
    for epoch in (0, 3, 50):
        assert sum(l2l.algorithms.msl_weights(5, epoch)) == pytest.approx(1.0)


def test_reptile_step_is_the_interpolation():
    torch.manual_seed(0)
    model = _mlp()
    reptile = l2l.algorithms.Reptile(model, lr=0.1)
    xs, ys, _, _ = _task()
    learners = []
    for _ in range(2):
        learner = reptile.clone()
        for _ in range(3):
            learner.adapt(F.cross_entropy(learner(xs), ys))
        learners.append(learner)
        reptile.accumulate(learner, weight=0.5)
    theta = [p.detach().clone() for p in model.parameters()]
    torch.optim.SGD(model.parameters(), lr=0.25).step()
    for new, old, a, b in zip(model.parameters(), theta, *[lr.module.parameters() for lr in learners]):
        torch.testing.assert_close(new, old + 0.25 * ((a + b) / 2 - old))
    # the adapted learners really took SGD steps: recompute one by hand
    by_hand = _mlp()
    for _ in range(3):
        grads = torch.autograd.grad(F.cross_entropy(by_hand(xs), ys), list(by_hand.parameters()))
        with torch.no_grad():
            for p, g in zip(by_hand.parameters(), grads):
                p.sub_(0.1 * g)
    for a, b in zip(learners[0].module.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b)


def test_adapt_errors_name_the_flag_and_print_nothing(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)).double()
    xs, ys, _, _ = _task()
    learner = l2l.algorithms.MAML(net, lr=0.1).clone()
    with pytest.raises(
        l2l.algorithms.AdaptationError, match=r"parameters \[2, 3\] were not used.*allow_unused=True"
    ):
        learner.adapt(F.cross_entropy(learner.module[0](xs), ys))
    learner = l2l.algorithms.MAML(net, lr=0.1, allow_unused=True).clone()
    unused_before = learner.module[1].weight
    learner.adapt(F.cross_entropy(learner.module[0](xs), ys))
    assert learner.module[1].weight is unused_before

    frozen = _mlp()
    frozen[0].weight.requires_grad_(False)
    with pytest.raises(
        l2l.algorithms.AdaptationError, match=r"parameters \[0\] do not require grad.*allow_nograd"
    ):
        learner = l2l.algorithms.MAML(frozen, lr=0.1).clone()
        learner.adapt(F.cross_entropy(learner(xs), ys))
    maml = l2l.algorithms.MAML(frozen, lr=0.1, allow_nograd=True)
    learner = maml.clone()
    learner.adapt(F.cross_entropy(learner(xs), ys))
    torch.testing.assert_close(learner.module[0].weight, frozen[0].weight)
    assert not torch.equal(learner.module[2].weight, frozen[2].weight)

    learner = l2l.algorithms.MAML(_mlp(), lr=0.1).clone()
    with pytest.raises(FloatingPointError, match="support loss is non-finite|got a non-finite loss"):
        learner.adapt(learner(xs).sum() * float("nan"))
    with torch.no_grad():
        loss = F.cross_entropy(learner(xs), ys)
    with pytest.raises(l2l.algorithms.AdaptationError, match="does not require grad"):
        learner.adapt(loss)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_constructor_errors():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        l2l.algorithms.MAML("not a model", lr=0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        l2l.algorithms.MAML(_mlp(), lr=-1)
    with pytest.raises(ValueError, match="adaptation_steps=0"):
        l2l.algorithms.MAMLpp(_mlp(), lr=0.1, adaptation_steps=0)
    with pytest.raises(ValueError, match="lrs must hold one tensor per model parameter"):
        l2l.algorithms.MetaSGD(_mlp(), lrs=[torch.ones(2)])


def test_clone_flags_override():
    maml = l2l.algorithms.MAML(_mlp(), lr=0.1)
    learner = maml.clone(first_order=True)
    assert learner.first_order and not maml.first_order
    xs, ys, _, _ = _task()
    learner.adapt(F.cross_entropy(learner(xs), ys))
    assert learner.module[0].weight.grad_fn is not None  # still connected to the model (first order)


def test_the_finite_difference_check_detects_a_missing_second_order_term():
    # first-order MAML drops the Hessian term, so it must fail the second-order check
    fomaml = l2l.algorithms.MAML(_mlp(), lr=0.5, first_order=True)
    assert directional_check(_meta_loss(fomaml, 2), fomaml.parameters()) > 1e-3
