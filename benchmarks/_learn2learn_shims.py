"""Our code injected into learn2learn 0.2.0's ``examples/rl/maml_trpo.py`` (see learn2learn_maml_trpo.py).

The patched copy of learn2learn's script imports this module (its folder is put on ``sys.path``), so the
replacements made in learn2learn's text stay a few lines each. It holds:

* ``install_cherry_stubs``: stand-ins for cherry 0.1.4's Monitor/Recorder wrapper modules, whose gym
  imports fail on gym 0.26 (``import cherry`` would fail; neither wrapper is used by the script);
* ``use_gels_lstsq``: ``LinearValue.fit`` on ``torch.linalg.lstsq`` (torch >= 1.9 removed ``torch.lstsq``);
* ``HalfCheetahForwardBackwardShim``: learn2learn's gym-0.x MetaEnv API and 20-number observation around
  l2l_multi's gymnasium HalfCheetah forward/backward env (MuJoCo 3);
* ``load_checkpoint`` / ``worker_env_fns`` / ``restore`` / ``RunRecord`` / ``main_arguments``: seeds,
  metrics.csv, checkpoint.pt and --resume, which learn2learn's script does not have.

It imports in our own venv too (no gym there: the shim then derives from ``object`` and uses gymnasium's
``Box``), so tests can check the shim against our env without learn2learn's environment.
"""

import argparse
import csv
import functools
import os
import random
import sys
import time
import types

import numpy as np

try:  # learn2learn's venv: gym 0.26, whose Env/Box learn2learn's vector env and cherry's wrappers expect
    import gym

    _EnvBase = gym.Env
    _Box = gym.spaces.Box
except ImportError:  # our venv (tests): gymnasium's Box has the same constructor
    import gymnasium

    _EnvBase = object
    _Box = gymnasium.spaces.Box

# learn2learn registers HalfCheetahForwardBackward-v1 with max_episode_steps=100 (old gym TimeLimit)
HORIZON = 100
# learn2learn's control cost 0.5 * 1e-1 * |a|^2 (gymnasium v5's default weight is 0.1)
CTRL_COST_WEIGHT = 0.05
METRICS_COLUMNS = ("iteration", "adaptation_reward", "wall_seconds")
CHECKPOINT_EVERY = 10


def install_cherry_stubs():
    """Registers stand-in ``cherry.envs.monitor_wrapper`` / ``recorder_wrapper`` modules; call before
    ``import cherry``. cherry 0.1.4 imports ``gym.wrappers.Monitor``, ``gym.utils.closer`` and
    ``video_recorder.ImageEncoder``, all gone in gym 0.26; each stand-in's class is plain ``gym.Wrapper``.
    """
    for name in ("Monitor", "Recorder"):
        module = types.ModuleType(f"cherry.envs.{name.lower()}_wrapper")
        setattr(module, name, gym.Wrapper)
        sys.modules[module.__name__] = module


def _fit_with_gels(self, states, returns):
    """cherry's ``LinearValue.fit`` (ridge regression of ``returns`` float32[N, 1] on the features of
    ``states`` float32[N, D]) with its removed ``th.lstsq(b, A)`` replaced by ``torch.linalg.lstsq``.
    """
    import torch

    features = self._features(states)
    penalty = (self.reg * torch.eye(features.size(1))).to(states.device)
    gram = features.t() @ features + penalty
    target = features.t() @ returns
    # 'gels' is the LAPACK routine th.lstsq called. The default 'gelsy' drops near-singular directions of
    # this ill-conditioned float32 system: a very different, run-to-run non-deterministic baseline.
    coefficients = torch.linalg.lstsq(gram, target, driver="gels").solution
    self.linear.weight.data = coefficients.data.t()


def use_gels_lstsq(linear_value_class):
    """Replaces ``linear_value_class.fit`` (cherry's ``LinearValue``) by a ``torch.linalg.lstsq`` one."""
    linear_value_class.fit = _fit_with_gels


class HalfCheetahForwardBackwardShim(_EnvBase):
    """learn2learn's ``HalfCheetahForwardBackward-v1`` API on l2l_multi's gymnasium env (MuJoCo 3).

    learn2learn's env needs mujoco-py (MuJoCo 1.5/2.0), which cannot be installed here. Same model file,
    frame skip 5 (dt 0.05) and reset noise as learn2learn's; reward ``d * v_x - 0.05 * |a|^2``.
    ``reset() -> obs``, ``step(a float32[6]) -> (obs, reward float, done bool, info)`` with ``obs``
    float32[20] = ``qpos[1:]`` (8), ``qvel`` (9), torso position (3, mujoco-py's ``get_body_com``);
    ``done`` after ``max_episode_steps`` steps. Tasks ``{"direction": -1.0 | 1.0}`` are drawn on numpy's
    global RNG as learn2learn's ``sample_tasks`` does, one of them in the constructor as its MetaEnv does.
    ``seed`` seeds the first reset (learn2learn's workers drew theirs from OS entropy), for repeatable runs.
    """

    def __init__(self, task=None, seed=None, max_episode_steps=HORIZON):
        from l2l_multi.gym import HalfCheetahForwardBackwardEnv

        self._env = HalfCheetahForwardBackwardEnv(ctrl_cost_weight=CTRL_COST_WEIGHT)
        self._max_episode_steps = max_episode_steps
        self._elapsed_steps = 0
        self._next_seed = seed
        self.observation_space = _Box(-np.inf, np.inf, (20,), dtype=np.float32)
        actions = self._env.action_space
        self.action_space = _Box(actions.low, actions.high, dtype=np.float32)
        self.set_task(task if task is not None else self.sample_tasks(1)[0])

    def sample_tasks(self, num_tasks):
        """``num_tasks`` dicts ``{"direction": float64 -1.0 or 1.0}`` from numpy's global RNG."""
        return [{"direction": d} for d in np.random.choice((-1.0, 1.0), (num_tasks,))]

    def set_task(self, task):
        """Sets the running direction for the next steps."""
        self._task = task
        self._env.set_task(task)

    def get_task(self):
        """The current task dict."""
        return self._task

    def seed(self, seed=None):
        """Seeds the next reset only (gym 0.x ``seed``); returns ``[seed]``."""
        self._next_seed = seed
        return [seed]

    def _observation(self):
        data = self._env.unwrapped.data
        parts = (data.qpos.flat[1:], data.qvel.flat, data.body("torso").xpos.flat)
        return np.concatenate(parts).astype(np.float32)

    def reset(self):
        """Starts an episode; returns the float32[20] observation."""
        if self._next_seed is None:
            self._env.reset()
        else:
            self._env.reset(seed=self._next_seed)
            self._next_seed = None
        self._elapsed_steps = 0
        return self._observation()

    def step(self, action):
        """One step of float32[6] ``action``: ``(obs float32[20], reward float, done bool, info dict)``."""
        _, reward, terminated, _, info = self._env.step(action)
        self._elapsed_steps += 1
        done = bool(terminated) or self._elapsed_steps >= self._max_episode_steps
        return self._observation(), float(reward), done, info


def load_checkpoint(out_dir, resume):
    """Creates ``out_dir``; returns ``(checkpoint dict or None, first iteration int)``; the checkpoint is
    read only with ``resume`` and when ``out_dir/checkpoint.pt`` exists.
    """
    import torch

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "checkpoint.pt")
    if not (resume and os.path.exists(path)):
        return None, 0
    checkpoint = torch.load(path, weights_only=False)  # our own file: RNG states are not tensors only
    print("Resuming from iteration", checkpoint["iteration"])
    return checkpoint, checkpoint["iteration"]


def worker_seed(seed, start_iteration, index):
    """First-reset seed (int) of vector-env worker ``index``; differs after a resume so the workers'
    episodes do not repeat those of the run's start.
    """
    return 1000003 * seed + 1009 * start_iteration + index


def worker_env_fns(make_env, seed, start_iteration, num_workers):
    """``num_workers`` argument-free callables ``make_env(worker_seed(...))`` for ``AsyncVectorEnv``."""
    return [functools.partial(make_env, worker_seed(seed, start_iteration, i)) for i in range(num_workers)]


def restore(checkpoint, policy, baseline):
    """Loads policy, baseline and the main process's RNG streams (task sampling, action noise) from
    ``checkpoint`` (nothing when None).
    """
    import torch

    if checkpoint is None:
        return
    policy.load_state_dict(checkpoint["policy"])
    baseline.load_state_dict(checkpoint["baseline"])
    random.setstate(checkpoint["python_rng"])
    np.random.set_state(checkpoint["numpy_rng"])
    torch.set_rng_state(checkpoint["torch_rng"])


class RunRecord:
    """metrics.csv (one row per iteration) and checkpoint.pt (every 10 iterations) in ``out_dir``.

    A fresh run starts metrics.csv anew; a resumed one keeps its rows before ``start_iteration``.
    """

    def __init__(self, out_dir, checkpoint, start_iteration, seed, num_workers):
        self.metrics_path = os.path.join(out_dir, "metrics.csv")
        self.checkpoint_path = os.path.join(out_dir, "checkpoint.pt")
        self.seed, self.num_workers = seed, num_workers
        rows = []
        if checkpoint is not None and os.path.exists(self.metrics_path):
            with open(self.metrics_path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["iteration"]) < start_iteration]
        with open(self.metrics_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=METRICS_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        self.started = time.time()

    def start_iteration(self):
        """Starts the wall clock of one iteration."""
        self.started = time.time()

    def end_iteration(self, iteration, adaptation_reward, policy, baseline):
        """Appends the row of ``iteration`` (int; ``adaptation_reward`` float) and, after every tenth
        iteration, writes the checkpoint (atomically: a stopped run never leaves half a file).
        """
        import torch

        with open(self.metrics_path, "a", newline="") as f:
            csv.writer(f).writerow([iteration, adaptation_reward, round(time.time() - self.started, 3)])
        if (iteration + 1) % CHECKPOINT_EVERY:
            return
        state = {
            "iteration": iteration + 1,
            "policy": policy.state_dict(),
            "baseline": baseline.state_dict(),
            "python_rng": random.getstate(),
            "numpy_rng": np.random.get_state(),
            "torch_rng": torch.get_rng_state(),
            "seed": self.seed,
            "num_workers": self.num_workers,
        }
        torch.save(state, self.checkpoint_path + ".tmp")
        os.replace(self.checkpoint_path + ".tmp", self.checkpoint_path)


def main_arguments(argv=None):
    """The patched script's flags as keyword arguments of its ``main()`` (a dict)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--num-workers", type=int, default=10)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return {
        "num_iterations": args.iterations,
        "seed": args.seed,
        "num_workers": args.num_workers,
        "out_dir": args.out,
        "resume": args.resume,
    }
