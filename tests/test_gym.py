"""l2l_multi.gym: meta-environments, their rewards, seeding, and the task-aware AsyncVectorEnv."""

import functools
import multiprocessing
import operator
import os
import re
import signal
import time
import uuid
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import l2l_multi.gym as l2l_gym

MUJOCO_ENVS = [
    "HalfCheetahForwardBackwardEnv",
    "AntForwardBackwardEnv",
    "AntDirectionEnv",
    "HumanoidForwardBackwardEnv",
    "HumanoidDirectionEnv",
]
REGISTERED = [
    "Particles2D-v1",
    "HalfCheetahForwardBackward-v1",
    "AntForwardBackward-v1",
    "AntDirection-v1",
    "HumanoidForwardBackward-v1",
    "HumanoidDirection-v1",
]


def _raising_env():
    # A picklable env whose step raises inside the worker: the action transform indexes an empty dict
    # with an array (TypeError: unhashable).
    return functools.partial(
        gymnasium.wrappers.TransformAction,
        l2l_gym.Particles2DEnv(),
        functools.partial(operator.getitem, {}),
        None,
    )


@pytest.mark.parametrize("name", ["Particles2DEnv", *MUJOCO_ENVS])
def test_check_env(name):
    env = getattr(l2l_gym, name)()
    env.set_task(env.sample_tasks(1, seed=3)[0])
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("env_id", REGISTERED)
def test_registered_ids_make_meta_envs(env_id):
    env = gymnasium.make(env_id)
    assert isinstance(env.unwrapped, l2l_gym.MetaEnv)
    assert env.spec.max_episode_steps in (100, 200)
    env.close()


def test_particles_reward_is_minus_distance():
    env = l2l_gym.Particles2DEnv()
    env.set_task({"goal": np.array([0.3, -0.45])})
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-0.3, 0.3, size=2)
        expected = obs.astype(np.float64) + np.clip(action, -0.1, 0.1)
        obs, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
        np.testing.assert_allclose(obs, expected, atol=1e-6)
        position = obs.astype(np.float64)
        assert reward == pytest.approx(-np.hypot(position[0] - 0.3, position[1] + 0.45), abs=1e-12)
        assert not truncated


def test_particles_horizon_and_goal_range():
    env = gymnasium.make("Particles2D-v1")
    goals = np.array([task["goal"] for task in env.unwrapped.sample_tasks(500, seed=1)])
    assert goals.min() >= -0.5 and goals.max() <= 0.5 and goals.std() > 0.2
    env.unwrapped.set_task({"goal": np.array([0.5, 0.5])})
    env.reset(seed=0)
    steps = 0
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        steps += 1
    assert steps == 100


@pytest.mark.parametrize("name", ["Particles2DEnv", "HalfCheetahForwardBackwardEnv", "AntDirectionEnv"])
def test_seeded_task_sampling_is_reproducible(name):
    env_a, env_b = getattr(l2l_gym, name)(), getattr(l2l_gym, name)()
    by_seed = [env_a.sample_tasks(5, seed=7), env_b.sample_tasks(5, seed=7)]
    env_a.reset(seed=11)
    env_b.reset(seed=11)
    by_reset = [env_a.sample_tasks(5), env_b.sample_tasks(5)]
    for first, second in (by_seed, by_reset):
        for task_a, task_b in zip(first, second):
            np.testing.assert_array_equal(
                task_a["goal" if "goal" in task_a else "direction"],
                task_b["goal" if "goal" in task_b else "direction"],
            )
    assert len({str(t) for t in env_a.sample_tasks(20, seed=1)}) > 1


@pytest.mark.parametrize(
    "name", ["HalfCheetahForwardBackwardEnv", "AntForwardBackwardEnv", "HumanoidForwardBackwardEnv"]
)
def test_forward_backward_reward_flips_with_direction(name):
    rewards, infos = {}, {}
    for direction in (1.0, -1.0):
        env = getattr(l2l_gym, name)({"direction": direction})
        env.reset(seed=0)
        actions = np.random.default_rng(0).uniform(-1, 1, size=(10, env.action_space.shape[0]))
        rewards[direction] = []
        infos[direction] = []
        for action in actions:
            _, reward, _, _, info = env.step(action.astype(np.float32))
            rewards[direction].append(reward)
            infos[direction].append(info)
    for forward, backward in zip(infos[1.0], infos[-1.0]):
        assert forward["x_velocity"] == backward["x_velocity"]  # same simulation
        assert forward["reward_forward"] == pytest.approx(-backward["reward_forward"])
        costs = (
            forward["reward_ctrl"] + forward.get("reward_contact", 0.0) + forward.get("reward_survive", 0.0)
        )
        np.testing.assert_allclose(
            np.array([r for r in rewards[1.0]]) + np.array([r for r in rewards[-1.0]]),
            np.array(
                [
                    2 * (f["reward_ctrl"] + f.get("reward_contact", 0.0) + f.get("reward_survive", 0.0))
                    for f in infos[1.0]
                ]
            ),
        )
        assert costs <= forward["reward_survive"] if "reward_survive" in forward else costs <= 0


def test_half_cheetah_reward_is_direction_times_velocity_minus_control_cost():
    env = l2l_gym.HalfCheetahForwardBackwardEnv({"direction": -1.0})
    env.reset(seed=0)
    action = np.full(6, 0.5, dtype=np.float32)
    _, reward, _, _, info = env.step(action)
    assert reward == pytest.approx(-info["x_velocity"] - 0.1 * float(np.sum(action.astype(np.float64) ** 2)))


@pytest.mark.parametrize("name", ["AntDirectionEnv", "HumanoidDirectionEnv"])
def test_direction_reward_projects_velocity(name):
    env = getattr(l2l_gym, name)()
    direction = np.array([0.6, -0.8])
    env.set_task({"direction": direction})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    weight = env._forward_reward_weight
    projected = weight * (0.6 * info["x_velocity"] - 0.8 * info["y_velocity"])
    assert info["reward_forward"] == pytest.approx(projected)
    assert reward == pytest.approx(
        projected + info["reward_survive"] + info["reward_ctrl"] + info["reward_contact"]
    )


def test_set_task_rejects_bad_tasks():
    with pytest.raises(ValueError, match="goal"):
        l2l_gym.Particles2DEnv().set_task({"goal": [1.0]})
    with pytest.raises(ValueError, match="direction"):
        l2l_gym.HalfCheetahForwardBackwardEnv().set_task({"direction": 0.5})
    with pytest.raises(ValueError, match="num_tasks"):
        l2l_gym.Particles2DEnv().sample_tasks(0)


@pytest.fixture
def particle_envs():
    envs = l2l_gym.AsyncVectorEnv([functools.partial(gymnasium.make, "l2l_multi.gym:Particles2D-v1")] * 3)
    yield envs
    envs.close()


def test_vector_set_task_broadcast_and_per_worker(particle_envs):
    envs = particle_envs
    tasks = envs.sample_tasks(4, seed=0)
    envs.set_task(tasks[0])
    assert all(np.array_equal(task["goal"], tasks[0]["goal"]) for task in envs.get_task())
    envs.set_task(tasks[1:])
    for got, want in zip(envs.get_task(), tasks[1:]):
        np.testing.assert_array_equal(got["goal"], want["goal"])
    envs.reset(seed=0)
    obs, rewards, *_ = envs.step(np.full((3, 2), 0.1, dtype=np.float32))
    expected = [-np.linalg.norm(obs[i] - tasks[1 + i]["goal"]) for i in range(3)]
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="one task per worker"):
        envs.set_task(tasks[:2])


def test_vector_set_task_refuses_non_finite_goal_before_sending(particle_envs):
    envs = particle_envs
    tasks = envs.sample_tasks(3, seed=0)
    envs.set_task(tasks)
    bad = [tasks[0], {"goal": np.array([0.1, np.nan])}, tasks[2]]
    with pytest.raises(ValueError, match=r"task\['goal'\] for worker 1 must be finite, got .*0.1, +nan"):
        envs.set_task(bad)
    with pytest.raises(ValueError, match=r"task\['goal'\] for worker 0 must be finite"):
        envs.set_task({"goal": [np.inf, 0.0]})  # one task broadcast to every worker
    # Nothing reached the workers: they all keep their tasks and still step.
    for got, want in zip(envs.get_task(), tasks):
        np.testing.assert_array_equal(got["goal"], want["goal"])
    envs.reset(seed=0)
    _, rewards, *_ = envs.step(np.zeros((3, 2), dtype=np.float32))
    assert np.isfinite(rewards).all()


def test_vector_sample_tasks_seeded_by_reset(particle_envs):
    particle_envs.reset(seed=5)
    first = particle_envs.sample_tasks(3)
    particle_envs.reset(seed=5)
    second = particle_envs.sample_tasks(3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["goal"], b["goal"])


def test_vector_worker_exception_raises_in_parent():
    envs = l2l_gym.AsyncVectorEnv([_raising_env()] * 2)
    try:
        envs.reset(seed=0)
        start = time.perf_counter()
        with pytest.raises(TypeError):
            envs.step(np.zeros((2, 2), dtype=np.float32))
        assert time.perf_counter() - start < 5
        with pytest.raises(l2l_gym.WorkerError, match="shut down"):
            envs.step(np.zeros((2, 2), dtype=np.float32))
    finally:
        envs.close()


@pytest.mark.parametrize("liveness_interval", [None, 0.2])
@pytest.mark.parametrize("when", ["before_step", "during_wait"])
def test_vector_killed_worker_raises_instead_of_hanging(when, liveness_interval):
    make = functools.partial(gymnasium.make, "l2l_multi.gym:Particles2D-v1")
    envs = l2l_gym.AsyncVectorEnv([make] * 3, liveness_interval=liveness_interval)
    try:
        envs.reset(seed=0)
        start = time.perf_counter()
        if when == "before_step":
            os.kill(envs.processes[1].pid, signal.SIGKILL)
            envs.processes[1].join(5)
            with pytest.raises(l2l_gym.WorkerError, match="worker 1"):
                envs.step(np.zeros((3, 2), dtype=np.float32))
        else:
            # Killed while the parent waits (or just after it answered): the wait or the next call raises.
            envs.step_async(np.zeros((3, 2), dtype=np.float32))
            envs.processes[2].kill()
            with pytest.raises(l2l_gym.WorkerError, match="died"):
                envs.step_wait()
                envs.step(np.zeros((3, 2), dtype=np.float32))
        assert time.perf_counter() - start < 5
    finally:
        envs.close()


# ----------------------------------------------------------------------------------------------------
# Faults: a worker killed while a call is pending, workers that cannot build their environment, and
# tasks with non-finite numbers.


def _assert_no_live_workers(envs):
    assert envs.closed
    assert not any(process.is_alive() for process in envs.processes)
    assert all(process.exitcode is not None for process in envs.processes)  # joined (reaped)
    assert not set(multiprocessing.active_children()) & set(envs.processes)


@pytest.mark.parametrize("reported", [False, True], ids=["death_unseen", "death_already_raised"])
def test_close_with_pending_step_and_killed_worker(reported):
    make = functools.partial(gymnasium.make, "l2l_multi.gym:Particles2D-v1")
    envs = l2l_gym.AsyncVectorEnv([make] * 3)
    try:
        envs.reset(seed=0)
        envs.step_async(np.zeros((3, 2), dtype=np.float32))
        os.kill(envs.processes[1].pid, signal.SIGKILL)
        envs.processes[1].join(5)
        if reported:
            with pytest.raises(l2l_gym.WorkerError, match="worker 1"):
                envs.step_wait()  # may still read an answer sent just before the kill: then the next step
                envs.step(np.zeros((3, 2), dtype=np.float32))
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            envs.close()  # before: WorkerError out of close(), workers 0 and 2 left running
        assert time.perf_counter() - start < 10
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        if reported:
            assert messages == []  # the WorkerError already named the dead worker
        else:
            assert len(messages) == 1 and "worker 1" in messages[0] and "exit code -9" in messages[0]
            assert "step call was pending" in messages[0]
        _assert_no_live_workers(envs)
        envs.close()  # a second close is a no-op
    finally:
        envs.close(terminate=True)


# gymnasium logs the worker's traceback as a UserWarning ("ERROR: ..."): expected here
@pytest.mark.filterwarnings("ignore:.*ERROR:")
def test_close_with_pending_step_that_raised_in_worker():
    envs = l2l_gym.AsyncVectorEnv([_raising_env()] * 2)
    envs.reset(seed=0)
    envs.step_async(np.zeros((2, 2), dtype=np.float32))
    with pytest.warns(RuntimeWarning, match=r"close\(\): TypeError: .*unhashable.*workers were terminated"):
        envs.close()
    _assert_no_live_workers(envs)


# gymnasium logs the worker's traceback as a UserWarning ("ERROR: ..."): expected here
@pytest.mark.filterwarnings("ignore:.*ERROR:")
def test_id_registered_only_in_parent_raises_worker_error():
    env_id = f"ParentOnly{uuid.uuid4().hex[:8]}-v0"
    gymnasium.register(env_id, entry_point="l2l_multi.gym._particles:Particles2DEnv")
    try:
        gymnasium.make(env_id).close()  # the parent knows it; the spawned workers do not
        before = set(multiprocessing.active_children())
        with pytest.raises(l2l_gym.WorkerError) as raised:
            l2l_gym.AsyncVectorEnv([functools.partial(gymnasium.make, env_id)] * 2)
        message = str(raised.value)
        pattern = r"worker [01] could not build its environment \(gymnasium\.error\.NameNotFound: "
        assert re.match(pattern, message), message
        assert f"`{env_id.split('-')[0]}` doesn't exist" in message  # the worker's own error text
        assert "register the id in a module" in message and "pass a picklable callable" in message
        assert set(multiprocessing.active_children()) <= before  # no worker left behind
    finally:
        del gymnasium.registry[env_id]


def test_id_registered_by_a_module_the_worker_imports():
    # The remedy the error above suggests: "module:Id" makes each worker import the registering module.
    envs = l2l_gym.AsyncVectorEnv([functools.partial(gymnasium.make, "_gym_workers:WorkerRegistered-v0")] * 2)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, 2)
    finally:
        envs.close()


def test_worker_that_dies_while_building_raises_worker_error():
    # Worker 1 exits without a word (as a crash in a native constructor would); the parent's own copy of
    # env_fns[0] builds fine.
    before = set(multiprocessing.active_children())
    with pytest.raises(l2l_gym.WorkerError, match=r"worker 1 \(pid \d+, exit code 3\) died"):
        l2l_gym.AsyncVectorEnv([l2l_gym.Particles2DEnv, functools.partial(os._exit, 3)])
    assert set(multiprocessing.active_children()) <= before


NON_FINITE_TASKS = [
    ("Particles2DEnv", "goal", [np.nan, 0.0]),
    ("Particles2DEnv", "goal", np.array([0.1, np.inf])),
    ("Particles2DEnv", "goal", [-np.inf, -np.inf]),
    ("HalfCheetahForwardBackwardEnv", "direction", np.nan),
    ("HalfCheetahForwardBackwardEnv", "direction", -np.inf),
    ("AntDirectionEnv", "direction", [np.nan, 1.0]),
    ("AntDirectionEnv", "direction", np.array([np.inf, 0.0])),
]


@pytest.mark.parametrize(
    ("name", "key", "value"), NON_FINITE_TASKS, ids=[f"{n}-{k}-{v}" for n, k, v in NON_FINITE_TASKS]
)
def test_non_finite_task_numbers_are_refused(name, key, value):
    env = getattr(l2l_gym, name)()
    good = env.sample_tasks(1, seed=0)[0]
    env.set_task(good)
    with pytest.raises(ValueError, match=rf"task\['{key}'\] must be .*got .*(nan|inf).* \(not finite\)"):
        env.set_task({key: value})
    assert env.get_task() is good  # the refused task changed nothing


BAD_SHAPES_AND_TYPES = [
    ("Particles2DEnv", "goal", [0.1, 0.2, 0.3], r"shape \(3,\)"),
    ("Particles2DEnv", "goal", [[0.1, 0.2]], r"shape \(1, 2\)"),
    ("Particles2DEnv", "goal", 0.3, r"shape \(\)"),
    ("Particles2DEnv", "goal", ["a", "b"], r"dtype <U1"),
    ("Particles2DEnv", "goal", [True, False], r"dtype bool"),
    ("HalfCheetahForwardBackwardEnv", "direction", True, r"dtype bool"),  # before: accepted as +1
    ("HalfCheetahForwardBackwardEnv", "direction", [1.0], r"shape \(1,\)"),
    ("AntDirectionEnv", "direction", [1.0, 0.0, 0.0], r"shape \(3,\)"),
]


@pytest.mark.parametrize(
    ("name", "key", "value", "detail"),
    BAD_SHAPES_AND_TYPES,
    ids=[f"{n}-{v}" for n, _, v, _ in BAD_SHAPES_AND_TYPES],
)
def test_task_numbers_of_wrong_shape_or_type_are_refused(name, key, value, detail):
    with pytest.raises(ValueError, match=rf"task\['{key}'\] must be .*got .*{detail}"):
        getattr(l2l_gym, name)().set_task({key: value})


def test_negative_task_seed_is_refused_by_name():
    with pytest.raises(ValueError, match=r"seed must be a non-negative int .*got -1"):
        l2l_gym.Particles2DEnv().sample_tasks(2, seed=-1)  # before: numpy's "expected non-negative integer"


def test_set_task_copies_the_goal():
    env = l2l_gym.Particles2DEnv()
    goal = np.array([0.3, 0.4])
    env.set_task({"goal": goal})
    goal[0] = np.nan  # a later change to the caller's array must not reach the environment
    env.reset(seed=0)
    _, reward, *_ = env.step(np.zeros(2, dtype=np.float32))
    assert reward == pytest.approx(-0.5)


def test_vector_rejects_bad_liveness_interval():
    with pytest.raises(ValueError, match="liveness_interval"):
        l2l_gym.AsyncVectorEnv([l2l_gym.Particles2DEnv], liveness_interval=0)


def test_metaworld_ml1_steps_and_train_tasks_differ():
    pytest.importorskip("metaworld")
    env = l2l_gym.MetaWorldML1("reach-v3", env_type="train", seed=0)
    tasks = env.sample_tasks(3, seed=0)
    goals = []
    for task in tasks:
        env.set_task(task)
        obs, _ = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (39,) and np.isfinite(reward)
        goals.append(env._env._target_pos.copy())
    assert not np.allclose(goals[0], goals[1]) and not np.allclose(goals[1], goals[2])
    assert env.get_task() is tasks[-1]
    assert [t.env_name for t in env.sample_tasks(2)] == ["reach-v3", "reach-v3"]
    with pytest.raises(ValueError, match="env_type"):
        l2l_gym.MetaWorldML1("reach-v3", env_type="valid")


@pytest.mark.slow
def test_mission_snippet_3_half_cheetah_16_workers():
    template = l2l_gym.HalfCheetahForwardBackwardEnv()
    assert template.get_task() == {"direction": 1.0}
    from _gym_workers import normalized_half_cheetah as make_env

    env = l2l_gym.AsyncVectorEnv([make_env] * 16)
    try:
        tasks = env.sample_tasks(20, seed=0)
        env.set_task(tasks[0])
        assert env.get_task() == [tasks[0]] * 16
        obs, _ = env.reset(seed=0)
        assert obs.shape == (16, 17)
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward.shape == (16,)
        np.testing.assert_allclose(info["reward_forward"], tasks[0]["direction"] * info["x_velocity"])
    finally:
        env.close()
