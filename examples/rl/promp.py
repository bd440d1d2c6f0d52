"""ProMP, Proximal Meta-Policy Search (Rothfuss, Lee, Clavera, Asfour and Abbeel, ICLR 2019), torch backend.

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

Command line, metrics and results folder: see ``maml_trpo.py``, whose driver this script uses.
"""

from __future__ import annotations

import maml_trpo

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


if __name__ == "__main__":
    maml_trpo.main(
        DEFAULTS,
        __doc__.splitlines()[0],
        add_method_arguments=add_arguments,
        make_method_learner=make_learner,
        method_update=meta_update,
        make_optimizer=make_optimizer,
    )
