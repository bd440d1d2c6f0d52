"""MJX's forward dynamics with MuJoCo C's contact frames for capsules on a plane.

MuJoCo C (``mjc_PlaneCapsule``) gives each capsule-plane contact the capsule's axis as the frame's first
tangent, which ``mju_makeFrame`` then makes orthogonal to the normal and normalises, whatever its length.
MJX 3.3.0's ``plane_capsule`` does the same only while that projection is at least 0.5 long; for a capsule
within 30 degrees of the plane's normal (an Ant's or a HalfCheetah's lower leg standing on the floor) it
falls back to the world y (or z) axis. With a pyramidal friction cone the two frames give different
pyramids, so different contact forces: measured on the Ant in float64, one steep-leg contact moved
``qacc`` by up to 32 (of order 100) in a single forward pass. Realigning those frames before the
constraints are built makes MJX's forward agree with C's (measured in tests/test_mjx_envs.py).

Everything else is MJX 3.3.0's ``forward``/``euler`` stage for stage (its private stage functions; the mjx
pin in constraints.txt keeps them where they are).
"""

from __future__ import annotations

import jax.numpy as jnp
import mujoco
from mujoco import mjx
from mujoco.mjx._src import collision_driver as _collision_driver
from mujoco.mjx._src import constraint as _constraint
from mujoco.mjx._src import forward as _mjx_forward
from mujoco.mjx._src import sensor as _sensor
from mujoco.mjx._src import smooth as _smooth
from mujoco.mjx._src import solver as _solver

_MIN_NORM = 1e-15  # C's mjMINVAL: mju_normalize3 returns (1, 0, 0) below it


def capsule_plane_frames_like_c(model: mjx.Model, data: mjx.Data) -> mjx.Data:
    """``data`` with every plane-capsule contact frame as MuJoCo C builds it.

    Args:
        model: ``mjx.Model``.
        data: ``mjx.Data`` after MJX's collision detection (``contact.frame (ncon, 3, 3)``: rows normal,
            first tangent, second tangent).

    Returns:
        ``mjx.Data`` whose plane-capsule contacts have the first tangent = the capsule's axis made orthogonal
        to the normal and normalised, the second = normal x first tangent; other contacts unchanged.
    """
    contact = data.contact
    if contact.frame.shape[0] == 0:
        return data
    geom_type = jnp.asarray(model.geom_type)
    plane_capsule = (geom_type[contact.geom1] == int(mujoco.mjtGeom.mjGEOM_PLANE)) & (
        geom_type[contact.geom2] == int(mujoco.mjtGeom.mjGEOM_CAPSULE)
    )
    normal = contact.frame[:, 0]
    axis = data.geom_xmat[contact.geom2][:, :, 2]  # the capsule's local z axis in the world
    tangent = axis - normal * jnp.sum(normal * axis, axis=-1, keepdims=True)
    length = jnp.linalg.norm(tangent, axis=-1, keepdims=True)
    fallback = jnp.asarray([1.0, 0.0, 0.0], tangent.dtype)
    tangent = jnp.where(length < _MIN_NORM, fallback, tangent / jnp.where(length < _MIN_NORM, 1.0, length))
    frame = jnp.stack([normal, tangent, jnp.cross(normal, tangent)], axis=1)
    frame = jnp.where(plane_capsule[:, None, None], frame, contact.frame)
    return data.replace(contact=contact.replace(frame=frame))


def forward_like_c(model: mjx.Model, data: mjx.Data) -> mjx.Data:
    """``mjx.forward`` with C's capsule-plane contact frames (:func:`capsule_plane_frames_like_c`).

    Args:
        model: ``mjx.Model``.
        data: ``mjx.Data`` (``qpos (nq,)``, ``qvel (nv,)``, ``ctrl (nu,)`` ... in the model's float dtype).

    Returns:
        ``mjx.Data`` with positions, velocities, contacts, constraint forces and ``qacc`` computed.
    """
    # mjx.forward's fwd_position, with the frames realigned between collision and constraint building
    for stage in (_smooth.kinematics, _smooth.com_pos, _smooth.camlight, _smooth.tendon, _smooth.crb):
        data = stage(model, data)
    data = _smooth.factor_m(model, data)
    data = _collision_driver.collision(model, data)
    data = capsule_plane_frames_like_c(model, data)
    data = _constraint.make_constraint(model, data)
    data = _smooth.transmission(model, data)
    # the rest of mjx.forward unchanged
    data = _sensor.sensor_pos(model, data)
    data = _mjx_forward.fwd_velocity(model, data)
    data = _sensor.sensor_vel(model, data)
    data = _mjx_forward.fwd_actuation(model, data)
    data = _mjx_forward.fwd_acceleration(model, data)
    data = _sensor.sensor_acc(model, data)
    if data.efc_J.size == 0:
        return data.replace(qacc=data.qacc_smooth)
    return _solver.solve(model, data)


def euler_step_like_c(model: mjx.Model, data: mjx.Data) -> mjx.Data:
    """``mjx.step`` for a model with the (semi-implicit) Euler integrator, with :func:`forward_like_c`.

    Returns:
        ``mjx.Data`` at ``time + timestep``.
    """
    return _mjx_forward.euler(model, forward_like_c(model, data))
