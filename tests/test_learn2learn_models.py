"""learn2learn 0.2.0 compatibility of models, checkpoints and Meta-KFO pieces (torch backend).

learn2learn's layer layouts are written out here from its documented structure (not imported),
saved as checkpoints and loaded into ours; transforms are checked against explicit Kronecker
products and einsum contractions.
"""

import pytest

torch = pytest.importorskip("torch")

from l2l_multi.backends.torch import nn as tnn  # noqa: E402
from l2l_multi.backends.torch import optim as toptim  # noqa: E402
from l2l_multi.backends.torch.vision import models  # noqa: E402

from l2l_multi import transforms  # noqa: E402


# --- learn2learn's conv4 layout, written independently: conv -> BatchNorm2d (torch defaults) -> ReLU -> pool
class _Block(torch.nn.Module):
    def __init__(self, cin, cout, pool):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, stride=1 if pool else 2, padding=1)
        self.normalize = torch.nn.BatchNorm2d(cout)  # eps 1e-5, momentum 0.1, running statistics
        self.relu = torch.nn.ReLU()
        self.max_pool = torch.nn.MaxPool2d(2) if pool else torch.nn.Identity()

    def forward(self, x):
        return self.max_pool(self.relu(self.normalize(self.conv(x))))


class _Reshape(torch.nn.Module):
    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class _Learn2learnOmniglotCNN(torch.nn.Module):
    def __init__(self, out, hidden):
        super().__init__()
        self.base = torch.nn.Sequential(*[_Block(1 if i == 0 else hidden, hidden, False) for i in range(4)])
        # learn2learn registers the same conv stack twice: as `base` and as `features.1`
        self.features = torch.nn.Sequential(
            _Reshape(lambda x: x.view(-1, 1, 28, 28)),
            self.base,
            _Reshape(lambda x: x.mean(dim=[2, 3])),
            torch.nn.Flatten(),
        )
        self.classifier = torch.nn.Linear(hidden, out)

    def forward(self, x):
        return self.classifier(self.features(x))


class _Learn2learnCNN4(torch.nn.Module):
    def __init__(self, out, hidden):
        super().__init__()
        blocks = [_Block(3 if i == 0 else hidden, hidden, True) for i in range(4)]
        self.features = torch.nn.Sequential(*blocks)
        self.classifier = torch.nn.Linear(25 * hidden, out)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _randomise_batch_norm(model, generator):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, 0.1, generator=generator)
                m.running_mean.normal_(0.0, 0.1, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)


CONV4_CASES = {
    "OmniglotCNN": (
        lambda: _Learn2learnOmniglotCNN(5, 8),
        lambda: models.OmniglotCNN(5, 8, layout="learn2learn"),
        (6, 1, 28, 28),
    ),
    "CNN4": (
        lambda: _Learn2learnCNN4(5, 8),
        lambda: models.CNN4(5, hidden_size=8, layout="learn2learn"),
        (2, 3, 84, 84),
    ),
}


@pytest.mark.parametrize("name", sorted(CONV4_CASES))
def test_learn2learn_conv4_checkpoints_load_strictly_and_agree(name, tmp_path):
    make_theirs, make_ours, shape = CONV4_CASES[name]
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    theirs = make_theirs()
    _randomise_batch_norm(theirs, generator)
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = make_ours()
    ours.load_state_dict(torch.load(path), strict=True)
    x = torch.randn(shape, generator=generator)
    for train in (False, True):
        theirs.train(train)
        ours.train(train)
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    # the train-mode pass updated the running statistics identically
    updated = ours.state_dict()
    for key, value in theirs.state_dict().items():
        if not key.startswith("base."):
            torch.testing.assert_close(updated[key].double(), value.double(), rtol=0, atol=1e-6)
    # the default layout (the MAML code's batch norm, no running statistics) does not load it strictly
    with pytest.raises(RuntimeError, match="Unexpected key"):
        type(ours)(**{**ours.get_config(), "layout": "maml", "track_running_stats": False}).load_state_dict(
            torch.load(path)
        )


def test_layout_errors_name_the_argument():
    with pytest.raises(ValueError, match="layout='keras' is not one of"):
        models.CNN4(5, layout="keras")
    with pytest.raises(ValueError, match="track_running_stats=False contradicts"):
        models.OmniglotCNN(5, layout="learn2learn", track_running_stats=False)
    assert models.ConvBase(layout="learn2learn").get_config()["layout"] == "learn2learn"
    assert "layout" not in models.ConvBase().get_config()  # the flax twins take the default config


# --- Meta-KFO pieces -----------------------------------------------------------------------------------
def _vec(matrix):  # column-stacked vec, the convention of (R^T kron L) vec(X) = vec(L X R)
    return matrix.transpose(-1, -2).reshape(*matrix.shape[:-2], -1)


def test_kronecker_transform_factorises_conv_kernels_per_input_channel():
    wide = torch.nn.Parameter(torch.zeros(640, 640, 3, 3))
    transform = toptim.KroneckerTransform(tnn.KroneckerLinear)(wide)
    assert [tuple(p.shape) for p in transform.parameters()] == [(640, 640), (9, 9)]
    core = transforms.kronecker().init({"w": wide.detach()})["w"]
    assert (tuple(core["left"].shape), tuple(core["right"].shape)) == ((640, 640), (9, 9))
    flax = transforms.kronecker(layout="flax").init({"w": torch.zeros(3, 3, 640, 64)})["w"]
    assert (tuple(flax["left"].shape), tuple(flax["right"].shape)) == ((640, 640), (9, 9))


@pytest.mark.parametrize("psd", [False, True], ids=["plain", "psd"])
def test_kronecker_transform_on_a_conv_kernel_is_the_explicit_kronecker_product(psd):
    generator = torch.Generator().manual_seed(1)
    param = torch.nn.Parameter(torch.zeros(3, 2, 2, 2, dtype=torch.float64))
    transform = toptim.KroneckerTransform(tnn.KroneckerLinear, psd=psd)(param)
    left = torch.randn(2, 2, generator=generator, dtype=torch.float64)
    right = torch.randn(4, 4, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        transform.transform.left.copy_(left)
        transform.transform.right.copy_(right)
    if psd:  # learn2learn's positive semi-definite parametrisation
        left, right = left.t() @ left, right.t() @ right
    grad = torch.randn(3, 2, 2, 2, generator=generator, dtype=torch.float64)
    operator = torch.kron(right.t().contiguous(), left)  # one [in x k] matrix per output channel
    expected = torch.stack([operator @ _vec(g.reshape(2, 4)) for g in grad])
    torch.testing.assert_close(_vec(transform(grad).reshape(3, 2, 4)), expected)
    core = transforms.kronecker(psd=psd).update(
        {"w": grad}, {"w": {"left": transform.transform.left, "right": transform.transform.right}}
    )[0]["w"]
    torch.testing.assert_close(core, transform(grad))


def test_kronecker_linear_takes_column_stacked_vectors():
    generator = torch.Generator().manual_seed(2)
    layer = tnn.KroneckerLinear(2, 3, psd=True).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64))
    x = torch.randn(6, generator=generator, dtype=torch.float64)
    left, right = layer.left.t() @ layer.left, layer.right.t() @ layer.right
    expected = torch.kron(right.t().contiguous(), left) @ x + _vec(layer.bias)
    torch.testing.assert_close(layer(x), expected)
    with pytest.raises(ValueError, match="n \\* m = 6 elements"):
        layer(torch.zeros(5, dtype=torch.float64))


def test_meta_curvature_multiplies_the_kernel_mode_from_the_left():
    generator = torch.Generator().manual_seed(3)
    param = torch.nn.Parameter(torch.zeros(4, 3, 2, 2, dtype=torch.float64))
    transform = toptim.MetaCurvatureTransform(param)
    with torch.no_grad():
        for m in transform.mode_matrices:
            m.copy_(torch.randn(m.shape, generator=generator, dtype=torch.float64))
    m_out, m_in, m_k = transform.mode_matrices
    grad = torch.randn(4, 3, 2, 2, generator=generator, dtype=torch.float64)
    expected = torch.einsum("ao,oik,ib,ck->abc", m_out, grad.reshape(4, 3, 4), m_in, m_k).reshape(grad.shape)
    torch.testing.assert_close(transform(grad), expected)


def test_transform_dictionary_takes_module_keys():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    factory = toptim.TransformDictionary(
        {
            model[1]: toptim.ModuleTransform(tnn.Scale),
            model[1].bias: toptim.KroneckerTransform(tnn.KroneckerLinear),
        }
    )
    built = [factory(p) for p in model.parameters()]
    assert built[:2] == [None, None]
    assert isinstance(built[2], tnn.Scale) and isinstance(built[3], toptim.ReshapedTransform)
    with pytest.raises(TypeError, match="modules or parameter names"):
        toptim.TransformDictionary({3.0: None})


def test_meta_module_with_learn2learn_substitutions_leaves_the_original_alone():
    torch.manual_seed(0)
    inner = torch.nn.Sequential(torch.nn.Linear(3, 2))
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), inner)
    reference = [p.detach().clone() for p in net.parameters()]
    doubled = tnn.MetaModule(
        net,
        {
            torch.nn.Linear: lambda linear: torch.nn.Sequential(
                linear, torch.nn.Linear(linear.out_features, linear.out_features)
            )
        },
    )
    assert isinstance(doubled.wrapped_module[0], torch.nn.Sequential)
    assert isinstance(net[0], torch.nn.Linear) and doubled.module() is net
    x = torch.randn(5, 4)
    first = doubled.wrapped_module[0][1]
    expected = doubled.wrapped_module[2][0][1](net[2][0](torch.relu(first(net[0](x)))))
    torch.testing.assert_close(doubled(x), expected)
    assert not any(p.requires_grad for p in net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), reference))


# --- get_pretrained_backbone on local files in learn2learn's format (no download) ------------------------
def _save_learn2learn_cnn4_backbone(root, dataset):
    """learn2learn's CNN4Backbone(channels=3, max_pool=True) layout: a Sequential of four blocks."""
    torch.manual_seed(4)
    theirs = torch.nn.Sequential(*[_Block(3 if i == 0 else 64, 64, True) for i in range(4)])
    _randomise_batch_norm(theirs, torch.Generator().manual_seed(4))
    folder = root / "pretrained_models" / dataset
    folder.mkdir(parents=True)
    torch.save(theirs.state_dict(), folder / "cnn4.pth")
    return theirs.eval(), folder / "cnn4.pth"


def test_pretrained_cnn4_backbone_loads_learn2learns_file(tmp_path):
    theirs, _ = _save_learn2learn_cnn4_backbone(tmp_path, "cifar-fs")
    ours = models.get_pretrained_backbone("cnn4", "cifar-fs", root=str(tmp_path)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ours(x), theirs(x).flatten(1), rtol=0, atol=1e-6)
    assert ours(x).shape == (2, 256)


def test_pretrained_backbone_refuses_wrong_files_and_names(tmp_path, monkeypatch):
    from l2l_multi.backends.torch.vision import _pretrained

    assert _pretrained.BACKBONE_URLS["mini-imagenet"]["resnet12"]["default"] == (
        "https://zenodo.org/record/5651278/files/25u1gtp5.pth"
    )
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        models.get_pretrained_backbone("cnn4", "fc100", root=str(tmp_path))
    with pytest.raises(ValueError, match="model='resnet12' has no pretrained weights for 'fc100'"):
        models.get_pretrained_backbone("resnet12", "fc100", root=str(tmp_path))
    with pytest.raises(ValueError, match="dataset='omniglot' is not one of"):
        models.get_pretrained_backbone("cnn4", "omniglot")
    with pytest.raises(ValueError, match="spec='relu' is not one of"):
        models.get_pretrained_backbone("cnn4", "fc100", spec="relu")
    folder = tmp_path / "pretrained_models" / "fc100"
    folder.mkdir(parents=True)
    torch.save(models.CNN4Backbone(hidden_size=32, channels=3).state_dict(), folder / "cnn4.pth")
    with pytest.raises(ValueError, match="does not match learn2learn's cnn4 backbone"):
        models.get_pretrained_backbone("cnn4", "fc100", root=str(tmp_path))
    (folder / "cnn4.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a torch-saved cnn4 state_dict"):
        models.get_pretrained_backbone("cnn4", "fc100", root=str(tmp_path))
    # download=True through a file:// URL: the file is verified, then moved into place
    _, source = _save_learn2learn_cnn4_backbone(tmp_path / "elsewhere", "fc100")
    (folder / "cnn4.pth").unlink()
    monkeypatch.setitem(_pretrained.BACKBONE_URLS["fc100"]["cnn4"], "default", source.as_uri())
    with pytest.warns(UserWarning, match="no published checksum"):
        models.get_pretrained_backbone("cnn4", "fc100", root=str(tmp_path), download=True)
    assert (folder / "cnn4.pth").read_bytes() == source.read_bytes()
    assert [p.name for p in folder.iterdir()] == ["cnn4.pth"]  # no temporary left behind


def test_kronecker_cells_have_learn2learns_maps_and_formulas():
    generator = torch.Generator().manual_seed(6)
    rnn, lstm = tnn.KroneckerRNN(3, 2).double(), tnn.KroneckerLSTM(3, 2).double()
    with torch.no_grad():
        for p in [*rnn.parameters(), *lstm.parameters()]:
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=torch.float64))

    def dense(layer, v):  # the KroneckerLinear as an explicit nm x nm matrix on a column-stacked vector
        return torch.kron(layer.right.t().contiguous(), layer.left) @ v + _vec(layer.bias)

    x, h, c = (torch.randn(6, generator=generator, dtype=torch.float64) for _ in range(3))
    new_hidden = torch.tanh(dense(rnn.W_h, x) + dense(rnn.U_h, h))
    output, hidden = rnn(x, h)
    torch.testing.assert_close(hidden, new_hidden)
    torch.testing.assert_close(output, dense(rnn.W_y, new_hidden))
    gate = {g: dense(getattr(lstm, f"W_i{g}"), x) + dense(getattr(lstm, f"W_h{g}"), h) for g in "ifgo"}
    cell = torch.sigmoid(gate["f"]) * c + torch.sigmoid(gate["i"]) * torch.tanh(gate["g"])
    out, (h_new, c_new) = lstm(x, (h, c))
    torch.testing.assert_close(c_new, cell)
    torch.testing.assert_close(out, torch.sigmoid(gate["o"]) * torch.tanh(cell))
    assert sorted(k.split(".")[0] for k in lstm.state_dict() if k.endswith("left")) == sorted(
        f"W_{a}{g}" for a in "ih" for g in "ifgo"
    )


def test_meta_curvature_reads_learn2learns_parameter_names():
    generator = torch.Generator().manual_seed(7)
    theirs = {
        name: torch.randn(size, size, generator=generator, dtype=torch.float64)
        for name, size in (("mc_in", 4), ("mc_out", 3), ("mc_f", 4))
    }  # out, in and kernel modes
    weight = torch.nn.Parameter(torch.zeros(4, 3, 2, 2, dtype=torch.float64))
    transform = toptim.MetaCurvatureTransform(weight)
    transform.load_state_dict(theirs, strict=True)
    grad = torch.randn(4, 3, 2, 2, generator=generator, dtype=torch.float64)
    expected = torch.einsum(
        "ao,oik,ib,ck->abc", theirs["mc_in"], grad.reshape(4, 3, 4), theirs["mc_out"], theirs["mc_f"]
    ).reshape(grad.shape)
    torch.testing.assert_close(transform(grad), expected)
    vector = toptim.MetaCurvatureTransform(torch.nn.Parameter(torch.zeros(5, dtype=torch.float64)))
    vector.load_state_dict({"mc": torch.full((5,), 2.0, dtype=torch.float64)}, strict=True)
    assert vector(torch.ones(5, dtype=torch.float64)).tolist() == [2.0] * 5


def test_learn2learn_omniglot_fc_checkpoint_loads_strictly_and_agrees(tmp_path):
    class LinearBlock(torch.nn.Module):  # Linear -> BatchNorm1d(eps 1e-3, batch statistics) -> ReLU
        def __init__(self, n_in, n_out):
            super().__init__()
            self.linear = torch.nn.Linear(n_in, n_out)
            self.normalize = torch.nn.BatchNorm1d(n_out, eps=1e-3, momentum=0.999, track_running_stats=False)
            self.relu = torch.nn.ReLU()

        def forward(self, x):
            return self.relu(self.normalize(self.linear(x)))

    torch.manual_seed(8)
    sizes = [784, 32, 16]
    theirs = torch.nn.Module()
    theirs.features = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Sequential(*[LinearBlock(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
    )
    theirs.classifier = torch.nn.Linear(16, 5)
    with torch.no_grad():
        for block in theirs.features[1]:
            block.normalize.weight.uniform_(0.5, 1.5)
            block.normalize.bias.normal_(0.0, 0.1)
    torch.save(theirs.state_dict(), tmp_path / "fc.pth")
    ours = models.OmniglotFC(784, 5, sizes=[32, 16])
    ours.load_state_dict(torch.load(tmp_path / "fc.pth"), strict=True)
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(8))
    for train in (False, True):
        ours.train(train)
        theirs.train(train)
        torch.testing.assert_close(ours(x), theirs.classifier(theirs.features(x)), rtol=0, atol=1e-6)
