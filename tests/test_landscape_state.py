"""Landscape holds no hidden state: derivatives depend on theta alone, calls are thread-safe, and
torch's process-wide thread count is the same after overlapping evaluations (issue 8, item 4)."""

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossatlas.landscape import Landscape, process_threads
from lossatlas.space import ParamSpace, random_directions

from helpers import DEVICE, blobs, cnn, mlp


def _bn_model(X):
    model = mlp(d_in=16, bn=True)
    model.train()
    for _ in range(3):
        model(X * 3 + 1)  # running statistics of other data than the evaluation data
    model.eval()
    return model


def _recomputed_reference(model, theta, X, y, batch):
    """The model at theta with statistics re-estimated on X: a train-mode pass over the batches,
    each batch-norm layer given the mean and unbiased variance of all the inputs it saw."""
    m = copy.deepcopy(model)
    ParamSpace(m).assign(m, theta)
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm1d)]
    seen = {b: [] for b in bns}
    hooks = [b.register_forward_pre_hook(lambda mod, args: seen[mod].append(args[0].detach())) for b in bns]
    m.train()
    with torch.no_grad():
        for i in range(0, len(X), batch):
            m(X[i : i + batch])
        for b in bns:
            h = torch.cat(seen[b])
            b.running_mean.copy_(h.mean(0))
            b.running_var.copy_(h.var(0, unbiased=True))
    for hook in hooks:
        hook.remove()
    return m.eval()


def test_recompute_grad_and_hvp_depend_on_theta_alone():
    X, y = blobs(n=64, d_in=16)
    model = _bn_model(X)
    f = Landscape(model, (X, y), bn="recompute", batch_size=16, device=DEVICE)
    d = random_directions(model, n=1, seed=0)[0].to(f.device)
    v = random_directions(model, n=1, seed=1)[0].to(f.device)
    before_value, before_g = f.grad(f.origin)
    before_hv = f.hvp(f.origin, v)
    f.evaluate(f.origin + d)  # leaves another point's statistics in the evaluation module
    after_value, after_g = f.grad(f.origin)
    # The old code gave 1.42 before and 1.44 after evaluating another point, 1.48 by evaluate.
    assert after_value == before_value
    assert torch.equal(after_g, before_g) and torch.equal(f.hvp(f.origin, v), before_hv)
    assert after_value == pytest.approx(f.evaluate(f.origin)["loss"].item(), rel=1e-5)

    # Against autograd on the model with statistics re-estimated at theta, held fixed.
    theta = f.origin.cpu() + 0.3 * d.cpu()
    ref = _recomputed_reference(model, theta, X, y, 16)
    t = theta.clone().requires_grad_(True)

    def loss_of(t):
        return F.cross_entropy(torch.func.functional_call(ref, ParamSpace(ref).unflatten(t), (X,)), y)

    value = loss_of(t)
    (g,) = torch.autograd.grad(value, t, create_graph=True)
    (hv,) = torch.autograd.grad(g @ v.cpu(), t)
    got_value, got_g = f.grad(theta)
    assert got_value == pytest.approx(value.item(), rel=1e-5)
    assert torch.allclose(got_g.cpu(), g.detach(), atol=1e-6)
    assert torch.allclose(f.hvp(theta, v).cpu(), hv, atol=1e-5)


class _Gate:
    """Pauses one thread's forward until another thread's forward is under way."""

    def __init__(self):
        self.armed = False
        self.eval_in, self.grad_in, self.eval_out = threading.Event(), threading.Event(), threading.Event()


GATE = _Gate()


class _GatedMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()

    def forward(self, x):
        if GATE.armed and threading.current_thread().name == "evaluator":
            GATE.eval_in.set()
            GATE.grad_in.wait(10)  # the main thread's grad is inside its forward now
            out = self.body(x)
            GATE.eval_out.set()
            return out
        if GATE.armed and threading.current_thread() is threading.main_thread() and GATE.eval_in.is_set():
            GATE.grad_in.set()
            GATE.eval_out.wait(10)  # the evaluation ran its forward while this one was under way
        return self.body(x)


def test_grad_during_an_evaluation_in_another_thread_is_right_and_leaves_it_right():
    X, y = blobs(n=40)
    model = _GatedMLP()
    f = Landscape(model, (X, y), workers=1, compile=False, device=DEVICE)
    point = f.origin + random_directions(model, n=1, seed=2)[0].to(f.device)
    want_eval = f.evaluate(point)["loss"]
    want_value, want_g = f.grad(f.origin)
    got = {}
    GATE.armed = True
    try:
        t = threading.Thread(target=lambda: got.update(f.evaluate(point)), name="evaluator")
        t.start()
        assert GATE.eval_in.wait(10)
        value, g = f.grad(f.origin)  # its forward runs while the evaluation's is paused inside
        t.join(20)
    finally:
        GATE.armed = False
    assert GATE.grad_in.is_set() and GATE.eval_out.is_set()  # the two forwards did overlap
    # The old code's grad swapped its parameters into the module the evaluation was running.
    assert torch.equal(got["loss"], want_eval)
    assert value == want_value and torch.equal(g, want_g)


def test_grad_hvp_and_evaluate_from_many_threads_agree_with_one_thread():
    X, y = blobs(n=64, d_in=64, image=True)
    model = cnn(bn=True)
    f = Landscape(model, (X, y), bn="recompute", batch_size=32, workers=2, device=DEVICE)
    d = random_directions(model, n=2, seed=3)
    pts = torch.stack([f.origin + a * d[0].to(f.device) for a in (0.0, 0.5, -0.5, 1.0)])
    v = d[1].to(f.device)
    want = (f.evaluate(pts)["loss"], f.grad(pts[1])[1], f.hvp(pts[2], v))
    results, errors = [], []

    def work(i):
        try:
            kind = i % 3
            if kind == 0:
                results.append((0, f.evaluate(pts)["loss"]))
            elif kind == 1:
                results.append((1, f.grad(pts[1])[1]))
            else:
                results.append((2, f.hvp(pts[2], v)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 9
    for kind, value in results:
        assert torch.allclose(value, want[kind], rtol=1e-5, atol=1e-7), kind


class _Rendezvous(nn.Module):
    """Landscape A's workers wait at a barrier for B's; B's then wait until A has returned, so
    that A's evaluation starts first, both overlap, and A ends first."""

    def __init__(self, tag):
        super().__init__()
        self.tag = tag
        self.body = cnn(bn=False)

    def forward(self, x):
        if RENDEZVOUS["armed"]:
            if self.tag == "A":
                RENDEZVOUS["a_in"].set()
            RENDEZVOUS["barrier"].wait(20)
            if self.tag == "B":
                RENDEZVOUS["a_done"].wait(20)
        return self.body(x)


RENDEZVOUS = {"armed": False}


def test_overlapping_evaluations_leave_the_process_thread_count_alone():
    X, y = blobs(n=32, d_in=64, image=True)
    torch.set_num_threads(2)
    before = process_threads()
    assert before == 2
    for _ in range(3):
        a = Landscape(_Rendezvous("A"), (X, y), workers=2, compile=False, device=DEVICE)
        b = Landscape(_Rendezvous("B"), (X, y), workers=2, compile=False, device=DEVICE)
        RENDEZVOUS.update(armed=True, barrier=threading.Barrier(4), a_in=threading.Event(), a_done=threading.Event())
        try:
            ta = threading.Thread(target=a.evaluate, args=(torch.stack([a.origin, a.origin]),))
            tb = threading.Thread(target=b.evaluate, args=(torch.stack([b.origin, b.origin]),))
            ta.start()
            assert RENDEZVOUS["a_in"].wait(20)  # A has split the threads before B starts
            tb.start()
            ta.join(30)
            RENDEZVOUS["a_done"].set()
            tb.join(30)
        finally:
            RENDEZVOUS["armed"] = False
        assert not ta.is_alive() and not tb.is_alive()
        # Old code: B saved the 1 that A had set and restored it after A had restored 2.
        assert process_threads() == before
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("bn", ["eval", "batch", "recompute"])
def test_hvp_reverse_and_forward_modes_agree(bn):
    # The default double-backward product against forward-over-reverse, on a CNN with batch norm
    # and over several batches; both must also be linear in v.
    X, y = blobs(n=48, d_in=64, image=True)
    model = cnn()
    f = Landscape(model, (X, y), bn=bn, batch_size=16, device=DEVICE)
    theta = f.origin + 0.1 * random_directions(model, n=1, seed=2)[0].to(f.device)
    v = random_directions(model, n=1, seed=3)[0].to(f.device)
    rev, fwd = f.hvp(theta, v), f.hvp(theta, v, mode="forward")
    assert rev.abs().max() > 1e-3
    assert torch.allclose(rev, fwd, atol=1e-5, rtol=1e-4)
    assert torch.allclose(f.hvp(theta, 2 * v), 2 * rev, atol=1e-5, rtol=1e-4)
    from lossatlas._errors import InputError

    with pytest.raises(InputError, match="hvp mode must be one of reverse, forward"):
        f.hvp(theta, v, mode="backward")
