"""MAML-TRPO meta-reinforcement learning (Finn, Abbeel and Levine, ICML 2017), torch or jax backend.

Defaults are the paper's 2D-navigation settings (Sec. 5.3 and Appendix A.2): a Gaussian policy with two
hidden layers of 100 ReLU units, one vanilla policy-gradient adaptation step with step size 0.1 on 20
trajectories per task, 20 tasks per meta-batch, horizon 100, the linear feature baseline, and TRPO as
the meta-optimiser with a trust region of 0.01 (mean KL). The paper trains for up to 500
meta-iterations; discount 0.99 and GAE lambda 1 are rllab's defaults used by the MAML code. (The
authors' released point-mass script, ``maml_trpo_point.py``, instead uses an adaptation step of 0.5,
40 tasks and 100 iterations; its locomotion scripts use horizon 200 and 40 or 80 tasks.) This
implementation's inner step is DiCE by default, so the meta-gradient includes the score-function term
that the paper's code dropped; ``--inner-loss plain`` takes that code's loss instead.

Metrics are measured on the batch each iteration samples before its update, on freshly drawn tasks:
``pre_return`` is the mean undiscounted return of the meta-policy, ``post_return`` that of the
policy after its adaptation steps (``--adapt-steps``, learn2learn's ``adapt_steps``; 1 by default), each
on episodes of the policy adapted by the steps before it.

    python examples/rl/maml_trpo.py                                   # Particles2D-v1, paper settings
    python examples/rl/maml_trpo.py --env HalfCheetahForwardBackward-v1 --meta-batch 40 --workers 8
    python examples/rl/maml_trpo.py --quick                           # seconds
    python examples/rl/maml_trpo.py --out results/run --resume --iterations 800
    python examples/rl/maml_trpo.py --backend jax --env HalfCheetahForwardBackward-v1   # MJX, compiled

learn2learn's HalfCheetah forward/backward setting (its lr 0.1 and max KL 0.01 in this script's
summed-over-dimensions convention, its control cost and inner loss; 242.5 +- 20.2 after adaptation
over 3 seeds here, its figure about 250-270: benchmarks/REPRODUCTIONS.md)::

    python examples/rl/maml_trpo.py --env HalfCheetahForwardBackward-v1 --horizon 100 --gamma 0.95 \
        --inner-lr 0.016666666666666666 --max-kl 0.06 --env-kwargs '{"ctrl_cost_weight": 0.05}' \
        --inner-loss plain --iterations 300 --seed 0

``--backend jax`` runs the environment's functional twin (``_jax_driver.JAX_ENVS``: the pure-jax
Particles2D, the MJX HalfCheetah and Ant meta-envs) and
``l2l_multi.backends.jax.rl.make_maml_trpo_step``: rollouts of every task, adaptation and the TRPO
step as compiled programs, vmapped over tasks; the same flags, columns and results folder.

This script states the method: its settings (``DEFAULTS``), flags and meta-update on each backend
(:func:`meta_update`, :func:`make_jax_update`). The command line, the results folder and the training
loops are the driver's (``_driver.py``, with ``_torch_driver.py`` and ``_jax_driver.py``), shared with
``promp.py``, ``metasgd_a2c.py`` and ``maml_pg.py``.
"""

from __future__ import annotations

import argparse
from typing import Any

import _driver

DEFAULTS = {
    "name": "maml_trpo",
    "method": "MAML-TRPO",
    "paper_source": "Finn, Abbeel and Levine 2017, Sec. 5.3 and Appendix A.2 (2D navigation)",
    "hiddens": [100, 100],
    "episodes": 20,
    "meta_batch": 20,
    "inner_lr": 0.1,
    "gamma": 0.99,
    "tau": 1.0,
    "iterations": 500,
    "max_kl": 0.01,
    "cg_iterations": 10,
    "cg_damping": 1e-5,
    "line_search_steps": 15,
}


# -- the method ------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--max-kl", type=float, help="TRPO trust region (mean KL of the adapted policies)")
    add("--cg-iterations", type=int, help="conjugate-gradient iterations for the natural gradient")
    add("--cg-damping", type=float, help="damping added to the KL Hessian")
    add("--line-search-steps", type=int, help="backtracking halvings tried before rejecting the step")
    add("--adapt-steps", type=int, default=1, help="adaptation steps per task (learn2learn's adapt_steps)")
    add(
        "--inner-loss",
        choices=("dice", "plain"),
        default="dice",
        help="adaptation loss: dice (unbiased meta-gradient) or plain, -(log-prob * advantage), the original "
        "MAML code's and learn2learn's, whose meta-gradient lacks the score-function term",
    )


def make_learner(policy, args):
    from l2l_multi.backends.torch.algorithms import MAML

    return MAML(policy, lr=args.inner_lr)


def meta_update(learner, batches, optimizer, args) -> dict[str, Any]:
    from l2l_multi.backends.torch import rl

    stats = rl.maml_trpo_step(
        learner,
        batches,
        max_kl=args.max_kl,
        cg_iterations=args.cg_iterations,
        cg_damping=args.cg_damping,
        line_search_steps=args.line_search_steps,
        inner_loss=getattr(args, "inner_loss", "dice"),
    )
    return {
        "loss_before": stats["loss_before"],
        "loss_after": stats["loss_after"],
        "kl": stats["kl"],
        "accepted": int(stats["accepted"]),
    }


def make_jax_update(env, args):
    """MAML-TRPO on the jax backend: ``l2l_multi.backends.jax.rl.make_maml_trpo_step`` with this run's
    settings (collection and TRPO update, two compiled programs); the state is the policy itself."""
    from _jax_driver import JaxMethod
    from l2l_multi.backends.jax import rl

    maml_trpo_step = rl.make_maml_trpo_step(
        env,
        meta_batch=args.meta_batch,
        episodes=args.episodes,
        horizon=args.horizon,
        lr=args.inner_lr,
        adapt_steps=getattr(args, "adapt_steps", 1),
        gamma=args.gamma,
        tau=args.tau,
        max_kl=args.max_kl,
        cg_iterations=args.cg_iterations,
        cg_damping=args.cg_damping,
        line_search_steps=args.line_search_steps,
        inner_loss=getattr(args, "inner_loss", "dice"),
    )

    def step(policy, key):
        policy, metrics = maml_trpo_step(policy, key)
        return policy, metrics._asdict()  # loss_before, loss_after, kl, accepted: the torch columns' order

    return JaxMethod(init=lambda policy: policy, step=step)


if __name__ == "__main__":
    _driver.main(
        DEFAULTS,
        __doc__.splitlines()[0],
        add_method_arguments=add_arguments,
        make_method_learner=make_learner,
        method_update=meta_update,
        make_jax_update=make_jax_update,
    )
