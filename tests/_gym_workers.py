"""Environment factories for spawned vector-env workers.

A spawned worker unpickles its factory by module name. Test modules are imported as
``tests.test_x`` (importlib mode), which a worker cannot import, while this module is found
through ``tests/`` on the parent's ``sys.path``, which spawn passes on to its workers.
"""

import gymnasium

import l2l_multi.gym  # noqa: F401  (registers the environment ids in the worker)


def normalized_half_cheetah():
    """Snippet 3's ``make_env``, with gymnasium's NormalizeObservation as the normaliser."""
    return gymnasium.wrappers.NormalizeObservation(gymnasium.make("HalfCheetahForwardBackward-v1"))


# Registered when a worker imports this module, which gymnasium.make("_gym_workers:WorkerRegistered-v0")
# makes it do: the remedy the unregistered-id error suggests.
if "WorkerRegistered-v0" not in gymnasium.registry:
    gymnasium.register("WorkerRegistered-v0", entry_point="l2l_multi.gym._particles:Particles2DEnv")
