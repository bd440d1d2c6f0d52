"""Pure-jax meta-RL: the Particles2D environment and a jit-compiled, task-vmapped MAML policy-gradient step.

The dynamics mirror ``l2l_multi.gym._particles`` (``particles_reset``/``particles_step``) operation by
operation: with ``jax_enable_x64`` positions and termination agree bit for bit and rewards to one ulp
(XLA:CPU contracts ``x*x + y*y`` into a fused multiply-add); in float32 mode they agree to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .utils import magic_box

MAX_ACTION = 0.1
GOAL_TOLERANCE = 0.01
GOAL_LOW, GOAL_HIGH = -0.5, 0.5


def _wide():
    # float64 when x64 is enabled (matching numpy's float64 arithmetic exactly), float32 otherwise.
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def reset(key: jax.Array, goal: jax.Array):
    """Initial state of Particles2D: the point at the origin.

    Args:
        key: PRNG key (unused: the start is deterministic; kept so every environment has the same signature).
        goal: float array ``(..., 2)``; only its batch shape is used.

    Returns:
        ``(state, observation)``, both float32 ``(..., 2)`` (the observation is the position).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> state, obs = reset(jax.random.key(0), jnp.array([0.3, 0.4]))
        >>> obs.tolist()
        [0.0, 0.0]
    """
    state = jnp.zeros(jnp.shape(goal), dtype=jnp.float32)
    return state, state


def step(state: jax.Array, action: jax.Array, goal: jax.Array):
    """One Particles2D step: move by the action clipped to ``[-0.1, 0.1]``; reward ``-||position - goal||``.

    Args:
        state: float32 position ``(..., 2)``.
        action: float array ``(..., 2)``.
        goal: float array ``(..., 2)``.

    Returns:
        ``(state, observation, reward, done)``: float32 ``(..., 2)`` twice, a float ``(...)`` reward (float64
        under x64) and a bool ``(...)`` that is true within 0.01 of the goal.

    Example:
        >>> import jax.numpy as jnp
        >>> state, obs, reward, done = step(jnp.zeros(2), jnp.array([1.0, 1.0]), jnp.array([0.3, 0.4]))
        >>> round(float(reward), 4), bool(done)
        (-0.3606, False)
    """
    wide = _wide()
    action = jnp.clip(jnp.asarray(action, dtype=wide), -MAX_ACTION, MAX_ACTION)
    position = (jnp.asarray(state, dtype=wide) + action).astype(jnp.float32)
    offset = position.astype(wide) - jnp.asarray(goal, dtype=wide)
    # numpy's norm order (sqrt of x*x + y*y); XLA:CPU may still contract it into an FMA, so the reward can
    # differ from numpy's in the last bit while positions and termination match exactly.
    distance = jnp.sqrt(jnp.sum(offset * offset, axis=-1))
    return position, position, -distance, distance < GOAL_TOLERANCE


class ParticlesState(NamedTuple):
    """State of :class:`Particles2D`: ``position`` float32 ``(..., 2)``, the task's ``goal`` ``(..., 2)``."""

    position: jax.Array
    goal: jax.Array


class Particles2D:
    """Particles2D under the functional meta-env protocol (``l2l_multi.gym.FunctionalMetaEnv``), pure jax.

    Tasks are ``{"goal": (num_tasks, 2)}`` drawn uniformly in ``[-0.5, 0.5]^2`` (float64 under x64, float32
    otherwise), the same distribution and task layout as ``l2l_multi.gym.Particles2DEnv``, whose
    ``HostFunctionalEnv`` wrapper accepts the same task dicts. ``reset``/``step`` wrap the module's
    :func:`reset`/:func:`step`; all three are jit- and vmap-compatible.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> env = Particles2D()
        >>> tasks = env.sample_tasks(jax.random.key(0), 5)
        >>> task = jax.tree_util.tree_map(lambda leaf: leaf[0], tasks)
        >>> state, obs = env.reset(jax.random.key(1), task)
        >>> state, obs, reward, done = env.step(state, jnp.array([0.1, 0.0]))
        >>> obs.tolist(), reward.shape, done.dtype
        ([0.10000000149011612, 0.0], (), dtype('bool'))
    """

    observation_size = 2
    action_size = 2

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> dict:
        """``{"goal": float (num_tasks, 2)}``, uniform in ``[-0.5, 0.5]^2``; ``num_tasks`` a positive int."""
        if not isinstance(num_tasks, int) or isinstance(num_tasks, bool) or num_tasks < 1:
            raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
        return {"goal": jax.random.uniform(key, (num_tasks, 2), _wide(), GOAL_LOW, GOAL_HIGH)}

    def reset(self, key: jax.Array, task: dict):
        """``(ParticlesState, observation float32 (2,))`` for one task ``{"goal": (2,)}`` (``key`` unused)."""
        goal = _task_goal(task)
        position, observation = reset(key, goal)
        return ParticlesState(position, goal), observation

    def step(self, state: ParticlesState, action: jax.Array):
        """``(ParticlesState, observation float32 (2,), reward float scalar, done bool scalar)``."""
        position, observation, reward, done = step(state.position, action, state.goal)
        return ParticlesState(position, state.goal), observation, reward, done


def _task_goal(task) -> jax.Array:
    # A structural check only: values cannot be inspected under jit.
    if not isinstance(task, dict) or "goal" not in task or jnp.shape(task["goal"])[-1:] != (2,):
        raise ValueError(f"task must be a dict with a 'goal' of shape (..., 2), got {task!r:.200}")
    return jnp.asarray(task["goal"], dtype=_wide())


def init_policy(
    key: jax.Array, obs_size: int = 2, action_size: int = 2, hiddens=(64, 64), init_std=1.0
) -> dict:
    """Parameters of a diagonal-Gaussian MLP policy (ReLU hiddens, learned log-std), float32.

    Returns:
        ``{"layers": [(weight [in, out], bias [out]), ...], "log_std": [action_size]}``.

    Example:
        >>> import jax
        >>> params = init_policy(jax.random.key(0), hiddens=(8,))
        >>> [w.shape for w, _ in params["layers"]], params["log_std"].shape
        ([(2, 8), (8, 2)], (2,))
    """
    sizes = (obs_size, *hiddens, action_size)
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for layer_key, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:]):
        bound = 1.0 / fan_in**0.5  # torch.nn.Linear's default scale, so both backends start alike
        w_key, b_key = jax.random.split(layer_key)
        layers.append(
            (
                jax.random.uniform(w_key, (fan_in, fan_out), jnp.float32, -bound, bound),
                jax.random.uniform(b_key, (fan_out,), jnp.float32, -bound, bound),
            )
        )
    return {"layers": layers, "log_std": jnp.full((action_size,), jnp.log(init_std), jnp.float32)}


def policy_apply(params: dict, observations: jax.Array):
    """Mean ``[..., action_size]`` and log-std ``[action_size]`` of the policy at ``observations [..., obs]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> mean, log_std = policy_apply(init_policy(jax.random.key(0), hiddens=(8,)), jnp.zeros((3, 2)))
        >>> mean.shape
        (3, 2)
    """
    hidden = observations
    for index, (weight, bias) in enumerate(params["layers"]):
        hidden = hidden @ weight + bias
        if index < len(params["layers"]) - 1:
            hidden = jax.nn.relu(hidden)
    return hidden, params["log_std"]


def _log_prob(params, observations, actions):
    mean, log_std = policy_apply(params, observations)
    z = (actions - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


class Rollout(NamedTuple):
    """Time-major episodes: ``observations/actions [T, E, 2]`` and ``rewards/masks [T, E]`` (float32)."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array


def rollout(params: dict, goal: jax.Array, key: jax.Array, episodes: int, horizon: int = 100) -> Rollout:
    """Runs ``episodes`` Particles2D episodes of ``horizon`` steps with ``lax.scan``; steps after reaching the
    goal are masked. Actions are sampled from the policy with gradients stopped (they are data).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> params = init_policy(jax.random.key(0), hiddens=(8,))
        >>> out = rollout(params, jnp.array([0.2, 0.1]), jax.random.key(1), episodes=3, horizon=5)
        >>> out.rewards.shape
        (5, 3)
    """
    params = jax.lax.stop_gradient(params)
    goals = jnp.broadcast_to(goal, (episodes, 2))
    state, observation = reset(key, goals)

    def body(carry, step_key):
        state, observation, alive = carry
        mean, log_std = policy_apply(params, observation)
        action = mean + jnp.exp(log_std) * jax.random.normal(step_key, mean.shape, mean.dtype)
        state, next_observation, reward, done = step(state, action, goals)
        mask = alive.astype(jnp.float32)
        record = (observation, action, reward.astype(jnp.float32) * mask, mask)
        return (state, next_observation, alive & ~done), record

    alive = jnp.ones((episodes,), dtype=bool)
    _, records = jax.lax.scan(body, (state, observation, alive), jax.random.split(key, horizon))
    return Rollout(*records)


def dice_loss(params: dict, episodes: Rollout, gamma: float = 0.99) -> jax.Array:
    """DiCE policy-gradient loss on ``episodes``: reward-to-go minus a per-step mean baseline, normalised.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> params = init_policy(jax.random.key(0), hiddens=(8,))
        >>> episodes = rollout(params, jnp.array([0.2, 0.1]), jax.random.key(1), episodes=4, horizon=5)
        >>> dice_loss(params, episodes).shape
        ()
    """

    def discount(running, inputs):
        reward, mask = inputs
        running = (reward + gamma * running) * mask
        return running, running

    zeros = jnp.zeros_like(episodes.rewards[0])
    _, returns = jax.lax.scan(discount, zeros, (episodes.rewards, episodes.masks), reverse=True)
    advantages = returns - returns.mean(axis=1, keepdims=True)
    count = jnp.maximum(episodes.masks.sum(), 1.0)
    mean = (advantages * episodes.masks).sum() / count
    std = jnp.sqrt((((advantages - mean) * episodes.masks) ** 2).sum() / count)
    advantages = jax.lax.stop_gradient((advantages - mean) / (std + 1e-8))
    log_probs = _log_prob(params, episodes.observations, episodes.actions)
    return -(magic_box(log_probs) * advantages * episodes.masks).sum() / count


class MetaStepMetrics(NamedTuple):
    """Per-step means over tasks: outer ``loss``, ``pre_return`` and ``post_return`` (undiscounted)."""

    loss: jax.Array
    pre_return: jax.Array
    post_return: jax.Array


def make_maml_pg_step(
    optimizer,
    inner_lr: float = 0.1,
    episodes: int = 10,
    horizon: int = 100,
    gamma: float = 0.99,
    on_trace: Callable[[], None] | None = None,
):
    """Builds ``step(params, opt_state, goals [B, 2], key) -> (params, opt_state, MetaStepMetrics)``, one jit
    of the whole meta-update: per task (``vmap``) a ``lax.scan`` rollout, one inner DiCE policy-gradient step
    (``jax.grad``), a rollout of the adapted policy and its DiCE loss; the mean loss is differentiated through
    the inner step and applied with the optax ``optimizer``.

    Args:
        optimizer: an ``optax.GradientTransformation``.
        inner_lr: inner step size; episodes: episodes per task and phase; horizon: steps per episode.
        on_trace: called each time the step is traced (for tests that check it compiles once).

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> optimizer = optax.adam(1e-2)
        >>> params = init_policy(jax.random.key(0), hiddens=(8,))
        >>> step_fn = make_maml_pg_step(optimizer, episodes=2, horizon=4)
        >>> goals, key = jnp.zeros((3, 2)), jax.random.key(1)
        >>> params, state, metrics = step_fn(params, optimizer.init(params), goals, key)
        >>> metrics.loss.shape
        ()
    """

    def task_loss(params, goal, key):
        train_key, valid_key = jax.random.split(key)
        train = rollout(params, goal, train_key, episodes, horizon)
        grads = jax.grad(dice_loss)(params, train, gamma)
        adapted = jax.tree_util.tree_map(lambda p, g: p - inner_lr * g, params, grads)
        valid = rollout(adapted, goal, valid_key, episodes, horizon)
        mean_return = lambda e: e.rewards.sum(0).mean()  # noqa: E731
        return dice_loss(adapted, valid, gamma), (mean_return(train), mean_return(valid))

    def meta_loss(params, goals, key):
        losses, (pre, post) = jax.vmap(task_loss, in_axes=(None, 0, 0))(
            params, goals, jax.random.split(key, goals.shape[0])
        )
        return losses.mean(), MetaStepMetrics(losses.mean(), pre.mean(), post.mean())

    @jax.jit
    def step_fn(params, opt_state, goals, key):
        if on_trace is not None:
            on_trace()  # runs at trace time only: counts compilations
        grads, metrics = jax.grad(meta_loss, has_aux=True)(params, goals, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
        return params, opt_state, metrics

    return step_fn
