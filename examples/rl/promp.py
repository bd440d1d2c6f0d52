"""ProMP, Proximal Meta-Policy Search (Rothfuss, Lee, Clavera, Asfour and Abbeel, ICLR 2019), torch or jax.

Defaults are the default configuration of the authors' released ProMP code (identical in its
``run_scripts/pro-mp_run_mujoco.py`` and ``pro-mp_run_point_mass.py``): 40 tasks per
meta-batch, 20 trajectories per task, horizon 100, discount 0.99, GAE lambda 1, normalised advantages,
the linear feature baseline, a Gaussian policy with two hidden layers of 64 units and a learned
standard deviation, one adaptation step of size 0.1 on the low-variance-curvature (LVC) objective,
then 5 Adam steps (learning rate 1e-3) per batch on the clipped surrogate (clip 0.3) plus a fixed
inner-KL penalty of 5e-4, for 1001 iterations. Differences: the library's policy has ReLU hidden
units (the ProMP code's default is tanh), and the environments are this library's (Particles2D-v1's
horizon is 100 as in ProMP; the MuJoCo ids use 200 unless ``--horizon 100`` is given).

    python examples/rl/promp.py                                        # Particles2D-v1
    python examples/rl/promp.py --env HalfCheetahForwardBackward-v1 --horizon 100 --workers 8
    python examples/rl/promp.py --quick                                # seconds
    python examples/rl/promp.py --backend jax --quick                  # compiled, the jax Particles2D

On ``--backend jax`` the same iteration runs as compiled programs on the environment's functional twin:
``l2l_multi.backends.jax.rl.collect_adapted_batch`` for the rollouts, then ``promp_meta_update`` (the
torch ``promp_step``'s objective and optimizer steps, with ``optax.adam``).

Command line, metrics and results folder: as ``maml_trpo.py``'s; the driver they share is ``_driver.py``.
"""

from __future__ import annotations

import _driver

DEFAULTS = {
    "name": "promp",
    "method": "ProMP",
    "paper_source": "Rothfuss et al. 2019; settings of the authors' run_scripts/pro-mp_run_*.py",
    "hiddens": [64, 64],
    "episodes": 20,
    "meta_batch": 40,
    "inner_lr": 0.1,
    "gamma": 0.99,
    "tau": 1.0,
    "iterations": 1001,
    "meta_lr": 1e-3,
    "promp_steps": 5,
    "clip": 0.3,
    "inner_kl_coef": 5e-4,
}


def add_arguments(parser) -> None:
    add = parser.add_argument
    add("--meta-lr", type=float, help="Adam learning rate of the meta-update")
    add("--promp-steps", type=int, help="optimizer steps per sampled batch (no re-sampling)")
    add("--clip", type=float, help="PPO clip range of the outer surrogate")
    add("--inner-kl-coef", type=float, help="weight of the KL(pre-adaptation old || new) penalty (fixed)")


def make_learner(policy, args):
    from l2l_multi.backends.torch.algorithms import MAML

    return MAML(policy, lr=args.inner_lr)


def make_optimizer(learner, args):
    import torch

    return torch.optim.Adam(learner.parameters(), lr=args.meta_lr)


def meta_update(learner, batches, optimizer, args) -> dict:
    from l2l_multi.backends.torch import rl

    return rl.promp_step(
        learner, batches, optimizer, epochs=args.promp_steps, clip=args.clip, inner_kl_coef=args.inner_kl_coef
    )


def make_jax_update(env, args):
    """ProMP on the jax backend: compiled collection, then :func:`promp_meta_update` with ``optax.adam``;
    the state is ``(policy, Adam state)``."""
    import jax
    import optax
    from _jax_driver import JaxMethod
    from l2l_multi.backends.jax import rl

    if getattr(args, "adapt_steps", 1) != 1:
        raise SystemExit(f"--adapt-steps {args.adapt_steps}: ProMP adapts once; use --adapt-steps 1")
    optimizer = optax.adam(args.meta_lr)

    @jax.jit
    def collect(policy, key):
        task_key, rollout_key = jax.random.split(key)
        tasks = env.sample_tasks(task_key, args.meta_batch)
        baseline = rl.LinearValue(env.observation_size)
        return rl.collect_adapted_batch(
            env, policy, baseline, tasks, rollout_key, args.inner_lr, args.episodes, args.horizon,
            args.gamma, args.tau,
        )  # fmt: skip

    def step(state, key):
        policy, opt_state = state
        batches, pre, post = collect(policy, key)
        policy, opt_state, stats = rl.promp_meta_update(
            policy,
            batches,
            optimizer,
            opt_state,
            args.inner_lr,
            args.promp_steps,
            args.clip,
            args.inner_kl_coef,
        )
        env_steps = batches.train.masks.sum() + batches.valid.masks.sum()
        # the torch path's column order (a dict out of jit comes back with its keys sorted)
        columns = {name: stats[name] for name in ("loss_before", "loss_after", "inner_kl")}
        row = {"pre_return": pre, "post_return": post, **columns, "env_steps": env_steps}
        return (policy, opt_state), row

    return JaxMethod(init=lambda policy: (policy, optimizer.init(policy)), step=step)


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
