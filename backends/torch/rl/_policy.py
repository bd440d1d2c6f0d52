"""Policies, a linear feature baseline and return/advantage estimators for meta-RL on torch."""

from __future__ import annotations

import math

import torch

from ...._policy_init import check_policy_init


class DiagNormalPolicy(torch.nn.Module):
    """Gaussian policy with a diagonal covariance: an MLP gives the mean, a learned vector the log-std.

    Args:
        input_size: observation size (int).
        output_size: action size (int).
        hiddens: hidden layer widths (tuple of ints); ReLU between layers, as in the MAML-RL code.
        init_std: initial standard deviation of every action coordinate (float > 0).
        init: the layers' initial weights (``l2l_multi._policy_init.POLICY_INITS``): "torch"
            (``torch.nn.Linear``'s: weights and biases uniform in ``+-1/sqrt(fan_in)``) or "xavier"
            (Glorot-uniform weights in ``+-sqrt(6 / (fan_in + fan_out))``, zero biases: learn2learn's
            ``examples/rl/policies.py`` and the MAML-RL code). The jax twin takes the same values.

    Calling the policy on a float tensor ``[..., input_size]`` returns a
    ``torch.distributions.Independent(Normal)`` whose ``log_prob(actions [..., output_size])`` is ``[...]``.

    Example:
        >>> import torch
        >>> policy = DiagNormalPolicy(2, 2, hiddens=(8,))
        >>> dist = policy(torch.zeros(5, 2))
        >>> dist.sample().shape, dist.log_prob(torch.zeros(5, 2)).shape
        (torch.Size([5, 2]), torch.Size([5]))
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        hiddens=(100, 100),
        init_std: float = 1.0,
        init: str = "torch",
    ):
        super().__init__()
        if not init_std > 0:
            raise ValueError(f"init_std={init_std!r} must be > 0")
        check_policy_init(init)
        sizes = (int(input_size), *map(int, hiddens), int(output_size))
        layers = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(fan_in, fan_out))
            if init == "xavier":
                torch.nn.init.xavier_uniform_(layers[-1].weight)
                torch.nn.init.zeros_(layers[-1].bias)
            if index < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.mean = torch.nn.Sequential(*layers)
        self.log_std = torch.nn.Parameter(torch.full((int(output_size),), math.log(init_std)))

    def forward(self, observations: torch.Tensor) -> torch.distributions.Distribution:
        mean = self.mean(observations)
        std = self.log_std.exp().expand_as(mean)
        return torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)


class LinearValue(torch.nn.Module):
    """Linear feature baseline of the MAML-RL code (Duan et al. 2016), fitted by regularised least squares.

    Features of an observation ``o`` at step ``t`` of its episode:
    ``[o, o**2, t/100, (t/100)**2, (t/100)**3, 1]``.

    Args:
        input_size: observation size (int).
        reg: initial ridge coefficient; multiplied by 10 until the normal equations solve (float > 0).

    Call it on observations ``[T, N, input_size]`` (time-major) to get values ``[T, N]``.

    Example:
        >>> import torch
        >>> baseline = LinearValue(2)
        >>> observations, returns = torch.randn(10, 3, 2), torch.randn(10, 3)
        >>> baseline.fit(observations, returns, torch.ones(10, 3))
        >>> baseline(observations).shape
        torch.Size([10, 3])
    """

    def __init__(self, input_size: int, reg: float = 1e-5):
        super().__init__()
        if not reg > 0:
            raise ValueError(f"reg={reg!r} must be > 0")
        self.reg = float(reg)
        self.register_buffer("weight", torch.zeros(2 * int(input_size) + 4))

    def _features(self, observations: torch.Tensor) -> torch.Tensor:
        steps = observations.shape[0]
        time = torch.arange(steps, dtype=observations.dtype, device=observations.device) / 100.0
        time = time.view(steps, *([1] * (observations.dim() - 1))).expand(*observations.shape[:-1], 1)
        ones = torch.ones_like(time)
        return torch.cat([observations, observations**2, time, time**2, time**3, ones], dim=-1)

    @torch.no_grad()
    def fit(
        self, observations: torch.Tensor, returns: torch.Tensor, masks: torch.Tensor | None = None
    ) -> None:
        """Least-squares fit of ``returns [T, N]`` on the features of ``observations [T, N, input_size]``;
        steps with ``masks [T, N] == 0`` (after an episode ended) are ignored."""
        features = self._features(observations).reshape(-1, self.weight.numel()).double()
        targets = returns.reshape(-1).double()
        if masks is not None:
            keep = masks.reshape(-1).double()
            features, targets = features * keep[:, None], targets * keep
        gram, moment = features.T @ features, features.T @ targets
        eye = torch.eye(gram.shape[0], dtype=gram.dtype)
        reg = self.reg
        # As in the MAML-RL code: raise the ridge until the system is well posed instead of failing.
        for _ in range(5):
            solution = torch.linalg.lstsq(gram + reg * eye, moment[:, None]).solution[:, 0]
            if torch.isfinite(solution).all():
                break
            reg *= 10
        self.weight.copy_(solution.to(self.weight.dtype))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self._features(observations) @ self.weight.to(observations.dtype)


def discounted_returns(rewards: torch.Tensor, masks: torch.Tensor, gamma: float) -> torch.Tensor:
    """Reward-to-go ``R_t = r_t + gamma * R_{t+1}`` per episode, zero after an episode ends.

    Args:
        rewards: ``[T, N]`` float tensor (time-major, one column per episode).
        masks: ``[T, N]`` float tensor, 1 while the episode runs and 0 after it ended.
        gamma: discount factor in [0, 1].

    Returns:
        ``[T, N]`` tensor of the rewards' dtype.

    Example:
        >>> import torch
        >>> discounted_returns(torch.ones(3, 1), torch.ones(3, 1), 0.5).flatten().tolist()
        [1.75, 1.5, 1.0]
    """
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for step in reversed(range(rewards.shape[0])):
        running = (rewards[step] + gamma * running) * masks[step]
        returns[step] = running
    return returns


def generalized_advantages(
    rewards: torch.Tensor, values: torch.Tensor, masks: torch.Tensor, gamma: float, tau: float
) -> torch.Tensor:
    """Generalized advantage estimation (Schulman et al. 2016) with a zero value after the last step.

    Args:
        rewards, values, masks: ``[T, N]`` float tensors (masks as in :func:`discounted_returns`).
        gamma: discount factor; tau: GAE lambda, both in [0, 1].

    Returns:
        ``[T, N]`` advantages, zero where ``masks`` is zero.

    Example:
        >>> import torch
        >>> ones, zeros = torch.ones(2, 1), torch.zeros(2, 1)
        >>> generalized_advantages(ones, zeros, ones, 1.0, 1.0).flatten().tolist()
        [2.0, 1.0]
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    next_value = torch.zeros_like(rewards[0])
    for step in reversed(range(rewards.shape[0])):
        delta = rewards[step] + gamma * next_value - values[step]
        running = (delta + gamma * tau * running) * masks[step]
        advantages[step] = running
        # The step before an episode's end must not bootstrap from a value past that end.
        next_value = values[step] * masks[step]
    return advantages
