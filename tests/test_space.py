import pytest
import torch

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.space import ParamSpace, cosine, direction_between, normalize_direction, random_directions

from helpers import cnn, mlp


def test_vector_order_matches_parameters_to_vector():
    model = cnn()
    space = ParamSpace(model)
    assert torch.equal(space.vector(model), torch.nn.utils.parameters_to_vector(model.parameters()))
    assert space.size == sum(p.numel() for p in model.parameters())
    assert space.names == tuple(n for n, _ in model.named_parameters())


def test_kinds_of_parameters():
    space = ParamSpace(cnn(bn=True))
    kinds = {e.name: e.kind for e in space.entries}
    assert kinds["0.weight"] == "weight" and kinds["0.bias"] == "bias"
    assert kinds["1.weight"] == "norm" and kinds["1.bias"] == "norm"
    assert space.entries[0].filters == 6


def test_assign_round_trip_and_unflatten_views():
    model = mlp()
    space = ParamSpace(model)
    v = torch.arange(space.size, dtype=torch.float32)
    space.assign(model, v)
    assert torch.equal(space.vector(model), v)
    views = space.unflatten(v)
    views["1.weight"][0, 0] = -1.0  # a view, not a copy
    assert v[0] == -1.0


def test_filter_normalization_per_filter_norms():
    model = cnn(bn=True)
    space = ParamSpace(model)
    theta = space.vector(model)
    (d,) = random_directions(model, n=1, norm="filter", ignore="biasbn", seed=3)
    for e, dn, wn in zip(space.entries, space.filter_norms(d), space.filter_norms(theta)):
        if len(e.shape) <= 1:
            assert torch.count_nonzero(d[e.slice]) == 0, e.name  # biases and BN weights zeroed
        else:
            assert torch.allclose(dn, wn, rtol=1e-5), e.name


def test_ignore_none_copies_one_dimensional_parameters():
    model = cnn(bn=True)
    space = ParamSpace(model)
    theta = space.vector(model)
    (d,) = random_directions(model, n=1, norm="filter", ignore=None, seed=0)
    for e in space.entries:
        if len(e.shape) <= 1:
            assert torch.equal(d[e.slice], theta[e.slice])


def test_layer_model_and_none_normalizations():
    model = mlp()
    space = ParamSpace(model)
    theta = space.vector(model)
    (d,) = random_directions(model, n=1, norm="layer", seed=1)
    for e in space.entries:
        if len(e.shape) >= 2:
            assert torch.allclose(d[e.slice].norm(), theta[e.slice].norm(), rtol=1e-5)
    (d,) = random_directions(model, n=1, norm="model", ignore=None, seed=1)
    assert torch.allclose(d.norm(), theta.norm(), rtol=1e-5)
    (d,) = random_directions(model, n=1, norm="none", ignore=None, seed=1)
    assert torch.equal(d, la.space.gaussian(space.size, la.space.direction_seeds(1, 1)[0]))


def test_directions_reproducible_and_independent_of_global_rng():
    model = mlp()
    state = torch.get_rng_state()
    a = random_directions(model, n=2, seed=7)
    assert torch.equal(torch.get_rng_state(), state), "global RNG was used"
    torch.manual_seed(123)
    b = random_directions(model, n=3, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # direction k depends on (seed, k) only
    c = random_directions(model, n=2, seed=8)
    assert not torch.equal(a[0], c[0])
    assert abs(cosine(a[0], a[1])) < 0.2  # nearly orthogonal


def test_direction_between_models():
    a, b = mlp(seed=0), mlp(seed=1)
    d = direction_between(a, b)
    assert torch.allclose(ParamSpace(a).vector(a) + d, ParamSpace(b).vector(b))
    with pytest.raises(InputError, match="different parameters"):
        direction_between(a, cnn())


def test_bad_input_errors():
    model = mlp()
    space = ParamSpace(model)
    with pytest.raises(InputError, match="unknown normalization"):
        random_directions(model, norm="filters")
    with pytest.raises(InputError, match="parameters"):
        space.check_vector(torch.zeros(space.size + 1))
    broken = mlp()
    with torch.no_grad():
        broken[1].weight[0, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN.*1\.weight"):
        random_directions(broken)
    with pytest.raises(InputError, match="direction has shape"):
        normalize_direction(space, torch.zeros(3), space.vector(model))


def test_half_precision_models_hash():
    # bf16 and fp16 models crashed the old hashers (NumPy has no bfloat16)
    import lossatlas as la
    from helpers import mlp

    for dtype in (torch.bfloat16, torch.float16):
        model = mlp().to(dtype)
        space = la.ParamSpace(model)
        vec = space.vector(model)
        assert len(space.fingerprint(vec)) == 16
        assert space.fingerprint(vec) != space.fingerprint(vec.float())
