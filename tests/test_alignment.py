"""Permutation alignment: the aligned copy computes the same function, a permuted copy of a model
is aligned back exactly, unknown layers are refused by name, and the originals stay untouched."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossatlas as la
from lossatlas.alignment import Permutation, find_permutation
from lossatlas.connectivity.barrier import barrier_stats
from lossatlas.models.cnn import SmallCNN, SmallVGG
from lossatlas.models.mlp import MLP
from lossatlas.models.resnet import ResNet
from lossatlas.models.wide_resnet import WideResNet
from lossatlas.store import read_attr

from helpers import DEVICE


def _perturbed(net, seed, scale=0.3):
    """A copy of ``net`` with other weights and batch-norm statistics (a second 'minimum')."""
    gen = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(net)
    with torch.no_grad():
        for t in list(out.parameters()) + [b for b in out.buffers() if b.dtype.is_floating_point]:
            t.mul_(torch.exp(scale * torch.randn(t.shape, generator=gen)).to(t.device))  # keeps signs
    return out


def _random_permutation(net, seed, shape=None):
    """``net`` with every permutation group shuffled at random, and the permutation used."""
    example = torch.zeros(2, *shape).to(next(net.parameters()).device) if shape else None
    identity = find_permutation(net, net, data=example)
    rng = np.random.default_rng(seed)
    perm = Permutation(identity.method, identity.spec, [rng.permutation(g.size) for g in identity.spec.groups])
    return perm.apply(net), perm


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, net.training


def _same_state(net, state):
    tensors, mode = state
    now = net.state_dict()
    return net.training == mode and all(torch.equal(now[k], v) for k, v in tensors.items())


class _UsersNet(nn.Module):
    """A user's own module: functional calls, a residual addition, concatenation and LayerNorm."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.side = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(12 * 4 * 4, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        h = F.relu(self.bn(self.conv(x)))
        h = F.relu(h + self.conv2(h))
        h = torch.cat([h, torch.tanh(self.side(x))], dim=1)
        h = F.max_pool2d(h, 2)
        h = torch.flatten(h, 1)
        return self.out(F.gelu(self.norm(self.fc(h))))


def _models():
    torch.manual_seed(0)  # the constructors draw their initial weights from the global generator
    return {
        "mlp": (MLP((1, 8, 8), 5, hidden=(24, 16)), (1, 8, 8)),
        "cnn": (SmallCNN((1, 8, 8), 5, channels=(6, 8), hidden=12, batch_norm=True), (1, 8, 8)),
        "vgg": (SmallVGG((3, 8, 8), 5, channels=(6, 8)), (3, 8, 8)),
        "resnet_bn": (ResNet((3, 8, 8), 5, depth=20, channels=4), (3, 8, 8)),
        "resnet_b": (ResNet((3, 8, 8), 5, depth=20, channels=4, shortcut_type="B"), (3, 8, 8)),
        "wrn": (WideResNet((3, 8, 8), 5, depth=10, k=1), (3, 8, 8)),
        "users": (_UsersNet(), (3, 8, 8)),
    }


MODELS = _models()


SAME_FUNCTION = [(name, "weights") for name in sorted(MODELS)] + [
    (name, "activations") for name in ("mlp", "vgg", "resnet_bn", "users")]


@pytest.mark.parametrize("name, method", SAME_FUNCTION)
def test_aligned_copy_computes_the_same_function(name, method):
    base, shape = MODELS[name]
    ref = _perturbed(base, 1).to(DEVICE).eval()
    model = _perturbed(_random_permutation(base, seed=7, shape=shape)[0], 2).to(DEVICE).train()
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    before = _state(model), _state(ref)
    aligned = la.align(ref, model, method=method, data=x)
    assert _same_state(model, before[0][0:2]) and _same_state(ref, before[1])
    assert aligned.training and aligned is not model
    for mode in ("eval", "train"):  # train mode: batch statistics, permuted with their units
        getattr(aligned, mode)(), getattr(model, mode)()
        with torch.no_grad():
            assert torch.allclose(aligned(x), model(x), atol=1e-5, rtol=1e-5)
    # Something was permuted: the checks above are not vacuous.
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in aligned.state_dict().items())


@pytest.mark.parametrize("name", ["mlp", "cnn", "vgg", "resnet_bn", "resnet_b", "wrn", "users"])
def test_weight_matching_recovers_a_random_permutation_exactly(name):
    net, shape = MODELS[name]
    net = _perturbed(net, 4).to(DEVICE).eval()
    shuffled, truth = _random_permutation(net, seed=5, shape=shape)
    assert not truth.is_identity
    differs = any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), shuffled.state_dict().values()))
    assert differs
    aligned = la.align(net, shuffled, method="weights", seed=0, data=torch.zeros(2, *shape).to(DEVICE))
    for k, v in net.state_dict().items():
        assert torch.equal(aligned.state_dict()[k], v), k
    # The barrier between the model and its aligned permuted copy is then exactly 0.
    f = la.Landscape(net, (torch.randn(32, *shape).to(DEVICE), torch.arange(32).to(DEVICE) % 5), bn="recompute",
                     device=DEVICE)
    theta = la.ParamSpace(aligned).vector(aligned)
    ds = la.connect(f, f.origin, theta, method="linear", points=5)
    assert barrier_stats(ds.t.values, ds.loss.values)["barrier"] == 0.0
    assert np.ptp(ds.loss.values) == 0.0  # every point of the line is the model itself
    raw = la.connect(f, f.origin, la.ParamSpace(shuffled).vector(shuffled), method="linear", points=5)
    assert np.ptp(raw.loss.values) > 1e-3  # before alignment the line leaves the model


def test_activation_matching_recovers_a_random_permutation_of_a_tanh_mlp():
    # tanh units never die, so every unit's activations are distinct and the assignment is unique.
    torch.manual_seed(0)
    net = MLP((10,), 3, hidden=(20, 12), activation="tanh").to(DEVICE).eval()
    shuffled, _ = _random_permutation(net, seed=6)
    x = torch.randn(200, 10, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    aligned = la.align(net, shuffled, method="activations", data=(x, torch.zeros(200)))
    for k, v in net.state_dict().items():
        assert torch.equal(aligned.state_dict()[k], v), k


def test_option_a_shortcut_ties_the_zero_padded_channels():
    # Option A pads stage s's channels into the first half of stage s+1's: those channels share
    # stage s's permutation, and only the new half gets a permutation of its own.
    net = MODELS["resnet_bn"][0]
    spec = find_permutation(net, net).spec
    stem = next(g for g in spec.groups if ("conv1.weight", 0) in g.params)
    assert stem.size == 4
    assert ("layers.8.conv2.weight", 0) in stem.params  # ... through to the last stage
    assert ("linear.weight", 1) in stem.params
    last = next(g for g in spec.groups if ("layers.6.conv2.weight", 0) in g.params and g is not stem)
    assert last.size in (4, 8)


class _Parametrized(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(8))

    def forward(self, x):
        return x * self.scale


@pytest.mark.parametrize("layer, name", [
    (lambda: _Parametrized(), "'custom'"),
    (lambda: nn.PReLU(8), "'custom' (PReLU)"),
    (lambda: nn.GroupNorm(2, 8), "'custom' (GroupNorm)"),
])
def test_unknown_layer_is_refused_by_name_before_any_work(layer, name):
    net = nn.Sequential()
    net.add_module("fc", nn.Linear(4, 8))
    net.add_module("custom", layer())
    net.add_module("out", nn.Linear(8, 2))
    other = copy.deepcopy(net)
    before = _state(other)
    with pytest.raises(la.InputError, match=name.replace("(", r"\(").replace(")", r"\)")):
        la.align(net, other, data=torch.randn(3, 4))
    assert _same_state(other, before)


def test_attention_is_refused_by_name():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            h = self.fc(x)
            return self.attn(h, h, h)[0]

    with pytest.raises(la.InputError, match=r"'attn' \(MultiheadAttention\)"):
        la.align(Attn(), Attn(), data=torch.randn(2, 3, 4))


def test_parametrize_is_refused_by_name():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    torch.nn.utils.parametrizations.weight_norm(net[0])
    with pytest.raises(la.InputError, match=r"layer '0' .*parametrized"):
        la.align(net, copy.deepcopy(net), data=torch.randn(3, 4))


def test_bad_inputs_are_refused():
    net = MODELS["mlp"][0]
    with pytest.raises(la.InputError, match="alignment method"):
        la.align(net, net, method="magic")
    with pytest.raises(la.InputError, match="needs data="):
        la.align(net, net, method="activations")
    with pytest.raises(la.InputError, match="one architecture"):
        la.align(net, MLP((1, 8, 8), 5, hidden=(24, 17)))
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(la.InputError, match="input shape"):  # spatial size unknown without data
        la.align(conv, copy.deepcopy(conv))


def test_a_users_mlp_aligns_without_data():
    # The public call `la.align(reference, model, method="weights")` on an MLP the user wrote as
    # nn.Sequential (no input_shape attribute); old: InputError "the model's input shape is needed"
    torch.manual_seed(0)
    user = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    other = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)).train()
    state = _state(other)
    aligned = la.align(user, other, method="weights")
    x = torch.randn(5, 4)
    torch.testing.assert_close(aligned(x), other(x))  # the same function, units permuted
    assert _same_state(other, state)  # the guessed input's check left the model as it was, mode included
    assert any(not torch.equal(a, b) for a, b in zip(aligned.parameters(), other.parameters()))


def test_fingerprint_names_the_permutation():
    net = _perturbed(MODELS["mlp"][0], 4).eval()
    a, _ = _random_permutation(net, seed=1)
    b, _ = _random_permutation(net, seed=2)
    pa, pb = find_permutation(net, a), find_permutation(net, b)
    assert pa.fingerprint() != pb.fingerprint()
    assert pa.fingerprint() == find_permutation(net, a).fingerprint()  # deterministic


def test_cli_interpolate_and_connect_align(tmp_path):
    from typer.testing import CliRunner

    from lossatlas.cli import app

    def invoke(*args):
        r = CliRunner().invoke(app, [str(a) for a in args])
        return r.exit_code, " ".join(r.output.split())

    small = ("--data", "digits", "--subset", 300)
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, 0), (b, 1)):
        code, text = invoke("train", "--model", "mlp", *small, "--epochs", 2, "--init-seed", seed, "--out", out)
        assert code == 0, text
    code, text = invoke("interpolate", a, b, "--steps", 5, "--extent", "0,1", "--align", "weights",
                        "--out", tmp_path / "i")
    assert code == 0, text
    run = la.RunDir(tmp_path / "i")
    raw, aligned = run.open("interpolation"), run.open("interpolation_aligned")
    alignment = read_attr(aligned, "settings")["alignment"]
    assert alignment["method"] == "weights" and len(alignment["fingerprint"]) == 16
    # The aligned copy computes what b computes: the two lines end at the same loss.
    assert float(aligned.loss.sel(t=1.0)) == pytest.approx(float(raw.loss.sel(t=1.0)), rel=1e-5)
    side = run.summary()["interpolation_alignment"]["barriers"]["line"]
    assert side["before"] == barrier_stats(raw.t.values, raw.loss.values)["barrier"]
    assert side["after"] == barrier_stats(aligned.t.values, aligned.loss.values)["barrier"]
    assert "before alignment" in text and "after" in text
    assert (tmp_path / "i" / "figures" / "interpolation_alignment.png").exists()
    # A stored aligned line of another alignment is refused, naming the setting.
    code, text = invoke("interpolate", a, b, "--steps", 5, "--extent", "0,1", "--align", "activations",
                        "--out", tmp_path / "i")
    assert code == 2 and "alignment" in text
    code, text = invoke("interpolate", a, b, "--align", "magic", "--out", tmp_path / "j")
    assert code == 2 and "alignment" in text and not (tmp_path / "j" / "interpolation.zarr").exists()

    code, text = invoke("connect", a, b, "--method", "linear", "--points", 5, "--align", "activations",
                        "--out", tmp_path / "c")
    assert code == 0, text
    run = la.RunDir(tmp_path / "c")
    path = run.open("connect_linear_aligned")
    assert read_attr(path, "settings")["alignment"]["method"] == "activations"
    side = run.summary()["connect_alignment"]["barriers"]["linear"]
    assert side["after"] == pytest.approx(float(path.attrs["barrier"]))
    assert side["before"] == pytest.approx(float(run.open("connect_linear").attrs["barrier"]))
    assert (tmp_path / "c" / "figures" / "connect_alignment.png").exists()


def test_align_is_public_and_not_hidden_by_its_module():
    import lossatlas.alignment  # noqa: F401 - importing the package must not hide the function

    assert callable(la.align) and la.align is lossatlas.alignment.align
