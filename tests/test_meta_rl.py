"""Meta-RL: DiCE derivatives, conjugate gradient, MAML-TRPO on Particles2D (torch), pure-jax Particles2D."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
gymnasium = pytest.importorskip("gymnasium")

from l2l_multi.backends.torch import rl  # noqa: E402
from l2l_multi.backends.torch.algorithms import MAML, MetaSGD  # noqa: E402


def _particles_env():
    import l2l_multi.gym  # noqa: F401  (registers Particles2D-v1)

    return gymnasium.make("Particles2D-v1")


def test_conjugate_gradient_solves_spd_system():
    generator = torch.Generator().manual_seed(0)
    factor = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    matrix = factor @ factor.T + 0.5 * torch.eye(6, dtype=torch.float64)
    vector = torch.randn(6, generator=generator, dtype=torch.float64)
    solution = rl.conjugate_gradient(lambda v: matrix @ v, vector, iterations=12, tol=1e-24)
    torch.testing.assert_close(solution, torch.linalg.solve(matrix, vector), rtol=1e-9, atol=1e-9)


def test_dice_gradient_equals_reinforce_gradient():
    torch.manual_seed(0)
    policy = rl.DiagNormalPolicy(2, 2, hiddens=(5,)).double()
    observations, actions = (
        torch.randn(4, 3, 2, dtype=torch.float64),
        torch.randn(4, 3, 2, dtype=torch.float64),
    )
    advantages = torch.randn(4, 3, dtype=torch.float64)
    masks = torch.tensor([[1.0, 1, 1], [1, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=torch.float64)
    params = list(policy.parameters())

    log_probs = policy(observations).log_prob(actions)
    dice = torch.autograd.grad(rl.dice_policy_loss(log_probs, advantages, masks), params)
    log_probs = policy(observations).log_prob(actions)
    reinforce = torch.autograd.grad(-(log_probs * advantages * masks).sum() / masks.sum(), params)
    for got, expected in zip(dice, reinforce):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# A one-step categorical bandit small enough to enumerate: with every action weighted by its (detached)
# probability, the DiCE loss is an exact expectation, so its derivatives must equal those of the true
# expected return -sum_a softmax(W x)_a R_a, which finite differences give independently.
_X = torch.tensor([0.7, -1.3], dtype=torch.float64)
_TRAIN_REWARD = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
_VALID_REWARD = torch.tensor([-0.3, 0.8, 0.1], dtype=torch.float64)


def _exact_dice_loss(module, rewards):
    log_probs = torch.log_softmax(module(_X), dim=-1)
    weights = log_probs.detach().exp()
    return rl.dice_policy_loss(log_probs[:, None], rewards[:, None], weights[:, None])


def _expected_loss(weight, rewards):
    return -(torch.softmax(weight @ _X, dim=-1) * rewards).sum()


def _central_differences(function, point, eps=1e-6):
    flat = point.reshape(-1)
    columns = []
    for index in range(flat.numel()):
        step = torch.zeros_like(flat)
        step[index] = eps
        columns.append(
            (function((flat + step).view_as(point)) - function((flat - step).view_as(point))) / (2 * eps)
        )
    return torch.stack(columns, dim=-1)


def test_dice_second_derivative_matches_finite_differences():
    torch.manual_seed(0)
    module = torch.nn.Linear(2, 3, bias=False).double()
    (gradient,) = torch.autograd.grad(
        _exact_dice_loss(module, _TRAIN_REWARD), module.weight, create_graph=True
    )
    hessian = torch.stack(
        [
            torch.autograd.grad(g, module.weight, retain_graph=True)[0].reshape(-1)
            for g in gradient.reshape(-1)
        ]
    )

    def exact_gradient(weight):
        weight = weight.detach().requires_grad_(True)
        return torch.autograd.grad(_expected_loss(weight, _TRAIN_REWARD), weight)[0].reshape(-1)

    torch.testing.assert_close(gradient.reshape(-1), exact_gradient(module.weight), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        hessian, _central_differences(exact_gradient, module.weight.detach()), rtol=1e-6, atol=1e-8
    )


def test_maml_dice_meta_gradient_matches_finite_differences():
    torch.manual_seed(1)
    module = torch.nn.Linear(2, 3, bias=False).double()
    maml = MAML(module, lr=0.5)
    learner = maml.clone()
    learner.adapt(_exact_dice_loss(learner, _TRAIN_REWARD))
    (meta_gradient,) = torch.autograd.grad(
        _expected_loss(learner.module.weight, _VALID_REWARD), module.weight
    )

    def post_adaptation_loss(weight):
        weight = weight.detach().requires_grad_(True)
        (inner,) = torch.autograd.grad(_expected_loss(weight, _TRAIN_REWARD), weight)
        return _expected_loss(weight - 0.5 * inner, _VALID_REWARD)

    expected = _central_differences(post_adaptation_loss, module.weight.detach())
    torch.testing.assert_close(meta_gradient.reshape(-1), expected, rtol=1e-6, atol=1e-9)


class _BanditPolicy(torch.nn.Module):
    """The bandit's softmax policy with DiagNormalPolicy's interface (observations -> distribution)."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 3, bias=False).double()

    def forward(self, observations):
        return torch.distributions.Categorical(logits=self.linear(observations))


def _bandit_episodes(weight, rewards):
    """Every action once (``T = 3`` steps of ``N = 1`` episode), weighted by its probability under
    ``weight``: the DiCE loss on it is the exact expected loss at ``weight`` up to second order."""
    masks = torch.softmax(weight.detach() @ _X, dim=-1)[:, None]
    return rl.Episodes(_X.expand(3, 1, 2), torch.arange(3)[:, None], rewards[:, None], masks)


def _inner_step(weight, rewards, lr):
    weight = weight.detach().requires_grad_(True)
    return weight - lr * torch.autograd.grad(_expected_loss(weight, rewards), weight)[0]


def test_two_step_adaptation_meta_gradient_matches_finite_differences():
    """learn2learn's ``adapt_steps=2`` on the exact bandit: ``adapt_policy`` on a list of two episode
    batches (the second weighted by the once-adapted policy, as if it had collected them) gives the
    meta-gradient of the expected loss after two exact gradient steps, which differs from one step's."""
    torch.manual_seed(2)
    policy, lr, second_reward = _BanditPolicy(), 0.5, torch.tensor([0.4, -0.9, 0.6], dtype=torch.float64)
    maml = MAML(policy, lr=lr)
    weight = policy.linear.weight
    steps = [
        _bandit_episodes(weight, _TRAIN_REWARD),
        _bandit_episodes(_inner_step(weight, _TRAIN_REWARD, lr), second_reward),
    ]
    learner = rl.adapt_policy(maml, steps, [episodes.rewards for episodes in steps])
    (meta_gradient,) = torch.autograd.grad(
        _expected_loss(learner.module.linear.weight, _VALID_REWARD), weight
    )

    def after_two_steps(start):
        return _expected_loss(
            _inner_step(_inner_step(start, _TRAIN_REWARD, lr), second_reward, lr), _VALID_REWARD
        )

    expected = _central_differences(after_two_steps, weight.detach())
    torch.testing.assert_close(meta_gradient.reshape(-1), expected, rtol=1e-6, atol=1e-9)
    one_step = rl.adapt_policy(maml, steps[0], steps[0].rewards)
    (one_step_gradient,) = torch.autograd.grad(
        _expected_loss(one_step.module.linear.weight, _VALID_REWARD), weight
    )
    assert float((one_step_gradient - meta_gradient).abs().max()) > 1e-2
    with pytest.raises(ValueError, match="train advantages"):
        rl.adapt_policy(maml, steps, steps[0].rewards)


def test_sample_meta_batch_takes_adapt_steps():
    """Two steps: the second episode batch is collected by the once-adapted policy, replayed by hand with
    the same noise stream; a bad ``adapt_steps`` is refused by name."""
    env = gymnasium.vector.SyncVectorEnv([_particles_env] * 2)
    torch.manual_seed(0)
    maml = MAML(rl.DiagNormalPolicy(2, 2, hiddens=(8,)), lr=0.1)
    tasks = _particles_env().unwrapped.sample_tasks(1, seed=0)
    noise = torch.Generator().manual_seed(3)
    batches, pre, post = rl.sample_meta_batch(
        maml, env, tasks, rl.LinearValue(2), 5, generator=noise, seed=7, adapt_steps=2
    )
    (batch,) = batches
    assert (
        batch.adapt_steps == 2 and pre == batch.train[0].mean_return() and post == batch.valid.mean_return()
    )
    generator = torch.Generator().manual_seed(3)
    first = rl.collect_episodes(env, maml, 5, seed=7, generator=generator)
    adapted = rl.adapt_policy(maml, first, batch.train_advantages[0], first_order=True)
    second = rl.collect_episodes(env, adapted, 5, seed=7, generator=generator)
    for got, expected in zip((*batch.train[0], *batch.train[1]), (*first, *second)):
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="adapt_steps"):
        rl.sample_meta_batch(maml, env, tasks, rl.LinearValue(2), 5, adapt_steps=0)
    with pytest.raises(ValueError, match="one adaptation step"):  # ProMP's inner loss is for one step
        rl.promp_step(maml, batches, torch.optim.SGD(maml.parameters(), lr=0.1))
    env.close()


@pytest.mark.slow
def test_maml_trpo_improves_post_adaptation_return_on_particles():
    pytest.importorskip("l2l_multi.gym")
    torch.manual_seed(0)
    tasks_per_batch, episodes, iterations = 20, 10, 3
    env = gymnasium.vector.SyncVectorEnv([_particles_env] * episodes)
    maml = MAML(rl.DiagNormalPolicy(2, 2, hiddens=(64, 64)), lr=0.1)
    baseline = rl.LinearValue(2)
    generator = torch.Generator().manual_seed(0)
    sampler = env.envs[0].unwrapped
    history = []
    for iteration in range(iterations + 1):
        tasks = sampler.sample_tasks(tasks_per_batch, seed=iteration)
        batches, pre, post = rl.sample_meta_batch(
            maml, env, tasks, baseline, max_steps=100, generator=generator, seed=iteration
        )
        history.append((pre, post))
        if iteration < iterations:  # the last batch only evaluates the meta-trained policy
            assert rl.maml_trpo_step(maml, batches, max_kl=0.01)["accepted"]
    print(
        "MAML-TRPO Particles2D (pre, post) per iteration:", [(round(a, 2), round(b, 2)) for a, b in history]
    )
    final_pre, final_post = history[-1]
    assert final_post > final_pre + 1.0  # adaptation helps after meta-training
    assert final_post > history[0][1] + 10.0  # and meta-training helped the adapted policy


@pytest.mark.slow
def test_promp_improves_post_adaptation_return_on_particles():
    pytest.importorskip("l2l_multi.gym")
    torch.manual_seed(0)
    env = gymnasium.vector.SyncVectorEnv([_particles_env] * 10)
    maml = MAML(rl.DiagNormalPolicy(2, 2, hiddens=(64, 64)), lr=0.1)
    optimizer = torch.optim.Adam(maml.parameters(), lr=1e-3)
    baseline, generator = rl.LinearValue(2), torch.Generator().manual_seed(0)
    sampler = env.envs[0].unwrapped
    history = []
    for iteration in range(4):
        tasks = sampler.sample_tasks(20, seed=iteration)
        batches, pre, post = rl.sample_meta_batch(
            maml, env, tasks, baseline, max_steps=100, generator=generator, seed=iteration
        )
        history.append((pre, post))
        if iteration < 3:
            stats = rl.promp_step(maml, batches, optimizer, epochs=5)
            assert stats["loss_after"] < stats["loss_before"]
    print("ProMP Particles2D (pre, post) per iteration:", [(round(a, 2), round(b, 2)) for a, b in history])
    assert history[-1][1] > history[-1][0]
    assert history[-1][1] > history[0][1] + 10.0


@pytest.mark.slow
def test_metasgd_a2c_improves_post_adaptation_return_on_particles():
    pytest.importorskip("l2l_multi.gym")
    torch.manual_seed(0)
    env = gymnasium.vector.SyncVectorEnv([_particles_env] * 10)
    learner = MetaSGD(rl.DiagNormalPolicy(2, 2, hiddens=(64, 64)), lr=0.1)
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)
    baseline, generator = rl.LinearValue(2), torch.Generator().manual_seed(0)
    sampler = env.envs[0].unwrapped
    history = []
    for iteration in range(4):
        tasks = sampler.sample_tasks(20, seed=iteration)
        batches, pre, post = rl.sample_meta_batch(
            learner, env, tasks, baseline, max_steps=100, generator=generator, seed=iteration
        )
        history.append((pre, post))
        if iteration < 3:
            rl.meta_a2c_step(learner, batches, optimizer)
    print(
        "MetaSGD-A2C Particles2D (pre, post) per iteration:", [(round(a, 2), round(b, 2)) for a, b in history]
    )
    assert history[-1][1] > history[-1][0]
    assert history[-1][1] > history[0][1] + 10.0


def test_gae_with_tau_one_is_return_minus_value_and_respects_masks():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    values = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    masks = torch.tensor([[1.0, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 1], [0, 0, 1]], dtype=torch.float64)
    rewards = rewards * masks
    returns = rl.discounted_returns(rewards, masks, 0.9)
    advantages = rl.generalized_advantages(rewards, values, masks, 0.9, 1.0)
    torch.testing.assert_close(advantages, (returns - values) * masks)
    # Closed form for the episode that ends after two steps.
    assert returns[0, 1].item() == pytest.approx(rewards[0, 1].item() + 0.9 * rewards[1, 1].item())


def _numpy_particles():
    from l2l_multi.gym._particles import particles_reset, particles_step

    return particles_reset, particles_step


@pytest.mark.parametrize("x64", [True, False], ids=["float64-exact", "float32-close"])
def test_jax_particles_matches_numpy_dynamics(x64):
    jax = pytest.importorskip("jax")
    particles_reset, particles_step = _numpy_particles()
    from l2l_multi.backends.jax import gym as jax_gym

    rng = np.random.default_rng(0)
    goal = rng.uniform(-0.5, 0.5, size=2)
    actions = rng.normal(scale=0.15, size=(100, 2)).astype(np.float32)  # many get clipped
    with jax.enable_x64(x64):
        position = particles_reset(goal)
        state, observation = jax_gym.reset(jax.random.key(0), jax.numpy.asarray(goal))
        np.testing.assert_array_equal(np.asarray(observation), position)
        jax_step = jax.jit(jax_gym.step)
        for action in actions:
            position, reward, done = particles_step(position, goal, action)
            state, observation, jax_reward, jax_done = jax_step(state, action, goal)
            if x64:
                np.testing.assert_array_equal(np.asarray(observation), position)
                # XLA:CPU fuses x*x + y*y into an FMA: one ulp, not bits, for the reward.
                np.testing.assert_allclose(float(jax_reward), reward, rtol=3e-16, atol=0)
            else:
                np.testing.assert_allclose(np.asarray(observation), position, atol=1e-6)
                np.testing.assert_allclose(float(jax_reward), reward, atol=1e-5)
            assert bool(jax_done) == bool(done)


def test_jax_particles_matches_gymnasium_env_and_terminates():
    jax = pytest.importorskip("jax")
    from l2l_multi.backends.jax import gym as jax_gym

    env = _particles_env()
    goal = np.array([0.15, -0.05])
    env.unwrapped.set_task({"goal": goal})
    observation, _ = env.reset(seed=0)
    state, jax_observation = jax_gym.reset(jax.random.key(0), goal)
    actions = [np.array([0.2, -0.02], np.float32), np.array([0.05, -0.03], np.float32)]  # ends at the goal
    for action in actions:
        observation, reward, terminated, _, _ = env.step(action)
        state, jax_observation, jax_reward, jax_done = jax_gym.step(state, action, goal)
        np.testing.assert_allclose(np.asarray(jax_observation), observation, atol=1e-7)
        np.testing.assert_allclose(float(jax_reward), reward, atol=1e-6)
        assert bool(jax_done) == terminated
    assert terminated


@pytest.mark.slow
def test_jax_maml_step_is_traced_once_and_improves():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    from l2l_multi.backends.jax import gym as jax_gym

    optimizer = optax.adam(1e-2)
    params = jax_gym.init_policy(jax.random.key(0), hiddens=(32, 32), init_std=0.5)
    opt_state = optimizer.init(params)
    traces = []
    step = jax_gym.make_maml_pg_step(
        optimizer, inner_lr=0.1, episodes=10, horizon=100, on_trace=lambda: traces.append(1)
    )
    key = jax.random.key(1)
    history = []
    for _ in range(20):
        key, goal_key, step_key = jax.random.split(key, 3)
        goals = jax.random.uniform(goal_key, (20, 2), minval=-0.5, maxval=0.5)
        params, opt_state, metrics = step(params, opt_state, goals, step_key)
        history.append((float(metrics.pre_return), float(metrics.post_return)))
    print("jax MAML-PG Particles2D (pre, post) first/last:", history[:2], history[-2:])
    assert len(traces) == 1
    first_post = np.mean([post for _, post in history[:3]])
    last_pre, last_post = np.mean(history[-3:], axis=0)
    assert last_post > first_post + 10.0
    assert last_post > last_pre
