"""The jax QP solver and MetaOptNet's SVM head against independent computations: QPs built around
a chosen KKT point (their solution is known), scipy's SLSQP on SVM duals, the torch solver and
``SVClassifier`` on the same data (float64), and central finite differences of the implicit
gradients. Each test compiles one or two shapes: the solver's compile is the expensive part."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
optimize = pytest.importorskip("scipy.optimize")

import jax.numpy as jnp  # noqa: E402
from l2l_multi.backends.jax import algorithms as jalg  # noqa: E402
from l2l_multi.backends.jax import nn as jnn  # noqa: E402
from l2l_multi.backends.torch.nn import SVClassifier  # noqa: E402
from l2l_multi.backends.torch.nn import solve_qp as torch_solve_qp  # noqa: E402

NAMES = ("Q", "p", "G", "h", "A", "b")


def qp_with_known_solution(rng, G, A):
    """A QP (with the given ``G``, ``A``) whose KKT conditions hold at a drawn ``z``: multipliers
    in [0.5, 1.5] on two inequalities, slack in [0.5, 1.5] on the others (strictly
    complementary, so the solution is differentiable and its active set survives small
    perturbations)."""
    (m, n), k = G.shape, A.shape[0]
    root = rng.standard_normal((n, n))
    Q = root @ root.T / n + 0.5 * np.eye(n)
    z, nu = rng.standard_normal(n), rng.standard_normal(k)
    active = np.arange(m) < 2
    lam = np.where(active, rng.uniform(0.5, 1.5, m), 0.0)
    slack = np.where(active, 0.0, rng.uniform(0.5, 1.5, m))
    p = -(Q @ z + G.T @ lam + A.T @ nu)
    return {"Q": Q, "p": p, "h": G @ z + slack, "b": A @ z}, z


def batch_of_known_qps(seed, size, n=6, m=8, k=2):
    """``size`` problems sharing ``G [m, n]`` and ``A [k, n]`` (unbatched: ``solve_qp``
    broadcasts them and sums their gradients), and their solutions ``[size, n]``."""
    rng = np.random.default_rng(seed)
    G, A = rng.standard_normal((m, n)), rng.standard_normal((k, n))
    problems, solutions = zip(*(qp_with_known_solution(rng, G, A) for _ in range(size)))
    data = {name: np.stack([problem[name] for problem in problems]) for name in ("Q", "p", "h", "b")}
    return {**data, "G": G, "A": A}, np.stack(solutions)


def slsqp(Q, p, G, h, A, b):
    """``min 1/2 z^T Q z + p^T z  s.t.  G z <= h, A z = b`` by scipy's SLSQP (numpy, one problem)."""
    result = optimize.minimize(
        lambda z: 0.5 * z @ Q @ z + p @ z,
        np.zeros(len(p)),
        jac=lambda z: Q @ z + p,
        method="SLSQP",
        constraints=[
            {"type": "ineq", "fun": lambda z: h - G @ z, "jac": lambda z: -G},
            {"type": "eq", "fun": lambda z: A @ z - b, "jac": lambda z: A},
        ],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert result.status in (0, 8), result.message  # 8: the line search met round-off at the optimum
    return result.x


def embeddings(seed, tasks=3, ways=5, shots=2, queries=3, dim=16):
    rng = np.random.default_rng(seed)
    support = rng.standard_normal((tasks, ways * shots, dim))
    labels = np.tile(np.arange(ways), (tasks, shots))
    query = rng.standard_normal((tasks, ways * queries, dim))
    weights = rng.standard_normal((tasks, ways * queries, ways))  # a loss that weighs every logit
    return support, labels, query, weights


def test_svm_duals_equal_scipy_and_torch_in_float64_and_float32():
    support, labels, _, _ = embeddings(1)
    with jax.enable_x64(True):
        problems = jax.vmap(lambda x, y: jalg._metric.svm_dual_problem(x, y, 5, 0.1))(support, labels)
        problems = [np.array(array) for array in problems]  # writable, for torch.as_tensor
        z = np.asarray(jnn.solve_qp(*problems))
    reference = np.stack([slsqp(*(array[task] for array in problems)) for task in range(len(support))])
    # SLSQP's own accuracy (its ftol bounds the objective, not z) is the limit here
    assert np.abs(z - reference).max() < 1e-6
    torch_z = torch_solve_qp(*(torch.as_tensor(array) for array in problems)).numpy()
    assert np.abs(z - torch_z).max() < 1e-13
    # float32: the polished solution is exact to float32 round-off, where an interior point
    # iterate alone stops about 1e-4 away (its complementarity stalls near 1e-8)
    z32 = jnn.solve_qp(*(jnp.asarray(array, jnp.float32) for array in problems))
    assert z32.dtype == jnp.float32
    assert np.abs(np.asarray(z32, np.float64) - z).max() < 1e-6


def test_solver_finds_known_solutions_and_its_gradients_equal_torch_and_central_differences():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        data, expected = batch_of_known_qps(3, 3)
        weights = rng.standard_normal(data["p"].shape)

        def loss(*arrays):
            z = jnn.solve_qp(*arrays)
            return (z**2 * weights).sum(), z

        # one compile: the solutions and the values for the central differences come from it too
        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(6)), has_aux=True))
        arrays = [jnp.asarray(data[name]) for name in NAMES]
        (value, z), grads = value_and_grad(*arrays)
        assert z.shape == expected.shape and np.abs(np.asarray(z) - expected).max() < 1e-12
        tensors = [torch.tensor(data[name], requires_grad=True) for name in NAMES]
        torch_z = torch_solve_qp(*tensors)
        assert np.abs(np.asarray(z) - torch_z.detach().numpy()).max() < 1e-12
        torch_value = (torch_z**2 * torch.as_tensor(weights)).sum()
        torch_value.backward()
        assert abs(float(value) - torch_value.item()) < 1e-12
        for name, grad, tensor in zip(NAMES, grads, tensors):  # G's and A's summed over the batch
            assert grad.shape == tensor.shape
            assert np.abs(np.asarray(grad) - tensor.grad.numpy()).max() < 1e-10, name
        # central differences along a random direction of each input (Q's kept symmetric)
        eps = 1e-6
        for index, name in enumerate(NAMES):
            direction = rng.standard_normal(data[name].shape)
            if name == "Q":
                direction = direction + direction.transpose(0, 2, 1)
            values = []
            for sign in (1, -1):
                shifted = list(arrays)
                shifted[index] = arrays[index] + sign * eps * direction
                values.append(float(value_and_grad(*shifted)[0][0]))
            numeric = (values[0] - values[1]) / (2 * eps)
            analytic = float((np.asarray(grads[index]) * direction).sum())
            assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic)), name


def test_svm_head_equals_torch_and_central_differences():
    support, labels, query, weights = embeddings(4)
    with jax.enable_x64(True):

        def loss(support, query, scale):
            logits = jax.vmap(lambda x, y, q: jnn.svm_logits(x, y, q, 5, C_reg=0.1, scale=scale))(
                support, labels, query
            )
            return (logits * weights).sum(), logits

        value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
        (value, logits), grads = value_and_grad(jnp.asarray(support), jnp.asarray(query), jnp.asarray(1.5))
        head = SVClassifier(C_reg=0.1, learn_scale=True)
        with torch.no_grad():
            head.scale.fill_(1.5)
        head.double()
        support_t = torch.tensor(support, requires_grad=True)
        query_t = torch.tensor(query, requires_grad=True)
        head.fit_(support_t, torch.as_tensor(labels))
        torch_logits = head(query_t)
        (torch_logits * torch.as_tensor(weights)).sum().backward()
        assert np.abs(np.asarray(logits) - torch_logits.detach().numpy()).max() < 1e-8
        for grad, expected in zip(grads, (support_t.grad, query_t.grad, head.scale.grad)):
            expected = expected.numpy()
            assert np.abs(np.asarray(grad) - expected).max() < 1e-8 * max(1.0, np.abs(expected).max())
        # central differences of the support embeddings, through the QP's solution
        direction, eps = np.random.default_rng(5).standard_normal(support.shape), 1e-6
        plus, minus = (
            value_and_grad(
                jnp.asarray(support + sign * eps * direction), jnp.asarray(query), jnp.asarray(1.5)
            )[0][0]
            for sign in (1, -1)
        )
        numeric = (float(plus) - float(minus)) / (2 * eps)
        analytic = float((np.asarray(grads[0]) * direction).sum())
        assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic))


def test_no_solution_raises_eagerly_and_gives_nan_under_jit():
    # z <= -1 and -z <= -1 (z >= 1): infeasible
    problem = (jnp.eye(1), jnp.zeros(1), jnp.array([[1.0], [-1.0]]), -jnp.ones(2))
    with pytest.raises(RuntimeError, match=r"solve_qp did not converge .* largest scaled residual"):
        jnn.solve_qp(*problem, max_iterations=10)
    assert bool(jnp.isnan(jax.jit(lambda *a: jnn.solve_qp(*a, max_iterations=10))(*problem)).all())


def test_metaoptnet_svm_meta_parameters_and_errors():
    import flax.linen as nn

    plain = jalg.MetaOptNet(nn.Dense(4), ways=3, head="svm")
    learned = jalg.MetaOptNet(nn.Dense(4), ways=3, head="svm", learn_scale=True)
    key, x = jax.random.PRNGKey(0), jnp.ones((1, 2))
    # as the torch module: an SVM head has a parameter only when its scale is learned
    assert sorted(plain.init(key, x)) == ["features"]
    assert sorted(learned.init(key, x)["head"]) == ["scale"]
    ridge = jalg.MetaOptNet(nn.Dense(4), ways=3, head="ridge")
    assert sorted(ridge.init(key, x)["head"]) == ["bias", "scale"]
    with pytest.raises(ValueError, match=r"C_reg must be a positive float, got -1.0"):
        jalg.MetaOptNet(nn.Dense(4), ways=3, head="svm", C_reg=-1.0)
    with pytest.raises(ValueError, match=r"max_iterations must be a positive int, got 0"):
        jalg.MetaOptNet(nn.Dense(4), ways=3, head="svm", max_iterations=0)
    with pytest.raises(TypeError, match=r"p must be a jax or numpy array, got a torch.Tensor"):
        jnn.solve_qp(np.eye(1), torch.zeros(1), np.ones((1, 1)), np.ones(1))
    with pytest.raises(ValueError, match=r"G must have shape \[B, 1, 2\] for n=2 variables"):
        jnn.solve_qp(np.eye(2), np.zeros(2), np.ones((1, 3)), np.ones(1))


def test_a_degenerate_constraint_gets_the_inactive_one_sided_gradient_on_both_backends():
    """min 1/2 (z - 1)^2 s.t. z <= h at h = 1: the constraint is active with a zero multiplier
    (s = lam = 0), where the adjoint KKT system of OptNet is singular (it assumes strict
    complementarity). Both backends take the constraint as inactive: dz/dp = -1, dz/dh = 0, the
    derivatives of z = -p / Q for p above -1 and h above 1 (one-sided central differences agree)."""
    Q, p, G, h = np.ones((1, 1)), -np.ones(1), np.ones((1, 1)), np.ones(1)
    with jax.enable_x64(True):
        gradients = jax.grad(lambda p, h: jnn.solve_qp(Q, p, G, h)[0], argnums=(0, 1))(p, h)
    tensors = [torch.tensor(array, requires_grad=True) for array in (p, h)]
    torch_solve_qp(torch.tensor(Q), tensors[0], torch.tensor(G), tensors[1])[0].backward()
    torch_gradients = (tensors[0].grad.numpy(), tensors[1].grad.numpy())
    for grad_p, grad_h in (tuple(map(np.asarray, gradients)), torch_gradients):
        np.testing.assert_allclose(grad_p, [-1.0], atol=1e-9)
        np.testing.assert_allclose(grad_h, [0.0], atol=1e-9)
    with jax.enable_x64(True):
        eps = 1e-4
        z = lambda p, h: float(jnn.solve_qp(Q, np.array([p], float), G, np.array([h], float))[0])  # noqa: E731
        assert abs((z(-1 + 2 * eps, 1) - z(-1 + eps, 1)) / eps + 1) < 1e-6  # p above -1
        assert abs(z(-1, 1 + 2 * eps) - z(-1, 1 + eps)) < 1e-9  # h above 1
