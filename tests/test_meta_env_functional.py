"""The functional meta-env protocol: the pure-jax Particles2D against the wrapped gymnasium one, and the
host wrapper's contract (task layout, seeding, stale states refused)."""

import numpy as np
import pytest

import l2l_multi.gym as l2l_gym


def _run_episode(env, reset_key, task, actions):
    """One algorithm body for every FunctionalMetaEnv: observations [T+1, obs], rewards [T], dones [T]."""
    state, observation = env.reset(reset_key, task)
    observations, rewards, dones = [np.asarray(observation)], [], []
    for action in actions:
        state, observation, reward, done = env.step(state, action)
        observations.append(np.asarray(observation))
        rewards.append(float(reward))
        dones.append(bool(done))
    return np.stack(observations), np.array(rewards), np.array(dones)


def _actions(seed=0, steps=60):
    # Wide enough that many actions get clipped to 0.1, and some episodes pass near the goal.
    return np.random.default_rng(seed).normal(scale=0.15, size=(steps, 2)).astype(np.float32)


@pytest.mark.parametrize("x64", [True, False], ids=["float64", "float32"])
def test_jax_particles_matches_wrapped_gymnasium_particles(x64):
    jax = pytest.importorskip("jax")
    from l2l_multi.backends.jax import gym as jax_gym

    host = l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv())
    tasks = host.sample_tasks(3, 4)
    actions = _actions()
    with jax.enable_x64(x64):
        device = jax_gym.Particles2D()
        for index in range(4):
            task = {"goal": tasks["goal"][index]}
            expected = _run_episode(host, 0, task, actions)
            got = _run_episode(device, jax.random.key(0), task, actions)
            if x64:
                np.testing.assert_array_equal(got[0], expected[0])
                # XLA:CPU fuses x*x + y*y into one FMA: the reward can differ in its last bit.
                np.testing.assert_allclose(got[1], expected[1], rtol=3e-16, atol=0)
            else:
                np.testing.assert_allclose(got[0], expected[0], atol=1e-6)
                np.testing.assert_allclose(got[1], expected[1], atol=1e-6)
            np.testing.assert_array_equal(got[2], expected[2])


def test_jax_particles_terminates_like_the_gymnasium_env():
    jax = pytest.importorskip("jax")
    from l2l_multi.backends.jax import gym as jax_gym

    task = {"goal": np.array([0.15, -0.05])}
    actions = np.array([[0.2, -0.02], [0.05, -0.03]], np.float32)  # the second step lands on the goal
    expected = _run_episode(l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv()), 0, task, actions)
    got = _run_episode(jax_gym.Particles2D(), jax.random.key(0), task, actions)
    assert expected[2].tolist() == got[2].tolist() == [False, True]


def test_jax_particles_vmapped_and_jitted_over_tasks_matches_one_by_one():
    jax = pytest.importorskip("jax")
    from l2l_multi.backends.jax import gym as jax_gym

    env = jax_gym.Particles2D()
    tasks = env.sample_tasks(jax.random.key(1), 5)
    assert tasks["goal"].shape == (5, 2)
    assert float(tasks["goal"].min()) >= -0.5 and float(tasks["goal"].max()) <= 0.5
    keys = jax.random.split(jax.random.key(2), 5)
    actions = jax.numpy.asarray(_actions(steps=5 * 3).reshape(3, 5, 2))

    @jax.jit
    def batched(keys, tasks, actions):
        state, _ = jax.vmap(env.reset)(keys, tasks)

        def body(state, action):
            state, observation, reward, done = jax.vmap(env.step)(state, action)
            return state, (observation, reward)

        return jax.lax.scan(body, state, actions)[1]

    observations, rewards = batched(keys, tasks, actions)
    for index in range(5):
        task = {"goal": tasks["goal"][index]}
        one = _run_episode(env, keys[index], task, np.asarray(actions[:, index]))
        np.testing.assert_allclose(np.asarray(observations[:, index]), one[0][1:], atol=1e-7)
        np.testing.assert_allclose(np.asarray(rewards[:, index]), one[1], atol=1e-6)


def test_both_particles_satisfy_the_protocol():
    jax = pytest.importorskip("jax")  # noqa: F841
    from l2l_multi.backends.jax import gym as jax_gym

    for env in (jax_gym.Particles2D(), l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv())):
        assert isinstance(env, l2l_gym.FunctionalMetaEnv)
        assert (env.observation_size, env.action_size) == (2, 2)


def test_host_sample_tasks_stacks_the_envs_own_draw():
    env = l2l_gym.Particles2DEnv()
    tasks = l2l_gym.HostFunctionalEnv(env).sample_tasks(7, 3)
    reference = env.sample_tasks(3, seed=7)
    np.testing.assert_array_equal(tasks["goal"], np.stack([task["goal"] for task in reference]))
    again = l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv()).sample_tasks(np.random.default_rng(7), 3)
    np.testing.assert_array_equal(again["goal"], tasks["goal"])


def test_host_wrapper_passes_scalar_tasks_and_jax_leaves_to_set_task():
    pytest.importorskip("mujoco")
    wrapped = l2l_gym.HostFunctionalEnv(l2l_gym.HalfCheetahForwardBackwardEnv())
    tasks = wrapped.sample_tasks(0, 6)
    assert tasks["direction"].shape == (6,) and set(tasks["direction"].tolist()) <= {-1.0, 1.0}
    state, observation = wrapped.reset(0, {"direction": tasks["direction"][0]})
    assert observation.shape == (wrapped.observation_size,) == (17,) and wrapped.action_size == 6
    assert wrapped.env.get_task()["direction"] == tasks["direction"][0]
    jnp = pytest.importorskip("jax.numpy")
    wrapped.reset(0, {"direction": jnp.asarray(-1.0)})
    assert float(wrapped.env.get_task()["direction"]) == -1.0


def test_host_wrapper_refuses_stale_states_and_bad_inputs():
    wrapped = l2l_gym.HostFunctionalEnv(l2l_gym.Particles2DEnv())
    first, _ = wrapped.reset(0, {"goal": np.zeros(2)})
    second, *_ = wrapped.step(first, np.zeros(2))
    with pytest.raises(ValueError, match="already stepped"):
        wrapped.step(first, np.zeros(2))
    wrapped.reset(1, {"goal": np.zeros(2)})
    with pytest.raises(ValueError, match="later reset replaced it"):
        wrapped.step(second, np.zeros(2))
    with pytest.raises(ValueError, match="num_tasks"):
        wrapped.sample_tasks(0, 0)
    with pytest.raises(ValueError, match=r"task\['goal'\]"):
        wrapped.reset(0, {"goal": np.zeros(3)})
    with pytest.raises(TypeError, match="task must be a dict"):
        wrapped.reset(0, [0.1, 0.2])
    import gymnasium

    with pytest.raises(TypeError, match="env must be an l2l_multi.gym.MetaEnv"):
        l2l_gym.HostFunctionalEnv(gymnasium.make("CartPole-v1"))


def test_jax_particles_refuses_bad_tasks():
    jax = pytest.importorskip("jax")
    from l2l_multi.backends.jax import gym as jax_gym

    env = jax_gym.Particles2D()
    with pytest.raises(ValueError, match="num_tasks"):
        env.sample_tasks(jax.random.key(0), 0)
    with pytest.raises(ValueError, match="'goal' of shape"):
        env.reset(jax.random.key(0), {"goal": np.zeros(3)})
