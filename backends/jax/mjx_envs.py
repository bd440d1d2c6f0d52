"""MuJoCo locomotion meta-environments on MJX (MuJoCo's JAX port), under the functional meta-env protocol.

They are the pure-jax twins of ``l2l_multi.gym``'s gymnasium environments: the same gymnasium v5 robot
models (``half_cheetah.xml``, ``ant.xml`` from gymnasium's assets, solver options included), frame skip 5,
reset noise (``qpos0 + U(-s, s)``, velocities ``s * N(0, 1)``, ``s = reset_noise_scale``), observation
layout, reward terms, keyword arguments (gymnasium v5's names and defaults for the reward, termination and
reset terms) and task distributions; only the random streams differ (jax keys instead of numpy generators).
Actions are clipped to the action space, as gymnasium's ``ClipAction`` wrapper does around the C
environments in the RL examples. Every method is ``jit``- and ``vmap``-compatible: a batch of tasks x
episodes is two nested ``jax.vmap`` calls.

Precision: float32 unless ``jax_enable_x64`` is on when the environment is made (then float64, like MuJoCo's
C library). tests/test_mjx_envs.py steps both from the same ``qpos``/``qvel`` and action. Measured on the
next observation: HalfCheetah up to 5e-5 absolute on joint velocities of order 10 (float32) and 2e-10
(float64, 120 steps of 3 walks); the Ant (float64, 109 steps of 3 walks) 1.4e-12 without contact, 6e-13 at
the steps where a leg first touches the floor, 2e-12 while touching. That needs C's contact frames for a
capsule on a plane, which MJX 3.3.0 builds differently for a steep leg (``_mjx_forward``); with MJX's own
frames the Ant's velocities parted by about 0.04 at contact onsets.

Needs the ``mujoco-mjx`` package, released in lockstep with ``mujoco`` (``pip install "l2l_multi[mjx]"``).
"""

from __future__ import annotations

import inspect
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

from ._mjx_forward import euler_step_like_c, forward_like_c
from ._mjx_rk4 import rk4_step_like_c

FRAME_SKIP = 5
_PHYSICS_STEPS = {
    mujoco.mjtIntegrator.mjINT_EULER: euler_step_like_c,
    mujoco.mjtIntegrator.mjINT_RK4: rk4_step_like_c,
}


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


def _keywords(cls) -> list[str]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [parameter.name for parameter in parameters if parameter.kind is parameter.KEYWORD_ONLY]


def _weight(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _interval(name: str, value) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or np.shape(value) != (2,):
        raise ValueError(f"{name} must be a pair (low, high) of real numbers with low <= high, got {value!r}")
    low, high = (_weight(name, bound) for bound in value)
    if low > high:
        raise ValueError(f"{name} must be a pair (low, high) of real numbers with low <= high, got {value!r}")
    return low, high


class _Locomotion:
    """Shared machinery: model, reset noise, action clipping, frame-skipped stepping. Subclasses add the
    observation, the reward and their keyword arguments (gymnasium v5's names and defaults)."""

    xml_file: str
    task_shape: tuple
    task_allowed: str

    def __init__(self, forward_reward_weight, ctrl_cost_weight, reset_noise_scale, unknown: dict):
        if unknown:
            allowed = ", ".join(sorted(_keywords(type(self))))
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(sorted(unknown))}; "
                f"allowed: {allowed}"
            )
        self.forward_reward_weight = _weight("forward_reward_weight", forward_reward_weight)
        self.ctrl_cost_weight = _weight("ctrl_cost_weight", ctrl_cost_weight)
        self.reset_noise_scale = _weight("reset_noise_scale", reset_noise_scale)
        self.mj_model = _gymnasium_model(self.xml_file)
        self.model = mjx.put_model(self.mj_model)
        self.dtype = self.model.qpos0.dtype
        self.dt = float(self.mj_model.opt.timestep) * FRAME_SKIP
        self.action_size = int(self.mj_model.nu)
        # gymnasium's action space: the actuators' control range, as float32
        self.action_low, self.action_high = self.mj_model.actuator_ctrlrange.astype(np.float32).T
        # Shapes only (nothing runs): the observation length follows from the model.
        shape = jax.eval_shape(lambda: self._observation(mjx.make_data(self.model))).shape
        self.observation_size = int(shape[0])
        self._physics_step = _PHYSICS_STEPS[self.mj_model.opt.integrator]

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
        noise = self.reset_noise_scale
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
        data = forward_like_c(self.model, data)
        # MJX's forward writes back unit quaternions; C leaves qpos as set (gymnasium's reset noise makes the
        # Ant's root quaternion non-unit) and normalises in the first step's integration, as MJX's step does.
        data = data.replace(qpos=qpos)
        return LocomotionState(data, task), self._observation(data)

    def step(self, state: LocomotionState, action: jax.Array):
        """Applies ``action (action_size,)``, clipped to ``[action_low, action_high]``, for 5 physics steps
        (gymnasium's frame skip).

        The clipping is gymnasium's ``ClipAction`` wrapper (which the RL examples put around the C
        environments): the physics and the control cost both see the clipped action. A policy's
        log-probabilities should use the action it sampled, before clipping, as ``collect_episodes`` does.

        Returns:
            ``(LocomotionState, observation (observation_size,), reward scalar, done bool scalar)``; the
            reward is the gymnasium v5 reward with the task's direction (see the class docstring).
        """
        before = state.data
        action = jnp.asarray(action).reshape(self.action_size)
        action = jnp.clip(action, self.action_low, self.action_high)
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

    def __init__(
        self,
        *,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.1,
        reset_noise_scale: float = 0.1,
        **unknown,
    ):
        super().__init__(forward_reward_weight, ctrl_cost_weight, reset_noise_scale, unknown)

    def _observation(self, data):
        return jnp.concatenate([data.qpos[1:], data.qvel])  # gymnasium v5: the x position is left out

    def _reward(self, before, after, action, task):
        x_velocity = (after.qpos[0] - before.qpos[0]) / self.dt
        forward = self.forward_reward_weight * task["direction"] * x_velocity
        reward = forward - self._control_cost(action)
        return reward, jnp.zeros((), bool)  # HalfCheetah never terminates


class HalfCheetahForwardBackward(_ForwardBackwardTasks, _HalfCheetah):
    """HalfCheetah running forward or backward on MJX; ``l2l_multi.gym.HalfCheetahForwardBackwardEnv``'s twin.

    Task ``{"direction": -1.0 | 1.0}``; reward ``forward_reward_weight * d * v_x - ctrl_cost_weight *
    ||a||^2`` with ``v_x`` the root's x displacement over the 0.05 s control step; never terminates.
    Observation ``(17,)``: ``qpos[1:]`` then ``qvel``. Action ``(6,)``, clipped to ``[-1, 1]`` before the
    physics and the cost (gymnasium's ``ClipAction``, see :meth:`step`).

    Keyword arguments, gymnasium v5's names and defaults (as ``gymnasium.make(...)`` takes them):
    ``forward_reward_weight=1.0``, ``ctrl_cost_weight=0.1``, ``reset_noise_scale=0.1``. The control cost
    0.1 is gymnasium v5's; the MAML paper's code and learn2learn use ``0.5 * 0.1 = 0.05``
    (``ctrl_cost_weight=0.05``). Any other name raises a ``TypeError`` listing these.

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
    torso = 1  # gymnasium v5's main_body: the body whose x-y displacement is the velocity

    def __init__(
        self,
        *,
        forward_reward_weight: float = 1.0,
        ctrl_cost_weight: float = 0.5,
        contact_cost_weight: float = 5e-4,
        healthy_reward: float = 1.0,
        terminate_when_unhealthy: bool = True,
        healthy_z_range: tuple[float, float] = (0.2, 1.0),
        contact_force_range: tuple[float, float] = (-1.0, 1.0),
        reset_noise_scale: float = 0.1,
        **unknown,
    ):
        self.contact_cost_weight = _weight("contact_cost_weight", contact_cost_weight)
        self.healthy_reward = _weight("healthy_reward", healthy_reward)
        if not isinstance(terminate_when_unhealthy, (bool, np.bool_)):
            raise TypeError(f"terminate_when_unhealthy must be a bool, got {terminate_when_unhealthy!r}")
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)
        self.healthy_z_range = _interval("healthy_z_range", healthy_z_range)
        self.contact_force_range = _interval("contact_force_range", contact_force_range)  # the observation's
        super().__init__(forward_reward_weight, ctrl_cost_weight, reset_noise_scale, unknown)

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
            self.forward_reward_weight * self._forward_reward(velocity, task)
            + self.healthy_reward * healthy.astype(self.dtype)  # v5: paid while healthy, whatever the flag
            - self._control_cost(action)
            - contact_cost
        )
        return reward, ~healthy & self.terminate_when_unhealthy


class AntForwardBackward(_ForwardBackwardTasks, _Ant):
    """Ant walking forward or backward on MJX; the twin of ``l2l_multi.gym.AntForwardBackwardEnv``.

    Reward ``forward_reward_weight * d * v_x + healthy_reward * healthy - ctrl_cost_weight * ||a||^2 -
    contact_cost_weight * ||clip(cfrc_ext, *contact_force_range)||^2``: healthy while the torso height is in
    ``healthy_z_range`` and the state is finite; ``done`` once it is not (if ``terminate_when_unhealthy``).
    Observation ``(105,)``: ``qpos[2:]`` (13), ``qvel`` (14), the clipped contact forces of the 13 non-world
    bodies (78). Action ``(8,)``, clipped to ``[-1, 1]`` (see :meth:`step`).

    Keyword arguments, gymnasium v5's names and defaults: ``forward_reward_weight=1.0``,
    ``ctrl_cost_weight=0.5``, ``contact_cost_weight=5e-4``, ``healthy_reward=1.0``,
    ``terminate_when_unhealthy=True``, ``healthy_z_range=(0.2, 1.0)``, ``contact_force_range=(-1.0, 1.0)``,
    ``reset_noise_scale=0.1``; any other name raises a ``TypeError`` listing these.

    Example:
        >>> env = AntForwardBackward()
        >>> env.observation_size, env.action_size
        (105, 8)
    """

    def _forward_reward(self, velocity, task):
        return task["direction"] * velocity[0]


class AntDirection(_DirectionTasks, _Ant):
    """Ant walking in a 2-D direction on MJX; the twin of ``l2l_multi.gym.AntDirectionEnv``.

    Task ``{"direction": unit vector (2,)}`` uniform on the circle; reward ``forward_reward_weight *
    <d, v_xy> + healthy_reward * healthy - costs`` (the costs, termination and keyword arguments of
    :class:`AntForwardBackward`). Observation ``(105,)``, action ``(8,)``.

    Example:
        >>> import jax
        >>> env = AntDirection()
        >>> tasks = env.sample_tasks(jax.random.key(0), 3)
        >>> tasks["direction"].shape
        (3, 2)
    """

    def _forward_reward(self, velocity, task):
        return velocity @ task["direction"]
