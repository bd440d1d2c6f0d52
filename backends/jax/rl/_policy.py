"""Gaussian MLP policy, linear feature baseline and return/advantage estimators for meta-RL on jax.

The twins of ``l2l_multi.backends.torch.rl``'s ``DiagNormalPolicy``, ``LinearValue``, ``discounted_returns``
and ``generalized_advantages``: the same constructor arguments, the same formulas, as pytrees (policy and
baseline) that pass through ``jit``/``vmap``/``grad``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ...._policy_init import check_policy_init

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class DiagNormal(NamedTuple):
    """A diagonal Gaussian over actions: ``mean [..., act]`` and ``stddev [..., act]`` (same dtype).

    Example:
        >>> import jax.numpy as jnp
        >>> dist = DiagNormal(jnp.zeros((3, 2)), jnp.ones((3, 2)))
        >>> dist.log_prob(jnp.zeros((3, 2))).shape
        (3,)
    """

    mean: jax.Array
    stddev: jax.Array

    def log_prob(self, actions: jax.Array) -> jax.Array:
        """Log-density of ``actions [..., act]``, summed over the action coordinates: ``[...]``."""
        z = (actions - self.mean) / self.stddev
        return jnp.sum(-0.5 * z**2 - jnp.log(self.stddev) - _LOG_SQRT_2PI, axis=-1)

    def sample(self, key: jax.Array) -> jax.Array:
        """``mean + stddev * noise`` with standard normal noise from ``key``: ``[..., act]``."""
        return self.mean + self.stddev * jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def kl_divergence(self, other: DiagNormal) -> jax.Array:
        """``KL(self || other)`` summed over the action coordinates, ``[...]`` (torch's closed form)."""
        variance_ratio = (self.stddev / other.stddev) ** 2
        mean_term = ((self.mean - other.mean) / other.stddev) ** 2
        return jnp.sum(0.5 * (variance_ratio + mean_term - 1 - jnp.log(variance_ratio)), axis=-1)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_layers(key, sizes, dtype, init="torch"):
    # one compiled program per architecture (eagerly, every random draw would compile on its own)
    layers = []
    for layer_key, fan_in, fan_out in zip(jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:]):
        weight_key, bias_key = jax.random.split(layer_key)
        if init == "xavier":  # Glorot-uniform weights, zero biases
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            bias = jnp.zeros((fan_out,), dtype)
        else:  # torch.nn.Linear's
            bound = 1.0 / math.sqrt(fan_in)
            bias = jax.random.uniform(bias_key, (fan_out,), dtype, -bound, bound)
        layers.append((jax.random.uniform(weight_key, (fan_in, fan_out), dtype, -bound, bound), bias))
    return tuple(layers)


@jax.tree_util.register_pytree_node_class
class DiagNormalPolicy:
    """Gaussian policy with a diagonal covariance: an MLP gives the mean, a learned vector the log-std.

    Args:
        input_size: observation size (int).
        output_size: action size (int).
        hiddens: hidden layer widths (tuple of ints); ReLU between layers.
        init_std: initial standard deviation of every action coordinate (float > 0).
        init: the layers' initial weights (``l2l_multi._policy_init.POLICY_INITS``): "torch" (weights and
            biases uniform in ``+-1/sqrt(fan_in)``, like ``torch.nn.Linear``'s) or "xavier" (Glorot-uniform
            weights in ``+-sqrt(6 / (fan_in + fan_out))``, zero biases: learn2learn's
            ``examples/rl/policies.py``).
        key: PRNG key for the weights (keyword; torch's twin draws from torch's global generator).
        dtype: parameter dtype (float32 by default).

    A pytree: its leaves are ``layers`` (a tuple of ``(weight [in, out], bias [out])``) and ``log_std``
    ``[output_size]``, so it is differentiated, vmapped and jitted as a whole. Calling it on observations
    ``[..., input_size]`` returns a :class:`DiagNormal` whose ``log_prob(actions [..., output_size])`` is
    ``[...]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(8,), key=jax.random.key(0))
        >>> dist = policy(jnp.zeros((5, 2)))
        >>> dist.sample(jax.random.key(1)).shape, dist.log_prob(jnp.zeros((5, 2))).shape
        ((5, 2), (5,))
    """

    def __init__(
        self,
        input_size,
        output_size,
        hiddens=(100, 100),
        init_std=1.0,
        init="torch",
        *,
        key,
        dtype=jnp.float32,
    ):
        if not init_std > 0:
            raise ValueError(f"init_std={init_std!r} must be > 0")
        check_policy_init(init)
        sizes = (int(input_size), *map(int, hiddens), int(output_size))
        if min(sizes) < 1:
            raise ValueError(f"input_size, hiddens and output_size must be positive ints, got sizes {sizes}")
        self.layers = _init_layers(key, sizes, jnp.dtype(dtype), init)
        self.log_std = jnp.full((int(output_size),), math.log(init_std), dtype)

    @classmethod
    def from_parameters(cls, layers, log_std) -> DiagNormalPolicy:
        """A policy with the given ``layers`` (sequence of ``(weight [in, out], bias [out])``) and
        ``log_std [act]``, e.g. a torch policy's weights transposed.

        Example:
            >>> import jax.numpy as jnp
            >>> policy = DiagNormalPolicy.from_parameters([(jnp.eye(2), jnp.zeros(2))], jnp.zeros(2))
            >>> policy(jnp.ones((1, 2))).mean.tolist()
            [[1.0, 1.0]]
        """
        layers = tuple((jnp.asarray(weight), jnp.asarray(bias)) for weight, bias in layers)
        return cls.tree_unflatten(None, (layers, jnp.asarray(log_std)))

    def tree_flatten(self):
        return (self.layers, self.log_std), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        # jax unflattens with placeholder leaves too: store them as given
        policy = object.__new__(cls)
        policy.layers, policy.log_std = tuple(tuple(layer) for layer in children[0]), children[1]
        return policy

    def __call__(self, observations: jax.Array) -> DiagNormal:
        hidden = observations
        for index, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight + bias
            if index < len(self.layers) - 1:
                hidden = jax.nn.relu(hidden)
        return DiagNormal(hidden, jnp.broadcast_to(jnp.exp(self.log_std), hidden.shape))


@jax.tree_util.register_pytree_node_class
class LinearValue:
    """Linear feature baseline (Duan et al. 2016) fitted by ridge-regularised least squares.

    Features of an observation ``o`` at step ``t``: ``[o, o**2, t/100, (t/100)**2, (t/100)**3, 1]``.

    Args:
        input_size: observation size (int).
        reg: initial ridge coefficient; multiplied by 10 (up to 4 times) while the solve is not finite.

    Unlike the torch twin, which fits in place, :meth:`fit` returns the fitted baseline (jax arrays are
    immutable); calling it on time-major observations ``[T, N, input_size]`` gives values ``[T, N]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> observations = jax.random.normal(jax.random.key(0), (10, 3, 2))
        >>> baseline = LinearValue(2).fit(observations, jnp.ones((10, 3)), jnp.ones((10, 3)))
        >>> baseline(observations).shape
        (10, 3)
    """

    def __init__(self, input_size, reg=1e-5, weight=None):
        if not reg > 0:
            raise ValueError(f"reg={reg!r} must be > 0")
        self.input_size, self.reg = int(input_size), float(reg)
        self.weight = jnp.zeros(2 * self.input_size + 4) if weight is None else weight

    def tree_flatten(self):
        return (self.weight,), (self.input_size, self.reg)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*aux, weight=children[0])

    @staticmethod
    def _features(observations):
        steps = observations.shape[0]
        time = jnp.arange(steps, dtype=observations.dtype) / 100.0
        time = time.reshape(steps, *([1] * (observations.ndim - 1)))
        time = jnp.broadcast_to(time, (*observations.shape[:-1], 1))
        powers = [observations, observations**2, time, time**2, time**3, jnp.ones_like(time)]
        return jnp.concatenate(powers, axis=-1)

    @jax.jit
    def fit(self, observations: jax.Array, returns: jax.Array, masks: jax.Array | None = None) -> LinearValue:
        """The baseline fitted to ``returns [T, N]`` on the features of ``observations [T, N, input_size]``;
        steps with ``masks [T, N] == 0`` are ignored."""
        size = 2 * self.input_size + 4
        features = self._features(observations).reshape(-1, size)
        targets = returns.reshape(-1)
        if masks is not None:
            keep = masks.reshape(-1).astype(features.dtype)
            features, targets = features * keep[:, None], targets * keep
        gram, moment = features.T @ features, features.T @ targets
        eye = jnp.eye(size, dtype=gram.dtype)

        # Raise the ridge until the system solves (the MAML-RL code's rule: at most 5 tries). One solve in a
        # loop that starts from a non-finite placeholder: a single call site to compile.
        def unsolved(carry):
            tries, weight = carry
            return (tries < 5) & ~jnp.all(jnp.isfinite(weight))

        def solve(carry):
            tries, _ = carry
            return tries + 1, jnp.linalg.solve(gram + self.reg * 10.0**tries * eye, moment)

        start = (0, jnp.full_like(moment, jnp.nan))
        weight = jax.lax.while_loop(unsolved, solve, start)[1]
        return LinearValue(self.input_size, self.reg, weight.astype(self.weight.dtype))

    def __call__(self, observations: jax.Array) -> jax.Array:
        return self._features(observations) @ self.weight.astype(observations.dtype)


def discounted_returns(rewards: jax.Array, masks: jax.Array, gamma: float) -> jax.Array:
    """Reward-to-go ``R_t = r_t + gamma * R_{t+1}`` per episode, zero after an episode ends.

    Args:
        rewards: ``[T, N]`` float array (time-major, one column per episode).
        masks: ``[T, N]`` float array, 1 while the episode runs and 0 after it ended.
        gamma: discount factor in [0, 1].

    Returns:
        ``[T, N]`` array of the rewards' dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> discounted_returns(jnp.ones((3, 1)), jnp.ones((3, 1)), 0.5).ravel().tolist()
        [1.75, 1.5, 1.0]
    """

    def back(running, inputs):
        reward, mask = inputs
        running = (reward + gamma * running) * mask
        return running, running

    _, returns = jax.lax.scan(back, jnp.zeros_like(rewards[0]), (rewards, masks), reverse=True)
    return returns


def generalized_advantages(rewards, values, masks, gamma: float, tau: float) -> jax.Array:
    """Generalized advantage estimation (Schulman et al. 2016) with a zero value after the last step.

    Args:
        rewards: ``[T, N]`` float array.
        values: ``[T, N]`` float array, the baseline's values.
        masks: ``[T, N]`` float array (as in :func:`discounted_returns`).
        gamma: discount factor in [0, 1].
        tau: GAE lambda in [0, 1].

    Returns:
        ``[T, N]`` advantages, zero where ``masks`` is zero.

    Example:
        >>> import jax.numpy as jnp
        >>> ones, zeros = jnp.ones((2, 1)), jnp.zeros((2, 1))
        >>> generalized_advantages(ones, zeros, ones, 1.0, 1.0).ravel().tolist()
        [2.0, 1.0]
    """

    def back(carry, inputs):
        running, next_value = carry
        reward, value, mask = inputs
        delta = reward + gamma * next_value - value
        running = (delta + gamma * tau * running) * mask
        # the step before an episode's end must not bootstrap from a value past that end
        return (running, value * mask), running

    zeros = jnp.zeros_like(rewards[0])
    _, advantages = jax.lax.scan(back, (zeros, zeros), (rewards, values, masks), reverse=True)
    return advantages
