"""clone_module / update_module / detach_module and the small functions, torch backend."""

import pytest

torch = pytest.importorskip("torch")

import l2l_multi as l2l  # noqa: E402


def test_clone_is_differentiable_copy():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    clone = l2l.clone_module(model)
    assert type(clone) is type(model) and clone is not model
    for p, c in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, c) and c is not p and c.grad_fn is not None
    x = torch.randn(5, 3)
    clone(x).sum().backward()
    reference = [torch.autograd.grad(model(x).sum(), p)[0] for p in model.parameters()]
    for p, r in zip(model.parameters(), reference):
        torch.testing.assert_close(p.grad, r)


def test_shared_parameters_stay_shared():
    shared = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(shared, torch.nn.ReLU(), shared)
    clone = l2l.clone_module(model)
    assert clone[0].weight is clone[2].weight
    update = [torch.ones_like(p) for p in clone.parameters()]
    assert len(update) == 2  # parameters() lists the shared ones once
    l2l.update_module(clone, update)
    assert clone[0].weight is clone[2].weight
    torch.testing.assert_close(clone[0].weight, shared.weight + 1)


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_recurrent_modules_clone_and_update(kind):
    torch.manual_seed(0)
    model = getattr(torch.nn, kind)(3, 4, num_layers=2, batch_first=True)
    x = torch.randn(2, 5, 3)
    clone = l2l.clone_module(model)
    torch.testing.assert_close(clone(x)[0], model(x)[0])
    updates = [0.1 * torch.ones_like(p) for p in clone.parameters()]
    l2l.update_module(clone, updates)
    # the updated weights are used: compare with a fresh module holding the shifted weights
    shifted = getattr(torch.nn, kind)(3, 4, num_layers=2, batch_first=True)
    with torch.no_grad():
        for s, p in zip(shifted.parameters(), model.parameters()):
            s.copy_(p + 0.1)
    torch.testing.assert_close(clone(x)[0], shifted(x)[0])
    clone(x)[0].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_batch_norm_statistics_are_not_shared_by_default():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    before = model[1].running_mean.clone()
    clone = l2l.clone_module(model)
    clone(torch.randn(16, 3) + 5)
    assert torch.equal(model[1].running_mean, before)
    assert not torch.equal(clone[1].running_mean, before)
    shared = l2l.clone_module(model, share_buffers=True)
    shared(torch.randn(16, 3) + 5)
    assert shared[1].running_mean is model[1].running_mean
    assert not torch.equal(model[1].running_mean, before)


def test_maml_clones_leave_model_statistics_alone():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    maml = l2l.algorithms.MAML(model, lr=0.1)
    before = model[1].running_mean.clone()
    learner = maml.clone()
    learner.adapt(learner(torch.randn(8, 3) + 2).pow(2).mean())
    assert torch.equal(model[1].running_mean, before)


def test_update_module_uses_update_attribute_and_checks_shapes():
    model = l2l.clone_module(torch.nn.Linear(2, 2))
    old = model.weight.clone()
    model.weight.update = torch.full((2, 2), 0.5)
    l2l.update_module(model)
    torch.testing.assert_close(model.weight, old + 0.5)
    with pytest.raises(ValueError, match="updates has 1 entries but the module has 2"):
        l2l.update_module(model, [torch.zeros(2, 2)])
    with pytest.raises(ValueError, match=r"updates\[1\] has shape \(3,\)"):
        l2l.update_module(model, [None, torch.zeros(3)])


@pytest.mark.parametrize("keep", [False, True], ids=["drop-requires-grad", "keep-requires-grad"])
def test_detach_module(keep):
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    clone = l2l.clone_module(model)
    l2l.detach_module(clone, keep_requires_grad=keep)
    for p in clone.parameters():
        assert p.grad_fn is None and p.requires_grad is keep
    if keep:
        clone(torch.randn(4, 2)).sum().backward()
        assert all(p.grad is not None for p in clone.parameters())
        assert all(p.grad is None for p in model.parameters())


def test_clone_parameters_and_named():
    model = torch.nn.Linear(2, 3)
    copies = l2l.clone_parameters(model.parameters())
    named = l2l.clone_named_parameters(model)
    assert list(named) == ["weight", "bias"]
    for p, c in zip(model.parameters(), copies):
        assert torch.equal(p, c) and c.grad_fn is not None


def test_magic_box_value_and_gradient():
    x = torch.tensor([0.3, -1.2], dtype=torch.float64, requires_grad=True)
    box = l2l.magic_box(x)
    torch.testing.assert_close(box, torch.ones(2, dtype=torch.float64))
    (grad,) = torch.autograd.grad((box * torch.tensor([2.0, 3.0], dtype=torch.float64)).sum(), x)
    torch.testing.assert_close(grad, torch.tensor([2.0, 3.0], dtype=torch.float64))


def test_accuracy_and_its_errors():
    predictions = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert l2l.accuracy(predictions, torch.tensor([1, 0, 0])).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="targets has 2 elements"):
        l2l.accuracy(predictions, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="predictions must have shape"):
        l2l.accuracy(torch.zeros(3), torch.tensor([1, 0, 0]))


def test_clone_module_rejects_non_modules():
    with pytest.raises(TypeError, match="module must be a torch.nn.Module"):
        l2l.clone_module([torch.zeros(2)])


def test_utilities_follow_the_backend():
    pytest.importorskip("jax")
    with l2l.use_backend("jax"), pytest.raises(AttributeError, match="not provided by the 'jax' backend"):
        l2l.clone_module(torch.nn.Linear(2, 2))
