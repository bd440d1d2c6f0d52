"""The vision models on both backends: shapes, cross-backend agreement on the same weights (train
and eval, with and without running statistics), parameter counts, initialisation statistics, the
two jax convolution implementations against each other, and backend dispatch."""

import functools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
pytest.importorskip("flax")

import jax.numpy as jnp  # noqa: E402
from l2l_multi.backends.jax.vision import models as J  # noqa: E402
from l2l_multi.backends.torch.vision import models as T  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi.interop import torch_to_flax  # noqa: E402


@pytest.fixture(autouse=True)
def _full_float32_precision():
    """Strict float32 products (no TF32 on GPUs) so torch and jax compare at float32 rounding."""
    with jax.default_matmul_precision("highest"):
        yield


# name -> (constructor arguments shared by both backends, torch input shape, output shape)
MODELS = {
    "OmniglotFC": (dict(input_size=784, output_size=5), (6, 1, 28, 28), (6, 5)),
    "OmniglotFC-sizes": (dict(input_size=64, output_size=3, sizes=(32, 16)), (6, 64), (6, 3)),
    "OmniglotCNN": (dict(output_size=5), (6, 1, 28, 28), (6, 5)),
    "OmniglotCNN-784": (dict(output_size=5, hidden_size=16), (6, 784), (6, 5)),
    "OmniglotCNN-28x28": (dict(output_size=5, hidden_size=16, layers=3), (6, 28, 28), (6, 5)),
    "ConvBase": (dict(hidden=16, channels=1), (4, 1, 28, 28), (4, 16, 2, 2)),
    "ConvBase-max_pool": (
        dict(hidden=16, channels=3, max_pool=True, layers=3),
        (4, 3, 32, 32),
        (4, 16, 4, 4),
    ),
    "CNN4Backbone": (dict(hidden_size=32), (3, 3, 84, 84), (3, 800)),
    "CNN4Backbone-strided": (dict(hidden_size=8, max_pool=False, layers=2), (3, 3, 84, 84), (3, 8 * 6 * 6)),
    "CNN4": (dict(output_size=5), (3, 3, 84, 84), (3, 5)),
    "CNN4-2layers": (dict(output_size=5, hidden_size=16, layers=2), (3, 3, 84, 84), (3, 5)),
    "MiniImagenetCNN": (dict(output_size=7, hidden_size=16), (3, 3, 84, 84), (3, 7)),
}
MODEL_IDS = list(MODELS)
# one of each architecture and input handling (compiling the flax side dominates the test time)
AGREEMENT_IDS = [i for i in MODEL_IDS if i not in ("OmniglotCNN-28x28", "CNN4Backbone", "MiniImagenetCNN")]


def _classes(model_id):
    name = model_id.split("-")[0]
    return getattr(T, name), getattr(J, name)


def _make(model_id, track_running_stats=False, implementation="auto", seed=0):
    arguments, shape, _ = MODELS[model_id]
    torch_class, flax_class = _classes(model_id)
    torch.manual_seed(seed)
    torch_model = torch_class(**arguments, track_running_stats=track_running_stats)
    extra = {"implementation": implementation} if "implementation" in flax_class.__dataclass_fields__ else {}
    flax_model = flax_class(**arguments, track_running_stats=track_running_stats, **extra)
    return torch_model, flax_model, shape


def _input(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _init(model, x, seed=0):
    return jax.jit(model.init)(jax.random.key(seed), x)  # jit: eager flax compiles op by op, far slower


def _apply(model, variables, x, **keywords):
    return jax.jit(functools.partial(model.apply, **keywords))(variables, x)


def _max_difference(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# ---------------------------------------------------------------------------------------------
# shapes and sizes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_torch_shapes(model_id):
    torch_model, _, shape = _make(model_id)
    assert tuple(torch_model(torch.from_numpy(_input(shape))).shape) == MODELS[model_id][2]


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_flax_shapes_and_parameter_counts(model_id):
    torch_model, flax_model, shape = _make(model_id)
    x = jnp.asarray(_input(shape))
    # shapes only (the values are compared with torch's below)
    variables = jax.eval_shape(flax_model.init, jax.random.key(0), x)
    assert jax.eval_shape(flax_model.apply, variables, x).shape == MODELS[model_id][2]
    assert set(variables) == {"params"}  # no running statistics unless asked for
    flax_count = sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
    assert flax_count == sum(p.numel() for p in torch_model.parameters())


@pytest.mark.parametrize("model_id", ["OmniglotFC", "OmniglotCNN", "CNN4"])
def test_features_and_classifier_split(model_id):
    torch_model, flax_model, shape = _make(model_id, implementation="xla")
    x = _input(shape)
    variables = torch_to_flax(torch_model)
    with torch.no_grad():
        torch_embedding = torch_model.features(torch.from_numpy(x)).numpy()
    flax_embedding = _apply(flax_model, variables, jnp.asarray(x), method="embed")
    assert flax_embedding.shape == torch_embedding.shape
    assert _max_difference(flax_embedding, torch_embedding) < 1e-5
    assert set(variables["params"]) == {"features", "classifier"}


# ---------------------------------------------------------------------------------------------
# torch and flax agree on the same weights
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("track_running_stats", [False, True], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize("model_id", AGREEMENT_IDS)
def test_torch_and_flax_agree_in_train_and_eval_mode(model_id, track_running_stats):
    # "xla" compiles about 4x faster than "matmul" on CPU; both are checked against torch below
    torch_model, flax_model, shape = _make(model_id, track_running_stats, implementation="xla")
    _assert_agreement(torch_model, flax_model, shape, track_running_stats)


@pytest.mark.parametrize("model_id", ["OmniglotCNN-784", "ConvBase-max_pool"])
def test_learn2learn_layout_agrees_across_backends(model_id):
    """``layout="learn2learn"`` (eps 1e-5, momentum 0.1, running statistics) means the same on both
    backends: the flax twin built from torch's ``get_config()`` matches it in both modes."""
    arguments, shape, _ = MODELS[model_id]
    torch_class, flax_class = _classes(model_id)
    torch.manual_seed(0)
    torch_model = torch_class(**arguments, layout="learn2learn")
    config = torch_model.get_config()
    assert config["layout"] == "learn2learn" and config["track_running_stats"] is True
    flax_model = flax_class(**config, implementation="xla")
    _assert_agreement(torch_model, flax_model, shape, track_running_stats=True)


def _assert_agreement(torch_model, flax_model, shape, track_running_stats):
    """Outputs in eval and train mode, and the running statistics after the train step, within 1e-5."""
    if track_running_stats:  # move the running statistics away from (0, 1) first
        with torch.no_grad():
            torch_model.train()(torch.from_numpy(3.0 * _input(shape, seed=5) + 1.0))
    variables = torch_to_flax(torch_model)
    x = _input(shape)
    with torch.no_grad():
        expected_eval = torch_model.eval()(torch.from_numpy(x)).numpy()
        expected_train = torch_model.train()(torch.from_numpy(x)).numpy()  # updates running statistics

    @jax.jit  # both modes in one compilation
    def both_modes(variables, x):
        evaluated = flax_model.apply(variables, x, train=False)
        if track_running_stats:
            trained, updates = flax_model.apply(variables, x, train=True, mutable=["batch_stats"])
            return evaluated, trained, updates["batch_stats"]
        return evaluated, flax_model.apply(variables, x, train=True), None

    evaluated, trained, statistics = both_modes(variables, jnp.asarray(x))
    assert _max_difference(evaluated, expected_eval) < 1e-5
    assert _max_difference(trained, expected_train) < 1e-5
    if track_running_stats:
        differences = jax.tree_util.tree_map(
            _max_difference, statistics, torch_to_flax(torch_model)["batch_stats"]
        )
        assert max(jax.tree_util.tree_leaves(differences)) < 1e-5, differences
    else:  # batch statistics in both modes, as the MAML paper normalises
        np.testing.assert_array_equal(expected_eval, expected_train)


@pytest.mark.parametrize("implementation", ["xla", "matmul"])
@pytest.mark.parametrize("model_id", ["OmniglotCNN", "CNN4-2layers", "ConvBase-max_pool"])
def test_agreement_for_both_conv_implementations(model_id, implementation):
    torch_model, flax_model, shape = _make(model_id, implementation=implementation)
    x = _input(shape)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    output = jax.jit(flax_model.apply)(torch_to_flax(torch_model), jnp.asarray(x))
    assert _max_difference(output, expected) < 1e-5


def test_running_statistics_need_mutable_batch_stats():
    _, flax_model, shape = _make("OmniglotCNN-784", track_running_stats=True)
    x = jnp.asarray(_input(shape))
    variables = jax.eval_shape(flax_model.init, jax.random.key(0), x)
    with pytest.raises(Exception, match="batch_stats"):
        jax.eval_shape(functools.partial(flax_model.apply, train=True), variables, x)
    jax.eval_shape(functools.partial(flax_model.apply, train=False), variables, x)  # evaluation only reads


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum-0.1", "cumulative"])
def test_batch_norm_matches_torch_over_several_steps(momentum):
    torch_layer = torch.nn.BatchNorm2d(3, momentum=momentum, eps=1e-3)
    layer = J.BatchNorm(momentum=momentum, epsilon=1e-3)
    batches = [_input((4, 3, 5, 5), seed=s) * (s + 1) for s in range(3)]
    nhwc = lambda x: jnp.asarray(x.transpose(0, 2, 3, 1))
    variables = layer.init(jax.random.key(0), nhwc(batches[0]))
    for x in batches:
        with torch.no_grad():
            expected = torch_layer(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
        output, state = layer.apply(variables, nhwc(x), train=True, mutable=["batch_stats"])
        variables = {**variables, **state}
        assert _max_difference(output, expected) < 1e-5
    stats = variables["batch_stats"]
    assert _max_difference(stats["mean"], torch_layer.running_mean) < 1e-5
    assert _max_difference(stats["var"], torch_layer.running_var) < 1e-5  # unbiased, as torch stores it
    assert int(stats["num_batches_tracked"]) == int(torch_layer.num_batches_tracked) == 3


# ---------------------------------------------------------------------------------------------
# the two convolution implementations
# ---------------------------------------------------------------------------------------------

CONV_CASES = {
    "3x3-stride1-pad1": (3, 1, 1, (2, 9, 9, 4)),
    "3x3-stride2-pad1": (3, 2, 1, (2, 28, 28, 1)),
    "3x3-stride2-odd": (3, 2, 1, (2, 7, 7, 3)),
    "3x3-stride1-pad0": (3, 1, 0, (2, 8, 6, 2)),
    "1x1-stride1-pad0": (1, 1, 0, (2, 5, 5, 3)),
    "5x5-stride3-pad2": (5, 3, 2, (2, 11, 11, 2)),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_implementations_agree_with_torch_and_each_other(case):
    kernel_size, stride, padding, shape = CONV_CASES[case]
    x = _input(shape)
    kernel = _input((kernel_size, kernel_size, shape[-1], 6), seed=2)
    bias = _input((6,), seed=3)
    outputs = {
        impl: J.conv2d(
            jnp.asarray(x),
            jnp.asarray(kernel),
            jnp.asarray(bias),
            stride=stride,
            padding=padding,
            implementation=impl,
        )
        for impl in ("xla", "matmul")
    }
    with torch.no_grad():
        expected = (
            torch.nn.functional.conv2d(
                torch.from_numpy(x.transpose(0, 3, 1, 2)),
                torch.from_numpy(kernel.transpose(3, 2, 0, 1)),
                torch.from_numpy(bias),
                stride=stride,
                padding=padding,
            )
            .numpy()
            .transpose(0, 2, 3, 1)
        )
    assert outputs["xla"].shape == outputs["matmul"].shape == expected.shape
    scale = float(np.abs(expected).max())  # float32 rounding of sums of up to 50 products
    assert _max_difference(outputs["xla"], outputs["matmul"]) < 1e-6 * scale
    assert _max_difference(outputs["matmul"], expected) < 1e-6 * scale


def _conv_loss(implementation, stride):
    def loss(x, kernel):
        y = J.conv2d(x, kernel, stride=stride, implementation=implementation)
        return jnp.sum(jnp.tanh(y) * jnp.cos(jnp.arange(y.size).reshape(y.shape)))

    return loss


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_implementations_have_the_same_gradients(stride):
    x, kernel = jnp.asarray(_input((3, 10, 10, 4))), jnp.asarray(0.3 * _input((3, 3, 4, 5), seed=2))
    grads = {
        impl: jax.grad(_conv_loss(impl, stride), argnums=(0, 1))(x, kernel) for impl in ("xla", "matmul")
    }
    for a, b in zip(grads["xla"], grads["matmul"]):
        assert _max_difference(a, b) < 1e-5 * max(1.0, float(jnp.abs(a).max()))


def test_conv_implementations_agree_under_vmap_with_per_example_kernels():
    tasks = 4
    x = jnp.asarray(_input((tasks, 5, 12, 12, 3)))
    kernels = jnp.asarray(0.3 * _input((tasks, 3, 3, 3, 8), seed=2))
    values, grads = {}, {}
    for impl in ("xla", "matmul"):
        loss = _conv_loss(impl, 2)
        convolve = lambda a, k, impl=impl: J.conv2d(a, k, stride=2, implementation=impl)
        values[impl] = jax.jit(jax.vmap(convolve))(x, kernels)
        grads[impl] = jax.jit(jax.vmap(jax.grad(loss, argnums=1)))(x, kernels)
    # the batched results are the per-task convolutions
    for task in range(tasks):
        single = J.conv2d(x[task], kernels[task], stride=2, implementation="xla")
        assert _max_difference(values["matmul"][task], single) < 1e-5
    assert _max_difference(values["xla"], values["matmul"]) < 1e-5
    assert _max_difference(grads["xla"], grads["matmul"]) < 1e-5 * float(jnp.abs(grads["xla"]).max())


def test_auto_implementation_follows_the_default_backend(monkeypatch):
    from l2l_multi.backends.jax.vision import _layers

    assert _layers._resolve_implementation("auto") == ("matmul" if jax.default_backend() == "cpu" else "xla")
    monkeypatch.setattr(_layers.jax, "default_backend", lambda: "gpu")
    assert _layers._resolve_implementation("auto") == "xla"
    with pytest.raises(ValueError, match=r"implementation='cudnn' is not one of \('auto', 'xla', 'matmul'\)"):
        _layers._resolve_implementation("cudnn")


# ---------------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------------


def _flax_params(flax_model, shape):
    return _init(flax_model, jnp.asarray(_input(shape)), seed=3)["params"]


def _torch_and_flax(torch_value, flax_value):
    return [np.asarray(torch_value.detach(), np.float64).ravel(), np.asarray(flax_value, np.float64).ravel()]


def test_omniglot_cnn_initialisation():
    torch_model = T.OmniglotCNN(output_size=200)
    flax_model = J.OmniglotCNN(output_size=200, implementation="xla")  # compiles faster
    params = _flax_params(flax_model, (2, 1, 28, 28))
    for weights in _torch_and_flax(torch_model.classifier.weight, params["classifier"]["kernel"]):
        assert abs(weights.std() - 1.0) < 0.04 and abs(weights.mean()) < 0.04  # N(0, 1), 12800 draws
    bound = math.sqrt(6 / (9 * 64 + 9 * 64))  # xavier-uniform for a 64 -> 64 3x3 convolution
    conv = params["features"]["1"]["conv"]
    for weights in _torch_and_flax(torch_model.base[1].conv.weight, conv["kernel"]):
        assert np.abs(weights).max() <= bound and abs(weights.std() - bound / math.sqrt(3)) < 0.03 * bound
    for scale in _torch_and_flax(
        torch_model.base[0].normalize.weight, params["features"]["0"]["normalize"]["scale"]
    ):
        assert scale.min() >= 0 and scale.max() < 1 and abs(scale.mean() - 0.5) < 0.15  # U[0, 1), 64 draws
    for biases in (
        _torch_and_flax(torch_model.classifier.bias, params["classifier"]["bias"])
        + _torch_and_flax(torch_model.base[0].conv.bias, params["features"]["0"]["conv"]["bias"])
        + _torch_and_flax(torch_model.base[0].normalize.bias, params["features"]["0"]["normalize"]["bias"])
    ):
        assert not biases.any()


def test_omniglot_fc_initialisation():
    torch_model, flax_model = T.OmniglotFC(), J.OmniglotFC()
    params = _flax_params(flax_model, (2, 784))
    # normal(0, 0.01) truncated at 2 std: |w| <= 0.02 and std 0.01 * 0.8796
    truncated_std = 0.01 * math.sqrt(1 - 4 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(math.sqrt(2)))
    for weights in _torch_and_flax(
        torch_model.features[1][0].linear.weight, params["features"]["0"]["linear"]["kernel"]
    ):
        assert np.abs(weights).max() <= 0.02 and abs(weights.std() / truncated_std - 1) < 0.02
    for biases in _torch_and_flax(torch_model.classifier.bias, params["classifier"]["bias"]):
        assert not biases.any()


def test_cnn4_classifier_initialisation():
    torch_model, flax_model = T.CNN4(64), J.CNN4(64, implementation="xla")
    params = _flax_params(flax_model, (2, 3, 84, 84))
    bound = math.sqrt(6 / (1600 + 64))  # xavier-uniform
    for weights in _torch_and_flax(torch_model.classifier.weight, params["classifier"]["kernel"]):
        assert np.abs(weights).max() <= bound and abs(weights.std() - bound / math.sqrt(3)) < 0.03 * bound


# ---------------------------------------------------------------------------------------------
# learn2learn compatibility, argument errors, dispatch
# ---------------------------------------------------------------------------------------------


def test_omniglot_cnn_reads_learn2learn_checkpoints_and_survives_functional_call():
    model = T.OmniglotCNN(hidden_size=8)
    state = {k: v + 1 for k, v in model.state_dict().items()}
    # learn2learn saves the ConvBase twice, as base.* and as features.1.*; base.* alone loads too
    base_only = {
        ("base." + k[len("features.1.") :] if k.startswith("features.1.") else k): v for k, v in state.items()
    }
    for checkpoint in ({**state, **base_only}, base_only):
        fresh = T.OmniglotCNN(hidden_size=8)
        fresh.load_state_dict(checkpoint)  # strict: every key is used
        assert torch.equal(fresh.base[0].conv.weight, model.base[0].conv.weight + 1)
        assert torch.equal(fresh.classifier.weight, model.classifier.weight + 1)
    assert fresh.base is fresh.features[1]
    original = fresh.base[0].conv.weight
    torch.func.functional_call(
        fresh, {n: p.clone() for n, p in fresh.named_parameters()}, (torch.zeros(2, 784),)
    )
    assert fresh.base[0].conv.weight is original


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_argument_errors_name_the_argument(backend):
    models = T if backend == "torch" else J
    with pytest.raises(ValueError, match=r"max_pool_factor=0\.25"):
        model = models.ConvBase(max_pool_factor=0.25)
        if backend == "jax":
            jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"layout='keras' is not one of \('maml', 'learn2learn'\)"):
        models.CNN4Backbone(layout="keras")  # raised when the model is made, on both backends
    with pytest.raises(ValueError, match="track_running_stats=False contradicts it"):
        models.OmniglotCNN(5, layout="learn2learn", track_running_stats=False)
    if backend == "jax":
        with pytest.raises(ValueError, match=r"expected x of shape \[N, 3, H, W\] \(NCHW\), got \(2, 84, 84"):
            jax.eval_shape(J.CNN4(5).init, jax.random.key(0), jnp.zeros((2, 84, 84, 3)))
        with pytest.raises(ValueError, match="embedding_size=1600"):
            jax.eval_shape(J.CNN4(5).init, jax.random.key(0), jnp.zeros((2, 3, 32, 32)))


def test_models_resolve_in_the_current_backend():
    assert l2l.vision.models.OmniglotCNN is T.OmniglotCNN
    with l2l.use_backend("jax"):
        flax_class = l2l.vision.models.OmniglotCNN
        assert flax_class is J.OmniglotCNN
        assert l2l.vision.models.MiniImagenetCNN is J.CNN4
    assert l2l.vision.models.MiniImagenetCNN is T.CNN4
    import flax.linen

    assert issubclass(flax_class, flax.linen.Module) and issubclass(T.OmniglotCNN, torch.nn.Module)
