"""ResNet12 and WRN28 (with their backbones) on both backends: shapes and parameter counts (against
closed forms), torch and flax agreement on the same weights in train and eval mode with running
statistics, the interop round trip, dropout and DropBlock only in training mode, argument errors."""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from l2l_multi.backends.jax.vision import _resnet as flax_resnet  # noqa: E402
from l2l_multi.backends.jax.vision import models as J  # noqa: E402
from l2l_multi.backends.torch.vision import _resnet as torch_resnet  # noqa: E402
from l2l_multi.backends.torch.vision import models as T  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi.interop import flax_to_torch, torch_to_flax  # noqa: E402


@pytest.fixture(autouse=True)
def _full_float32_precision():
    """Strict float32 products (no TF32 on GPUs) so torch and jax compare at float32 rounding."""
    with jax.default_matmul_precision("highest"):
        yield


NO_DROPOUT = dict(dropblock_dropout=0.0)
# name -> (constructor arguments shared by both backends, torch input shape, output shape); small
# variants (narrow ResNet12, small images) keep the file fast; full sizes are checked by shape only
MODELS = {
    "ResNet12": (dict(output_size=5, hidden_size=512, wider=False, **NO_DROPOUT), (2, 3, 32, 32), (2, 5)),
    "ResNet12-flat": (
        dict(output_size=3, hidden_size=512 * 2 * 2, avg_pool=False, wider=False, channels=1, **NO_DROPOUT),
        (2, 1, 32, 32),
        (2, 3),
    ),
    "ResNet12Backbone": (dict(wider=True, **NO_DROPOUT), (2, 3, 32, 32), (2, 640)),
    "WRN28": (dict(output_size=5), (2, 3, 16, 16), (2, 5)),
    "WRN28Backbone": (dict(), (2, 3, 8, 8), (2, 640)),
}
MODEL_IDS = list(MODELS)


def _make(model_id, implementation="xla", seed=0, **overrides):
    arguments, shape, _ = MODELS[model_id]
    arguments = {**arguments, **overrides}
    name = model_id.split("-")[0]
    torch.manual_seed(seed)
    # "xla" compiles several times faster than "matmul" on CPU; "matmul" is checked once below
    return getattr(T, name)(**arguments), getattr(J, name)(**arguments, implementation=implementation), shape


def _input(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _key(seed):
    return jax.random.key(seed, impl="rbg")  # compiles about 2x faster than threefry in model.init


def _max_difference(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def _relative_difference(output, expected):
    """Largest difference over the output's scale: float32 rounding grows with the values."""
    return _max_difference(output, expected) / max(1.0, float(np.abs(expected).max()))


def _tree_max_difference(a, b):
    return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_max_difference, a, b)))


def _resnet12_parameters(channels, widths, hidden_size=None, output_size=None):
    count = 0
    for width_in, width in zip((channels, *widths[:-1]), widths):
        count += 9 * width_in * width + 2 * 9 * width * width + width_in * width  # convs, no biases
        count += 4 * 2 * width  # four batch norms
    return count if output_size is None else count + (hidden_size + 1) * output_size


def _wrn28_parameters(output_size=None):
    count, width_in = 9 * 3 * 16 + 16, 16
    for width, stride in zip((160, 320, 640), (1, 2, 2)):
        for i in range(4):
            count += 2 * width_in + 9 * width_in * width + width + 2 * width + 9 * width * width + width
            if i == 0 and (stride != 1 or width_in != width):
                count += width_in * width + width  # 1x1 shortcut with bias
            width_in = width
    count += 2 * 640
    return count if output_size is None else count + 641 * output_size


# ---------------------------------------------------------------------------------------------
# shapes and sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_shapes_and_parameter_counts_agree(model_id):
    torch_model, flax_model, shape = _make(model_id)
    with torch.no_grad():
        assert tuple(torch_model.eval()(torch.from_numpy(_input(shape))).shape) == MODELS[model_id][2]
    x = jnp.zeros(shape)
    variables = jax.eval_shape(flax_model.init, jax.random.key(0), x)  # shapes only
    assert set(variables) == {"params", "batch_stats"}
    apply = functools.partial(flax_model.apply, train=False)
    assert jax.eval_shape(apply, variables, x).shape == MODELS[model_id][2]
    flax_count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    assert flax_count == sum(p.numel() for p in torch_model.parameters())
    statistics = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["batch_stats"]))
    assert statistics == sum(b.numel() for b in torch_model.buffers())


FULL_SIZE = {  # name -> (arguments, input shape, output shape, parameters from the closed forms)
    "ResNet12": (
        dict(output_size=5),
        (2, 3, 84, 84),
        (2, 5),
        _resnet12_parameters(3, (64, 160, 320, 640), 640, 5),
    ),
    "ResNet12Backbone-16000": (
        dict(avg_pool=False),
        (2, 3, 84, 84),
        (2, 16000),
        _resnet12_parameters(3, (64, 160, 320, 640)),
    ),
    "ResNet12Backbone-narrow-80": (
        dict(wider=False),
        (2, 3, 80, 80),
        (2, 512),
        _resnet12_parameters(3, (64, 128, 256, 512)),
    ),
    "WRN28": (dict(output_size=5), (2, 3, 84, 84), (2, 5), _wrn28_parameters(5)),
    "WRN28Backbone-80": (dict(), (2, 3, 80, 80), (2, 640), _wrn28_parameters()),
}


@pytest.mark.parametrize("model_id", list(FULL_SIZE))
def test_full_size_models(model_id):
    arguments, shape, output_shape, parameters = FULL_SIZE[model_id]
    name = model_id.split("-")[0]
    torch_model, flax_model = getattr(T, name)(**arguments), getattr(J, name)(**arguments)
    assert sum(p.numel() for p in torch_model.parameters()) == parameters
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(flax_model.init, jax.random.key(0), x)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"])) == parameters
    evaluate = functools.partial(flax_model.apply, train=False)
    assert jax.eval_shape(evaluate, variables, x).shape == output_shape
    # learn2learn's state_dict keys, so its checkpoints load
    keys = set(torch_model.state_dict())
    prefix = "features." if hasattr(torch_model, "classifier") else ""
    if name.startswith("ResNet12"):
        assert {f"{prefix}layer4.0.conv3.weight", f"{prefix}layer1.0.downsample.1.running_var"} <= keys
    else:
        assert {f"{prefix}layer3.0.shortcut.0.bias", f"{prefix}bn1.num_batches_tracked"} <= keys


# ---------------------------------------------------------------------------------------------
# torch and flax agree on the same weights
# ---------------------------------------------------------------------------------------------


def _train_step(torch_model, shape):
    """One SGD step in training mode: moves the weights and the running statistics away from init."""
    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.01)
    x = torch.from_numpy(3.0 * _input(shape, seed=5) + 1.0)
    torch_model.train()(x).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_torch_and_flax_agree_in_train_and_eval_mode(model_id):
    torch_model, flax_model, shape = _make(model_id)
    _train_step(torch_model, shape)
    variables = torch_to_flax(torch_model)
    x = _input(shape)
    with torch.no_grad():
        expected_eval = torch_model.eval()(torch.from_numpy(x)).numpy()
        has_features = hasattr(torch_model, "classifier")
        embedding = torch_model.features(torch.from_numpy(x)).numpy() if has_features else None
        expected_train = torch_model.train()(torch.from_numpy(x)).numpy()  # updates running statistics

    @jax.jit  # all modes in one compilation
    def run(variables, x):
        evaluated = flax_model.apply(variables, x, train=False)
        trained, updates = flax_model.apply(variables, x, train=True, mutable=["batch_stats"])
        embedded = flax_model.apply(variables, x, train=False, method="embed") if has_features else None
        return evaluated, trained, updates["batch_stats"], embedded

    evaluated, trained, statistics, embedded = run(variables, jnp.asarray(x))
    differences = {
        "eval": _relative_difference(evaluated, expected_eval),
        "train": _relative_difference(trained, expected_train),
        "statistics": _tree_max_difference(statistics, torch_to_flax(torch_model)["batch_stats"]),
    }
    if embedding is not None:
        differences["embed"] = _relative_difference(embedded, embedding)
    assert max(differences.values()) < 1e-5, differences


def test_matmul_convolutions_agree_with_torch():
    torch_model, flax_model, shape = _make("ResNet12", implementation="matmul")
    _train_step(torch_model, shape)
    x = _input(shape)
    with torch.no_grad():
        expected = torch_model.eval()(torch.from_numpy(x)).numpy()
    evaluate = jax.jit(functools.partial(flax_model.apply, train=False))
    output = evaluate(torch_to_flax(torch_model), jnp.asarray(x))
    assert _max_difference(output, expected) < 1e-5


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_interop_round_trip_is_the_identity(model_id):
    torch_model, _, shape = _make(model_id)
    _train_step(torch_model, shape)  # running statistics and counters away from their initial values
    copy, _, _ = _make(model_id, seed=1)
    flax_to_torch(torch_to_flax(torch_model), copy)
    original, restored = torch_model.state_dict(), copy.state_dict()
    assert list(original) == list(restored)
    for key, value in original.items():
        assert torch.equal(value, restored[key]), key


def test_flax_init_round_trips_through_torch():
    # the other direction: flax-initialised variables survive flax -> torch -> flax bitwise
    _, flax_model, shape = _make("ResNet12")
    variables = jax.jit(flax_model.init)(_key(3), jnp.zeros(shape))
    torch_model, _, _ = _make("ResNet12")
    back = torch_to_flax(flax_to_torch(variables, torch_model))
    assert _tree_max_difference(back, variables) == 0.0


# ---------------------------------------------------------------------------------------------
# dropout and DropBlock
# ---------------------------------------------------------------------------------------------

DROPOUT_MODELS = {
    "ResNet12": dict(dropblock_dropout=0.2, embedding_dropout=0.3),
    "WRN28Backbone": dict(dropout=0.3),
}


@pytest.mark.parametrize("model_id", list(DROPOUT_MODELS))
def test_torch_dropout_only_in_training_mode(model_id):
    torch_model, _, shape = _make(model_id, **DROPOUT_MODELS[model_id])
    x = torch.from_numpy(_input(shape))
    with torch.no_grad():
        first, second = torch_model.train()(x), torch_model(x)
        assert not torch.equal(first, second)
        first, second = torch_model.eval()(x), torch_model(x)
        assert torch.equal(first, second)


@pytest.mark.parametrize("model_id", list(DROPOUT_MODELS))
def test_flax_dropout_only_in_training_mode(model_id):
    torch_model, flax_model, shape = _make(model_id, **DROPOUT_MODELS[model_id])
    variables, x_numpy = torch_to_flax(torch_model), _input(shape)
    x = jnp.asarray(x_numpy)

    @jax.jit  # compiled once, run with two keys
    def train(variables, x, key):
        return flax_model.apply(variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": key})[0]

    first, second = (train(variables, x, key) for key in jax.random.split(jax.random.key(0)))
    evaluated = jax.jit(functools.partial(flax_model.apply, train=False))(variables, x)  # needs no rng
    assert not np.array_equal(first, second)
    with torch.no_grad():
        assert _max_difference(evaluated, torch_model.eval()(torch.from_numpy(x_numpy))) < 1e-5
    with pytest.raises(Exception, match="dropout"):  # training with dropout needs the rng
        jax.eval_shape(functools.partial(flax_model.apply, train=True, mutable=["batch_stats"]), variables, x)


def _dropped_fraction_and_blocks(output):
    """Fraction of zeros, and whether every zero lies in a fully zero 3x3 square (NCHW, block 3)."""
    zeros = output == 0
    # a zero position is explained by some 3x3 all-zero square that contains it
    padded = np.pad(zeros, ((0, 0), (0, 0), (2, 2), (2, 2)))
    full = np.zeros_like(padded)
    for dy in range(padded.shape[2] - 2):
        for dx in range(padded.shape[3] - 2):
            square = padded[:, :, dy : dy + 3, dx : dx + 3].all(axis=(2, 3))
            full[:, :, dy : dy + 3, dx : dx + 3] |= square[:, :, None, None]
    return zeros.mean(), bool((full[:, :, 2:-2, 2:-2] >= zeros).all())


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_drop_block_drops_squares_at_the_given_rate(backend):
    x = np.ones((8, 16, 12, 12), np.float32)
    if backend == "torch":
        layer = torch_resnet._DropBlock(block_size=3)
        torch.manual_seed(0)
        output = layer.train()(torch.from_numpy(x), 0.2).numpy()
        assert torch.equal(layer.eval()(torch.from_numpy(x), 0.2), torch.from_numpy(x))
    else:
        nhwc = flax_resnet.drop_block(jnp.asarray(x.transpose(0, 2, 3, 1)), 0.2, 3, jax.random.key(0))
        output = np.asarray(nhwc).transpose(0, 3, 1, 2)
    fraction, in_squares = _dropped_fraction_and_blocks(output)
    assert abs(fraction - 0.2) < 0.03 and in_squares  # overlapping blocks make it a little under 0.2
    assert abs(output.mean() - 1.0) < 1e-5  # the kept values are rescaled to the batch's kept fraction


def test_drop_block_warms_up_over_training_steps_only():
    torch_model, _, shape = _make("ResNet12", dropblock_dropout=0.1)
    block = torch_model.features.layer3[0]
    x = torch.from_numpy(_input(shape))
    with torch.no_grad():
        torch_model.eval()(x)
        assert block.training_steps == 0
        torch_to_flax(torch_model.train())  # the interop trace leaves no trace
        assert block.training_steps == 0 and torch_model.training and block.training
        torch_model(x)
        assert block.training_steps == 1
    # learn2learn's rate: min(rate, rate * steps / 40000)
    seen = []
    block.dropblock.forward = lambda out, rate: seen.append(rate) or out
    block.training_steps = 19999
    with torch.no_grad():
        torch_model(x)
    block.training_steps = 10**6
    with torch.no_grad():
        torch_model(x)
    assert seen == pytest.approx([0.05, 0.1])


# ---------------------------------------------------------------------------------------------
# initialisation, argument errors, dispatch
# ---------------------------------------------------------------------------------------------


def test_initialisation_matches_torch():
    torch_model, flax_model, shape = _make("ResNet12")
    params = jax.jit(flax_model.init)(_key(0), jnp.zeros(shape))["params"]
    expected_std = np.sqrt(2.0 / (9 * 512))  # kaiming-normal, fan_out of a 512 -> 512 3x3 convolution
    for weights in (
        torch_model.features.layer4[0].conv2.weight.detach().numpy(),
        np.asarray(params["features"]["layer4"]["0"]["conv2"]["kernel"]),
    ):
        assert abs(weights.std() / expected_std - 1) < 0.02 and abs(weights.mean()) < 0.02 * expected_std
    bound = 1 / np.sqrt(512)  # torch's default Linear initialisation
    classifier = params["classifier"]
    for weights in (
        torch_model.classifier.bias.detach().numpy(),
        np.asarray(classifier["bias"]),
        torch_model.classifier.weight.detach().numpy(),
        np.asarray(classifier["kernel"]),
    ):
        assert np.abs(weights).max() <= bound and weights.std() > 0.3 * bound
    scale = params["features"]["layer1"]["0"]["bn1"]["scale"]
    assert np.all(np.asarray(scale) == 1.0) and torch.all(torch_model.features.layer1[0].bn1.weight == 1)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_argument_errors_name_the_argument(backend):
    models = T if backend == "torch" else J

    def build(model):
        if backend == "jax":
            jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 3, 32, 32)))

    with pytest.raises(ValueError, match=r"dropblock_dropout=1\.5 must be a dropout rate in \[0, 1\)"):
        build(models.ResNet12Backbone(dropblock_dropout=1.5))
    with pytest.raises(ValueError, match=r"dropblock_size=0 must be a positive int"):
        build(models.ResNet12(5, dropblock_size=0))
    with pytest.raises(ValueError, match=r"dropout=-0\.1 must be a dropout rate"):
        build(models.WRN28Backbone(dropout=-0.1))
    if backend == "jax":
        with pytest.raises(ValueError, match="hidden_size=640"):
            build(J.ResNet12(5, wider=False))
        with pytest.raises(ValueError, match=r"expected x of shape \[N, 3, H, W\] \(NCHW\)"):
            jax.eval_shape(J.WRN28(5).init, jax.random.key(0), jnp.zeros((2, 8, 8, 3)))


def test_models_resolve_in_the_current_backend():
    assert l2l.vision.models.ResNet12 is T.ResNet12 and l2l.vision.models.WRN28Backbone is T.WRN28Backbone
    with l2l.use_backend("jax"):
        assert l2l.vision.models.ResNet12Backbone is J.ResNet12Backbone and l2l.vision.models.WRN28 is J.WRN28
