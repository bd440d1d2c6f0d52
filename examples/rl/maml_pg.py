"""MAML with a policy-gradient (A2C) meta-update and Adam (Finn, Abbeel and Levine, ICML 2017), torch or jax.

Defaults follow the MAML paper's 2D navigation (Sec. 5.3, Appendix A.2): goals uniform in
``[-0.5, 0.5]^2``, horizon 100, 20 trajectories per task, 20 tasks per meta-batch, one DiCE
policy-gradient adaptation step of size 0.1, a Gaussian policy with two hidden layers of 100 ReLU units,
the linear feature baseline, discount 0.99 and GAE lambda 1, 500 meta-iterations. Not the paper's: the
meta-optimiser is Adam (learning rate 1e-3) on the advantage-weighted post-adaptation loss, differentiated
through the adaptation step, instead of TRPO (``maml_trpo.py`` has TRPO).

    python examples/rl/maml_pg.py                                      # Particles2D-v1
    python examples/rl/maml_pg.py --backend jax                        # compiled, the jax Particles2D
    python examples/rl/maml_pg.py --quick                              # seconds

On ``--backend jax`` the same iteration runs as compiled programs on the environment's functional twin:
``l2l_multi.backends.jax.rl.collect_adapted_batch`` for the rollouts, then ``a2c_meta_update`` with
``optax.adam`` (torch: ``meta_a2c_step`` with ``torch.optim.Adam``; the two agree to 1e-10 in float64,
tests/test_rl_crosscheck_methods.py). The pure-jax single-program variant of this method, with
normalised rewards-to-go instead of the baseline, is the library's
``l2l_multi.backends.jax.gym.make_maml_pg_step``.

Command line, metrics and results folder: as ``maml_trpo.py``'s; the driver they share is ``_driver.py``.
"""

from __future__ import annotations

import _driver

DEFAULTS = {
    "name": "maml_pg",
    "method": "MAML-PG",
    "paper_source": "Finn, Abbeel and Levine 2017, Sec. 5.3 and Appendix A.2 (2D navigation); Adam is ours",
    "hiddens": [100, 100],
    "episodes": 20,
    "meta_batch": 20,
    "inner_lr": 0.1,
    "gamma": 0.99,
    "tau": 1.0,
    "iterations": 500,
    "meta_lr": 1e-3,
}


def add_arguments(parser) -> None:
    parser.add_argument("--meta-lr", type=float, help="Adam learning rate of the meta-update")


def make_learner(policy, args):
    from l2l_multi.backends.torch.algorithms import MAML

    return MAML(policy, lr=args.inner_lr)


def make_optimizer(learner, args):
    import torch

    return torch.optim.Adam(learner.parameters(), lr=args.meta_lr)


def meta_update(learner, batches, optimizer, args) -> dict:
    from l2l_multi.backends.torch import rl

    return rl.meta_a2c_step(learner, batches, optimizer)


def make_a2c_jax_update(env, args, metasgd: bool):
    """The A2C meta-update on the jax backend, for MAML (``metasgd=False``: the state is the policy and
    its Adam state) or Meta-SGD (the policy with its learned rates, and their Adam state): a compiled
    collection that adapts as the learner does, then ``a2c_meta_update`` with ``optax.adam``."""
    import jax
    import jax.numpy as jnp
    import optax
    from _jax_driver import JaxMethod
    from l2l_multi.backends.jax import rl

    if getattr(args, "adapt_steps", 1) != 1:
        raise SystemExit(f"--adapt-steps {args.adapt_steps}: the A2C meta-update adapts once")
    optimizer = optax.adam(args.meta_lr)
    lr = None if metasgd else args.inner_lr  # Meta-SGD's rates live in its meta-parameters

    @jax.jit
    def collect(meta, key):
        task_key, rollout_key = jax.random.split(key)
        tasks = env.sample_tasks(task_key, args.meta_batch)
        baseline = rl.LinearValue(env.observation_size)
        return rl.collect_adapted_batch(
            env, meta, baseline, tasks, rollout_key, lr, args.episodes, args.horizon, args.gamma, args.tau
        )

    def init(policy):
        meta = rl.metasgd_parameters(policy, args.inner_lr) if metasgd else policy
        return meta, optimizer.init(meta)

    def step(state, key):
        meta, opt_state = state
        batches, pre, post = collect(meta, key)
        meta, opt_state, stats = rl.a2c_meta_update(meta, batches, optimizer, opt_state, lr)
        row = {"pre_return": pre, "post_return": post, "loss": stats["loss"]}
        if metasgd:  # the torch script's column
            rates = jax.tree_util.tree_leaves(meta["lrs"])
            row["mean_abs_inner_lr"] = sum(jnp.abs(r).sum() for r in rates) / sum(r.size for r in rates)
        row["env_steps"] = batches.train.masks.sum() + batches.valid.masks.sum()
        return (meta, opt_state), row

    return JaxMethod(init=init, step=step)


def make_jax_update(env, args):
    return make_a2c_jax_update(env, args, metasgd=False)


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
