"""Meta-SGD (Li, Zhou, Chen and Li, 2017) with an advantage actor-critic objective, torch or jax.

Meta-SGD meta-learns, with the initial parameters, one inner learning rate per parameter element. Its
reinforcement-learning experiment (Sec. 4.3) reuses MAML's 2D-navigation setup, which gives this
script's defaults: a Gaussian policy with two hidden layers of 100 ReLU units, one adaptation step on
20 trajectories per task, 20 tasks per meta-batch, horizon 100, the linear feature baseline; the inner
learning rates start at MAML's step size 0.1.

Not the paper's: its meta-optimiser was a policy-gradient method in MAML's style, while the library's
``meta_a2c_step`` takes a torch optimizer: this script uses Adam with learning rate 3e-3 (the value the
library's own Particles2D test converges with) on the advantage-weighted (A2C) post-adaptation loss,
with the linear baseline as the critic; discount 0.99 and GAE lambda 1 as in the MAML code;
500 iterations.

    python examples/rl/metasgd_a2c.py                                  # Particles2D-v1
    python examples/rl/metasgd_a2c.py --env AntDirection-v1 --workers 8
    python examples/rl/metasgd_a2c.py --quick                          # seconds
    python examples/rl/metasgd_a2c.py --backend jax --quick            # compiled, the jax Particles2D

On ``--backend jax`` the same iteration runs as compiled programs on the environment's functional twin:
``l2l_multi.backends.jax.rl.collect_adapted_batch`` (adapting with the learned rates), then
``a2c_meta_update`` on ``metasgd_parameters`` (the policy and its rates) with ``optax.adam``.

Command line, metrics and results folder: as ``maml_trpo.py``'s; the driver they share is ``_driver.py``.
"""

from __future__ import annotations

import _driver

DEFAULTS = {
    "name": "metasgd_a2c",
    "method": "Meta-SGD-A2C",
    "paper_source": "Li et al. 2017, Sec. 4.3 (MAML's 2D-navigation setup); Adam meta-optimiser is ours",
    "hiddens": [100, 100],
    "episodes": 20,
    "meta_batch": 20,
    "inner_lr": 0.1,
    "gamma": 0.99,
    "tau": 1.0,
    "iterations": 500,
    "meta_lr": 3e-3,
}


def add_arguments(parser) -> None:
    parser.add_argument("--meta-lr", type=float, help="Adam learning rate (initial parameters and rates)")


def make_learner(policy, args):
    from l2l_multi.backends.torch.algorithms import MetaSGD

    return MetaSGD(policy, lr=args.inner_lr)


def make_optimizer(learner, args):
    import torch

    return torch.optim.Adam(learner.parameters(), lr=args.meta_lr)


def meta_update(learner, batches, optimizer, args) -> dict:
    from l2l_multi.backends.torch import rl

    stats = rl.meta_a2c_step(learner, batches, optimizer)
    total = sum(rate.detach().abs().sum().item() for rate in learner.lrs)
    count = sum(rate.numel() for rate in learner.lrs)
    return {"loss": stats["loss"], "mean_abs_inner_lr": total / count}


def make_jax_update(env, args):
    from maml_pg import make_a2c_jax_update

    return make_a2c_jax_update(env, args, metasgd=True)


if __name__ == "__main__":
    _driver.main(
        DEFAULTS,
        __doc__.splitlines()[0],
        add_method_arguments=add_arguments,
        make_method_learner=make_learner,
        method_update=meta_update,
        make_optimizer=make_optimizer,
        make_jax_update=make_jax_update,
    )
