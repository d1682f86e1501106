"""Tests for lossatlas.models: published parameter counts, shapes, seeding, specs, vmap, errors."""

import json
import math

import pytest
import torch
from torch import nn

from lossatlas._errors import InputError
from lossatlas.models import (
    MLP,
    MODELS,
    VGG9,
    SmallCNN,
    build,
    count_parameters,
    model_names,
    resnet,
    wide_resnet,
)

CIFAR = (3, 32, 32)


# --------------------------------------------------------------------------- parameter counts

# Published sizes: He et al. 2016, Table 6 (ResNet-20 0.27M, -56 0.85M, -110 1.7M, option A);
# Zagoruyko & Komodakis 2016 (WRN-28-2 1.47M, WRN-16-2 0.69M on CIFAR-10). The papers round to
# 2-3 significant digits, so allow 2%.
PUBLISHED = [
    ("resnet20", 0.27e6),
    ("resnet56", 0.85e6),
    ("resnet110", 1.7e6),
    ("wrn-28-2", 1.47e6),
    ("wrn-16-2", 0.69e6),
]


@pytest.mark.parametrize("name,published", PUBLISHED)
def test_parameter_counts_match_published(name, published):
    n = count_parameters(build(name, CIFAR, 10))
    assert abs(n - published) / published < 0.02, (name, n, published)


def _resnet_option_a_count(depth, width=1, in_ch=3, classes=10, channels=16):
    # Independent count from the architecture's definition: bias-free 3x3 convs, 2 BN params
    # per channel, no shortcut parameters.
    n = (depth - 2) // 6
    c0 = channels * width
    total = 9 * in_ch * c0 + 2 * c0
    cin = c0
    for base in (channels, 2 * channels, 4 * channels):
        cout = base * width
        for _ in range(n):
            total += 9 * cin * cout + 9 * cout * cout + 4 * cout
            cin = cout
    return total + cin * classes + classes


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_resnet_count_matches_formula_and_noshort_equal(depth):
    expected = _resnet_option_a_count(depth)
    assert count_parameters(resnet(depth, CIFAR, 10)) == expected
    # Option A shortcuts add no parameters, so removing them changes nothing in the count.
    assert count_parameters(build(f"resnet{depth}-noshort", CIFAR, 10)) == expected


def test_resnet_width_and_option_b():
    assert count_parameters(resnet(20, CIFAR, 10, width=2)) == _resnet_option_a_count(20, width=2)
    # Option B adds two projections (16->32 and 32->64, 1x1 conv + BN).
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    a = count_parameters(resnet(20, CIFAR, 10))
    assert count_parameters(resnet(20, CIFAR, 10, shortcut_type="B")) == a + extra
    # Without shortcuts the projections go too.
    assert count_parameters(resnet(20, CIFAR, 10, shortcut=False, shortcut_type="B")) == a


def test_resnet_narrow_first_stage():
    # channels=4: stages of 4, 8 and 16 filters (times width); width 4 of it is the published net
    net = resnet(56, (1, 14, 14), 10, shortcut=False, channels=4)
    assert count_parameters(net) == _resnet_option_a_count(56, in_ch=1, channels=4)
    assert net.spec["channels"] == 4 and net.spec["shortcut"] is False
    assert count_parameters(resnet(20, CIFAR, 10, channels=4, width=4)) == count_parameters(resnet(20, CIFAR, 10))
    assert net(torch.zeros(2, 1, 14, 14)).shape == (2, 10)
    with pytest.raises(InputError, match="channels"):
        resnet(20, CIFAR, 10, channels=0)


def test_vgg9_layout_and_count():
    net = VGG9(CIFAR, 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256]
    assert len(linears) == 2  # 7 conv + 2 FC = 9 layers
    convs_p = sum(9 * a * b + b for a, b in [(3, 64), (64, 64), (64, 128), (128, 128),
                                              (128, 256), (256, 256), (256, 256)])
    bn_p = 2 * (64 * 2 + 128 * 2 + 256 * 3) + 2 * 256
    fc_p = 256 * 4 * 4 * 256 + 256 + 256 * 10 + 10
    assert count_parameters(net) == convs_p + bn_p + fc_p
    assert count_parameters(VGG9(CIFAR, 10, batch_norm=False)) == convs_p + fc_p


def test_count_parameters_trainable_only():
    net = MLP((4,), 2, hidden=(3,))
    assert count_parameters(net) == 4 * 3 + 3 + 3 * 2 + 2
    net.net[1].weight.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == 3 + 3 * 2 + 2


# --------------------------------------------------------------------------- forward shapes

FORWARD = [
    ("mlp", {}, (20,)),
    ("mlp", {"batch_norm": True, "activation": "tanh"}, (1, 40)),
    ("mlp", {"hidden": ()}, (1, 8, 8)),
    ("smallcnn", {}, (1, 40)),
    ("smallcnn", {"batch_norm": True}, (1, 40)),
    ("smallcnn", {}, (1, 8, 8)),
    ("smallcnn", {"batch_norm": True, "hidden": None}, (1, 28, 28)),
    ("smallcnn", {}, (3, 32, 32)),
    ("smallcnn", {}, (2, 3, 3)),  # pooling must skip dims that reach size 1
    ("smallcnn", {}, (1, 1, 40)),
    ("smallvgg", {}, (1, 40)),
    ("smallvgg", {}, (1, 28, 28)),
    ("smallvgg", {"batch_norm": False}, (1, 8, 8)),
    ("vgg9", {}, (3, 32, 32)),
    ("vgg9", {}, (1, 28, 28)),
    ("vgg9", {"batch_norm": False}, (1, 8, 8)),
    ("resnet20", {}, (3, 32, 32)),
    ("resnet20-noshort", {}, (1, 28, 28)),
    ("resnet20", {"shortcut_type": "B"}, (1, 8, 8)),
    ("resnet20", {"width": 2}, (1, 7, 9)),
    ("wrn-16-2", {}, (3, 32, 32)),
    ("wrn-10-1", {"dropout": 0.3}, (1, 8, 8)),
]


@pytest.mark.parametrize("name,kwargs,shape", FORWARD)
def test_forward_shape(name, kwargs, shape):
    torch.manual_seed(0)
    net = build(name, shape, 7, seed=1, **kwargs)
    x = torch.randn(3, *shape)
    out = net(x)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    with torch.no_grad():
        assert net(x[:1]).shape == (1, 7)


def test_direct_constructors():
    assert wide_resnet(10, 1, (1, 8, 8), 4)(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    assert SmallCNN((1, 40), 3)(torch.zeros(2, 1, 40)).shape == (2, 3)
    assert isinstance(SmallCNN((1, 40), 3).features[0], nn.Conv1d)
    assert isinstance(SmallCNN((1, 8, 8), 3).features[0], nn.Conv2d)


def test_no_inplace_modules():
    for name in MODELS:
        net = build(name, (1, 8, 8), 3)
        assert not any(getattr(m, "inplace", False) for m in net.modules()), name


# --------------------------------------------------------------------------- seeding


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name,shape", [("mlp", (10,)), ("smallcnn", (1, 40)),
                                        ("smallvgg", (1, 8, 8)), ("resnet20", (1, 8, 8)),
                                        ("wrn-10-2", (1, 8, 8)), ("vgg9", (1, 8, 8))])
def test_seeded_build_reproducible_and_global_rng_untouched(name, shape):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = _state(build(name, shape, 5, seed=7))
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(999)  # a different global state must not matter
    b = _state(build(name, shape, 5, seed=7))
    c = _state(build(name, shape, 5, seed=8))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert any(not torch.equal(a[k], c[k]) for k in weights)
    # to_empty leaves buffers uninitialized; they must be the fresh BN statistics.
    for k, v in a.items():
        if k.endswith("running_mean") or k.endswith("num_batches_tracked"):
            assert torch.equal(v, torch.zeros_like(v)), k
        if k.endswith("running_var"):
            assert torch.equal(v, torch.ones_like(v)), k


def test_seeded_init_has_the_documented_distribution():
    # MLP: torch's default init, weights and biases within 1/sqrt(fan_in).
    net = build("mlp", (400,), 10, seed=0, hidden=(300,))
    w, b = net.net[1].weight, net.net[1].bias
    bound = 1 / math.sqrt(400)
    assert w.abs().max() <= bound and b.abs().max() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    # ResNet: He-normal convolutions, std sqrt(2 / fan_out).
    conv = build("resnet56", CIFAR, 10, seed=0).layers[-1].conv2.weight
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    unseeded = build("resnet56", CIFAR, 10).layers[-1].conv2.weight
    assert unseeded.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)


def test_unseeded_build_uses_global_rng():
    torch.manual_seed(5)
    a = _state(build("smallcnn", (1, 8, 8), 3))
    torch.manual_seed(5)
    b = _state(build("smallcnn", (1, 8, 8), 3))
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- specs and names

SPEC_CASES = [
    ("mlp", (1, 8, 8), {"hidden": (32, 16), "activation": "gelu", "batch_norm": True}),
    ("smallcnn", (1, 40), {"channels": (8,), "hidden": 16}),
    ("smallvgg", (1, 28, 28), {"channels": (8, 16), "convs_per_stage": 1}),
    ("vgg9", CIFAR, {"width": 1}),
    ("resnet56-noshort", CIFAR, {"width": 2}),
    ("wrn-16-2", CIFAR, {"dropout": 0.1}),
]


@pytest.mark.parametrize("name,shape,kwargs", SPEC_CASES)
def test_spec_round_trip(name, shape, kwargs):
    net = build(name, shape, 10, seed=0, **kwargs)
    spec = json.loads(json.dumps(net.spec))  # plain types: survives a config file
    assert spec == net.spec
    assert spec["name"] in MODELS
    again = build(**spec, seed=0)
    assert again.spec == net.spec
    assert type(again) is type(net)
    a, b = _state(net), _state(again)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_names_are_normalized_and_all_listed_names_build():
    assert build("ResNet-56", CIFAR, 10).spec["depth"] == 56
    wrn = build("WRN_28_2", CIFAR, 10).spec
    assert (wrn["depth"], wrn["k"]) == (28, 2)
    assert build("resnet", CIFAR, 10, depth=32).spec["depth"] == 32
    assert build("resnet110-noshort", CIFAR, 10).spec["shortcut"] is False
    assert set(MODELS) <= set(model_names())
    for name in model_names():
        net = build(name, (1, 8, 8), 3)
        assert count_parameters(net) > 0


# --------------------------------------------------------------------------- vmap compatibility


@pytest.mark.parametrize("name,shape,kwargs", [
    ("mlp", (1, 8, 8), {}),
    ("mlp", (12,), {"batch_norm": True}),
    ("smallcnn", (1, 8, 8), {}),
    ("smallcnn", (1, 40), {"batch_norm": True}),
    ("resnet20", (1, 8, 8), {}),
    ("wrn-10-1", (1, 8, 8), {}),
])
def test_vmap_over_parameter_sets_matches_separate_calls(name, shape, kwargs):
    net = build(name, shape, 4, seed=0, **kwargs).eval()
    sets = [dict(build(name, shape, 4, seed=s, **kwargs).named_parameters()) for s in range(3)]
    stacked = {k: torch.stack([p[k].detach() for p in sets]) for k in sets[0]}
    x = torch.randn(5, *shape, generator=torch.Generator().manual_seed(0))

    def f(params, inputs):
        return torch.func.functional_call(net, params, (inputs,))

    batched = torch.vmap(f, in_dims=(0, None))(stacked, x)
    assert batched.shape == (3, 5, 4)
    with torch.no_grad():
        for i in range(3):
            single = f({k: v[i] for k, v in stacked.items()}, x)
            torch.testing.assert_close(batched[i], single, rtol=1e-5, atol=1e-5)
    # The model itself is left alone by functional_call.
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), sets[0].values()))


# --------------------------------------------------------------------------- errors


def test_unknown_name_lists_known_models():
    with pytest.raises(InputError) as err:
        build("alexnet", CIFAR, 10)
    for name in MODELS:
        assert name in str(err.value)
    assert "resnet56" in str(err.value) and "wrn-28-2" in str(err.value)
    with pytest.raises(InputError):
        build(None, CIFAR, 10)


@pytest.mark.parametrize("name", ["resnet20", "wrn-16-2", "vgg9"])
def test_2d_only_models_reject_other_shapes(name):
    for bad in [(1, 40), (784,)]:
        with pytest.raises(InputError, match=r"\(C, H, W\)"):
            build(name, bad, 10)


@pytest.mark.parametrize("call,match", [
    (lambda: build("smallcnn", (784,), 10), r"\(C, L\)"),
    (lambda: build("mlp", (0, 3), 10), "positive ints"),
    (lambda: build("mlp", (3,), 0), "num_classes"),
    (lambda: build("mlp", (3,), 2, activation="swish"), "activation"),
    (lambda: build("mlp", (3,), 2, hiden=(3,)), "hidden"),
    (lambda: build("resnet", CIFAR, 10, depth=21), "6n\\+2"),
    (lambda: build("wrn-27-2", CIFAR, 10), "6n\\+4"),
    (lambda: build("resnet56", CIFAR, 10, depth=20), "depth"),
    (lambda: build("resnet56-noshort", CIFAR, 10, shortcut=True), "shortcut"),
    (lambda: build("resnet20", CIFAR, 10, shortcut_type="C"), "shortcut_type"),
    (lambda: build("wrn-16-2", CIFAR, 10, dropout=1.5), "dropout"),
    (lambda: build("mlp", (3,), 2, seed=-1), "seed"),
])
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()
