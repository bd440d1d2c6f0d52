"""MuJoCo locomotion meta-environments on MJX (MuJoCo's JAX port), under the functional meta-env protocol.

They are the pure-jax twins of ``l2l_multi.gym``'s gymnasium environments: the same gymnasium v5 robot
models (``half_cheetah.xml``, ``ant.xml`` from gymnasium's assets, solver options included), frame skip 5,
reset noise (``qpos0 + U(-0.1, 0.1)``, velocities ``0.1 * N(0, 1)``), observation layout, reward terms and
task distributions; only the random streams differ (jax keys instead of numpy generators). Every method is
``jit``- and ``vmap``-compatible: a batch of tasks x episodes is two nested ``jax.vmap`` calls.

Precision: float32 unless ``jax_enable_x64`` is on when the environment is made (then float64, like MuJoCo's
C library). tests/test_mjx_envs.py steps both from the same ``qpos``/``qvel`` and action. Measured on the
next observation: HalfCheetah up to 5e-5 absolute on joint velocities of order 10 (float32) and 2e-15
(float64); the Ant 1e-14 (float64) while no contact is active. When a foot touches the floor, MJX's
contact dynamics and C's part (velocities about 0.04 apart after one contact onset, in float64): the Ant's
trajectories are then MJX's own, with the same reward and observation definitions.

Needs the ``mujoco-mjx`` package, released in lockstep with ``mujoco`` (``pip install "l2l_multi[mjx]"``).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

try:
    import mujoco
    from mujoco import mjx
except ModuleNotFoundError as _error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'l2l_multi.backends.jax.mjx_envs needs mujoco-mjx; install it with: pip install "l2l_multi[mjx]"'
    ) from _error

from ._mjx_rk4 import rk4_step_like_c

FRAME_SKIP = 5
RESET_NOISE_SCALE = 0.1


class LocomotionState(NamedTuple):
    """State of an MJX locomotion environment: the MJX ``data`` (a pytree of arrays) and the ``task`` dict."""

    data: mjx.Data
    task: dict


def _gymnasium_model(xml_file: str) -> mujoco.MjModel:
    # gymnasium ships the v5 robot files beside its environments; loading them from there keeps both sides on
    # exactly the same model, solver options included.
    import gymnasium.envs.mujoco

    path = os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets", xml_file)
    return mujoco.MjModel.from_xml_path(path)


def _check_num_tasks(num_tasks) -> int:
    if not isinstance(num_tasks, int) or isinstance(num_tasks, bool) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a positive int, got {num_tasks!r}")
    return num_tasks


class _Locomotion:
    """Shared machinery: model, reset noise, frame-skipped stepping. Subclasses add observation and reward."""

    xml_file: str
    ctrl_cost_weight: float
    task_shape: tuple
    task_allowed: str

    def __init__(self):
        self.mj_model = _gymnasium_model(self.xml_file)
        self.model = mjx.put_model(self.mj_model)
        self.dtype = self.model.qpos0.dtype
        self.dt = float(self.mj_model.opt.timestep) * FRAME_SKIP
        self.action_size = int(self.mj_model.nu)
        # Shapes only (nothing runs): the observation length follows from the model.
        shape = jax.eval_shape(lambda: self._observation(mjx.make_data(self.model))).shape
        self.observation_size = int(shape[0])
        rk4 = self.mj_model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
        self._physics_step = rk4_step_like_c if rk4 else mjx.step

    def _task(self, task) -> dict:
        # A structural check only: values cannot be inspected under jit.
        shape = np.shape(task["direction"]) if isinstance(task, dict) and "direction" in task else None
        if shape != self.task_shape:
            raise ValueError(
                f"task must be a dict with a 'direction' of shape {self.task_shape} ({self.task_allowed}), "
                f"got {task!r:.200}"
            )
        return {"direction": jnp.asarray(task["direction"], self.dtype)}

    def reset(self, key: jax.Array, task: dict):
        """Starts an episode at gymnasium's noisy initial state.

        Args:
            key: PRNG key for the reset noise.
            task: one task, e.g. ``{"direction": ...}`` as returned (indexed) by :meth:`sample_tasks`.

        Returns:
            ``(LocomotionState, observation (observation_size,))``, float32 (float64 under x64).
        """
        qpos_key, qvel_key = jax.random.split(key)
        shape_q, shape_v = self.model.qpos0.shape, (self.mj_model.nv,)
        noise = RESET_NOISE_SCALE
        qpos = self.model.qpos0 + jax.random.uniform(qpos_key, shape_q, self.dtype, -noise, noise)
        qvel = noise * jax.random.normal(qvel_key, shape_v, self.dtype)
        return self.reset_to(task, qpos, qvel)

    def reset_to(self, task: dict, qpos: jax.Array, qvel: jax.Array):
        """The state at joint positions ``qpos (nq,)`` and velocities ``qvel (nv,)``, like gymnasium's
        ``set_state`` (positions, velocities, then one forward pass; contact forces start at zero).

        Returns:
            ``(LocomotionState, observation (observation_size,))``.
        """
        task = self._task(task)
        qpos = jnp.asarray(qpos, self.dtype)
        data = mjx.make_data(self.model).replace(qpos=qpos, qvel=jnp.asarray(qvel, self.dtype))
        data = mjx.forward(self.model, data)
        # MJX's forward writes back unit quaternions; C leaves qpos as set (gymnasium's reset noise makes the
        # Ant's root quaternion non-unit) and normalises in the first step's integration, as MJX's step does.
        data = data.replace(qpos=qpos)
        return LocomotionState(data, task), self._observation(data)

    def step(self, state: LocomotionState, action: jax.Array):
        """Applies ``action (action_size,)`` for 5 physics steps (gymnasium's frame skip).

        Returns:
            ``(LocomotionState, observation (observation_size,), reward scalar, done bool scalar)``; the
            reward is the gymnasium v5 reward with the task's direction (see the class docstring).
        """
        before = state.data
        action = jnp.asarray(action).reshape(self.action_size)
        data = before.replace(ctrl=action.astype(self.dtype))
        # A loop, not five unrolled steps: the compiled program (and the compile time) stays one step's size.
        data = jax.lax.fori_loop(0, FRAME_SKIP, lambda _, data: self._physics_step(self.model, data), data)
        data = self._after_physics(data)
        reward, done = self._reward(before, data, action, state.task)
        return LocomotionState(data, state.task), self._observation(data), reward, done

    def _after_physics(self, data):
        return data

    def _control_cost(self, action):
        # In the action's own dtype, as gymnasium computes it (a float32 action gives a float32 cost).
        return (self.ctrl_cost_weight * jnp.sum(jnp.square(action))).astype(self.dtype)


class _ForwardBackwardTasks:
    task_shape = ()
    task_allowed = "-1.0 (backward) or 1.0 (forward)"

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> dict:
        """``{"direction": (num_tasks,)}``: -1.0 or 1.0, equally likely (float32; float64 with x64)."""
        forward = jax.random.bernoulli(key, 0.5, (_check_num_tasks(num_tasks),))
        return {"direction": jnp.where(forward, 1.0, -1.0).astype(self.dtype)}


class _DirectionTasks:
    task_shape = (2,)
    task_allowed = "a unit vector of shape (2,)"

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> dict:
        """``{"direction": (num_tasks, 2)}``: unit vectors at angles uniform in ``[0, 2 pi)``."""
        angle = jax.random.uniform(key, (_check_num_tasks(num_tasks),), self.dtype, 0.0, 2.0 * jnp.pi)
        return {"direction": jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)}


class _HalfCheetah(_Locomotion):
    xml_file = "half_cheetah.xml"
    ctrl_cost_weight = 0.1

    def _observation(self, data):
        return jnp.concatenate([data.qpos[1:], data.qvel])  # gymnasium v5: the x position is left out

    def _reward(self, before, after, action, task):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        reward = task["direction"] * x_velocity - self._control_cost(action)
        return reward, jnp.zeros((), bool)  # HalfCheetah never terminates


class HalfCheetahForwardBackward(_ForwardBackwardTasks, _HalfCheetah):
    """HalfCheetah running forward or backward on MJX; ``l2l_multi.gym.HalfCheetahForwardBackwardEnv``'s twin.

    Task ``{"direction": -1.0 | 1.0}``; reward ``d * v_x - 0.1 * ||a||^2`` with ``v_x`` the root's x
    displacement over the 0.05 s control step; never terminates. Observation ``(17,)``: ``qpos[1:]`` then
    ``qvel``. Action ``(6,)`` in ``[-1, 1]`` (MuJoCo clamps it to the actuators' range; the cost uses it as
    given, as gymnasium does).

    Example:
        >>> import jax
        >>> env = HalfCheetahForwardBackward()
        >>> env.observation_size, env.action_size
        (17, 6)
        >>> env.sample_tasks(jax.random.key(0), 4)["direction"].shape
        (4,)
    """


class _Ant(_Locomotion):
    xml_file = "ant.xml"
    ctrl_cost_weight = 0.5
    contact_cost_weight = 5e-4
    healthy_z_range = (0.2, 1.0)
    contact_force_range = (-1.0, 1.0)
    torso = 1  # gymnasium v5's main_body: the body whose x-y displacement is the velocity

    def _after_physics(self, data):
        # gymnasium calls mj_rnePostConstraint after stepping so that cfrc_ext (external contact forces) is
        # filled in; the observation and the contact cost read it.
        return mjx.rne_postconstraint(self.model, data)

    def _contact_forces(self, data):
        return jnp.clip(data.cfrc_ext, *self.contact_force_range)

    def _observation(self, data):
        # gymnasium v5 defaults: x-y position left out, clipped contact forces of every body but the world.
        contact = self._contact_forces(data)[1:].reshape(-1)
        return jnp.concatenate([data.qpos[2:], data.qvel, contact])

    def _healthy(self, data):
        finite = jnp.isfinite(data.qpos).all() & jnp.isfinite(data.qvel).all()
        low, high = self.healthy_z_range
        return finite & (data.qpos[2] >= low) & (data.qpos[2] <= high)

    def _reward(self, before, after, action, task):
        # xpos as C leaves it after mj_step: the last RK4 stage's kinematics (see _mjx_rk4), on both sides.
        velocity = (after.xpos[self.torso, :2] - before.xpos[self.torso, :2]) / self.dt
        healthy = self._healthy(after)
        contact_cost = self.contact_cost_weight * jnp.sum(jnp.square(self._contact_forces(after)))
        reward = (
            self._forward_reward(velocity, task)
            + healthy.astype(self.dtype)
            - self._control_cost(action)
            - contact_cost
        )
        return reward, ~healthy  # gymnasium v5 terminates when unhealthy


class AntForwardBackward(_ForwardBackwardTasks, _Ant):
    """Ant walking forward or backward on MJX; the twin of ``l2l_multi.gym.AntForwardBackwardEnv``.

    Reward ``d * v_x + healthy - 0.5 * ||a||^2 - 5e-4 * ||clip(cfrc_ext, -1, 1)||^2`` with gymnasium v5's
    defaults: healthy is 1 while the torso height is in ``[0.2, 1.0]`` and the state is finite, and ``done``
    is true once it is not. Observation ``(105,)``: ``qpos[2:]`` (13), ``qvel`` (14), the clipped contact
    forces of the 13 non-world bodies (78). Action ``(8,)``.

    Example:
        >>> env = AntForwardBackward()
        >>> env.observation_size, env.action_size
        (105, 8)
    """

    def _forward_reward(self, velocity, task):
        return task["direction"] * velocity[0]


class AntDirection(_DirectionTasks, _Ant):
    """Ant walking in a 2-D direction on MJX; the twin of ``l2l_multi.gym.AntDirectionEnv``.

    Task ``{"direction": unit vector (2,)}`` uniform on the circle; reward ``<d, v_xy> + healthy - costs``
    (the costs and termination of :class:`AntForwardBackward`). Observation ``(105,)``, action ``(8,)``.

    Example:
        >>> import jax
        >>> env = AntDirection()
        >>> tasks = env.sample_tasks(jax.random.key(0), 3)
        >>> tasks["direction"].shape
        (3, 2)
    """

    def _forward_reward(self, velocity, task):
        return velocity @ task["direction"]
