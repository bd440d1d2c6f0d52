"""benchmarks/learn2learn_maml_trpo.py (learn2learn's own MAML-TRPO on our physics, issue 17): its env shim
matches our gymnasium env, and every anchored change applies once to learn2learn's script (when its
source is here). No training runs."""

import importlib.util
import os

import numpy as np
import pytest
from _helpers import REPO_ROOT

pytest.importorskip("mujoco")


def _load(name):
    """Imports ``benchmarks/<name>.py`` by path (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shim_matches_our_env():
    from l2l_multi.gym import HalfCheetahForwardBackwardEnv

    shims = _load("_learn2learn_shims")
    state = np.random.get_state()
    try:
        for direction in (-1.0, 1.0):
            shim = shims.HalfCheetahForwardBackwardShim(task={"direction": direction}, seed=7)
            ours = HalfCheetahForwardBackwardEnv({"direction": direction}, ctrl_cost_weight=0.05)
            obs, _ = ours.reset(seed=7)
            shim_obs = shim.reset()
            assert shim_obs.shape == (20,) and shim_obs.dtype == np.float32
            actions = np.random.default_rng(0).uniform(-1, 1, (100, 6)).astype(np.float32)
            for t, action in enumerate(actions):
                data = shim._env.unwrapped.data
                expected = np.concatenate([data.qpos[1:], data.qvel, data.body("torso").xpos])
                np.testing.assert_array_equal(shim_obs, expected.astype(np.float32))
                np.testing.assert_allclose(shim_obs[:17], obs, rtol=1e-6, atol=1e-6)
                shim_obs, reward, done, _ = shim.step(action)
                obs, our_reward, *_ = ours.step(action)
                assert isinstance(reward, float) and reward == pytest.approx(our_reward, abs=1e-9)
                assert done == (t == 99)
            # learn2learn's task sampling: numpy's global RNG, one task drawn in the constructor
            np.random.seed(3)
            tasks = shims.HalfCheetahForwardBackwardShim().sample_tasks(4)
            np.random.seed(3)
            directions = [t["direction"] for t in tasks]
            np.testing.assert_array_equal(directions, np.random.choice((-1.0, 1.0), 5)[1:])
    finally:
        np.random.set_state(state)


def test_changes_apply_once_and_compile():
    driver = _load("learn2learn_maml_trpo")
    src = os.environ.get("LEARN2LEARN_SRC", driver.DEFAULT_SRC)
    script = os.path.join(src, driver.SCRIPT)
    if not os.path.isfile(script):
        pytest.skip(f"learn2learn 0.2.0's source not found at {script} (set LEARN2LEARN_SRC)")
    with open(script) as f:
        text = f.read()
    for name, _, anchor, _ in driver.CHANGES:
        assert text.count(anchor) == 1, name
    patched = driver.patch(text, policies_dir=os.path.dirname(script))
    compile(patched, "maml_trpo.py", "exec")
    added = set(patched.splitlines()) - set(text.splitlines())
    assert added and all("# CHANGED" in line or not line.strip() for line in added), added
    with pytest.raises(driver.PatchError, match="'record'"):
        driver.patch(text.replace("                break\n", ""), policies_dir="x")
