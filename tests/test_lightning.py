"""Lightning modules (the ``lightning`` extra): a few CPU steps of a tiny model, checked against a
hand-written MAML step and against the loss before training."""

import argparse

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

import lightning.pytorch as pl  # noqa: E402
from l2l_multi.backends.torch.lightning import (  # noqa: E402
    EpisodicBatcher,
    LightningANIL,
    LightningMAML,
    LightningMetaOptNet,
    LightningPrototypicalNetworks,
    split_episode,
)

WAYS, SHOTS, QUERIES, FEATURES = 3, 2, 2, 4


class _FixedTask:
    """A task dataset that always returns the same task (so losses are comparable across steps)."""

    def __init__(self, seed=0):
        generator = torch.Generator().manual_seed(seed)
        labels = torch.arange(WAYS).repeat_interleave(SHOTS + QUERIES)
        centres = 2.0 * torch.randn(WAYS, FEATURES, generator=generator)
        self.task = (centres[labels] + torch.randn(labels.shape[0], FEATURES, generator=generator), labels)

    def sample(self):
        return self.task


def _trainer(max_steps, validate=False):
    return pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1 if validate else 0,
        num_sanity_val_steps=0,
    )


EPISODE = dict(
    train_ways=WAYS,
    train_shots=SHOTS,
    train_queries=QUERIES,
    test_ways=WAYS,
    test_shots=SHOTS,
    test_queries=QUERIES,
)


def test_lightning_maml_step_is_the_hand_written_maml_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, WAYS).double()
    start = [p.detach().clone() for p in model.parameters()]
    lr, adaptation_lr = 0.01, 0.3
    module = LightningMAML(model, lr=lr, adaptation_lr=adaptation_lr, adaptation_steps=1, **EPISODE)
    tasks = _FixedTask()
    data, labels = tasks.task
    tasks.task = (data.double(), labels)
    _trainer(max_steps=1).fit(module, EpisodicBatcher(tasks, epoch_length=4))

    # independent computation: one second-order MAML step written with plain autograd, then Adam's first step
    weight, bias = (p.clone().requires_grad_() for p in start)
    support = torch.cat([torch.arange(c * 4, c * 4 + SHOTS) for c in range(WAYS)])
    query = torch.cat([torch.arange(c * 4 + SHOTS, c * 4 + 4) for c in range(WAYS)])
    x, y = tasks.task
    inner = torch.nn.functional.cross_entropy(x[support] @ weight.t() + bias, y[support])
    grad_w, grad_b = torch.autograd.grad(inner, (weight, bias), create_graph=True)
    fast_w, fast_b = weight - adaptation_lr * grad_w, bias - adaptation_lr * grad_b
    outer = torch.nn.functional.cross_entropy(x[query] @ fast_w.t() + fast_b, y[query])
    meta_grads = torch.autograd.grad(outer, (weight, bias))
    for parameter, initial, g in zip(model.parameters(), start, meta_grads):
        # Adam's first step: m_hat = g, v_hat = g^2
        expected = initial - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(parameter.detach(), expected, rtol=0, atol=1e-12)


def _query_loss(module, tasks):
    with torch.no_grad():
        return module.meta_learn(tasks.sample(), 0, WAYS, SHOTS, QUERIES)[0].item()


@pytest.mark.parametrize("name", ["anil", "protonet", "metaoptnet"])
def test_lightning_modules_lower_the_query_loss_in_three_steps(name):
    torch.manual_seed(1)
    features = torch.nn.Sequential(torch.nn.Linear(FEATURES, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    module = {
        "anil": lambda: LightningANIL(
            features, torch.nn.Linear(8, WAYS), lr=0.02, adaptation_lr=0.5, **EPISODE
        ),
        "protonet": lambda: LightningPrototypicalNetworks(features, lr=0.02, **EPISODE),
        "metaoptnet": lambda: LightningMetaOptNet(features, lr=0.02, svm_max_iters=50, **EPISODE),
    }[name]()
    tasks = _FixedTask(seed=2)
    before = _query_loss(module, tasks)
    trainer = _trainer(max_steps=3, validate=True)
    trainer.fit(module, EpisodicBatcher(tasks, epoch_length=3))
    assert trainer.global_step == 3
    assert {"train_loss", "train_accuracy", "valid_loss", "valid_accuracy"} <= set(trainer.callback_metrics)
    assert _query_loss(module, tasks) < before


def test_episodic_batcher_serves_a_task_dataset_and_tests():
    l2l = pytest.importorskip("l2l_multi")
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(60, FEATURES, generator=generator), torch.arange(6).repeat_interleave(10)
    dataset = l2l.data.MetaDataset(torch.utils.data.TensorDataset(x, y))
    transforms = [
        l2l.data.transforms.NWays(dataset, WAYS),
        l2l.data.transforms.KShots(dataset, SHOTS + QUERIES),
        l2l.data.transforms.LoadData(dataset),
        l2l.data.transforms.RemapLabels(dataset),
    ]
    tasks = l2l.data.TaskDataset(dataset, transforms)
    module = LightningPrototypicalNetworks(torch.nn.Linear(FEATURES, 8), **EPISODE)
    trainer = _trainer(max_steps=2, validate=True)
    batcher = EpisodicBatcher(tasks, epoch_length=2)
    trainer.fit(module, batcher)
    (result,) = trainer.test(module, batcher, verbose=False)
    assert 0.0 <= result["test_accuracy"] <= 1.0 and result["test_loss"] > 0


def test_split_episode_takes_shots_then_queries_per_class():
    labels = torch.tensor([2, 0, 1, 2, 0, 1])
    support, support_labels, query, query_labels = split_episode(torch.arange(6.0), labels, 3, 1, 1)
    assert support.tolist() == [1.0, 2.0, 0.0] and support_labels.tolist() == [0, 1, 2]
    assert query.tolist() == [4.0, 5.0, 3.0] and query_labels.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="3 ways x \\(1 shots \\+ 2 queries\\) needs 9 examples"):
        split_episode(torch.arange(6.0), labels, 3, 1, 2)


def test_hyperparameters_follow_learn2learn():
    module = LightningMAML(torch.nn.Linear(2, 5))
    assert (module.train_ways, module.train_shots, module.lr, module.adaptation_lr) == (5, 1, 0.001, 0.1)
    assert dict(module.hparams)["adaptation_steps"] == 1
    parser = LightningMetaOptNet.add_model_specific_args(argparse.ArgumentParser(add_help=False))
    assert parser.parse_args(["--svm_C_reg", "0.5"]).svm_C_reg == 0.5
    with pytest.raises(ValueError, match="train_ways == test_ways"):
        LightningMAML(torch.nn.Linear(2, 5), train_ways=5, test_ways=20)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['adaptation_rate'\\]"):
        LightningANIL(torch.nn.Identity(), torch.nn.Linear(2, 5), adaptation_rate=0.1)
    with pytest.raises(ValueError, match="epoch_length must be a positive int"):
        EpisodicBatcher(_FixedTask(), epoch_length=0)


def test_track_test_accuracy_callback_tests_after_each_validation():
    from l2l_multi.utils.lightning import NoLeaveProgressBar, TrackTestAccuracyCallback

    tested = []

    class Counting(LightningPrototypicalNetworks):
        def test_step(self, batch, batch_idx):
            tested.append(self.global_step)
            return super().test_step(batch, batch_idx)

    module = Counting(torch.nn.Linear(FEATURES, 8), **EPISODE)
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[TrackTestAccuracyCallback()],
    )
    trainer.fit(module, EpisodicBatcher(_FixedTask(), epoch_length=4))
    assert trainer.global_step == 4
    assert tested == [2, 2, 2, 2, 4, 4, 4, 4]  # after each of the 2 validations, the 4 test tasks
    bar = NoLeaveProgressBar()
    bar.disable()
    assert bar.init_test_tqdm().leave is False
