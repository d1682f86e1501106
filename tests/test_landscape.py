import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lossatlas as la
from lossatlas._errors import InputError
from lossatlas.landscape import Landscape
from lossatlas.space import ParamSpace, random_directions

from helpers import DEVICE, blobs, cnn, mlp, train_briefly


def snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
    )


def assert_same(model, snap):
    state, modes, grads = snap
    now = model.state_dict()
    assert state.keys() == now.keys()
    for k in state:
        assert torch.equal(state[k], now[k]), k
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads


def manual_loss(model, vec, X, y, bn_eval=True):
    """Reference: copy the vector into a fresh copy of the model and call it."""
    m = copy.deepcopy(model)
    ParamSpace(m).assign(m, vec)
    m.eval() if bn_eval else m.train()
    with torch.no_grad():
        out = m(X)
    return F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("bn", ["eval", "batch", "recompute"])
def test_user_model_is_bit_identical_afterwards(bn):
    X, y = blobs(n=64, d_in=64, image=True)
    model = cnn(bn=True, dropout=0.5)
    model.train()  # a training-mode model with BN and dropout is the hardest case
    model[1].running_mean += 0.3
    snap = snapshot(model)
    f = Landscape(model, (X, y), bn=bn, test=(X[:16], y[:16]), device=DEVICE)
    d = [t.to(DEVICE) for t in random_directions(model, n=2, seed=0)]
    f.evaluate(torch.stack([f.origin, f.origin + d[0]]))
    if bn != "recompute":
        f.grad(f.origin)
        f.hvp(f.origin, d[1])
    la.plane(f, f.origin, d, steps=3)
    assert_same(model, snap)


def test_evaluate_matches_manual_loop_and_batches_average_correctly():
    X, y = blobs(n=100)
    model = train_briefly(mlp(), X, y)
    d = random_directions(model, n=1, seed=1)[0]
    pts = torch.stack([ParamSpace(model).vector(model) + a * d for a in (0.0, 0.5, -1.0)])
    f = Landscape(model, (X, y), batch_size=32, device=DEVICE)  # 100 = 32+32+32+4: uneven batches
    out = f.evaluate(pts)
    for k, p in enumerate(pts):
        loss, acc = manual_loss(model, p, X, y)
        assert out["loss"][k].item() == pytest.approx(loss, rel=1e-5)
        assert out["accuracy"][k].item() == pytest.approx(acc)


@pytest.mark.parametrize("bn", ["eval", "batch"])
def test_loop_and_vmap_strategies_agree(bn):
    X, y = blobs(n=80, d_in=64, image=True)
    model = cnn(bn=True)
    model.train()
    model(X)  # give BN non-trivial running statistics
    model.eval()
    d = [t.to(DEVICE) for t in random_directions(model, n=2, seed=2)]
    f_loop = Landscape(model, (X, y), bn=bn, strategy="loop", batch_size=32, test=(X[:20], y[:20]), device=DEVICE)
    f_vmap = Landscape(model, (X, y), bn=bn, strategy="vmap", batch_size=32, chunk=3, test=(X[:20], y[:20]),
                       device=DEVICE)
    pts = torch.stack([f_loop.origin + a * d[0] + b * d[1] for a, b in [(0, 0), (0.3, -0.2), (-1, 1), (0.5, 0.5)]])
    a, b = f_loop.evaluate(pts), f_vmap.evaluate(pts)
    assert a.keys() == b.keys() == {"loss", "accuracy", "test_loss", "test_accuracy"}
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k


def test_batchnorm_modes_mean_what_they_say():
    X, y = blobs(n=64, d_in=16)
    model = mlp(bn=True)
    model.train()
    for _ in range(3):
        model(X * 3 + 1)  # running stats from other data than the evaluation data
    model.eval()
    theta = ParamSpace(model).vector(model)
    ev = Landscape(model, (X, y), bn="eval", device=DEVICE).evaluate(theta)["loss"].item()
    assert ev == pytest.approx(manual_loss(model, theta, X, y, bn_eval=True)[0], rel=1e-5)
    # "batch": the statistics of the (single) evaluation batch, as a train-mode forward.
    batch = Landscape(model, (X, y), bn="batch", device=DEVICE).evaluate(theta)["loss"].item()
    m = copy.deepcopy(model).train()
    with torch.no_grad():
        ref = F.cross_entropy(m(X), y).item()
    assert batch == pytest.approx(ref, rel=1e-5)
    # "recompute": running statistics re-estimated on the data, then eval mode: with one
    # full batch the mean equals the batch mean, the variance the unbiased batch variance.
    rec = Landscape(model, (X, y), bn="recompute", device=DEVICE).evaluate(theta)["loss"].item()
    m = copy.deepcopy(model)
    m[2].reset_running_stats()
    m[2].momentum = None
    m.train()
    with torch.no_grad():
        m(X)
        m.eval()
        ref = F.cross_entropy(m(X), y).item()
    assert rec == pytest.approx(ref, rel=1e-5)
    assert abs(ev - batch) > 1e-3  # the modes really differ on this model


def test_dataloader_dict_batches_and_forward_adapter():
    X, y = blobs(n=50)
    model = mlp()

    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixels):
            return self.inner(pixels)

    w = Wrapped(model)
    batches = [{"inputs": {"pixels": X[i : i + 20]}, "labels": y[i : i + 20]} for i in range(0, 50, 20)]
    f_dict = Landscape(w, batches, forward=lambda m, b: m(**b["inputs"]), device=DEVICE)
    f_tensor = Landscape(model, DataLoader(TensorDataset(X, y), batch_size=7), device=DEVICE)
    theta = ParamSpace(model).vector(model)
    assert f_dict.evaluate(theta)["loss"].item() == pytest.approx(f_tensor.evaluate(theta)["loss"].item(), rel=1e-6)


def test_seeded_subset_and_custom_loss():
    X, y = blobs(n=200)
    model = mlp()
    f1 = Landscape(model, (X, y), samples=50, seed=3)
    f2 = Landscape(model, (X, y), samples=50, seed=3)
    f3 = Landscape(model, (X, y), samples=50, seed=4)
    assert f1.n_samples == {"train": 50}
    assert f1.fingerprint == f2.fingerprint != f3.fingerprint
    f_custom = Landscape(model, (X, y), loss=lambda out, t: F.cross_entropy(out, t))
    f_named = Landscape(model, (X, y), loss="cross_entropy", batch_size=64)
    theta = f_named.origin
    assert f_custom.evaluate(theta)["loss"].item() == pytest.approx(f_named.evaluate(theta)["loss"].item(), rel=1e-6)


def test_grad_and_hvp_against_autograd():
    X, y = blobs(n=40)
    model = mlp()
    f = Landscape(model, (X, y), batch_size=16)
    theta = f.origin.clone().requires_grad_(True)

    def loss_of(t):
        params = {n: v for n, v in ParamSpace(model).unflatten(t).items()}
        out = torch.func.functional_call(model, params, (X,))
        return F.cross_entropy(out, y)

    value = loss_of(theta)
    (g,) = torch.autograd.grad(value, theta, create_graph=True)
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(0))
    (hv,) = torch.autograd.grad(g @ v, theta)
    val, g2 = f.grad(f.origin)
    assert val == pytest.approx(value.item(), rel=1e-5)
    assert torch.allclose(g2, g.detach(), atol=1e-6)
    assert torch.allclose(f.hvp(f.origin, v), hv, atol=1e-5)


def test_nan_point_is_recorded_not_fatal_and_landscape_pickles():
    X, y = blobs(n=30)
    f = Landscape(mlp(), (X, y), device=DEVICE)
    bad = f.origin.clone()
    bad[0] = float("nan")
    out = f.evaluate(torch.stack([f.origin, bad]))
    assert torch.isfinite(out["loss"][0]) and torch.isnan(out["loss"][1])
    g = pickle.loads(pickle.dumps(f))
    assert torch.equal(g.evaluate(f.origin)["loss"], f.evaluate(f.origin)["loss"])


def test_bad_input_errors_before_work():
    X, y = blobs(n=30)
    with pytest.raises(InputError, match="empty"):
        Landscape(mlp(), (X[:0], y[:0]))
    with pytest.raises(InputError, match="empty"):
        Landscape(mlp(), DataLoader(TensorDataset(X[:0], y[:0]), batch_size=4))
    with pytest.raises(InputError, match="first data batch"):
        Landscape(mlp(d_in=16), (torch.randn(30, 5), y))
    broken = mlp()
    with torch.no_grad():
        broken[3].bias[1] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        Landscape(broken, (X, y))
    with pytest.raises(InputError, match="batch-norm mode"):
        Landscape(mlp(), (X, y), bn="train")
    with pytest.raises(InputError, match="samples=500"):
        Landscape(mlp(), (X, y), samples=500)
    f = Landscape(mlp(), (X, y))
    with pytest.raises(InputError, match=r"shape \[K, "):
        f.evaluate(torch.zeros(2, 5))


def test_builtin_cross_entropy_equals_torch():
    from lossatlas.landscape import LOSSES

    gen = torch.Generator().manual_seed(0)
    ce = LOSSES["cross_entropy"]
    for scale in (1.0, 1e3):  # large logits: logsumexp must stay finite and exact
        out = torch.randn(300, 7, generator=gen) * scale
        y = torch.randint(0, 7, (300,), generator=gen)
        ref = F.cross_entropy(out.double(), y, reduction="sum")
        assert ce(out, y).item() == pytest.approx(ref.item(), rel=1e-5)
    # Soft targets and [N, C, L] outputs go through torch's own implementation.
    out = torch.randn(4, 3, 5, generator=gen)
    y = torch.randint(0, 3, (4, 5), generator=gen)
    assert torch.equal(ce(out, y), F.cross_entropy(out, y, reduction="sum"))
    soft = torch.softmax(torch.randn(4, 3, generator=gen), 1)
    assert torch.equal(ce(out[:, :, 0], soft), F.cross_entropy(out[:, :, 0], soft, reduction="sum"))
    # Confident samples: losses near 1e-4 keep their relative precision.
    logits = torch.randn(500, 5, generator=gen)
    labels = torch.randint(0, 5, (500,), generator=gen)
    logits[torch.arange(500), labels] += 12.0
    ref = F.cross_entropy(logits.double(), labels, reduction="sum").item()
    assert ref / 500 < 1e-3
    assert ce(logits, labels).item() == pytest.approx(ref, rel=1e-5)
    out[0, 0] = float("nan")
    assert torch.isnan(ce(out[:, :, 0], y[:, 0]))


@pytest.mark.parametrize("bn", ["eval", "recompute"])
def test_worker_threads_give_the_single_worker_values(bn):
    X, y = blobs(n=70, d_in=64, image=True)
    model = cnn(bn=True)
    model.train()
    model(X)
    model.eval()
    d = random_directions(model, n=2, seed=5)
    pts = torch.stack([ParamSpace(model).vector(model) + a * d[0] + b * d[1]
                       for a, b in [(0, 0), (0.4, -0.1), (-1, 0.7), (0.2, 0.9), (1, 1)]])
    threads = torch.get_num_threads()
    ref = Landscape(model, (X, y), bn=bn, batch_size=32, workers=1, test=(X[:9], y[:9])).evaluate(pts)
    for workers in (2, 3, 8):  # 8 > points: one point per worker, the rest idle
        f = Landscape(model, (X, y), bn=bn, batch_size=32, workers=workers, test=(X[:9], y[:9]))
        out = f.evaluate(pts)
        assert torch.get_num_threads() == threads  # the process-wide setting is restored
        for k in ref:
            assert torch.allclose(out[k], ref[k], rtol=1e-6, atol=1e-7), (workers, k)
        assert len(f._replicas) == min(workers, len(pts))
        g = pickle.loads(pickle.dumps(f))  # replicas and the thread pool are rebuilt after pickling
        assert torch.allclose(g.evaluate(pts)["loss"], ref["loss"], rtol=1e-6)


def test_workers_auto_and_refusals():
    X, y = blobs(n=30)
    assert Landscape(mlp(), (X, y)).workers == 1  # short kernels: threads do not pay (measured)
    Xi, yi = blobs(n=30, d_in=64, image=True)
    assert Landscape(cnn(), (Xi, yi)).workers == torch.get_num_threads()
    assert Landscape(cnn(), (Xi, yi), compile=True).workers == 1
    assert Landscape(mlp(), (X, y), compile=True).workers == 1
    assert Landscape(mlp(), (X, y), strategy="vmap").workers == 1
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(InputError, match="workers must be"):
            Landscape(mlp(), (X, y), workers=bad)
    with pytest.raises(InputError, match="strategy='loop'"):
        Landscape(mlp(), (X, y), strategy="vmap", workers=2)
    with pytest.raises(InputError, match="compile=True"):
        Landscape(mlp(), (X, y), compile=True, workers=2)


def test_accuracy_false_gives_the_loss_alone():
    X, y = blobs(n=40)
    model = mlp()
    full = Landscape(model, (X, y), test=(X[:10], y[:10]))
    lean = Landscape(model, (X, y), test=(X[:10], y[:10]), accuracy=False)
    assert lean.keys == ("loss", "test_loss")
    a, b = full.evaluate(full.origin), lean.evaluate(lean.origin)
    assert set(b) == {"loss", "test_loss"}
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["test_loss"], b["test_loss"])
    with pytest.raises(InputError, match="accuracy must be"):
        Landscape(model, (X, y), accuracy="no")


# -- evaluate_span: the first layer's output from precomputed tables ---------------------------------


def _span_case(model, X, y, bn="eval", workers=1, **kw):
    f = Landscape(model, (X, y), bn=bn, workers=workers, test=(X[:13], y[:13]), compile=False, **kw)
    d = torch.stack(random_directions(model, n=2, seed=7))
    coords = torch.tensor([[0.0, 0.0], [0.3, -0.8], [-1.0, 0.5], [1.0, 1.0], [0.05, 0.0]], dtype=torch.float32)
    return f, d, coords


@pytest.mark.parametrize("bn", ["eval", "batch", "recompute"])
@pytest.mark.parametrize("workers", [1, 2])
def test_evaluate_span_equals_evaluate_and_uses_the_first_layer_tables(bn, workers, monkeypatch):
    import lossatlas.landscape.tables as L

    # The tests' CNN starts with a 3x3 conv on one channel (fan-in 9), below the fan-in where the
    # shortcut pays; lift that limit so that its correctness on convolutions is tested too.
    monkeypatch.setattr(L, "SPAN_MIN_FAN_IN_PER_TABLE", 0)
    X, y = blobs(n=70, d_in=64, image=True)
    for model, kw in ((cnn(bn=True), {"batch_size": 32}), (mlp(d_in=64, bn=True), {"batch_size": 25})):
        model.train()
        model(X)
        model.eval()
        snap = snapshot(model)
        f, d, coords = _span_case(model, X, y, bn=bn, workers=workers, **kw)
        fast = f.evaluate_span(f.origin, d, coords)
        assert f._first and f._span_cache is not None  # the shortcut was taken
        plain = f.evaluate(f.origin.unsqueeze(0) + coords @ d)
        assert fast.keys() == plain.keys()
        for k in plain:
            assert torch.allclose(fast[k], plain[k], rtol=2e-5, atol=1e-6), (type(model), k)
        layer = f._module.get_submodule(f._first[0])
        assert "forward" not in vars(layer)  # the override is gone after evaluating
        assert_same(model, snap)


class _ScaledInput(nn.Module):
    """A parameter acts on the data before the first layer: the shortcut must not be used."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(16))
        self.body = mlp()

    def forward(self, x):
        return self.body(x * self.scale)


class _SneakyShift(nn.Module):
    """A submodule's parameter shifts the data without the submodule being called: only the
    numerical check of evaluate_span can see that the first layer's input depends on it."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Linear(1, 16)
        self.body = mlp()

    def forward(self, x):
        return self.body(x + 5.0 * self.shift.bias)


class _TiedTwice(nn.Module):
    """The first layer is called twice per forward: its output is not one affine table."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.a(torch.relu(self.a(x)))))


@pytest.mark.parametrize("make", [_ScaledInput, _SneakyShift, _TiedTwice,
                                  lambda: nn.Sequential(nn.LayerNorm(16), mlp())])
def test_evaluate_span_falls_back_where_the_shortcut_would_be_wrong(make):
    X, y = blobs(n=40)
    torch.manual_seed(0)
    model = make()
    f = Landscape(model, (X, y))
    d = torch.stack(random_directions(model, n=2, seed=1, ignore=None))
    coords = torch.tensor([[0.2, 0.4], [-0.6, 0.1]])
    fast = f.evaluate_span(f.origin, d, coords)
    plain = f.evaluate(f.origin.unsqueeze(0) + coords @ d)
    assert torch.allclose(fast["loss"], plain["loss"], rtol=1e-6)
    assert f._first is False and f._span_cache is None
    if make is _SneakyShift:
        assert not torch.allclose(plain["loss"], f.evaluate(f.origin)["loss"])  # the shift matters


def test_evaluate_span_respects_the_memory_budget(monkeypatch):
    import lossatlas.landscape.tables as L

    X, y = blobs(n=40)
    model = mlp()
    monkeypatch.setattr(L, "SPAN_TABLE_BYTES", 1000)  # 3 tables of 40 x 12 floats do not fit
    f = Landscape(model, (X, y))
    d = torch.stack(random_directions(model, n=2, seed=1))
    out = f.evaluate_span(f.origin, d, [[0.1, 0.2]])
    assert f._span_cache is None and f._first  # a first layer, but no tables
    assert out["loss"][0].item() == pytest.approx(f.evaluate(f.origin + 0.1 * d[0] + 0.2 * d[1])["loss"].item())
    with pytest.raises(InputError, match="coords must have shape"):
        f.evaluate_span(f.origin, d, [[0.1, 0.2, 0.3]])


def test_evaluate_span_skips_layers_too_thin_to_gain():
    X, y = blobs(n=40, d_in=64, image=True)
    model = cnn()  # first layer: fan-in 9 = 1 channel x 3 x 3, against 3 tables for a plane
    f = Landscape(model, (X, y))
    d = torch.stack(random_directions(model, n=2, seed=1))
    out = f.evaluate_span(f.origin, d, [[0.3, -0.2]])
    assert f._first and f._span_cache is None
    assert torch.allclose(out["loss"], f.evaluate(f.origin + 0.3 * d[0] - 0.2 * d[1])["loss"], rtol=1e-6)
