"""l2l_multi.interop: weight conversion round trips (bitwise), generic Sequential models with a
hand-written flax twin (the NHWC flatten reorder), argument errors, DLPack memory sharing and
dtypes, and a converted model's outputs and gradients against torch's."""

import collections
import functools

import numpy as np
import pytest
from _helpers import run_python

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from l2l_multi.backends.jax.vision import models as J  # noqa: E402
from l2l_multi.backends.torch.vision import models as T  # noqa: E402

from l2l_multi.interop import flax_to_torch, to_jax, to_torch, torch_to_flax  # noqa: E402


@pytest.fixture(autouse=True)
def _full_float32_precision():
    """Strict float32 products (no TF32 on GPUs) so torch and jax compare at float32 rounding."""
    with jax.default_matmul_precision("highest"):
        yield


# name -> constructor (torch and flax classes take the same arguments)
MODELS = {
    "OmniglotFC": lambda cls, **k: cls(64, 5, (32, 16), **k),
    "OmniglotCNN": lambda cls, **k: cls(5, hidden_size=8, **k),
    "ConvBase": lambda cls, **k: cls(hidden=8, channels=3, max_pool=True, layers=3, **k),
    "CNN4Backbone": lambda cls, **k: cls(hidden_size=8, layers=2, **k),
    "CNN4": lambda cls, **k: cls(5, hidden_size=8, **k),
}


def _torch_model(name, track_running_stats, seed):
    torch.manual_seed(seed)
    model = MODELS[name](getattr(T, name), track_running_stats=track_running_stats)
    with torch.no_grad():  # every value distinct and random, running statistics included
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.1)
            else:
                tensor.fill_(seed + 3)
    return model


def _tree_equal(a, b):
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(
        x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b)
    )


def _max_difference(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_importing_interop_imports_no_framework():
    result = run_python(
        "import sys, l2l_multi.interop\n"
        "print(sorted(m for m in ('torch', 'jax', 'flax') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("track_running_stats", [False, True], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize("name", list(MODELS))
def test_torch_flax_torch_is_the_identity(name, track_running_stats):
    source = _torch_model(name, track_running_stats, seed=0)
    variables = torch_to_flax(source)
    assert ("batch_stats" in variables) == track_running_stats
    target = flax_to_torch(variables, _torch_model(name, track_running_stats, seed=1))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


@pytest.mark.parametrize("track_running_stats", [False, True], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize("name", list(MODELS))
def test_flax_torch_flax_is_the_identity(name, track_running_stats):
    flax_model = MODELS[name](getattr(J, name), track_running_stats=track_running_stats)
    shapes = jax.eval_shape(lambda: torch_to_flax(_torch_model(name, track_running_stats, seed=0)))
    keys = iter(jax.random.split(jax.random.key(0), len(jax.tree_util.tree_leaves(shapes))))
    variables = jax.tree_util.tree_map(  # random values of the right shapes and dtypes
        lambda s: (
            jax.random.uniform(next(keys), s.shape, s.dtype)
            if jnp.issubdtype(s.dtype, jnp.floating)
            else jnp.full(s.shape, 7, s.dtype)
        ),
        shapes,
    )
    torch_model = flax_to_torch(variables, _torch_model(name, track_running_stats, seed=1), flax_model)
    assert _tree_equal(torch_to_flax(torch_model, flax_model), variables)


def test_learn2learn_layout_round_trips_through_its_own_twin():
    """A ``layout="learn2learn"`` model converts to its twin (found from ``get_config()``) and
    back bitwise, running statistics and ``num_batches_tracked`` included."""
    torch.manual_seed(0)
    source = T.ConvBase(hidden=8, channels=3, max_pool=True, layers=2, layout="learn2learn")
    with torch.no_grad():
        source.train()(torch.randn(4, 3, 16, 16) * 3.0 + 1.0)  # statistics and counters move
    variables = torch_to_flax(source)
    assert int(variables["batch_stats"]["0"]["normalize"]["num_batches_tracked"]) == 1
    target = flax_to_torch(
        variables, T.ConvBase(hidden=8, channels=3, max_pool=True, layers=2, layout="learn2learn")
    )
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_converted_weights_share_no_memory_with_torch():
    model = _torch_model("OmniglotCNN", False, seed=0)
    variables = torch_to_flax(model)
    kernel = np.array(variables["params"]["classifier"]["bias"])
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    np.testing.assert_array_equal(variables["params"]["classifier"]["bias"], kernel)


# ---------------------------------------------------------------------------------------------
# generic models
# ---------------------------------------------------------------------------------------------


def _torch_sequential():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=False),
        torch.nn.Flatten(),
        torch.nn.Linear(6 * 2 * 2, 5),
    )
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 1.5)
    return model.eval()


class FlaxSequential(nn.Module):
    """The flax way to write the model above: NHWC throughout, flattening (H, W, C)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(8, (3, 3), padding=1)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
        x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
        x = nn.Conv(6, (3, 3), strides=2, padding=1, use_bias=False)(x)
        return nn.Dense(5)(x.reshape(x.shape[0], -1))


def test_generic_sequential_with_a_flax_twin_that_flattens_nhwc():
    torch_model, flax_model = _torch_sequential(), FlaxSequential()
    variables = torch_to_flax(torch_model, flax_model, input_shape=(2, 3, 8, 8))
    assert set(variables["params"]) == {"Conv_0", "BatchNorm_0", "Conv_1", "Dense_0"}
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    output = jax.jit(flax_model.apply)(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert _max_difference(output, expected) < 1e-5  # only true with the (C, H, W) -> (H, W, C) reorder
    back = flax_to_torch(variables, _torch_sequential().train(), flax_model, input_shape=(2, 3, 8, 8))
    for key, value in torch_model.state_dict().items():
        if key != "1.num_batches_tracked":  # flax's BatchNorm has no counter: the target keeps its own
            assert torch.equal(back.state_dict()[key], value), key


def test_generic_sequential_without_a_flax_model_is_named_after_torch():
    torch_model = _torch_sequential()
    variables = torch_to_flax(torch_model, input_shape=(2, 3, 8, 8))
    shapes = jax.tree_util.tree_map(lambda a: a.shape, variables)
    assert shapes == {
        "params": {
            "0": {"kernel": (3, 3, 3, 8), "bias": (8,)},
            "1": {"scale": (8,), "bias": (8,)},
            "4": {"kernel": (3, 3, 8, 6)},
            "6": {"kernel": (24, 5), "bias": (5,)},
        },
        "batch_stats": {"1": {"mean": (8,), "var": (8,)}},
    }
    target = _torch_sequential()
    with torch.no_grad():
        for tensor in target.state_dict().values():
            tensor.zero_()
    back = flax_to_torch(variables, target, input_shape=(2, 3, 8, 8))
    for key, value in torch_model.state_dict().items():
        if key != "1.num_batches_tracked":  # no counter in the torch-named tree
            assert torch.equal(back.state_dict()[key], value), key


def test_a_linear_only_model_needs_no_input_shape():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
    )
    variables = torch_to_flax(model)
    assert variables["params"]["0"]["kernel"].shape == (4, 8)
    np.testing.assert_array_equal(variables["params"]["3"]["kernel"], model[3].weight.detach().numpy().T)
    layer = torch.nn.Linear(3, 2)  # a bare layer: its variables sit at the root, as flax's nn.Dense has them
    for variables in (torch_to_flax(layer), torch_to_flax(layer, nn.Dense(2), input_shape=(2, 3))):
        assert set(variables["params"]) == {"kernel", "bias"}


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_input_shape_is_required_to_see_what_a_linear_layer_flattens():
    with pytest.raises(ValueError, match=r"input_shape=None: the input shape of Sequential is needed to"):
        torch_to_flax(_torch_sequential())
    with pytest.raises(ValueError, match="needed to initialise flax_module"):
        torch_to_flax(_torch_sequential(), FlaxSequential())


def test_shape_mismatch_names_both_parameters():
    with pytest.raises(
        ValueError,
        match=(
            r"torch 'features\.1\.0\.conv\.weight' has shape \(3, 3, 1, 8\) in flax layout, but flax "
            r"params/features/0/conv/kernel has shape \(3, 3, 1, 16\)"
        ),
    ):
        torch_to_flax(T.OmniglotCNN(5, hidden_size=8), J.OmniglotCNN(5, hidden_size=16))


def test_layers_that_do_not_pair_up_are_listed():
    with pytest.raises(ValueError, match=r"do not pair up in call order\.\n  torch: features\.1\.0\.linear"):
        torch_to_flax(T.OmniglotFC(784, 5), J.OmniglotCNN(5))


def test_flax_to_torch_checks_everything_before_writing():
    model = _torch_model("OmniglotCNN", True, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = torch_to_flax(_torch_model("OmniglotCNN", True, seed=1))
    bad_shape = jax.tree_util.tree_map(lambda a: a, good)
    bad_shape["params"]["classifier"]["bias"] = jnp.zeros(6)  # the last layer: checked after the others
    extra = jax.tree_util.tree_map(lambda a: a, good)
    extra["params"]["classifier"]["scale"] = jnp.zeros(5)
    missing = {"params": good["params"]}  # no batch_stats for a model with running statistics
    cases = [
        (
            bad_shape,
            r"variables params/classifier/bias gives shape \(6,\) in torch layout, but torch "
            r"'classifier\.bias' has shape \(5,\)",
        ),
        (extra, r"variables \['params/classifier/scale'\] have no counterpart in OmniglotCNN"),
        (
            missing,
            r"variables have no batch_stats/features/0/normalize/mean for torch "
            r"'features\.1\.0\.normalize\.running_mean'",
        ),
        ({"params": {}, "cache": {}}, r"variables has collections \['cache'\]"),
    ]
    for variables, message in cases:
        with pytest.raises(ValueError, match=message):
            flax_to_torch(variables, model)
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), key


def test_unsupported_torch_layers_are_named():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    with pytest.raises(TypeError, match="torch module '1' of type LayerNorm"):
        torch_to_flax(model)


# ---------------------------------------------------------------------------------------------
# arrays through DLPack
# ---------------------------------------------------------------------------------------------

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="memory sharing is tested on CPU")


@cpu_only
def test_to_jax_shares_memory_on_cpu():
    tensor = torch.zeros(1000)
    parameter = torch.nn.Parameter(torch.zeros(64, 64))  # requires grad: detached first
    array, weights = to_jax([tensor, parameter])
    tensor[3] = 5.0
    with torch.no_grad():
        parameter[1, 2] = -1.0
    assert float(array[3]) == 5.0 and float(weights[1, 2]) == -1.0


@cpu_only
def test_to_torch_shares_memory_on_cpu():
    array = jnp.arange(1000.0)
    tensor = to_torch(array)
    tensor[0] = -7.0  # jax arrays are meant to be immutable; this only proves the memory is shared
    assert float(array[0]) == -7.0


def test_copies_where_dlpack_cannot_share():
    base = torch.arange(24.0).reshape(4, 6)
    strided, transposed = to_jax([base[:, ::2], base.t()])
    np.testing.assert_array_equal(strided, base[:, ::2].numpy())
    np.testing.assert_array_equal(transposed, base.t().numpy())
    base[0, 0] = 100.0
    assert float(strided[0, 0]) == 0.0 and float(transposed[0, 0]) == 0.0  # copies
    if not jax.config.jax_enable_x64:  # jax narrows 64-bit types, with a copy
        wide = to_jax({"f": torch.tensor([1.5, 2.5], dtype=torch.float64), "i": torch.tensor([1, 2])})
        assert wide["f"].dtype == jnp.float32 and wide["i"].dtype == jnp.int32
        np.testing.assert_array_equal(wide["f"], [1.5, 2.5])


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32", "int8", "uint8", "bool"])
def test_dtypes_and_values_survive_both_ways(dtype):
    tensor = (torch.arange(12) % 3).to(getattr(torch, dtype)).reshape(3, 4)
    array = to_jax(tensor)
    assert array.dtype == jnp.dtype(dtype) and array.shape == (3, 4)
    back = to_torch(array)
    assert back.dtype == tensor.dtype and torch.equal(back, tensor)


def test_containers_keep_their_structure():
    Pair = collections.namedtuple("Pair", "first second")
    tree = {"a": [torch.ones(2), (torch.zeros(1), np.float32(2.0))], "b": Pair(torch.ones(()), 3)}
    converted = to_jax(tree)
    assert isinstance(converted["a"], list) and isinstance(converted["a"][1], tuple)
    assert isinstance(converted["b"], Pair) and isinstance(converted["b"].second, jax.Array)
    back = to_torch(converted)
    assert isinstance(back["b"], Pair) and torch.equal(back["a"][0], torch.ones(2))


def test_unconvertible_values_are_refused():
    with pytest.raises(TypeError, match=r"to_jax: the leaf at \['a'\]\[1\] is a str"):
        to_jax({"a": [torch.ones(1), "text"]})
    with pytest.raises(TypeError, match="to_torch: the leaf at the argument itself is a traced jax value"):
        jax.jit(lambda a: to_torch(a))(jnp.ones(2))


# ---------------------------------------------------------------------------------------------
# a flax model on converted torch weights behaves like the torch model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["xla", "matmul"])
def test_converted_model_matches_torch_outputs_and_gradients(implementation):
    torch.manual_seed(0)
    torch_model = T.OmniglotCNN(5, hidden_size=16)
    flax_model = J.OmniglotCNN(5, hidden_size=16, implementation=implementation)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 1, 28, 28)).astype(np.float32), np.arange(10) % 5
    variables = torch_to_flax(torch_model)
    loss = torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    with torch.no_grad():  # the torch gradients, in flax's layout, through the same conversion
        for parameter in torch_model.parameters():
            parameter.copy_(parameter.grad)
    expected_grads = torch_to_flax(torch_model)["params"]

    @functools.partial(jax.jit, static_argnums=())
    def value_and_grad(params):
        def objective(params):
            logits = flax_model.apply({"params": params}, jnp.asarray(x))
            return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()

        return jax.value_and_grad(objective)(params)

    value, grads = value_and_grad(variables["params"])
    assert abs(float(value) - loss.item()) < 1e-5
    scale = max(float(jnp.abs(g).max()) for g in jax.tree_util.tree_leaves(grads))
    differences = jax.tree_util.tree_map(_max_difference, grads, expected_grads)
    assert max(jax.tree_util.tree_leaves(differences)) < 1e-5 * scale, differences


CONFIG_MODELS = {
    "OmniglotFC": lambda: T.OmniglotFC(20, 3, sizes=[8, 6]),
    "ConvBase": lambda: T.ConvBase(hidden=4, layers=2, max_pool=True),
    "OmniglotCNN": lambda: T.OmniglotCNN(3, hidden_size=4, layers=2),
    "CNN4Backbone": lambda: T.CNN4Backbone(hidden_size=4, layers=2),
    "CNN4": lambda: T.CNN4(3, hidden_size=4, layers=4, channels=1, embedding_size=4),
    "CNN4-learn2learn": lambda: T.CNN4(3, hidden_size=4, layers=2, channels=1, layout="learn2learn"),
    "ResNet12Backbone": lambda: T.ResNet12Backbone(wider=False, channels=1),
    "WRN28": lambda: T.WRN28(3),
}


@pytest.mark.parametrize("name", list(CONFIG_MODELS))
def test_models_expose_constructor_arguments_and_their_twin_takes_them(name):
    """``get_config()`` rebuilds the torch model, the flax class of the same name takes it, and
    ``torch_to_flax`` finds that twin by itself (no isinstance ladder)."""
    model = CONFIG_MODELS[name]()
    config = model.get_config()
    again = type(model)(**config)
    assert again.get_config() == config
    assert [p.shape for p in again.parameters()] == [p.shape for p in model.parameters()]
    twin = getattr(J, name.split("-")[0])(**config)
    found = torch_to_flax(model)  # the twin and a sample input shape come from get_config()
    given = torch_to_flax(model, twin, input_shape=_twin_shape(model))
    assert jax.tree_util.tree_structure(found) == jax.tree_util.tree_structure(given)
    for a, b in zip(jax.tree_util.tree_leaves(found), jax.tree_util.tree_leaves(given)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _twin_shape(model):
    from l2l_multi._interop_layers import _our_torch_twin

    return _our_torch_twin(model)[2]
