"""MAML-TRPO, torch vs jax: from the same weights and the same recorded Particles2D episodes, in float64, the
advantages, the meta-gradient, the natural-gradient step and the accepted TRPO update agree to 1e-10, with one
adaptation step (DiCE and the plain inner loss) and (the update marked ``long``) with two. The plain loss's
meta-gradient differs from DiCE's by the closed-form score-function term.

The step is compared with a conjugate-gradient damping of 0.1. At the default 1e-5 the KL Hessian (rank
deficient: most of its eigenvalues are 0 up to rounding) is so ill-conditioned that 10 CG iterations amplify
rounding: torch's own ``conjugate_gradient`` fed the torch and the jax Hessians, which differ by 1.3e-15,
returns directions 3e-5 apart (relative; 6e-8 at damping 1e-2, 3e-15 at 0.1)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("gymnasium")

from l2l_multi.backends.jax import rl as jax_rl  # noqa: E402
from l2l_multi.backends.torch import rl as torch_rl  # noqa: E402
from l2l_multi.backends.torch.algorithms import MAML  # noqa: E402
from l2l_multi.backends.torch.rl._maml_trpo import _surrogate_and_kl  # noqa: E402

from l2l_multi.gym import particles_reset, particles_step  # noqa: E402

TASKS, EPISODES, HORIZON, HIDDENS, LR = 3, 4, 12, (16, 16), 0.1
TOLERANCE = 1e-10
CG_DAMPING = 0.1


def _to_torch(array):
    return torch.from_numpy(np.array(array, dtype=np.float64))


def _jax_policy(torch_policy):
    linears = [layer for layer in torch_policy.mean if isinstance(layer, torch.nn.Linear)]
    layers = [(linear.weight.detach().numpy().T, linear.bias.detach().numpy()) for linear in linears]
    return jax_rl.DiagNormalPolicy.from_parameters(layers, torch_policy.log_std.detach().numpy())


def _recorded_episodes(torch_policy, seed):
    """Particles2D episodes (the numpy dynamics of ``l2l_multi.gym``) of the torch policy, stacked over tasks
    ``[B, T, N, ...]`` as numpy float64; episode ``j`` is cut after ``T - j`` steps (masks 0, rewards 0 from
    there on) so that the masked paths are compared too."""
    rng = np.random.default_rng(seed)
    goals = rng.uniform(-0.5, 0.5, (TASKS, 2))
    fields = {"observations": [], "actions": [], "rewards": []}
    position = particles_reset(np.repeat(goals[:, None], EPISODES, axis=1))  # [B, N, 2]
    for _ in range(HORIZON):
        with torch.no_grad():
            dist = torch_policy(torch.from_numpy(position.astype(np.float64)))
        action = dist.mean.numpy() + dist.stddev.numpy() * rng.standard_normal(dist.mean.shape)
        fields["observations"].append(position.astype(np.float64))
        fields["actions"].append(action)
        position, reward, _ = particles_step(position, goals[:, None], action)
        fields["rewards"].append(reward)
    masks = (np.arange(HORIZON)[:, None] < (HORIZON - np.arange(EPISODES))[None, :]).astype(np.float64)
    stacked = {name: np.stack(values, axis=1) for name, values in fields.items()}  # [B, T, N, ...]
    stacked["rewards"] = stacked["rewards"] * masks
    return jax_rl.Episodes(**stacked, masks=np.broadcast_to(masks, (TASKS, HORIZON, EPISODES)).copy())


def _task(episodes, index, to):
    return type(episodes)(*(to(field[index]) for field in episodes))


@pytest.fixture(scope="module", params=["dice", "plain"])
def both(request):
    """The torch and jax MAML-TRPO pieces on the same weights and episodes (computed once per inner loss)."""
    inner_loss = request.param
    with jax.enable_x64(True):
        torch.manual_seed(0)
        torch_policy = torch_rl.DiagNormalPolicy(2, 2, hiddens=HIDDENS).double()
        policy = _jax_policy(torch_policy)
        train = _recorded_episodes(torch_policy, seed=1)
        valid = _recorded_episodes(torch_policy, seed=2)  # stands in for the adapted policies' episodes

        fit = jax.jit(jax.vmap(lambda e: jax_rl.episode_advantages(jax_rl.LinearValue(2), e, 0.99, 1.0)))
        jax_advantages = {"train": fit(train), "valid": fit(valid)}
        torch_batches, advantages = [], {"train": [], "valid": []}
        for index in range(TASKS):
            phases = {}
            for name, episodes in (("train", train), ("valid", valid)):
                torch_episodes = _task(episodes, index, _to_torch)
                # float64 weights: torch's LinearValue keeps float32 ones unless converted
                baseline = torch_rl.LinearValue(2).double()
                torch_advantages = torch_rl.episode_advantages(baseline, torch_episodes, 0.99, 1.0)
                advantages[name].append((torch_advantages.numpy(), np.asarray(jax_advantages[name][index])))
                phases[name] = (torch_episodes, torch_advantages)
            torch_batches.append(torch_rl.TaskBatch(*phases["train"], *phases["valid"]))
        jax_batches = jax_rl.TaskBatch(train, jax_advantages["train"], valid, jax_advantages["valid"])

        maml = MAML(torch_policy, lr=LR)
        params = [p for p in torch_policy.parameters()]
        loss, kl, _ = _surrogate_and_kl(maml, torch_batches, inner_loss=inner_loss)
        torch_gradient = torch.autograd.grad(loss, params)
        start = [p.detach().clone() for p in params]
        torch_stats = torch_rl.maml_trpo_step(
            maml, torch_batches, cg_damping=CG_DAMPING, inner_loss=inner_loss
        )
        torch_step = [p.detach() - s for p, s in zip(params, start)]

        # (trpo_meta_update compiles itself, once per shape: tests/test_jax_rl.py reuses these shapes)
        new_policy, jax_stats = jax_rl.trpo_meta_update(
            policy, jax_batches, LR, cg_damping=CG_DAMPING, inner_loss=inner_loss
        )
        _, unravel = jax.flatten_util.ravel_pytree(policy)
        jax_step = jax.tree_util.tree_map(lambda a, b: np.asarray(a - b), new_policy, policy)
        yield {
            "advantages": advantages,
            "loss": (loss.item(), float(jax_stats["loss_before"])),
            "gradient": (torch_gradient, unravel(jax_stats["gradient"])),
            "step": (torch_step, jax_step),
            "stats": (torch_stats, jax.tree_util.tree_map(np.asarray, jax_stats)),
        }


def _as_torch_order(policy):
    """A jax policy's leaves in torch's ``parameters()`` order (the policy's own ``log_std`` before the
    layers of its ``mean`` submodule) and layout (weights ``[out, in]``)."""
    leaves = [np.asarray(policy.log_std)]
    for weight, bias in policy.layers:
        leaves += [np.asarray(weight).T, np.asarray(bias)]
    return leaves


def _max_difference(torch_tensors, jax_policy):
    pairs = zip(torch_tensors, _as_torch_order(jax_policy))
    return max(float(np.max(np.abs(t.numpy() - j))) for t, j in pairs)


def test_advantages_agree(both):
    for name in ("train", "valid"):
        for torch_advantages, jax_advantages in both["advantages"][name]:
            np.testing.assert_allclose(jax_advantages, torch_advantages, rtol=0, atol=TOLERANCE)


def test_surrogate_and_meta_gradient_agree(both):
    torch_loss, jax_loss = both["loss"]
    assert abs(torch_loss - jax_loss) < TOLERANCE
    torch_gradient, jax_gradient = both["gradient"]
    scale = max(float(t.abs().max()) for t in torch_gradient)
    assert scale > 1e-3  # a gradient worth comparing
    assert _max_difference(torch_gradient, jax_gradient) < TOLERANCE


def test_trpo_step_agrees(both):
    torch_stats, jax_stats = both["stats"]
    assert torch_stats["accepted"] and bool(jax_stats["accepted"])
    for name in ("loss_before", "loss_after", "kl"):
        assert abs(torch_stats[name] - float(jax_stats[name])) < TOLERANCE, name
    torch_step, jax_step = both["step"]
    assert max(float(t.abs().max()) for t in torch_step) > 1e-3
    assert _max_difference(torch_step, jax_step) < TOLERANCE


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def test_plain_and_dice_meta_gradients_differ_by_the_score_function_term():
    # One adaptation step theta' = theta - lr grad L_in(theta) with L_in = -sum_t w_t f(log p_t), w_t =
    # A_t m_t / sum(m). DiCE's f (magic box) adds w_t g_t g_t^T to the Hessian of -L_in (g_t = grad log p_t
    # at theta), the plain f does not; the meta-gradient (I - lr H_in) grad L_out(theta') therefore differs
    # by lr sum_t w_t g_t (g_t . grad L_out(theta')), computed here step by step.
    torch.manual_seed(3)
    policy = torch_rl.DiagNormalPolicy(2, 2, hiddens=(4,)).double()
    steps, episodes = 5, 3
    masks = (torch.arange(steps)[:, None] < torch.tensor([5, 5, 3])[None, :]).double()  # one episode cut

    def batch(seed):
        g = torch.Generator().manual_seed(seed)
        shape = (steps, episodes)
        observations, actions = (torch.randn(*shape, 2, generator=g, dtype=torch.float64) for _ in range(2))
        return torch_rl.Episodes(observations, actions, torch.zeros(shape, dtype=torch.float64), masks)

    train, valid = batch(1), batch(2)
    advantages = torch.randn(steps, episodes, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    params = list(policy.parameters())

    def outer_loss(module):
        log_probs = module(valid.observations).log_prob(valid.actions)
        return torch_rl.plain_policy_loss(log_probs, advantages.flip(0), valid.masks)

    results = {}
    for inner_loss in ("dice", "plain"):
        learner = torch_rl.adapt_policy(MAML(policy, lr=LR), train, advantages, inner_loss=inner_loss)
        results[inner_loss] = (_flat(torch.autograd.grad(outer_loss(learner), params)), learner)
    adapted = torch_rl.DiagNormalPolicy(2, 2, hiddens=(4,)).double()
    with torch.no_grad():
        for target, value in zip(adapted.parameters(), results["dice"][1].module.parameters()):
            target.copy_(value)
    for dice_value, plain_value in zip(results["dice"][1].parameters(), results["plain"][1].parameters()):
        assert torch.equal(dice_value, plain_value)  # the same first derivative: the same adapted policy
    outer_gradient = _flat(torch.autograd.grad(outer_loss(adapted), list(adapted.parameters())))
    weights = advantages * masks / masks.sum()
    expected = torch.zeros_like(outer_gradient)
    for t in range(steps):
        for n in range(episodes):
            log_prob = policy(train.observations[t, n]).log_prob(train.actions[t, n])
            score = _flat(torch.autograd.grad(log_prob, params))
            expected += LR * weights[t, n] * score * (score @ outer_gradient)
    difference = results["dice"][0] - results["plain"][0]
    assert float(expected.abs().max()) > 1e-3  # a term worth comparing
    torch.testing.assert_close(difference, expected, rtol=0, atol=1e-12)


def test_inner_loss_is_checked_on_both_backends():
    maml = MAML(torch_rl.DiagNormalPolicy(2, 2, hiddens=(4,)), lr=LR)
    with pytest.raises(ValueError, match=r"inner_loss='e-maml' is not one of \('dice', 'plain'\)"):
        torch_rl.maml_trpo_step(maml, [None], inner_loss="e-maml")
    policy = jax_rl.DiagNormalPolicy(2, 2, hiddens=(4,), key=jax.random.key(0))
    for call in (
        lambda: jax_rl.trpo_meta_update(policy, None, LR, inner_loss="e-maml"),
        lambda: jax_rl.adapted_policy(policy, None, None, LR, inner_loss="e-maml"),
    ):
        with pytest.raises(ValueError, match=r"inner_loss='e-maml' is not one of \('dice', 'plain'\)"):
            call()


# -- two adaptation steps (learn2learn's adapt_steps=2) ------------------------------------------------------
def test_two_step_adaptation_agrees_and_differs_from_one_step():
    """The adapted policies (forward only: one small compile) agree across backends; the default-suite
    part of the two-step check. The meta-gradient and the TRPO step are compared below (``long``: compiling
    the second-order update through two steps takes about 40 s here)."""
    with jax.enable_x64(True):
        torch.manual_seed(0)
        torch_policy = torch_rl.DiagNormalPolicy(2, 2, hiddens=HIDDENS).double()
        policy = _jax_policy(torch_policy)
        first, second = (_task(_recorded_episodes(torch_policy, seed), 0, np.asarray) for seed in (1, 3))
        advantages = [np.sin(np.arange(HORIZON * EPISODES)).reshape(HORIZON, EPISODES) * k for k in (1, -2)]
        maml = MAML(torch_policy, lr=LR)
        as_torch = lambda e: type(e)(*map(_to_torch, e))  # noqa: E731
        torch_two = torch_rl.adapt_policy(
            maml, [as_torch(first), as_torch(second)], [_to_torch(a) for a in advantages]
        )
        jax_two = jax_rl.adapted_policy(policy, (first, second), tuple(advantages), LR)
        two = [p.detach() for p in torch_two.module.parameters()]
        assert _max_difference(two, jax_two) < TOLERANCE
        one = torch_rl.adapt_policy(maml, as_torch(first), _to_torch(advantages[0])).module.parameters()
        assert max(float((a - b.detach()).abs().max()) for a, b in zip(two, one)) > 1e-3


@pytest.fixture(scope="module")
def two_steps():
    """The torch and jax MAML-TRPO updates from the same weights on batches of two adaptation steps: step 1
    on one recording, step 2 on a second one, the surrogate on a third (the same recordings for both)."""
    with jax.enable_x64(True):
        torch.manual_seed(0)
        torch_policy = torch_rl.DiagNormalPolicy(2, 2, hiddens=HIDDENS).double()
        policy = _jax_policy(torch_policy)
        recordings = [_recorded_episodes(torch_policy, seed) for seed in (1, 3, 2)]  # step 1, step 2, valid
        fit = jax.jit(jax.vmap(lambda e: jax_rl.episode_advantages(jax_rl.LinearValue(2), e, 0.99, 1.0)))
        advantages = [fit(episodes) for episodes in recordings]
        jax_batches = jax_rl.TaskBatch.from_steps(
            recordings[:2], advantages[:2], recordings[2], advantages[2]
        )
        torch_batches = []
        for index in range(TASKS):
            episodes = [_task(recording, index, _to_torch) for recording in recordings]
            fitted = [_to_torch(phase[index]) for phase in advantages]  # compared in test_advantages_agree
            torch_batches.append(
                torch_rl.TaskBatch.from_steps(episodes[:2], fitted[:2], episodes[2], fitted[2])
            )

        maml = MAML(torch_policy, lr=LR)
        params = list(torch_policy.parameters())
        loss, _, _ = _surrogate_and_kl(maml, torch_batches)
        torch_gradient = torch.autograd.grad(loss, params)
        one_step = [
            batch._replace(train=batch.train[0], train_advantages=batch.train_advantages[0])
            for batch in torch_batches
        ]
        one_step_gradient = torch.autograd.grad(_surrogate_and_kl(maml, one_step)[0], params)
        start = [p.detach().clone() for p in params]
        torch_stats = torch_rl.maml_trpo_step(maml, torch_batches, cg_damping=CG_DAMPING)
        torch_step = [p.detach() - s for p, s in zip(params, start)]

        new_policy, jax_stats = jax_rl.trpo_meta_update(policy, jax_batches, LR, cg_damping=CG_DAMPING)
        _, unravel = jax.flatten_util.ravel_pytree(policy)
        jax_step = jax.tree_util.tree_map(lambda a, b: np.asarray(a - b), new_policy, policy)
        yield {
            "batches": (torch_batches, jax_batches),
            "loss": (loss.item(), float(jax_stats["loss_before"])),
            "gradient": (torch_gradient, unravel(jax_stats["gradient"])),
            "one_step_gradient": one_step_gradient,
            "step": (torch_step, jax_step),
            "stats": (torch_stats, jax.tree_util.tree_map(np.asarray, jax_stats)),
        }


@pytest.mark.long
def test_two_step_batches_hold_both_steps(two_steps):
    torch_batches, jax_batches = two_steps["batches"]
    assert jax_batches.adapt_steps == 2 and all(batch.adapt_steps == 2 for batch in torch_batches)


@pytest.mark.long
def test_two_step_meta_gradient_agrees_and_differs_from_one_step(two_steps):
    torch_loss, jax_loss = two_steps["loss"]
    assert abs(torch_loss - jax_loss) < TOLERANCE
    torch_gradient, jax_gradient = two_steps["gradient"]
    assert max(float(t.abs().max()) for t in torch_gradient) > 1e-3
    assert _max_difference(torch_gradient, jax_gradient) < TOLERANCE
    # the second step changes the meta-gradient far beyond the tolerance (ignoring it could not pass)
    pairs = zip(torch_gradient, two_steps["one_step_gradient"])
    assert max(float((a - b).abs().max()) for a, b in pairs) > 1e-3


@pytest.mark.long
def test_two_step_trpo_step_agrees(two_steps):
    torch_stats, jax_stats = two_steps["stats"]
    assert torch_stats["accepted"] and bool(jax_stats["accepted"])
    for name in ("loss_before", "loss_after", "kl"):
        assert abs(torch_stats[name] - float(jax_stats[name])) < TOLERANCE, name
    torch_step, jax_step = two_steps["step"]
    assert max(float(t.abs().max()) for t in torch_step) > 1e-3
    assert _max_difference(torch_step, jax_step) < TOLERANCE


@pytest.mark.parametrize("init", ["torch", "xavier"])
def test_policy_inits_draw_the_same_distribution_on_both_backends(init):
    """``DiagNormalPolicy(..., init=)``: each layer's weights fill the scheme's uniform range (bound
    1/sqrt(fan_in) for "torch", sqrt(6/(fan_in + fan_out)) for "xavier") with its variance bound^2/3, biases
    likewise ("torch") or exactly zero ("xavier"), on both backends; other values are refused by name."""
    torch.manual_seed(0)
    policies = {
        "torch": torch_rl.DiagNormalPolicy(300, 6, hiddens=(200,), init=init),
        "jax": jax_rl.DiagNormalPolicy(300, 6, hiddens=(200,), init=init, key=jax.random.key(0)),
    }
    as_numpy = {"torch": _jax_policy(policies["torch"]).layers, "jax": policies["jax"].layers}
    for backend, layers in as_numpy.items():
        for weight, bias in layers:
            weight, bias = np.asarray(weight), np.asarray(bias)
            fan_in, fan_out = weight.shape
            bound = np.sqrt(6 / (fan_in + fan_out)) if init == "xavier" else 1 / np.sqrt(fan_in)
            assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.99 * bound, backend
            assert abs(weight.var() / (bound**2 / 3) - 1) < 0.05, (backend, weight.shape)
            if init == "xavier":
                assert not bias.any(), backend
            else:
                assert np.abs(bias).max() <= bound, backend
                assert bias.size < 100 or abs(bias.var() / (bound**2 / 3) - 1) < 0.2, backend
    for make in (
        lambda: torch_rl.DiagNormalPolicy(3, 2, init="glorot"),
        lambda: jax_rl.DiagNormalPolicy(3, 2, init="glorot", key=jax.random.key(0)),
    ):
        with pytest.raises(ValueError, match="init='glorot' is not one of 'torch', 'xavier'"):
            make()
