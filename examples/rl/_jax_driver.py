"""The jax path of the meta-RL driver: ``maml_trpo.py --backend jax`` (and any method script that gives
:func:`_driver.main` a ``make_jax_update``).

The environment is the functional twin of the gymnasium id given with ``--env`` (:data:`JAX_ENVS`), so
rollouts, adaptation and the meta-update all run as compiled jax programs, on the accelerator when jax
has one. Flags, metrics columns, results folder, progress bar and Ctrl-C handling are those of the torch
path; every random draw of iteration ``i`` comes from ``fold_in(key(seed), i)``, so a resumed run repeats
an uninterrupted one.

A method script supplies its jax meta-iteration as ``make_jax_update(env, args) -> JaxMethod``: the driver
owns the policy's construction, the keys, the checkpoints and the files; the method owns what it trains
and one iteration of it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

# gymnasium id -> (module, class) of its functional twin on jax
JAX_ENVS = {
    "Particles2D-v1": ("l2l_multi.backends.jax.gym", "Particles2D"),
    "HalfCheetahForwardBackward-v1": ("l2l_multi.backends.jax.mjx_envs", "HalfCheetahForwardBackward"),
    "AntForwardBackward-v1": ("l2l_multi.backends.jax.mjx_envs", "AntForwardBackward"),
    "AntDirection-v1": ("l2l_multi.backends.jax.mjx_envs", "AntDirection"),
}
# stats every method's step reports; the driver derives adaptation_gain and accumulates env_steps
REQUIRED_STATS = ("pre_return", "post_return", "env_steps")


class JaxMethod(NamedTuple):
    """A meta-RL method on the jax backend, as a method script hands it to the driver.

    Fields:
        init: ``(policy) -> state``: from the initial ``l2l_multi.backends.jax.rl.DiagNormalPolicy``, the
            pytree of everything the method trains (the policy itself, optimizer states, learned step
            sizes). Its leaves must be numeric arrays: they are checkpointed one by one.
        step: ``(state, key) -> (state, stats)``: one meta-iteration from a PRNG ``key`` (task sampling,
            rollouts, adaptation, meta-update; compile it). ``stats`` is a dict of 0-d arrays with
            ``pre_return`` and ``post_return`` (mean undiscounted returns before and after adaptation),
            ``env_steps`` (valid environment steps of this iteration) and the method's own numbers, in the
            order of the torch path's ``method_update`` dict (they become ``metrics.csv``'s columns).
    """

    init: Callable[[Any], Any]
    step: Callable[[Any, Any], tuple[Any, dict[str, Any]]]


def functional_env_name(env: str) -> str:
    """The key of :data:`JAX_ENVS` for ``--env`` (``l2l_multi.gym:`` prefix allowed); ``SystemExit``
    listing the allowed ids for any other."""
    name = env.removeprefix("l2l_multi.gym:")
    if name not in JAX_ENVS:
        raise SystemExit(
            f"--env {env} has no jax twin; with --backend jax, --env must be one of: {', '.join(JAX_ENVS)}"
        )
    return name


def make_functional_env(env: str, env_kwargs: dict[str, Any]):
    """The functional meta-environment for ``--env``, made with ``--env-kwargs``; ``SystemExit`` naming
    the flag for an argument its constructor does not take or refuses, or naming the extra when MJX is
    missing."""
    module_name, class_name = JAX_ENVS[functional_env_name(env)]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SystemExit(f"--env {env} with --backend jax: {error}") from None
    try:
        return getattr(module, class_name)(**env_kwargs)
    except (TypeError, ValueError) as error:  # an argument the constructor does not take, or a bad value
        raise SystemExit(
            f"--env-kwargs {json.dumps(env_kwargs)} does not suit --env {env} on jax: {error}"
        ) from None


def device_name() -> str:
    """``jax <version> <platform>: <device kind>`` of the first device (where the programs run)."""
    import jax

    device = jax.devices()[0]
    return f"jax {jax.__version__} {device.platform}: {getattr(device, 'device_kind', device.platform)}"


def _number(value) -> int | float:
    # bools and counts as ints (csv "1", as the torch path writes them), the rest as floats
    value = np.asarray(value)
    return int(value) if value.dtype.kind in "biu" else float(value)


def _restore(live, leaves):
    """``live``'s tree structure with the checkpoint's ``leaves`` (numpy arrays) as jax arrays."""
    import jax
    import jax.numpy as jnp

    structure = jax.tree_util.tree_structure(live)
    if structure.num_leaves != len(leaves):
        raise SystemExit(
            f"resume: the checkpoint holds {len(leaves)} arrays, this method's state {structure.num_leaves}"
        )
    return jax.tree_util.tree_unflatten(structure, [jnp.asarray(leaf) for leaf in leaves])


def train(
    args: argparse.Namespace, defaults: dict, run, env, method: JaxMethod, argv, stop
) -> dict[str, Any]:
    """The jax training loop of ``method`` on the functional meta-environment ``env`` in an open results
    folder ``run``; returns ``results.json``'s dict."""
    import jax
    from _driver import finish, metrics_row, progress_bar
    from l2l_multi.backends.jax import rl

    from l2l_multi.experiment._faults import fault_point
    from l2l_multi.experiment._interrupt import stop_if_requested

    run.record_environment(device=device_name())
    root = jax.random.key(args.seed)
    # iteration i draws from fold_in(root, i), i >= 1; the initial weights from fold_in(root, 0)
    policy = rl.DiagNormalPolicy(
        env.observation_size,
        env.action_size,
        hiddens=tuple(args.hiddens),
        init=args.policy_init,
        key=jax.random.fold_in(root, 0),
    )
    state = method.init(policy)
    start, elapsed, env_steps = 0, 0.0, 0
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        state = _restore(state, checkpoint["state"])
        start, elapsed, env_steps = checkpoint["iteration"], checkpoint["elapsed"], checkpoint["env_steps"]

    began = time.perf_counter() - elapsed
    bar = progress_bar(args, defaults, start)
    stop.active = True
    try:
        for index in bar:
            fault_point("training")
            stop_if_requested(stop, index)
            iteration = index + 1
            state, stats = method.step(state, jax.random.fold_in(root, iteration))
            stats = {name: _number(value) for name, value in stats.items()}
            missing = [name for name in REQUIRED_STATS if name not in stats]
            if missing:
                raise KeyError(
                    f"the jax method's step returned no {missing}; it must report {REQUIRED_STATS}"
                )
            pre, post = stats.pop("pre_return"), stats.pop("post_return")
            env_steps += int(round(stats.pop("env_steps")))
            run.log_metrics(metrics_row(iteration, pre, post, stats, env_steps, time.perf_counter() - began))
            run.save_checkpoint(
                {
                    "iteration": iteration,
                    "state": [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(jax.device_get(state))],
                    "env_steps": env_steps,
                    "elapsed": time.perf_counter() - began,
                }
            )
            bar.set_postfix(pre=f"{pre:.1f}", post=f"{post:.1f}")
    finally:
        bar.close()
    stop.active = False

    return finish(run, args, defaults, "jax", device_name(), env_steps, time.perf_counter() - began, argv)
