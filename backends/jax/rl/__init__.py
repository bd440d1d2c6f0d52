"""Meta-reinforcement learning on the jax backend: Gaussian policy, linear baseline, episodes of functional
meta-environments, MAML-TRPO compiled whole (rollouts, adaptation, TRPO step), and the ProMP and MAML /
Meta-SGD A2C meta-updates, all vmapped over tasks.

Names shared with ``l2l_multi.backends.torch.rl`` (``DiagNormalPolicy``, ``LinearValue``, ``Episodes``,
``TaskBatch``, ``discounted_returns``, ``generalized_advantages``, ``dice_policy_loss``,
``plain_policy_loss``, ``episode_advantages``, ``conjugate_gradient``, ``lvc_policy_loss``) compute the same
thing from the same arguments; the functional pieces that replace the torch side's stateful ones
(``adapt_policy(maml, ...)``, ``maml_trpo_step(maml, ...)``, ``promp_step(maml, ...)``,
``meta_a2c_step(learner, ...)``) have their own names: ``adapted_policy``, ``trpo_meta_update``,
``promp_meta_update``, ``a2c_meta_update`` (these take the meta-parameters and an optax optimizer state and
return the new ones)."""

from ._a2c import a2c_meta_loss as a2c_meta_loss
from ._a2c import a2c_meta_update as a2c_meta_update
from ._a2c import collect_adapted_batch as collect_adapted_batch
from ._a2c import metasgd_parameters as metasgd_parameters
from ._episodes import Episodes as Episodes
from ._episodes import rollout_episodes as rollout_episodes
from ._losses import dice_policy_loss as dice_policy_loss
from ._losses import plain_policy_loss as plain_policy_loss
from ._maml_trpo import TaskBatch as TaskBatch
from ._maml_trpo import adapted_policy as adapted_policy
from ._maml_trpo import conjugate_gradient as conjugate_gradient
from ._maml_trpo import episode_advantages as episode_advantages
from ._maml_trpo import surrogate_and_kl as surrogate_and_kl
from ._maml_trpo import trpo_meta_update as trpo_meta_update
from ._meta_step import MamlTrpoMetrics as MamlTrpoMetrics
from ._meta_step import collect_task_batch as collect_task_batch
from ._meta_step import make_maml_trpo_step as make_maml_trpo_step
from ._policy import DiagNormal as DiagNormal
from ._policy import DiagNormalPolicy as DiagNormalPolicy
from ._policy import LinearValue as LinearValue
from ._policy import discounted_returns as discounted_returns
from ._policy import generalized_advantages as generalized_advantages
from ._promp import lvc_policy_loss as lvc_policy_loss
from ._promp import promp_meta_update as promp_meta_update
from ._promp import promp_objective as promp_objective
from ._promp import sampling_distributions as sampling_distributions

__all__ = [
    "DiagNormal",
    "DiagNormalPolicy",
    "Episodes",
    "LinearValue",
    "MamlTrpoMetrics",
    "TaskBatch",
    "a2c_meta_loss",
    "a2c_meta_update",
    "adapted_policy",
    "collect_adapted_batch",
    "collect_task_batch",
    "conjugate_gradient",
    "dice_policy_loss",
    "discounted_returns",
    "episode_advantages",
    "generalized_advantages",
    "lvc_policy_loss",
    "make_maml_trpo_step",
    "metasgd_parameters",
    "plain_policy_loss",
    "promp_meta_update",
    "promp_objective",
    "rollout_episodes",
    "sampling_distributions",
    "surrogate_and_kl",
    "trpo_meta_update",
]
