"""One RK4 physics step on MJX that leaves behind the derived quantities MuJoCo's C library leaves behind.

After ``mj_step`` with the RK4 integrator, C's ``mjData`` holds the state advanced by the RK4 combination but
the kinematics, contacts and constraint forces of the *last* Runge-Kutta stage; ``mjx.rungekutta4`` instead
advances from the first stage's data. Positions and velocities agree either way, but gymnasium's Ant reads
``xpos`` (its velocity) and, through ``mj_rnePostConstraint``, the contact forces (its observation and contact
cost) from those derived fields, so an MJX twin of the Ant must keep the last stage's. Same arithmetic as
MJX 3.3.0's ``rungekutta4`` otherwise (it reuses MJX's position integration; the mjx pin in constraints.txt
keeps these private helpers where they are), with the stage loop not unrolled to keep compile times down,
and every stage's forward pass is ``forward_like_c`` (C's contact frames for capsules on a plane).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from mujoco import mjx
from mujoco.mjx._src import forward as _mjx_forward
from mujoco.mjx._src import scan as _mjx_scan

from ._mjx_forward import forward_like_c


def _integrate_positions(model: mjx.Model, qpos: jax.Array, qvel: jax.Array) -> jax.Array:
    integrate = lambda *args: _mjx_forward._integrate_pos(*args, dt=model.opt.timestep)  # noqa: E731
    return _mjx_scan.flat(model, integrate, "jqv", "q", model.jnt_type, qpos, qvel)


def rk4_step_like_c(model: mjx.Model, data: mjx.Data) -> mjx.Data:
    """``mj_step`` with the RK4 integrator, as C leaves ``mjData``.

    Args:
        model: an ``mjx.Model`` whose integrator is RK4.
        data: ``mjx.Data`` (``qpos (nq,)``, ``qvel (nv,)``, ``ctrl (nu,)`` ... in the model's float dtype).

    Returns:
        ``mjx.Data`` at ``time + timestep``: the advanced ``qpos``/``qvel``/``act``, and the fourth stage's
        kinematics, contacts, ``qacc`` and constraint forces.

    Tested against MuJoCo C through the envs in ``mjx_envs`` (tests/test_mjx_envs.py); no doctest here
    because tracing an MJX step alone takes about 30 s on a CPU.
    """
    first = forward_like_c(model, data)
    timestep = model.opt.timestep
    tableau = _mjx_forward._RK4_A  # stage i+1 is built from stage i only: a diagonal tableau
    diagonal = jnp.asarray(tableau.diagonal(), first.qpos.dtype)
    weights = jnp.asarray(_mjx_forward._RK4_B, first.qpos.dtype)
    times = first.time + jnp.asarray(tableau.sum(axis=0), first.qpos.dtype) * timestep

    def stage(carry, tableau):
        qvel_sum, qacc_sum, act_dot_sum, stage_qvel, previous = carry
        a, b, time = tableau
        stage_qpos = _integrate_positions(model, first.qpos, a * stage_qvel)
        stage_act = first.act + a * previous.act_dot * timestep
        stage_qvel = first.qvel + a * previous.qacc * timestep
        current = forward_like_c(
            model, previous.replace(qpos=stage_qpos, qvel=stage_qvel, act=stage_act, time=time)
        )
        sums = (qvel_sum + b * stage_qvel, qacc_sum + b * current.qacc, act_dot_sum + b * current.act_dot)
        return (*sums, stage_qvel, current), None

    start = (weights[0] * first.qvel, weights[0] * first.qacc, weights[0] * first.act_dot, first.qvel, first)
    (qvel_sum, qacc_sum, act_dot_sum, _, last), _ = jax.lax.scan(stage, start, (diagonal, weights[1:], times))
    # C restores the initial state, then advances it with the weighted sums, keeping the last stage's data.
    last = last.replace(qpos=first.qpos, qvel=first.qvel, act=first.act, time=first.time)
    return _mjx_forward._advance(model, last, act_dot_sum, qacc_sum, qvel_sum)
