"""MetaWorld (metaworld 3) ML1 / ML10 / ML45 benchmarks as meta-environments.

metaworld is imported when an environment is made, not when ``l2l_multi.gym`` is imported.
"""

from __future__ import annotations

import gymnasium

from ._meta_env import MetaEnv, _check_num_tasks, _task_generator

_ENV_TYPES = ("train", "test")


class _MetaWorldBenchmarkEnv(MetaEnv):
    metadata = {"render_modes": []}

    def __init__(self, benchmark, env_type: str, seed: int | None):
        if env_type not in _ENV_TYPES:
            raise ValueError(f"env_type must be one of {_ENV_TYPES}, got {env_type!r}")
        self.env_type = env_type
        self._classes = benchmark.train_classes if env_type == "train" else benchmark.test_classes
        self._tasks = list(benchmark.train_tasks if env_type == "train" else benchmark.test_tasks)
        self._envs: dict = {}
        self._seed = seed
        self._env = None
        self.set_task(self._tasks[0])
        self.observation_space = self._env.observation_space
        self.action_space = self._env.action_space
        if seed is not None:
            self._np_random, _ = gymnasium.utils.seeding.np_random(seed)

    @property
    def tasks(self) -> list:
        """All tasks of the chosen split (``metaworld.Task`` named tuples)."""
        return list(self._tasks)

    def sample_tasks(self, num_tasks: int, seed=None) -> list:
        """Draws ``num_tasks`` of the benchmark's tasks, without replacement while there are enough.

        Args:
            num_tasks: positive int.
            seed: ``None`` (use ``np_random``), an int or a ``numpy.random.Generator``.

        Returns:
            A list of ``metaworld.Task``.
        """
        num_tasks = _check_num_tasks(num_tasks)
        rng = _task_generator(seed, self.np_random)
        indices = rng.choice(len(self._tasks), size=num_tasks, replace=num_tasks > len(self._tasks))
        return [self._tasks[int(i)] for i in indices]

    def _apply_task(self, task):
        name = getattr(task, "env_name", None)
        if name not in self._classes:
            raise ValueError(
                f"task must be a metaworld Task of the {self.env_type} split (environments "
                f"{sorted(self._classes)}), got {task!r:.200}"
            )
        if name not in self._envs:
            # One instance per environment class, made on first use: ML45 has 45 classes and most runs
            # only ever visit a few of them per worker.
            env = self._classes[name]()
            if self._seed is not None:
                env.seed(self._seed)
            self._envs[name] = env
        self._env = self._envs[name]
        self._env.set_task(task)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            # metaworld 3 ignores reset(seed=...); its own seed() is the only way in.
            self._seed = seed
            for env in self._envs.values():
                env.seed(seed)
        observation, info = self._env.reset()
        return observation, info

    def step(self, action):
        return self._env.step(action)

    def close(self):
        for env in self._envs.values():
            env.close()


class MetaWorldML1(_MetaWorldBenchmarkEnv):
    """MetaWorld ML1: one manipulation environment, 50 train and 50 test goal variations.

    Args:
        task_name: a metaworld 3 environment name such as ``"reach-v3"``.
        env_type: ``"train"`` or ``"test"``, the split whose tasks ``sample_tasks`` draws.
        seed: int or ``None``; seeds the benchmark's task generation and the simulators.

    Observations are float64 ``(39,)``, actions float32 ``(4,)`` in ``[-1, 1]``; episodes truncate after
    500 steps. Building takes about a second.

    Example:
        >>> env = MetaWorldML1("reach-v3", seed=0)  # doctest: +SKIP
        >>> env.set_task(env.sample_tasks(1)[0])  # doctest: +SKIP
    """

    def __init__(self, task_name: str, env_type: str = "train", seed: int | None = None):
        import metaworld

        if task_name not in metaworld.ML1.ENV_NAMES:
            raise ValueError(f"task_name must be one of {sorted(metaworld.ML1.ENV_NAMES)}, got {task_name!r}")
        super().__init__(metaworld.ML1(task_name, seed=seed), env_type, seed)


class MetaWorldML10(_MetaWorldBenchmarkEnv):
    """MetaWorld ML10: 10 train and 5 test environments; the task chooses the active environment.

    Args:
        env_type: ``"train"`` or ``"test"``.
        seed: int or ``None``.

    Building the benchmark takes about 8 s.

    Example:
        >>> env = MetaWorldML10(seed=0)  # doctest: +SKIP
    """

    def __init__(self, env_type: str = "train", seed: int | None = None):
        import metaworld

        super().__init__(metaworld.ML10(seed=seed), env_type, seed)


class MetaWorldML45(_MetaWorldBenchmarkEnv):
    """MetaWorld ML45: 45 train and 5 test environments; the task chooses the active environment.

    Args:
        env_type: ``"train"`` or ``"test"``.
        seed: int or ``None``.

    Building the benchmark takes 26-37 s: build it once per process.

    Example:
        >>> env = MetaWorldML45(seed=0)  # doctest: +SKIP
    """

    def __init__(self, env_type: str = "train", seed: int | None = None):
        import metaworld

        super().__init__(metaworld.ML45(seed=seed), env_type, seed)
