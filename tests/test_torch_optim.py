"""l2l.optim and l2l.nn (learned updates) on the torch backend, checked against finite differences
and explicit formulas."""

import pytest

torch = pytest.importorskip("torch")

from _gradcheck import directional_check  # noqa: E402

import l2l_multi as l2l  # noqa: E402

F = torch.nn.functional


def _regression(seed=0, n=8, d=4, out=3):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(n, out, generator=generator, dtype=torch.float64)
    return x, y


def test_snippet_1_verbatim():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    X, y = _regression()
    loss = torch.nn.MSELoss()
    # --- snippet 1 of the paper, as printed ---
    learned_update = l2l.optim.ParameterUpdate(
        model.parameters(), l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear)
    )
    clone = l2l.clone_module(model)  # torch.clone() for nn.Modules
    updates = learned_update(  # similar API as torch.autograd.grad
        loss(clone(X), y),
        clone.parameters(),
        create_graph=True,
    )
    # in-place, differentiable update of clone parameters
    l2l.update_module(clone, updates)
    # gradients w.r.t model's and learned_update's parameters
    loss(clone(X), y).backward()
    # ---
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is not None for p in learned_update.parameters())
    # identity-initialised psd factors: the update equals the gradient
    grads = torch.autograd.grad(loss(model(X), y), list(model.parameters()))
    for p, c, g in zip(model.parameters(), clone.parameters(), grads):
        torch.testing.assert_close(c, p + g)


def test_kronecker_addmm_is_the_kronecker_product():
    generator = torch.Generator().manual_seed(1)
    left, right = torch.randn(3, 3, generator=generator), torch.randn(4, 4, generator=generator)
    x, bias = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    out = l2l.nn.kronecker_addmm(left, right, x, bias, alpha=2.0, beta=0.5)
    # column-stacked vec: vec(L X R) = (R^T kron L) vec(X)
    vec = lambda m: m.t().contiguous().reshape(-1)
    expected = 2.0 * torch.kron(right.t().contiguous(), left) @ vec(x) + 0.5 * vec(bias)
    torch.testing.assert_close(vec(out), expected)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 3, 4\]"):
        l2l.nn.kronecker_addmm(left, right, torch.zeros(4, 3))


@pytest.mark.parametrize("psd", [False, True], ids=["plain", "psd"])
def test_kronecker_linear_factors(psd):
    layer = l2l.nn.KroneckerLinear(2, 3, bias=True, psd=psd).double()
    with torch.no_grad():
        layer.left.copy_(torch.tensor([[1.0, 2.0], [0.5, 1.0]]))
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    left, right = layer.factors()
    if psd:
        torch.testing.assert_close(left, layer.left.t() @ layer.left)  # learn2learn's A^T A
        assert torch.linalg.eigvalsh(left).min() >= -1e-12
    torch.testing.assert_close(layer(x), left @ x @ right + layer.bias)


@pytest.mark.parametrize("cell_cls", ["KroneckerRNN", "KroneckerLSTM"])
def test_kronecker_cells_step_and_differentiate(cell_cls):
    cell = getattr(l2l.nn, cell_cls)(2, 3).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    out, hidden = cell(x)
    out2, _ = cell(x, hidden)
    assert out.shape == out2.shape == (2, 3) and not torch.allclose(out, out2)
    error = directional_check(lambda: cell(x, cell(x)[1])[0].pow(2).sum(), cell.parameters())
    assert error < 1e-6


def test_kronecker_rnn_formula():
    cell = l2l.nn.KroneckerRNN(2, 2, bias=False).double()
    x, h = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    torch.testing.assert_close(cell(x, h)[0], torch.tanh(x + h))  # identity factors at init


def test_scale_and_module_transform_shapes():
    param = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    scale = l2l.optim.ModuleTransform(l2l.nn.Scale)(param)
    assert scale.alpha.shape == (3, 2) and scale.alpha.dtype == torch.float64
    linear = l2l.optim.ModuleTransform(torch.nn.Linear)(param)
    assert isinstance(linear, l2l.optim.ReshapedTransform) and linear(
        torch.ones(3, 2, dtype=torch.float64)
    ).shape == (3, 2)
    with pytest.raises(ValueError, match="shape"):
        l2l.nn.Scale((0, 2))


def test_meta_curvature_transform_is_a_tensor_product():
    generator = torch.Generator().manual_seed(2)
    param = torch.nn.Parameter(torch.zeros(4, 3, 2, 2, dtype=torch.float64))
    transform = l2l.optim.MetaCurvatureTransform(param, lr=0.5)
    with torch.no_grad():
        for matrix in transform.mode_matrices:
            matrix.copy_(torch.randn(matrix.shape, generator=generator, dtype=torch.float64))
    grad = torch.randn(4, 3, 2, 2, generator=generator, dtype=torch.float64)
    m_out, m_in, m_k = transform.mode_matrices
    # independent computation: the mode products as one Kronecker matrix acting on the row-major vec
    # (M_out and M_k from the left, M_in from the right, as learn2learn's MetaCurvatureTransform)
    expected = torch.kron(torch.kron(m_out, m_in.t().contiguous()), m_k) @ grad.reshape(-1)
    expected = 0.5 * expected
    torch.testing.assert_close(transform(grad).reshape(-1), expected)
    vector = l2l.optim.MetaCurvatureTransform(torch.nn.Parameter(torch.zeros(5)))
    assert vector.scale.shape == (5,)


def test_transform_dictionary_selects_per_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    factory = l2l.optim.TransformDictionary(
        {
            model[0].weight: l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear),
            "1.bias": l2l.optim.ModuleTransform(l2l.nn.Scale),
        },
    )
    update = l2l.optim.ParameterUpdate(model.named_parameters(), factory)
    assert update.has_transform == [True, False, False, True]
    loss = model(torch.randn(5, 3)).pow(2).sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    updates = update(loss, model.parameters())
    assert [u.shape for u in updates] == [p.shape for p in model.parameters()]
    torch.testing.assert_close(updates[1], grads[1])  # no transform: the gradient itself
    torch.testing.assert_close(updates[2], grads[2])
    torch.testing.assert_close(updates[0], grads[0])  # identity-initialised Kronecker factors
    with pytest.raises(TypeError, match="keys must be parameter tensors, modules or parameter names"):
        l2l.optim.TransformDictionary({1: None})


def test_parameter_update_errors():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    update = l2l.optim.ParameterUpdate(model.parameters(), l2l.optim.ModuleTransform(l2l.nn.Scale))
    loss = model[0](torch.ones(1, 2)).sum()
    with pytest.raises(l2l.optim.AdaptationError, match="allow_unused=True"):
        update(loss, model.parameters(), retain_graph=True)
    updates = update(loss, model.parameters(), allow_unused=True)
    assert updates[2] is None and updates[0] is not None
    with pytest.raises(ValueError, match="built for 4"):
        update(model[0](torch.ones(1, 2)).sum(), model[0].parameters())


def test_differentiable_sgd_matches_formula_and_uses_grad():
    model = l2l.clone_module(torch.nn.Linear(3, 1).double())
    before = [p.clone() for p in model.parameters()]
    grads = [torch.randn_like(p) for p in model.parameters()]
    l2l.optim.DifferentiableSGD(0.3)(model, grads)
    for p, b, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p, b - 0.3 * g)
    plain = torch.nn.Linear(3, 1).double()
    plain(torch.ones(2, 3, dtype=torch.float64)).sum().backward()
    expected = [p - 0.1 * p.grad for p in plain.parameters()]
    l2l.optim.DifferentiableSGD(0.1)(plain)
    for p, e in zip(plain.parameters(), expected):
        torch.testing.assert_close(p, e)


def test_learnable_optimizer_meta_gradient_matches_finite_differences():
    X, y = _regression(seed=3)
    model = torch.nn.Linear(4, 3).double()
    transform = l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear, psd=False)
    opt = l2l.optim.LearnableOptimizer(model, transform, lr=0.1)
    with torch.no_grad():
        for p in opt.parameters():
            p.add_(0.05 * torch.randn_like(p))
    start = [p.detach().clone() for p in model.parameters()]

    def one_step_loss():
        # restart from the same weights, take one learned step, return the next loss
        for key, value in zip(["weight", "bias"], start):
            model._parameters[key] = value.clone().requires_grad_()
        opt.zero_grad()
        with torch.enable_grad():
            F.mse_loss(model(X), y).backward()
            opt.step()
            return F.mse_loss(model(X), y)

    assert directional_check(one_step_loss, list(opt.parameters())) < 1e-6
    # and the step itself is p - lr * T(g)
    one_step_loss()
    start = [s.requires_grad_() for s in start]
    grads = torch.autograd.grad(F.mse_loss(F.linear(X, start[0], start[1]), y), start)
    for p, s, g, t in zip(model.parameters(), start, grads, opt.transforms):
        torch.testing.assert_close(p, s - 0.1 * t(g))


def test_learnable_optimizer_trains_a_model():
    torch.manual_seed(0)
    X, y = _regression(seed=4, n=32)
    model = torch.nn.Linear(4, 3).double()
    opt = l2l.optim.LearnableOptimizer(model, l2l.optim.ModuleTransform(l2l.nn.Scale), lr=0.05)
    meta_opt = torch.optim.Adam(opt.parameters(), lr=0.01)
    first = F.mse_loss(model(X), y).item()
    for _ in range(30):
        opt.zero_grad()
        meta_opt.zero_grad()
        loss = F.mse_loss(model(X), y)
        loss.backward()
        opt.step()
        meta_opt.step()
    assert F.mse_loss(model(X), y).item() < 0.9 * first
    # the learned rates moved away from their initial value
    assert any((s.alpha - 1.0).abs().max() > 1e-3 for s in opt.transforms)


def test_core_transforms_drive_torch_tensors():
    from l2l_multi import transforms

    params = [torch.ones(2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)]
    t = transforms.hypergradient_sgd(0.1, 0.5)
    state = t.init(params)
    g = [torch.ones(2, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
    updates, state = t.update(g, state)
    updates, state = t.update(g, state)
    assert state.learning_rate.item() == pytest.approx(0.1 + 0.5 * 5)
    torch.testing.assert_close(updates[0], -(0.1 + 2.5) * g[0])
    assert transforms.apply_updates(params, [None, updates[1]])[0] is params[0]


def test_meta_module_reparametrises_and_learns():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    scaled = lambda linear: l2l.nn.ParameterTransform(linear, l2l.optim.ModuleTransform(l2l.nn.Scale))
    meta = l2l.nn.MetaModule(net, {torch.nn.Linear: scaled})  # learn2learn's arguments
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        for alpha in meta.meta_parameters():
            alpha.fill_(2.0)
    doubled = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():
        for d, p in zip(doubled.parameters(), net.parameters()):
            d.copy_(2 * p)
    torch.testing.assert_close(meta(x), doubled(x))
    assert meta.module() is net and isinstance(net[0], torch.nn.Linear)  # the original is left as it was
    assert not any(p.requires_grad for p in net.parameters())
    assert len(list(meta.meta_parameters())) == 4
    assert directional_check(lambda: meta(x).pow(2).sum(), list(meta.meta_parameters())) < 1e-6


def test_freeze_unfreeze_and_lambda_flatten():
    net = torch.nn.Sequential(l2l.nn.Lambda(lambda x: x * 2), l2l.nn.Flatten(), torch.nn.Linear(6, 1))
    l2l.nn.freeze(net, ["2.weight"])
    assert [p.requires_grad for p in net.parameters()] == [False, True]
    l2l.nn.unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())
    assert net(torch.ones(4, 2, 3)).shape == (4, 1)
    with pytest.raises(ValueError, match="not in the module"):
        l2l.nn.freeze(net, ["nope"])
