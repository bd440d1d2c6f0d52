"""MJX meta-envs against MuJoCo's C library through the gymnasium environments: the same qpos/qvel and
action give the same next observation and reward. MJX compiles are slow on CPU (about 15-25 s per step
function on the loaded 2-core machine), so the default suite compiles one HalfCheetah step; the vmapped,
float64 (HalfCheetah and Ant) and reset-noise comparisons are marked long (run them with: pytest -m long)."""

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


def _c_states(gym_class, task, seed, count, warmup=3):
    """``count`` tuples (qpos, qvel, action, next_obs, reward, ncon) from gymnasium's C env after a walk."""
    env = gym_class()
    env.set_task(task)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(warmup):
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
    states = []
    for _ in range(count):
        qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
        env.set_state(qpos, qvel)
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        observation, reward, *_ = env.step(action)
        states.append((qpos, qvel, action, observation, reward, env.data.ncon))
    return env, states


def _stack(trees):
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


# XLA's backend optimisation only slows the compile here (the test runs 4 steps): ~15% less compile time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _c_state_on_mjx(env, c_env, qpos, qvel, task):
    c_env.set_state(qpos, qvel)  # C's own mjData after set_state, moved to MJX: only the step compiles
    return mjx_envs.LocomotionState(mjx.put_data(c_env.model, c_env.data), env._task(task))


def test_halfcheetah_step_matches_mujoco_c_float32():
    env = mjx_envs.HalfCheetahForwardBackward()
    step = jax.jit(env.step, compiler_options=FAST_COMPILE)
    forward_rewards = []
    for direction in (1.0, -1.0):
        for seed in (0, 1):
            task = {"direction": direction}
            c_env, ((qpos, qvel, action, observation, reward, _),) = _c_states(
                l2l_gym.HalfCheetahForwardBackwardEnv, task, seed, 1
            )
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
        # warmup 0: the first step from the reset pose is in the air for the Ant (no contact, checked below)
        c_env, states = _c_states(gym_class, task, seed=0, count=1, warmup=0)
        for qpos, qvel, action, observation, reward, ncon in states:
            state, first = reset_to(task, qpos, qvel)
            c_env.set_state(qpos, qvel)
            # positions and velocities as set; contact forces zero, as after gymnasium's reset (set_state
            # alone would leave the previous step's cfrc_ext in C's data)
            joints = len(qpos) + len(qvel) - c_env.observation_structure["skipped_qpos"]
            expected_first = c_env._get_obs()[:joints]
            np.testing.assert_allclose(np.asarray(first)[:joints], expected_first, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(np.asarray(first)[joints:], 0.0)
            if name != "HalfCheetahForwardBackward":
                assert ncon == 0  # MJX and C part at the Ant's contact onsets (see the module docstring)
            _, next_observation, next_reward, done = step(state, action)
            # measured: 2e-15 (HalfCheetah) and 1e-14 (Ant, no contact) on the observation
            np.testing.assert_allclose(np.asarray(next_observation), observation, rtol=1e-9, atol=1e-9)
            # gymnasium's control cost of a float32 action is float32 (summed in another order than XLA's):
            # rewards agree to a float32 ulp of the cost, measured 2.4e-7 for the Ant
            np.testing.assert_allclose(float(next_reward), reward, rtol=0, atol=1e-6)
            assert not bool(done)


@pytest.mark.long
def test_reset_noise_matches_gymnasium_ranges_and_vmaps_over_episodes():
    env = mjx_envs.HalfCheetahForwardBackward()
    keys = jax.random.split(jax.random.key(0), 64)
    states, observations = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, {"direction": 1.0})
    qpos, qvel = np.asarray(states.data.qpos), np.asarray(states.data.qvel)
    offset = qpos - np.asarray(env.mj_model.qpos0)
    assert np.abs(offset).max() <= 0.1 and np.abs(offset).max() > 0.09
    assert 0.07 < qvel.std() < 0.13
    np.testing.assert_array_equal(np.asarray(observations), np.concatenate([qpos[:, 1:], qvel], axis=1))
