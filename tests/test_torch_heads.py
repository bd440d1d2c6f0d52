"""The QP solver and the few-shot heads (ProtoNet, MetaOptNet-SVM, R2D2 ridge) against independent
computations in float64: scipy's SLSQP for the QPs, numpy closed forms, central finite differences."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
optimize = pytest.importorskip("scipy.optimize")

from l2l_multi.backends.torch.algorithms._metric import MetaOptNet, ProtoNet  # noqa: E402
from l2l_multi.backends.torch.nn._prototypical import PrototypicalClassifier  # noqa: E402
from l2l_multi.backends.torch.nn._qp import solve_qp  # noqa: E402
from l2l_multi.backends.torch.nn._ridge import RidgeClassifier  # noqa: E402
from l2l_multi.backends.torch.nn._svm import SVClassifier  # noqa: E402

F64 = torch.float64


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def known_qp(seed, n, m, k):
    """A QP built around a chosen solution: the KKT conditions hold at ``z`` with multipliers
    ``lam`` in [0.5, 1.5] on up to half the inequalities and slack in [0.5, 1.5] on the rest, so
    the active set is strictly complementary and stays put under small perturbations. Fewer
    than ``n - k`` inequalities are active, so the active constraints are linearly independent
    and the multipliers unique (else z is not differentiable w.r.t. h and b)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n))
    Q = X @ X.T / n + 0.5 * np.eye(n)
    G, A = rng.standard_normal((m, n)), rng.standard_normal((k, n))
    z = rng.standard_normal(n)
    active = np.arange(m) < min(m // 2, n - k - 1)
    lam = np.where(active, rng.uniform(0.5, 1.5, m), 0.0)
    slack = np.where(active, 0.0, rng.uniform(0.5, 1.5, m))
    nu = rng.standard_normal(k)
    p = -(Q @ z + G.T @ lam + A.T @ nu)
    return {"Q": Q, "p": p, "G": G, "h": G @ z + slack, "A": A, "b": A @ z}, z


def scipy_qp(Q, p, G, h, A=None, b=None):
    """``min 1/2 z^T Q z + p^T z  s.t.  G z <= h, A z = b`` with scipy's SLSQP (numpy arrays)."""
    constraints = [{"type": "ineq", "fun": lambda z: h - G @ z, "jac": lambda z: -G}]
    if A is not None and len(A):
        constraints.append({"type": "eq", "fun": lambda z: A @ z - b, "jac": lambda z: A})
    result = optimize.minimize(
        lambda z: 0.5 * z @ Q @ z + p @ z,
        np.zeros(len(p)),
        jac=lambda z: Q @ z + p,
        method="SLSQP",
        constraints=constraints,
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    # Status 8 ("positive directional derivative for linesearch") is SLSQP meeting round-off at
    # the optimum when ftol is this tight; feasibility is checked instead.
    assert result.status in (0, 8), result.message
    assert (G @ result.x - h).max() < 1e-9
    assert A is None or not len(A) or np.abs(A @ result.x - b).max() < 1e-9
    return result.x


def central_differences(batched_fn, x, eps):
    """Gradient of a scalar function at ``x`` by central differences, all in one batched call.

    ``batched_fn`` maps ``[M, *x.shape]`` to ``[M]`` values; row ``2i`` / ``2i + 1`` of its input
    is ``x`` with element ``i`` moved by ``+eps`` / ``-eps``.
    """
    steps = eps * torch.eye(x.numel(), dtype=x.dtype).reshape(-1, *x.shape)
    points = torch.stack([x + steps, x - steps], dim=1).reshape(-1, *x.shape)
    with torch.no_grad():
        values = batched_fn(points).reshape(-1, 2)
    return ((values[:, 0] - values[:, 1]) / (2 * eps)).reshape(x.shape)


def svm_dual_numpy(X, y, ways, C_reg):
    """MetaOptNet's dual (Lee et al. 2019) written out with numpy and solved with SLSQP: ``alpha [n, k]``."""
    n = len(y)
    onehot = np.eye(ways)[y]
    Q = np.kron(X @ X.T, np.eye(ways)) + np.eye(n * ways)
    A = np.kron(np.eye(n), np.ones((1, ways)))
    z = scipy_qp(Q, -onehot.ravel(), np.eye(n * ways), C_reg * onehot.ravel(), A, np.zeros(n))
    return z.reshape(n, ways)


def tensors(arrays):
    return {name: torch.tensor(value, dtype=F64) for name, value in arrays.items()}


def few_shot_task(seed, ways, shots, dim, queries=4, spread=1.0, batch=None):
    """Gaussian embeddings around per-class centres; support labels ``0..ways-1`` repeated
    ``shots`` times, query labels ``0, 1, ...`` cycling. ``batch``: that many tasks, ``[B, ...]``."""
    generator = torch.Generator().manual_seed(seed)
    tasks = 1 if batch is None else batch
    centres = 3 * torch.randn(tasks, ways, dim, generator=generator, dtype=F64)
    labels = torch.arange(ways).repeat(shots).expand(tasks, -1)
    query_labels = (torch.arange(queries) % ways).expand(tasks, -1)
    task_index = torch.arange(tasks).unsqueeze(1)
    noise = lambda rows: spread * torch.randn(tasks, rows, dim, generator=generator, dtype=F64)
    support = centres[task_index, labels] + noise(ways * shots)
    query = centres[task_index, query_labels] + noise(queries)
    if batch is None:
        return support[0], labels[0].clone(), query[0], query_labels[0].clone()
    return support, labels.clone(), query, query_labels.clone()


# ---------------------------------------------------------------------------------------------
# solve_qp
# ---------------------------------------------------------------------------------------------

QP_SIZES = [
    pytest.param(5, 8, 2, id="n5-m8-k2"),
    pytest.param(8, 12, 0, id="n8-m12-no-equality"),
    pytest.param(10, 6, 4, id="n10-m6-k4"),
]


@pytest.mark.parametrize(("n", "m", "k"), QP_SIZES)
def test_qp_matches_scipy_and_the_known_solution(n, m, k):
    problems = [known_qp(seed, n, m, k) for seed in range(3)]
    batch = {
        name: torch.stack([torch.tensor(arrays[name]) for arrays, _ in problems]) for name in problems[0][0]
    }
    if k == 0:
        batch["A"] = batch["b"] = None
    z = solve_qp(**batch)
    assert z.shape == (3, n) and z.dtype == F64
    for (arrays, z_known), z_solved in zip(problems, z.numpy()):
        reference = scipy_qp(
            **{name: arrays[name] for name in ("Q", "p", "G", "h")},
            **({"A": arrays["A"], "b": arrays["b"]} if k else {}),
        )
        np.testing.assert_allclose(z_solved, reference, atol=1e-6)
        np.testing.assert_allclose(z_solved, z_known, atol=1e-8)
        assert (arrays["G"] @ z_solved - arrays["h"]).max() < 1e-9


@pytest.mark.parametrize("name", ["Q", "p", "G", "h", "A", "b"])
def test_qp_gradients_match_finite_differences(name):
    arrays, _ = known_qp(7, 5, 8, 2)
    args = tensors(arrays)
    weights = torch.linspace(-1.0, 1.5, 5, dtype=F64)
    leaf = args[name].clone().requires_grad_()
    (solve_qp(**{**args, name: leaf}, tolerance=1e-13) @ weights).backward()

    def loss(batched_values):
        # The other five arguments are unbatched and shared by the batch of perturbed problems.
        return solve_qp(**{**args, name: batched_values}, tolerance=1e-13) @ weights

    # eps = 1e-5 keeps the truncation error (~eps^2 = 1e-10) and the solver's error divided by
    # eps (solved to tolerance 1e-13, z is within ~1e-12: ~1e-7) below the 1e-6 tolerance, and
    # the perturbations far below the active set's margin (0.5), so z is smooth in the data.
    numerical = central_differences(loss, args[name], eps=1e-5)
    np.testing.assert_allclose(leaf.grad.numpy(), numerical.numpy(), atol=1e-6, rtol=1e-6)


def test_qp_batched_gradcheck():
    problems = [known_qp(seed, 4, 6, 1)[0] for seed in (11, 12)]
    args = [
        torch.tensor(np.stack([arrays[name] for arrays in problems])).requires_grad_()
        for name in ("Q", "p", "G", "h", "A", "b")
    ]
    assert torch.autograd.gradcheck(lambda *a: solve_qp(*a), args, fast_mode=True, atol=1e-6, rtol=1e-5)


def test_qp_shared_arguments_broadcast_and_sum_their_gradients():
    arrays, _ = known_qp(3, 4, 6, 1)
    args = tensors(arrays)
    shared_Q = args["Q"].clone().requires_grad_()
    ps = torch.stack([args["p"], args["p"] + 0.1, args["p"] - 0.2])
    z = solve_qp(shared_Q, ps, args["G"], args["h"], args["A"], args["b"])
    z.sum().backward()
    expected_grad = torch.zeros_like(shared_Q)
    for row, p in zip(z, ps):
        own_Q = args["Q"].clone().requires_grad_()
        single = solve_qp(own_Q, p, args["G"], args["h"], args["A"], args["b"])
        torch.testing.assert_close(single, row, atol=1e-9, rtol=0)
        single.sum().backward()
        expected_grad += own_Q.grad
    torch.testing.assert_close(shared_Q.grad, expected_grad, atol=1e-9, rtol=0)


def test_qp_equality_only_and_float32():
    arrays, _ = known_qp(5, 6, 0, 2)
    Q, p, A, b = (arrays[name] for name in ("Q", "p", "A", "b"))
    kkt = np.block([[Q, A.T], [A, np.zeros((2, 2))]])
    expected = np.linalg.solve(kkt, np.concatenate([-p, b]))[:6]
    args = tensors(arrays)
    np.testing.assert_allclose(solve_qp(**args).numpy(), expected, atol=1e-10)
    single = {
        name: value.float().requires_grad_() for name, value in tensors(known_qp(5, 6, 4, 2)[0]).items()
    }
    z = solve_qp(**single)
    z.sum().backward()
    assert z.dtype == torch.float32 and single["Q"].grad.dtype == torch.float32


def test_qp_errors():
    arrays, _ = known_qp(0, 3, 4, 1)
    args = tensors(arrays)
    infeasible = {"G": torch.tensor([[1.0], [-1.0]], dtype=F64), "h": torch.tensor([-1.0, -1.0], dtype=F64)}
    with pytest.raises(RuntimeError, match=r"did not converge .* largest scaled residual reached"):
        solve_qp(torch.eye(1, dtype=F64), torch.zeros(1, dtype=F64), **infeasible)
    with pytest.raises(ValueError, match="A and b must be given together"):
        solve_qp(args["Q"], args["p"], args["G"], args["h"], A=args["A"])
    with pytest.raises(ValueError, match=r"G must have shape \[B, 4, 3\]"):
        solve_qp(args["Q"], args["p"], args["G"][:, :2], args["h"])
    with pytest.raises(ValueError, match=r"disagree on the batch size: \[2, 3\]"):
        solve_qp(args["Q"].expand(2, 3, 3), args["p"].expand(3, 3), args["G"], args["h"])
    with pytest.raises(TypeError, match="h must have a floating point dtype, got torch.int64"):
        solve_qp(args["Q"], args["p"], args["G"], torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="Newton system of problem 1 of the batch is singular"):
        singular = torch.stack([args["Q"], torch.zeros(3, 3, dtype=F64)])
        solve_qp(singular, args["p"], args["G"][:0], args["h"][:0])
    with pytest.raises(ValueError, match="A must have full row rank"):
        solve_qp(**{**args, "A": args["A"].expand(2, 3), "b": args["b"].expand(2)})
    with pytest.raises(ValueError, match="p must hold finite values, got NaN or infinity"):
        solve_qp(**{**args, "p": args["p"] * np.nan})
    with pytest.raises(ValueError, match="max_iterations must be a positive int, got 0"):
        solve_qp(**args, max_iterations=0)
    with pytest.raises(ValueError, match="tolerance must be a positive float, got -1"):
        solve_qp(**args, tolerance=-1)


def test_qp_has_no_second_derivative():
    args = {name: value.requires_grad_() for name, value in tensors(known_qp(0, 3, 4, 1)[0]).items()}
    (grad_p,) = torch.autograd.grad((solve_qp(**args) ** 2).sum(), args["p"], create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_p.sum().backward()


# ---------------------------------------------------------------------------------------------
# SVClassifier
# ---------------------------------------------------------------------------------------------

SVM_TASKS = [
    pytest.param(3, 2, 4, 0.1, id="3way-2shot-C0.1"),
    pytest.param(4, 3, 6, 1.0, id="4way-3shot-C1"),
    pytest.param(2, 5, 3, 0.5, id="2way-5shot-dim3-C0.5"),
]


@pytest.mark.parametrize(("ways", "shots", "dim", "C_reg"), SVM_TASKS)
def test_svm_dual_matches_scipy(ways, shots, dim, C_reg):
    support, labels, _, _ = few_shot_task(0, ways, shots, dim, spread=2.0)
    head = SVClassifier(support, labels, C_reg=C_reg)
    expected = svm_dual_numpy(support.numpy(), labels.numpy(), ways, C_reg)
    np.testing.assert_allclose(head.alpha.numpy(), expected, atol=1e-6)
    onehot = np.eye(ways)[labels.numpy()]
    assert np.abs(head.alpha.sum(1).numpy()).max() < 1e-9
    assert (head.alpha.numpy() - C_reg * onehot).max() < 1e-9


def test_svm_logits_and_gradients_match_finite_differences():
    # A noisy task (spread 1.5), so alpha has both bound and free support vectors.
    support, labels, query, _ = few_shot_task(1, ways=3, shots=2, dim=4, spread=1.5)
    weights = torch.linspace(-1.0, 1.0, query.shape[0] * 3, dtype=F64).reshape(-1, 3)
    support_leaf, query_leaf = support.clone().requires_grad_(), query.clone().requires_grad_()
    head = SVClassifier(support_leaf, labels, C_reg=0.5, tolerance=1e-13)
    logits = head(query_leaf)
    alpha = svm_dual_numpy(support.numpy(), labels.numpy(), 3, 0.5)
    np.testing.assert_allclose(logits.detach().numpy(), query.numpy() @ support.numpy().T @ alpha, atol=1e-6)
    (logits * weights).sum().backward()

    def loss_of_support(supports):  # [M, n, d]: a batch of perturbed tasks, one batched QP
        batched = SVClassifier(supports, labels.expand(len(supports), -1), C_reg=0.5, tolerance=1e-13)
        return (batched(query.expand(len(supports), -1, -1)) * weights).sum(dim=(1, 2))

    def loss_of_query(queries):
        return (
            head(queries.reshape(-1, queries.shape[-1])).reshape(len(queries), *weights.shape) * weights
        ).sum(dim=(1, 2))

    # eps = 1e-5: the truncation error (~1e-10) and the QP solver's error over eps (alpha is
    # within ~1e-12 at tolerance 1e-13, so ~1e-7) stay below the 1e-6 tolerance.
    for leaf, fn, point in ((support_leaf, loss_of_support, support), (query_leaf, loss_of_query, query)):
        numerical = central_differences(fn, point, eps=1e-5)
        np.testing.assert_allclose(leaf.grad.numpy(), numerical.numpy(), atol=1e-6, rtol=1e-6)


def test_svm_predicts_well_separated_classes():
    support, labels, query, query_labels = few_shot_task(2, ways=5, shots=3, dim=8, queries=20, spread=0.3)
    for dtype in (F64, torch.float32):
        head = SVClassifier(support.to(dtype), labels)
        assert head(query.to(dtype)).argmax(dim=1).tolist() == query_labels.tolist()


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalized"])
def test_svm_batched_tasks_equal_per_task_fits(normalize):
    support, labels, query, _ = few_shot_task(3, ways=3, shots=2, dim=5, batch=4, spread=1.5)
    head = SVClassifier(support, labels, normalize=normalize, C_reg=0.3)
    logits = head(query)
    assert head.alpha.shape == (4, 6, 3) and logits.shape == (4, 4, 3)
    for task in range(4):
        single = SVClassifier(support[task], labels[task], normalize=normalize, C_reg=0.3)
        torch.testing.assert_close(head.alpha[task], single.alpha, atol=1e-9, rtol=0)
        torch.testing.assert_close(logits[task], single(query[task]), atol=1e-9, rtol=0)
    if normalize:  # normalize=True is the raw head on L2-normalised embeddings
        unit = lambda x: x / x.norm(dim=-1, keepdim=True)
        raw = SVClassifier(unit(support), labels, C_reg=0.3)
        torch.testing.assert_close(raw(unit(query)), logits, atol=1e-9, rtol=0)


def test_svm_scale_ways_and_errors():
    support, labels, query, _ = few_shot_task(4, ways=2, shots=2, dim=3)
    head = SVClassifier(support, labels, ways=4, learn_scale=True)
    assert head.alpha.shape == (4, 4) and [name for name, _ in head.named_parameters()] == ["scale"]
    with torch.no_grad():
        head.scale.fill_(3.0)
    torch.testing.assert_close(head(query), 3 * query @ support.T @ head.alpha)
    with pytest.raises(RuntimeError, match="SVClassifier is not fitted"):
        SVClassifier()(query)
    with pytest.raises(ValueError, match=r"labels must be integers in 0..ways-1 = 0..1, got the label 2"):
        SVClassifier(ways=2).fit_(support, labels + 1)
    with pytest.raises(ValueError, match="C_reg must be a positive float, got 0"):
        SVClassifier(C_reg=0)
    with pytest.raises(ValueError, match=r"query must have shape \[q, d=3\]"):
        head(query[:, :2])


# ---------------------------------------------------------------------------------------------
# RidgeClassifier
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ways", "shots", "dim", "reg"),
    [
        pytest.param(3, 2, 10, 1.0, id="n<d-reg1"),
        pytest.param(2, 6, 4, 0.1, id="n>d-reg0.1"),
        pytest.param(5, 1, 8, 10.0, id="1shot-reg10"),
    ],
)
def test_ridge_weights_match_the_primal_closed_form(ways, shots, dim, reg):
    support, labels, query, _ = few_shot_task(5, ways, shots, dim)
    head = RidgeClassifier(support, labels, reg=reg, learn_scale=False)
    X, Y = support.numpy(), np.eye(ways)[labels.numpy()]
    expected = np.linalg.solve(X.T @ X + reg * np.eye(dim), X.T @ Y)
    np.testing.assert_allclose(head.weight.numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(head(query).detach().numpy(), query.numpy() @ expected, atol=1e-10)


def test_ridge_scale_bias_and_unused_classes():
    support, labels, query, _ = few_shot_task(6, ways=2, shots=3, dim=4)
    head = RidgeClassifier(support, labels, ways=3)
    assert sorted(name for name, _ in head.named_parameters()) == ["bias", "scale"]
    assert torch.all(head.weight[:, 2] == 0)  # no example of class 2: zero column
    with torch.no_grad():
        head.scale.fill_(2.0)
        head.bias.fill_(0.5)
    torch.testing.assert_close(head(query), 2.0 * query @ head.weight + 0.5)


def test_ridge_gradients_match_finite_differences():
    support, labels, query, _ = few_shot_task(7, ways=3, shots=2, dim=4)
    head = RidgeClassifier(ways=3, reg=0.7, learn_scale=False)

    def logits(support, query):
        head.fit_(support, labels)
        return head(query)

    leaves = (support.clone().requires_grad_(), query.clone().requires_grad_())
    assert torch.autograd.gradcheck(logits, leaves)
    # learn_reg: d loss / d log_reg against differences of two fixed-reg fits.
    learnt = RidgeClassifier(support, labels, reg=0.7, learn_reg=True).double()
    learnt.fit_(support, labels)
    learnt(query).sum().backward()
    eps = 1e-6
    fits = [
        RidgeClassifier(support, labels, reg=0.7 * np.exp(sign * eps)).double()(query).sum()
        for sign in (1, -1)
    ]
    numerical = ((fits[0] - fits[1]) / (2 * eps)).item()
    np.testing.assert_allclose(learnt.log_reg.grad.item(), numerical, rtol=1e-6)


def test_ridge_batched_tasks_equal_per_task_fits():
    support, labels, query, _ = few_shot_task(8, ways=3, shots=2, dim=5, batch=3)
    head = RidgeClassifier(support, labels, reg=0.5, normalize=True)
    logits = head(query)
    for task in range(3):
        single = RidgeClassifier(support[task], labels[task], reg=0.5, normalize=True)
        torch.testing.assert_close(logits[task], single(query[task]), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="reg must be a positive float, got -1"):
        RidgeClassifier(reg=-1.0)
    with pytest.raises(ValueError, match=r"query must have shape \[B=3, q, d=5\]"):
        head(query[:2])


# ---------------------------------------------------------------------------------------------
# PrototypicalClassifier
# ---------------------------------------------------------------------------------------------


def prototypical_numpy(support, labels, query, distance, normalize):
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    if normalize:
        support, query = unit(support), unit(query)
    prototypes = np.stack([support[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    if distance == "cosine":
        return unit(query) @ unit(prototypes).T
    return -((query[:, None, :] - prototypes[None, :, :]) ** 2).sum(axis=-1)


PROTO_OPTIONS = [
    pytest.param("euclidean", False, id="euclidean"),
    pytest.param("cosine", False, id="cosine"),
    pytest.param("euclidean", True, id="euclidean-normalized"),
    pytest.param("cosine", True, id="cosine-normalized"),
]


@pytest.mark.parametrize(("distance", "normalize"), PROTO_OPTIONS)
def test_prototypical_logits_match_numpy(distance, normalize):
    support, labels, query, _ = few_shot_task(9, ways=4, shots=3, dim=6, queries=7)
    head = PrototypicalClassifier(support, labels, distance=distance, normalize=normalize)
    expected = prototypical_numpy(support.numpy(), labels.numpy(), query.numpy(), distance, normalize)
    np.testing.assert_allclose(head(query).numpy(), expected, atol=1e-10)


@pytest.mark.parametrize(("distance", "normalize"), PROTO_OPTIONS[:2])
def test_prototypical_batched_tasks_and_gradients(distance, normalize):
    support, labels, query, _ = few_shot_task(10, ways=3, shots=2, dim=4, batch=3)
    head = PrototypicalClassifier(support, labels, distance=distance, normalize=normalize)
    logits = head(query)
    assert head.prototypes.shape == (3, 3, 4) and logits.shape == (3, 4, 3)
    for task in range(3):
        single = PrototypicalClassifier(support[task], labels[task], distance=distance)
        torch.testing.assert_close(logits[task], single(query[task]), atol=1e-10, rtol=0)

    def fit_and_score(support, query):
        return PrototypicalClassifier(support, labels[0], distance=distance)(query)

    leaves = (support[0].clone().requires_grad_(), query[0].clone().requires_grad_())
    assert torch.autograd.gradcheck(fit_and_score, leaves)


def test_prototypical_errors():
    support, labels, query, _ = few_shot_task(11, ways=3, shots=2, dim=4)
    with pytest.raises(ValueError, match=r"distance must be one of 'euclidean', 'cosine', got 'manhattan'"):
        PrototypicalClassifier(distance="manhattan")
    with pytest.raises(ValueError, match="but there is no example of class 1"):
        PrototypicalClassifier(support, torch.where(labels == 1, 2, labels))
    batched_labels = torch.stack([labels, torch.where(labels == 0, 1, labels)])
    with pytest.raises(ValueError, match="task 1 has no example of class 0"):
        PrototypicalClassifier(torch.stack([support, support]), batched_labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(6,\) to match support .* got \(5,\)"):
        PrototypicalClassifier(support, labels[:5])
    with pytest.raises(TypeError, match="labels must have an integer dtype, got torch.float64"):
        PrototypicalClassifier(support, labels.double())
    with pytest.raises(ValueError, match="labels must be integers in 0..ways-1, got the label -1"):
        PrototypicalClassifier(support, labels - 1)
    with pytest.raises(ValueError, match="support and labels must be given together"):
        PrototypicalClassifier(support)
    with pytest.raises(RuntimeError, match=r"not fitted: call fit_\(support, labels\)"):
        PrototypicalClassifier()(query)
    head = PrototypicalClassifier(support, labels)
    with pytest.raises(ValueError, match=r"query must have shape \[q, d=4\] .* got \(1, 4, 4\)"):
        head(query.unsqueeze(0))


# ---------------------------------------------------------------------------------------------
# ProtoNet and MetaOptNet
# ---------------------------------------------------------------------------------------------


def image_features(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 5)).double()


WRAPPERS = [
    pytest.param(lambda f: ProtoNet(f), lambda: PrototypicalClassifier(), id="protonet"),
    pytest.param(
        lambda f: ProtoNet(f, distance="cosine", normalize=True),
        lambda: PrototypicalClassifier(distance="cosine", normalize=True),
        id="protonet-cosine",
    ),
    pytest.param(
        lambda f: MetaOptNet(f, head="svm", C_reg=0.2), lambda: SVClassifier(C_reg=0.2), id="metaoptnet-svm"
    ),
    pytest.param(
        lambda f: MetaOptNet(f, head="ridge", reg=0.3, learn_scale=False),
        lambda: RidgeClassifier(reg=0.3, learn_scale=False),
        id="metaoptnet-ridge",
    ),
]


@pytest.mark.parametrize(("make_model", "make_head"), WRAPPERS)
@pytest.mark.parametrize("batched", [False, True], ids=["one-task", "batch-of-tasks"])
def test_wrappers_equal_the_head_by_hand_and_train_the_features(make_model, make_head, batched):
    generator = torch.Generator().manual_seed(12)
    lead = (2,) if batched else ()
    support = torch.randn(*lead, 6, 2, 2, 2, generator=generator, dtype=F64)  # [.., n, C, H, W]
    query = torch.randn(*lead, 5, 2, 2, 2, generator=generator, dtype=F64)
    labels = torch.tensor([0, 1, 2, 0, 1, 2]).expand(*lead, 6)
    model = make_model(image_features(0))
    logits = model(support, labels, query)
    features = image_features(0)
    embed = lambda x: features(x.reshape(-1, 2, 2, 2)).reshape(*x.shape[:-3], 5)
    head = make_head()
    head.fit_(embed(support), labels)
    torch.testing.assert_close(logits, head(embed(query)), atol=1e-9, rtol=0)
    assert logits.shape == (*lead, 5, 3)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 3), torch.arange(logits.numel() // 3) % 3).backward()
    for name, param in model.features.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_wrapper_errors_and_head_parameters():
    model = MetaOptNet(torch.nn.Linear(3, 2), head="ridge")
    assert sorted(name for name, _ in model.named_parameters()) == [
        "features.bias",
        "features.weight",
        "head.bias",
        "head.scale",
    ]
    with pytest.raises(ValueError, match=r"head must be one of 'svm', 'ridge', got 'lasso'"):
        MetaOptNet(torch.nn.Linear(3, 2), head="lasso")
    with pytest.raises(TypeError, match="features must be a torch.nn.Module, got function"):
        ProtoNet(lambda x: x)
    with pytest.raises(ValueError, match=r"support must have shape \[4, ...\] to match support_labels"):
        model(torch.zeros(3, 3), torch.tensor([0, 1, 0, 1]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"query must have shape \[B=2, q, ...\]"):
        model(torch.zeros(2, 2, 3), torch.tensor([[0, 1], [0, 1]]), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match=r"features must map \[N, ...\] inputs to \[N, d\] embeddings"):
        ProtoNet(torch.nn.Flatten(0))(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3))
