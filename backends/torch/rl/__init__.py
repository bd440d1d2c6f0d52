"""Meta-reinforcement learning on the torch backend: policies, baselines, episodes, MAML-TRPO, ProMP and
Meta-SGD with an A2C objective."""

from ._a2c import meta_a2c_step as meta_a2c_step
from ._episodes import Episodes as Episodes
from ._episodes import collect_episodes as collect_episodes
from ._episodes import set_task as set_task
from ._losses import dice_policy_loss as dice_policy_loss
from ._losses import plain_policy_loss as plain_policy_loss
from ._maml_trpo import TaskBatch as TaskBatch
from ._maml_trpo import adapt_policy as adapt_policy
from ._maml_trpo import conjugate_gradient as conjugate_gradient
from ._maml_trpo import episode_advantages as episode_advantages
from ._maml_trpo import maml_trpo_step as maml_trpo_step
from ._maml_trpo import sample_meta_batch as sample_meta_batch
from ._policy import DiagNormalPolicy as DiagNormalPolicy
from ._policy import LinearValue as LinearValue
from ._policy import discounted_returns as discounted_returns
from ._policy import generalized_advantages as generalized_advantages
from ._promp import lvc_policy_loss as lvc_policy_loss
from ._promp import promp_step as promp_step
