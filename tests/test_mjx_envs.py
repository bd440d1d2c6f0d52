"""MJX meta-envs against MuJoCo's C library through the gymnasium environments: the same qpos/qvel and
action give the same next observation and reward. MJX compiles are slow on CPU (about 15-25 s per step
function on the loaded 2-core machine), so the default suite compiles one HalfCheetah step (with v5 keyword
arguments and clipped actions) and checks the capsule-plane contact frames without compiling; the vmapped,
float64 (HalfCheetah and Ant, the Ant's contact onsets included) and reset-noise comparisons are marked long
(run them with: pytest -m long)."""

import inspect

import gymnasium
import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("mujoco.mjx")

import jax.numpy as jnp  # noqa: E402
from l2l_multi.backends.jax import mjx_envs  # noqa: E402
from mujoco import mjx  # noqa: E402

import l2l_multi.gym as l2l_gym  # noqa: E402

PAIRS = {
    "HalfCheetahForwardBackward": (
        mjx_envs.HalfCheetahForwardBackward,
        l2l_gym.HalfCheetahForwardBackwardEnv,
    ),
    "AntForwardBackward": (mjx_envs.AntForwardBackward, l2l_gym.AntForwardBackwardEnv),
    "AntDirection": (mjx_envs.AntDirection, l2l_gym.AntDirectionEnv),
}


def _c_states(gym_class, task, seed, count, warmup=3, action_scale=1.0):
    """``count`` tuples (qpos, qvel, action, next_obs, reward, ncon) from gymnasium's C env after a walk.

    ``gym_class`` may be any callable returning a (possibly wrapped) meta-env; actions are drawn from
    ``action_scale * U(-1, 1)`` (beyond the action space when above 1: the env must clip them)."""
    env = gym_class()
    env.unwrapped.set_task(task)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    states = []
    for _ in range(count):
        qpos, qvel = env.unwrapped.data.qpos.copy(), env.unwrapped.data.qvel.copy()
        env.unwrapped.set_state(qpos, qvel)
        action = (action_scale * rng.uniform(-1, 1, env.action_space.shape)).astype(np.float32)
        observation, reward, *_ = env.step(action)
        states.append((qpos, qvel, action, observation, reward, env.unwrapped.data.ncon))
    return env.unwrapped, states


def _made_and_clipped(env_name, **kwargs):
    """What the RL examples step: the registered env with keyword arguments, behind gymnasium's ClipAction."""
    return lambda: gymnasium.wrappers.ClipAction(gymnasium.make(f"l2l_multi.gym:{env_name}", **kwargs))


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


# XLA's backend optimisation only slows the compile here (the test runs 4 steps): ~15% less compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _c_state_on_mjx(env, c_env, qpos, qvel, task):
    c_env.set_state(qpos, qvel)  # C's own mjData after set_state, moved to MJX: only the step compiles
    return mjx_envs.LocomotionState(mjx.put_data(c_env.model, c_env.data), env._task(task))


def test_halfcheetah_step_matches_mujoco_c_float32_with_keywords_and_clipped_actions():
    # learn2learn's control cost (0.05) on both sides, through the constructor and gymnasium.make
    env = mjx_envs.HalfCheetahForwardBackward(ctrl_cost_weight=0.05)
    make_c_env = _made_and_clipped("HalfCheetahForwardBackward-v1", ctrl_cost_weight=0.05)
    step = jax.jit(env.step, compiler_options=FAST_COMPILE)
    forward_rewards = []
    for direction in (1.0, -1.0):
        for seed, action_scale in ((0, 1.0), (1, 3.0)):  # seed 1: actions up to 3x the bounds, clipped
            task = {"direction": direction}
            c_env, ((qpos, qvel, action, observation, reward, _),) = _c_states(
                make_c_env, task, seed, 1, action_scale=action_scale
            )
            if action_scale > 1:
                # unclipped, the control cost would be off by far more than the tolerance below
                assert 0.05 * (np.sum(action**2) - np.sum(np.clip(action, -1, 1) ** 2)) > 0.05
            state = _c_state_on_mjx(env, c_env, qpos, qvel, task)
            _, next_observation, next_reward, done = step(state, action)
            assert next_observation.shape == (17,) and next_observation.dtype == jnp.float32
            # float32 against C's float64 through 5 contact-solver steps: measured up to 5e-5 absolute on
            # joint velocities of order 10 (relative 2e-5), 1e-7 on the reward
            np.testing.assert_allclose(np.asarray(next_observation), observation, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(float(next_reward), reward, rtol=1e-5, atol=1e-5)
            assert not bool(done)
            forward_rewards.append(float(next_reward))
    # the same start states under both tasks: the direction flips the reward's forward term
    assert forward_rewards[:2] != pytest.approx(forward_rewards[2:], abs=1e-3)


@pytest.mark.long
def test_halfcheetah_step_vmaps_over_tasks_and_episodes_and_matches_mujoco_c():
    # tasks x episodes: 2 directions x 2 start states in one nested-vmap compile (about 25-35 s here)
    env = mjx_envs.HalfCheetahForwardBackward()
    batch, expected = [], []
    for direction in (1.0, -1.0):
        row_states, row_expected = [], []
        for seed in (0, 1):
            c_env, ((qpos, qvel, action, observation, reward, _),) = _c_states(
                l2l_gym.HalfCheetahForwardBackwardEnv, {"direction": direction}, seed, 1
            )
            state = _c_state_on_mjx(env, c_env, qpos, qvel, {"direction": direction})
            row_states.append((state, action))
            row_expected.append((observation, reward))
        batch.append(_stack(row_states))
        expected.append(row_expected)
    states, actions = _stack(batch)
    step = jax.jit(jax.vmap(jax.vmap(env.step)))
    _, observations, rewards, dones = step(states, actions)
    assert observations.shape == (2, 2, 17) and observations.dtype == jnp.float32
    for task_index in range(2):
        for episode in range(2):
            observation, reward = expected[task_index][episode]
            # measured on this machine: 4e-7 absolute / 3e-7 relative (observation), 6e-8 (reward)
            got = np.asarray(observations[task_index, episode]), float(rewards[task_index, episode])
            np.testing.assert_allclose(got[0], observation, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(got[1], reward, rtol=1e-5, atol=1e-5)
    assert not bool(dones.any())
    # the direction flips the forward term only: the two tasks' rewards differ by 2 * v_x, not by the cost
    assert not np.allclose(np.asarray(rewards[0]), np.asarray(rewards[1]))


def test_task_distributions_and_shapes():
    cheetah = mjx_envs.HalfCheetahForwardBackward()
    directions = np.asarray(cheetah.sample_tasks(jax.random.key(0), 200)["direction"])
    assert set(directions.tolist()) == {-1.0, 1.0} and 70 < (directions > 0).sum() < 130
    ant = mjx_envs.AntDirection()
    vectors = np.asarray(ant.sample_tasks(jax.random.key(0), 200)["direction"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    angles = np.arctan2(vectors[:, 1], vectors[:, 0])
    quadrants = (-np.pi, -np.pi / 2, 0, np.pi / 2)
    assert all(((angles > low) & (angles < low + np.pi / 2)).any() for low in quadrants)
    for mjx_class, gym_class in PAIRS.values():
        env, gym_env = mjx_class(), gym_class()
        sizes = (gym_env.observation_space.shape[0], gym_env.action_space.shape[0])
        assert (env.observation_size, env.action_size) == sizes
        assert isinstance(env, l2l_gym.FunctionalMetaEnv)


def test_bad_tasks_and_counts_are_refused():
    env = mjx_envs.HalfCheetahForwardBackward()
    with pytest.raises(ValueError, match="num_tasks"):
        env.sample_tasks(jax.random.key(0), 0)
    with pytest.raises(ValueError, match=r"'direction' of shape \(\)"):
        env.reset_to({"direction": jnp.ones(2)}, np.zeros(9), np.zeros(9))
    with pytest.raises(ValueError, match=r"'direction' of shape \(2,\)"):
        mjx_envs.AntDirection().reset_to({"goal": jnp.ones(2)}, np.zeros(15), np.zeros(14))


@pytest.mark.long
@pytest.mark.parametrize("name", list(PAIRS))
def test_reset_to_and_step_match_mujoco_c_float64(name):
    mjx_class, gym_class = PAIRS[name]
    task = {"direction": -1.0} if name != "AntDirection" else {"direction": np.array([0.6, 0.8])}
    with jax.enable_x64(True):
        env = mjx_class()
        reset_to, step = jax.jit(env.reset_to), jax.jit(env.step)
        # warmup 0: the state gymnasium's reset leaves, which reset_to must reproduce
        c_env, states = _c_states(gym_class, task, seed=0, count=1, warmup=0)
        for qpos, qvel, action, observation, reward, _ in states:
            state, first = reset_to(task, qpos, qvel)
            c_env.set_state(qpos, qvel)
            # positions and velocities as set; contact forces zero, as after gymnasium's reset (set_state
            # alone would leave the previous step's cfrc_ext in C's data)
            joints = len(qpos) + len(qvel) - c_env.observation_structure["skipped_qpos"]
            expected_first = c_env._get_obs()[:joints]
            np.testing.assert_allclose(np.asarray(first)[:joints], expected_first, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(np.asarray(first)[joints:], 0.0)
            _, next_observation, next_reward, done = step(state, action)
            # measured: 2e-15 (HalfCheetah) and 1e-14 (Ant, no contact) on the observation
            np.testing.assert_allclose(np.asarray(next_observation), observation, rtol=1e-9, atol=1e-9)
            # gymnasium's control cost of a float32 action is float32 (summed in another order than XLA's):
            # rewards agree to a float32 ulp of the cost, measured 2.4e-7 for the Ant
            np.testing.assert_allclose(float(next_reward), reward, rtol=0, atol=1e-6)
            assert not bool(done)


@pytest.mark.long
def test_reset_noise_matches_gymnasium_ranges_and_vmaps_over_episodes():
    env = mjx_envs.HalfCheetahForwardBackward(reset_noise_scale=0.2)  # v5's keyword (default 0.1)
    keys = jax.random.split(jax.random.key(0), 64)
    states, observations = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, {"direction": 1.0})
    qpos, qvel = np.asarray(states.data.qpos), np.asarray(states.data.qvel)
    offset = qpos - np.asarray(env.mj_model.qpos0)
    assert np.abs(offset).max() <= 0.2 and np.abs(offset).max() > 0.18
    assert 0.15 < qvel.std() < 0.25
    np.testing.assert_array_equal(np.asarray(observations), np.concatenate([qpos[:, 1:], qvel], axis=1))


def test_keyword_arguments_have_gymnasium_v5_names_and_defaults_and_unknown_ones_are_refused():
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    for ours, theirs in (
        (mjx_envs.HalfCheetahForwardBackward, HalfCheetahEnv),
        (mjx_envs.AntDirection, AntEnv),
    ):
        parameters = inspect.signature(ours.__init__).parameters.values()
        keywords = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
        gymnasium_defaults = {
            p.name: p.default for p in inspect.signature(theirs.__init__).parameters.values()
        }
        assert {"forward_reward_weight", "ctrl_cost_weight", "reset_noise_scale"} <= set(keywords)
        assert keywords == {name: gymnasium_defaults[name] for name in keywords}
    allowed = "allowed: ctrl_cost_weight, forward_reward_weight, reset_noise_scale"
    with pytest.raises(TypeError, match=f"HalfCheetahForwardBackward.*ctrl_cost\\b.*{allowed}$"):
        mjx_envs.HalfCheetahForwardBackward(ctrl_cost=0.05)
    with pytest.raises(TypeError, match=f"healthy_reward; {allowed}"):  # an Ant-only name
        mjx_envs.HalfCheetahForwardBackward(healthy_reward=1.0)
    with pytest.raises(TypeError, match="include_cfrc_ext_in_observation; allowed: contact_cost_weight, "):
        mjx_envs.AntForwardBackward(include_cfrc_ext_in_observation=False)  # would change the observation
    with pytest.raises(TypeError, match="ctrl_cost_weight must be a real number"):
        mjx_envs.HalfCheetahForwardBackward(ctrl_cost_weight="0.05")
    with pytest.raises(ValueError, match=r"healthy_z_range must be a pair \(low, high\)"):
        mjx_envs.AntDirection(healthy_z_range=(1.0, 0.2))
    with pytest.raises(TypeError, match="terminate_when_unhealthy must be a bool"):
        mjx_envs.AntForwardBackward(terminate_when_unhealthy="no")


def _steep_capsule_contact_state():
    """C's Ant data with a leg's capsule within 30 degrees of vertical touching the floor (where MJX 3.3.0's
    plane_capsule picks another tangent than C): found by walking with seeded random actions."""
    c_env = l2l_gym.AntForwardBackwardEnv()
    c_env.reset(seed=0)
    rng = np.random.default_rng(0)
    capsule = mjx_envs.mujoco.mjtGeom.mjGEOM_CAPSULE
    for _ in range(300):
        c_env.step(rng.uniform(-1, 1, 8).astype(np.float32))
        for contact in c_env.data.contact[: c_env.data.ncon]:
            axis = c_env.data.geom_xmat[contact.geom2].reshape(3, 3)[:, 2]
            normal = contact.frame[:3]
            steep = np.linalg.norm(axis - normal * (normal @ axis)) < 0.5
            if c_env.model.geom_type[contact.geom2] == capsule and steep:
                return c_env
    raise AssertionError("no steep capsule contact in 300 steps")


def test_capsule_plane_contact_frames_are_mujoco_c_s():
    # MJX's collision alone on C's kinematics (compiled: 2 s here, eagerly it took 20 s): the contact points
    # agree with C's, MJX's own frame of a steep capsule does not, the realigned frame does
    from l2l_multi.backends.jax import _mjx_forward
    from mujoco.mjx._src import collision_driver

    c_env = _steep_capsule_contact_state()
    env = mjx_envs.AntForwardBackward()
    collided = jax.jit(collision_driver.collision)(env.model, mjx.put_data(c_env.model, c_env.data))
    realigned = _mjx_forward.capsule_plane_frames_like_c(env.model, collided)
    contacts = collided.contact
    geoms = np.stack([np.asarray(contacts.geom1), np.asarray(contacts.geom2)], axis=1)
    positions = np.asarray(contacts.pos)
    steep_contacts = 0
    for c_contact in c_env.data.contact[: c_env.data.ncon]:
        same_geoms = (geoms == (c_contact.geom1, c_contact.geom2)).all(axis=1)
        (row,) = np.nonzero(same_geoms & (np.abs(positions - c_contact.pos).max(axis=1) < 1e-5))[0]
        c_frame = c_contact.frame.reshape(3, 3)
        np.testing.assert_allclose(np.asarray(realigned.contact.frame[row]), c_frame, atol=1e-6)
        capsule = c_env.model.geom_type[c_contact.geom2] == mjx_envs.mujoco.mjtGeom.mjGEOM_CAPSULE
        if capsule and abs(c_env.data.geom_xmat[c_contact.geom2][8]) > np.cos(np.pi / 6):
            # within 30 degrees of vertical: MJX 3.3.0 falls back to the world y axis as the first tangent
            assert np.abs(np.asarray(contacts.frame[row, 1]) - c_frame[1]).max() > 1e-3
            steep_contacts += 1
    assert steep_contacts > 0


@pytest.mark.long
def test_ant_matches_mujoco_c_float64_through_contact_onsets_with_keywords_and_clipped_actions():
    # Before the contact frames were realigned (_mjx_forward), MJX and C parted by about 0.04 in velocity at
    # the Ant's first contacts. Non-default v5 keyword arguments and actions up to 2x the bounds, both clipped
    # by ClipAction on the C side; one compile serves all of it.
    keywords = dict(
        forward_reward_weight=1.5,
        ctrl_cost_weight=0.1,
        contact_cost_weight=1e-3,
        healthy_reward=0.5,
        terminate_when_unhealthy=False,
        healthy_z_range=(0.3, 0.9),
        contact_force_range=(-0.5, 0.5),
    )
    task = {"direction": -1.0}
    make_c_env = _made_and_clipped("AntForwardBackward-v1", **keywords)
    with jax.enable_x64(True):
        env = mjx_envs.AntForwardBackward(**keywords)
        reset_to, step = jax.jit(env.reset_to), jax.jit(env.step)
        _, states = _c_states(make_c_env, task, seed=0, count=60, warmup=0, action_scale=2.0)
        ncon_before = [0] + [ncon for *_, ncon in states[:-1]]
        onsets = [i for i, (*_, ncon) in enumerate(states) if ncon > 0 and ncon_before[i] == 0]
        touching = [i for i, (*_, ncon) in enumerate(states) if ncon > 0 and ncon_before[i] > 0]
        chosen = onsets[:4] + touching[:2]
        assert len(chosen) == 6, (onsets, touching)
        for index in chosen:
            qpos, qvel, action, observation, reward, _ = states[index]
            state, _ = reset_to(task, qpos, qvel)
            _, next_observation, next_reward, done = step(state, action)
            # measured with the default keywords: up to 2e-12 on the observation through contacts
            np.testing.assert_allclose(np.asarray(next_observation), observation, rtol=1e-9, atol=1e-9)
            # the float32 control cost as in test_reset_to_and_step_match_mujoco_c_float64
            np.testing.assert_allclose(float(next_reward), reward, rtol=0, atol=1e-6)
            assert not bool(done)
