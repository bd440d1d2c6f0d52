"""The jax MAML-TRPO pieces against independent computations (numpy loops, closed forms, a hand-made
environment) and the compiled meta-iteration on Particles2D. Torch agreement: tests/test_rl_crosscheck.py."""

from typing import NamedTuple

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from l2l_multi.backends.jax import rl  # noqa: E402
from l2l_multi.backends.jax.rl._maml_trpo import _natural_direction  # noqa: E402


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _numpy_returns_and_gae(rewards, values, masks, gamma, tau):
    steps, episodes = rewards.shape
    returns, advantages = np.zeros_like(rewards), np.zeros_like(rewards)
    for n in range(episodes):
        end = int(masks[:, n].sum())  # masks are 1 then 0: the episode has `end` steps
        running, gae = 0.0, 0.0
        for t in reversed(range(end)):
            running = rewards[t, n] + gamma * running
            next_value = values[t + 1, n] if t + 1 < end else 0.0
            gae = rewards[t, n] + gamma * next_value - values[t, n] + gamma * tau * gae
            returns[t, n], advantages[t, n] = running, gae
    return returns, advantages


def test_returns_and_gae_match_a_per_episode_loop(x64):
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    masks = (np.arange(7)[:, None] < np.array([7, 5, 1, 3])[None, :]).astype(float)
    rewards *= masks
    expected_returns, expected_advantages = _numpy_returns_and_gae(rewards, values, masks, 0.9, 0.8)
    np.testing.assert_allclose(rl.discounted_returns(rewards, masks, 0.9), expected_returns, atol=1e-12)
    advantages = rl.generalized_advantages(rewards, values, masks, 0.9, 0.8)
    np.testing.assert_allclose(advantages, expected_advantages, atol=1e-12)


def test_linear_value_is_a_ridge_fit_on_the_valid_steps(x64):
    rng = np.random.default_rng(1)
    observations, returns = rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 5))
    masks = (np.arange(6)[:, None] < np.array([6, 4, 6, 2, 5])[None, :]).astype(float)
    baseline = rl.LinearValue(3, reg=1e-3).fit(observations, returns, masks)
    time = np.broadcast_to((np.arange(6) / 100.0)[:, None, None], (6, 5, 1))
    features = np.concatenate([observations, observations**2, time, time**2, time**3, np.ones_like(time)], -1)
    keep = masks.reshape(-1).astype(bool)
    rows, targets = features.reshape(-1, 10)[keep], returns.reshape(-1)[keep]
    # ridge regression as an augmented least-squares problem: [X; sqrt(reg) I] w = [y; 0]
    augmented = np.concatenate([rows, np.sqrt(1e-3) * np.eye(10)])
    weight = np.linalg.lstsq(augmented, np.concatenate([targets, np.zeros(10)]), rcond=None)[0]
    np.testing.assert_allclose(baseline.weight, weight, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(baseline(observations), features @ weight, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="reg"):
        rl.LinearValue(3, reg=0.0)


def test_diag_normal_log_prob_and_kl_closed_forms(x64):
    rng = np.random.default_rng(2)
    mean, other_mean, actions = rng.normal(size=(3, 4, 2))
    std, other_std = np.exp(rng.normal(size=(2, 4, 2)) * 0.3)
    dist, other = rl.DiagNormal(mean, std), rl.DiagNormal(other_mean, other_std)
    log_density = -((actions - mean) ** 2) / (2 * std**2) - np.log(std * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(dist.log_prob(actions), log_density.sum(-1), rtol=1e-12)
    kl = np.log(other_std / std) + (std**2 + (mean - other_mean) ** 2) / (2 * other_std**2) - 0.5
    np.testing.assert_allclose(dist.kl_divergence(other), kl.sum(-1), rtol=1e-12)
    samples = dist.sample(jax.random.key(0))
    assert samples.shape == (4, 2) and samples.dtype == jnp.float64


def test_policy_layout_and_bad_arguments(x64):
    policy = rl.DiagNormalPolicy(3, 2, hiddens=(5, 4), init_std=0.5, key=jax.random.key(0), dtype=jnp.float64)
    assert [w.shape for w, _ in policy.layers] == [(3, 5), (5, 4), (4, 2)]
    np.testing.assert_allclose(policy.log_std, np.log(0.5))
    # torch.nn.Linear's range
    assert all(np.abs(w).max() <= 1 / np.sqrt(w.shape[0]) for w, _ in policy.layers)
    flat, unravel = jax.flatten_util.ravel_pytree(policy)
    assert flat.shape == (3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2 + 2,)
    np.testing.assert_array_equal(unravel(flat)(jnp.ones((1, 3))).mean, policy(jnp.ones((1, 3))).mean)
    with pytest.raises(ValueError, match="init_std"):
        rl.DiagNormalPolicy(3, 2, init_std=0.0, key=jax.random.key(0))


def test_conjugate_gradient_and_the_natural_direction_loop(x64):
    rng = np.random.default_rng(3)
    factor = rng.normal(size=(6, 6))
    matrix = factor @ factor.T + 0.5 * np.eye(6)
    vector = rng.normal(size=6)
    solution = rl.conjugate_gradient(lambda v: matrix @ v, vector, iterations=12, tol=1e-24)
    np.testing.assert_allclose(solution, np.linalg.solve(matrix, vector), rtol=1e-9)
    # the one-call-site loop of trpo_meta_update: the same iterates, and the curvature x @ A x; also when
    # the tolerance stops it early and when it runs out of iterations
    for iterations, tol in ((3, 1e-24), (12, 1e-3)):
        expected = rl.conjugate_gradient(lambda v: matrix @ v, vector, iterations, tol)
        direction, curvature = _natural_direction(lambda v: matrix @ v, jnp.asarray(vector), iterations, tol)
        np.testing.assert_allclose(direction, expected, rtol=1e-12)
        np.testing.assert_allclose(curvature, expected @ matrix @ expected, rtol=1e-12)


class _Countdown(NamedTuple):
    left: jax.Array
    scale: jax.Array


class CountdownEnv:
    """A hand-made functional meta-env: the task is a reward scale; reward ``scale * action[0]``, done after
    ``length`` steps (``length`` = 3 + the reset key's draw in {0, 1, 2})."""

    observation_size, action_size = 1, 1

    def sample_tasks(self, key, num_tasks):
        return {"scale": jnp.arange(1.0, num_tasks + 1.0)}

    def reset(self, key, task):
        left = 3 + jax.random.randint(key, (), 0, 3)
        return _Countdown(left, task["scale"]), jnp.zeros(1)

    def step(self, state, action):
        left = state.left - 1
        return _Countdown(left, state.scale), left[None].astype(float), state.scale * action[0], left <= 0


def test_rollouts_mask_the_steps_after_done(x64):
    env = CountdownEnv()
    policy = lambda observations: rl.DiagNormal(jnp.zeros_like(observations), jnp.ones_like(observations))  # noqa: E731
    roll = jax.jit(lambda task, key: rl.rollout_episodes(env, policy, task, key, 6, 8))
    episodes = roll({"scale": jnp.asarray(2.0)}, jax.random.key(1))
    lengths = np.asarray(episodes.masks.sum(0))
    assert set(lengths) <= {3.0, 4.0, 5.0} and len(set(lengths)) > 1
    for n, length in enumerate(lengths.astype(int)):
        np.testing.assert_array_equal(episodes.masks[:, n], np.arange(8) < length)
        np.testing.assert_allclose(episodes.rewards[:length, n], 2.0 * episodes.actions[:length, n, 0])
        np.testing.assert_array_equal(episodes.rewards[length:, n], 0.0)
        countdown = length - 1 - np.arange(length - 1)
        np.testing.assert_array_equal(episodes.observations[1:length, n, 0], countdown)
    with pytest.raises(TypeError, match="sample_tasks"):
        rl.make_maml_trpo_step(object())


@pytest.mark.parametrize(
    "argument, value",
    [
        ("meta_batch", 0),
        ("episodes", 1.5),
        ("gamma", 1.5),
        ("max_kl", 0.0),
        ("backtrack_factor", 1.0),
        ("line_search_steps", 0),
        ("cg_iterations", True),
        ("adapt_steps", 0),
    ],
)
def test_bad_settings_are_refused_by_name(argument, value):
    from l2l_multi.backends.jax.gym import Particles2D

    with pytest.raises(ValueError, match=argument):
        rl.make_maml_trpo_step(Particles2D(), **{argument: value})


def test_meta_iteration_compiles_once_and_takes_trust_region_steps():
    """float32 and the shapes of make_maml_trpo_step's docstring example (2 tasks, 2 episodes, 4 steps, one
    hidden layer of 8), so that the suite compiles the TRPO update for them once."""
    from l2l_multi.backends.jax.gym import Particles2D

    traces = []
    step = rl.make_maml_trpo_step(
        Particles2D(), meta_batch=2, episodes=2, horizon=4, on_trace=lambda: traces.append(1)
    )
    policy = rl.DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
    for iteration in range(2):
        new_policy, metrics = step(policy, jax.random.key(iteration))
        assert bool(metrics.accepted) and float(metrics.kl) <= 0.01
        assert float(metrics.loss_after) < float(metrics.loss_before)
        assert 0 < float(metrics.env_steps) <= 2 * 2 * 2 * 4
        assert np.isfinite([float(metrics.pre_return), float(metrics.post_return)]).all()
        moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), new_policy, policy)
        assert max(jax.tree_util.tree_leaves(moved)) > 0
        policy = new_policy
    assert len(traces) == 1


@pytest.mark.long
def test_collect_task_batch_takes_adapt_steps():
    """Two adaptation steps: each task's second episode batch is a rollout of the policy adapted once on
    its first (replayed by hand from the same keys), and the batch holds both steps. (``long``: compiling
    the collection takes 8-12 s here; tests/test_rl_crosscheck.py checks two-step adaptation by default.)"""
    from l2l_multi.backends.jax.gym import Particles2D

    env, lr = Particles2D(), 0.1
    policy = rl.DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
    tasks, key = env.sample_tasks(jax.random.key(1), 2), jax.random.key(2)
    collect = jax.jit(
        lambda policy, key: rl.collect_task_batch(
            env, policy, rl.LinearValue(2), tasks, key, lr, 2, 4, adapt_steps=2
        )
    )
    batch, pre, post = collect(policy, key)
    assert batch.adapt_steps == 2 and batch.train[1].masks.shape == (2, 4, 2)
    for index, task_key in enumerate(jax.random.split(key, 2)):
        task, first = jax.tree_util.tree_map(lambda leaf, i=index: leaf[i], (tasks, batch.train[0]))
        adapted = rl.adapted_policy(policy, first, batch.train_advantages[0][index], lr, first_order=True)
        second = rl.rollout_episodes(env, adapted, task, jax.random.split(task_key, 3)[1], 2, 4)
        for got, expected in zip(second, batch.train[1]):
            np.testing.assert_allclose(expected[index], got, rtol=1e-5, atol=1e-6)
    task_returns = lambda episodes: (episodes.rewards * episodes.masks).sum(1).mean(-1)  # noqa: E731  [B]
    np.testing.assert_allclose(pre, task_returns(batch.train[0]).mean(), rtol=1e-6)
    np.testing.assert_allclose(post, task_returns(batch.valid).mean(), rtol=1e-6)


@pytest.mark.long
def test_meta_iteration_with_two_adaptation_steps():
    from l2l_multi.backends.jax.gym import Particles2D

    step = rl.make_maml_trpo_step(Particles2D(), meta_batch=2, episodes=2, horizon=4, adapt_steps=2)
    policy = rl.DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
    _, metrics = step(policy, jax.random.key(0))
    assert bool(metrics.accepted) and float(metrics.kl) <= 0.01
    assert float(metrics.loss_after) < float(metrics.loss_before)
    assert 0 < float(metrics.env_steps) <= 2 * 3 * 2 * 4  # tasks x (2 steps + valid) x episodes x horizon
