"""ProMP and the MAML / Meta-SGD A2C meta-update, torch vs jax: from the same weights, the same recorded
Particles2D episodes and the same advantages, in float64, the losses, the meta-gradients, the Adam moments
and the updated parameters (and Meta-SGD's rates) agree to 1e-10.

The jax updates return no gradient, so it is read from the optimizer state: after Adam's first step its
first moment is ``0.1 * gradient`` on both backends (torch keeps the gradient itself in ``.grad``). ProMP
runs two epochs: the first epoch's gradient is compared after a one-epoch call, the second's as
``(mu_2 - 0.9 mu_1) / 0.1``. The episodes are those of tests/test_rl_crosscheck.py (cut at different
lengths, so masked steps are compared too)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
pytest.importorskip("gymnasium")

from l2l_multi.backends.jax import rl as jax_rl  # noqa: E402
from l2l_multi.backends.torch import rl as torch_rl  # noqa: E402
from l2l_multi.backends.torch.algorithms import MAML, MetaSGD  # noqa: E402
from test_rl_crosscheck import (  # noqa: E402  (its helpers only: no test is imported twice)
    HIDDENS,
    TASKS,
    _as_torch_order,
    _jax_policy,
    _recorded_episodes,
    _task,
    _to_torch,
)

TOLERANCE = 1e-10
INNER_LR, META_LR = 0.1, 1e-2
# ProMP settings under which every term counts: the clip binds on some steps in the second epoch and
# the inner-KL weight makes its gradient visible next to the surrogate's
CLIP, INNER_KL_COEF = 0.05, 0.5
BETA1 = 0.9  # Adam's default on both backends


@pytest.fixture(scope="module")
def recorded():
    """Initial torch policy weights, and the same episodes and advantages for both backends."""
    with jax.enable_x64(True):
        torch.manual_seed(0)
        torch_policy = torch_rl.DiagNormalPolicy(2, 2, hiddens=HIDDENS).double()
        train = _recorded_episodes(torch_policy, seed=1)
        valid = _recorded_episodes(torch_policy, seed=2)  # stands in for the adapted policies' episodes
        torch_batches, advantages = [], {"train": [], "valid": []}
        for index in range(TASKS):
            phases = {}
            for name, episodes in (("train", train), ("valid", valid)):
                torch_episodes = torch_rl.Episodes(*_task(episodes, index, _to_torch))
                baseline = torch_rl.LinearValue(2).double()
                phases[name] = (
                    torch_episodes,
                    torch_rl.episode_advantages(baseline, torch_episodes, 0.99, 1.0),
                )
                advantages[name].append(phases[name][1].numpy())
            torch_batches.append(torch_rl.TaskBatch(*phases["train"], *phases["valid"]))
        jax_batches = jax_rl.TaskBatch(
            train, np.stack(advantages["train"]), valid, np.stack(advantages["valid"])
        )
        yield {"state": torch_policy.state_dict(), "torch": torch_batches, "jax": jax_batches}


def _torch_policy(recorded):
    policy = torch_rl.DiagNormalPolicy(2, 2, hiddens=HIDDENS).double()
    policy.load_state_dict(recorded["state"])
    return policy


def _difference(torch_tensors, jax_leaves) -> float:
    return max(float(np.max(np.abs(t.detach().numpy() - j))) for t, j in zip(torch_tensors, jax_leaves))


def _adam_moments(optimizer, parameters):
    state = [optimizer.state[p] for p in parameters]
    return [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state]


def _jax_adam(opt_state):
    """optax.adam's (mu, nu) from its state (``(ScaleByAdamState, EmptyState)``)."""
    return opt_state[0].mu, opt_state[0].nu


def _report(name, differences):
    print(f"\n{name}: " + ", ".join(f"{key} {value:.1e}" for key, value in differences.items()))


def test_promp_step_agrees(recorded):
    differences = {}
    with jax.enable_x64(True):
        torch_runs = {}
        for epochs in (1, 2):
            policy = _torch_policy(recorded)
            maml = MAML(policy, lr=INNER_LR)
            optimizer = torch.optim.Adam(maml.parameters(), lr=META_LR)
            stats = torch_rl.promp_step(
                maml, recorded["torch"], optimizer, epochs, clip=CLIP, inner_kl_coef=INNER_KL_COEF
            )
            parameters = list(policy.parameters())
            torch_runs[epochs] = (stats, parameters, _adam_moments(optimizer, parameters))

        policy = _jax_policy(_torch_policy(recorded))
        optimizer = optax.adam(META_LR)
        jax_runs = {}
        for epochs in (1, 2):  # epochs is traced: one compiled program for both
            new, state, stats = jax_rl.promp_meta_update(
                policy,
                recorded["jax"],
                optimizer,
                optimizer.init(policy),
                INNER_LR,
                epochs,
                clip=CLIP,
                inner_kl_coef=INNER_KL_COEF,
            )
            jax_runs[epochs] = (stats, new, [_as_torch_order(tree) for tree in _jax_adam(state)])

    for epochs in (1, 2):
        (torch_stats, parameters, (mu, nu)), (jax_stats, new, (jax_mu, jax_nu)) = (
            torch_runs[epochs],
            jax_runs[epochs],
        )
        for key in ("loss_before", "loss_after", "inner_kl"):
            differences[f"{key}[{epochs}]"] = abs(torch_stats[key] - float(jax_stats[key]))
        differences[f"parameters[{epochs}]"] = _difference(parameters, _as_torch_order(new))
        differences[f"adam mu[{epochs}]"] = _difference(mu, jax_mu)
        differences[f"adam nu[{epochs}]"] = _difference(nu, jax_nu)
        # torch's .grad holds the last epoch's gradient
        torch_gradient = [p.grad for p in parameters]
        if epochs == 1:
            jax_gradient = [m / (1 - BETA1) for m in jax_mu]
        else:
            first_mu = jax_runs[1][2][0]
            jax_gradient = [(m - BETA1 * m1) / (1 - BETA1) for m, m1 in zip(jax_mu, first_mu)]
        assert max(float(g.abs().max()) for g in torch_gradient) > 1e-2  # gradients worth comparing
        differences[f"gradient[{epochs}]"] = _difference(torch_gradient, jax_gradient)
    _report("ProMP", differences)

    # the second epoch moved away from the sampling policy: the KL penalty and the clip were live
    assert torch_runs[2][0]["inner_kl"] > 1e-6 and torch_runs[1][0]["inner_kl"] == 0.0
    assert torch_runs[2][0]["loss_after"] < torch_runs[2][0]["loss_before"]
    assert max(differences.values()) < TOLERANCE, differences


# MAML's scalar-rate adaptation is also ProMP's (compared above): its A2C program (a compile of seconds)
# runs with pytest -m long
@pytest.mark.parametrize("method", ["MetaSGD", pytest.param("MAML", marks=pytest.mark.long)])
def test_meta_a2c_step_agrees(recorded, method):
    policy = _torch_policy(recorded)
    learner = MetaSGD(policy, lr=INNER_LR) if method == "MetaSGD" else MAML(policy, lr=INNER_LR)
    optimizer = torch.optim.Adam(learner.parameters(), lr=META_LR)
    with jax.enable_x64(True):
        torch_stats = torch_rl.meta_a2c_step(learner, recorded["torch"], optimizer)

        jax_policy = _jax_policy(_torch_policy(recorded))
        if method == "MetaSGD":
            meta, lr = jax_rl.metasgd_parameters(jax_policy, INNER_LR), None
        else:
            meta, lr = jax_policy, INNER_LR
        jax_optimizer = optax.adam(META_LR)
        new, state, jax_stats = jax_rl.a2c_meta_update(
            meta, recorded["jax"], jax_optimizer, jax_optimizer.init(meta), lr
        )
    parameters = list(policy.parameters())
    jax_trees = {"parameters": new, "mu": _jax_adam(state)[0], "nu": _jax_adam(state)[1]}
    if method == "MetaSGD":
        parameters += list(learner.lrs)
        leaves = {
            k: _as_torch_order(tree["policy"]) + _as_torch_order(tree["lrs"]) for k, tree in jax_trees.items()
        }
    else:
        leaves = {k: _as_torch_order(tree) for k, tree in jax_trees.items()}
    mu, nu = _adam_moments(optimizer, parameters)
    torch_gradient = [p.grad for p in parameters]
    assert max(float(g.abs().max()) for g in torch_gradient) > 1e-2
    differences = {
        "loss": abs(torch_stats["loss"] - float(jax_stats["loss"])),
        "gradient": _difference(torch_gradient, [m / (1 - BETA1) for m in leaves["mu"]]),
        "adam nu": _difference(nu, leaves["nu"]),
        "parameters": _difference(parameters, leaves["parameters"]),
    }
    _report(f"A2C {method}", differences)
    if method == "MetaSGD":  # the rates are meta-learned: they moved, alike on both backends
        assert max(float((rate.detach() - INNER_LR).abs().max()) for rate in learner.lrs) > 1e-3
    assert max(differences.values()) < TOLERANCE, differences


def test_bad_arguments_are_refused_before_compiling(recorded):
    """Each refusal names the argument (raised in Python, before any tracing)."""
    policy = _jax_policy(_torch_policy(recorded))
    batches, optimizer = recorded["jax"], optax.adam(META_LR)
    promp = lambda **kw: jax_rl.promp_meta_update(policy, batches, optimizer, None, **{"lr": 0.1, **kw})  # noqa: E731
    for settings, message in (
        ({"epochs": 0}, "epochs must be a positive int"),
        ({"epochs": 2.0}, "epochs must be a positive int"),
        ({"clip": 0.0}, "clip=0.0 must be > 0"),
        ({"inner_kl_coef": -1.0}, "inner_kl_coef=-1.0 must be >= 0"),
        ({"lr": -0.1}, "lr=-0.1 must be >= 0"),
    ):
        with pytest.raises(ValueError, match=message):
            promp(**settings)
    with pytest.raises(TypeError, match="optimizer must be an optax GradientTransformation"):
        jax_rl.promp_meta_update(policy, batches, "adam", None, 0.1)
    two_steps = batches._replace(train=(batches.train, batches.train))
    with pytest.raises(ValueError, match="batches.train must be one Episodes"):
        jax_rl.promp_meta_update(policy, two_steps, optimizer, None, 0.1)

    meta = {"policy": policy, "lrs": policy}
    with pytest.raises(ValueError, match="lr=0.1 must be None with Meta-SGD meta_params"):
        jax_rl.a2c_meta_update(meta, batches, optimizer, None, 0.1)
    with pytest.raises(ValueError, match="must have exactly the keys 'policy' and 'lrs'"):
        jax_rl.a2c_meta_update({"model": policy}, batches, optimizer, None)
    with pytest.raises(ValueError, match="lr=None must be a float >= 0 with a policy"):
        jax_rl.a2c_meta_update(policy, batches, optimizer, None)
    with pytest.raises(ValueError, match="batches.train must be one Episodes"):
        jax_rl.a2c_meta_update(policy, two_steps, optimizer, None, 0.1)
    with pytest.raises(ValueError, match="lr=-1 must be >= 0"):
        jax_rl.metasgd_parameters(policy, -1)
