"""la.Recorder: the user's own loop recorded into a run directory, as la.train records its own."""

import copy

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import lossatlas as la
from lossatlas.landscape import LOSSES
from lossatlas.recording import HostCopier, copy_plan
from lossatlas.training import RunGenerators
from tests.helpers import DEVICE, blobs, mlp

torch.set_num_threads(1)

N, BS, EPOCHS, K, SEED = 96, 16, 3, 4, 7


def plain_loop(model, X, y, rec=None, epochs=EPOCHS, seed=SEED, start_epoch=0, every=None):
    """SGD as la.train runs it (the same data order from the run's own generator, the same summed
    loss over the batch size); returns the parameters after every step (and before the first)."""
    gens = RunGenerators(seed, X.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seen = [la.ParamSpace(model).vector(model)]
    for _ in range(start_epoch, epochs):
        model.train()
        perm = torch.randperm(X.shape[0], generator=gens.order, device=X.device)
        for b in range(X.shape[0] // BS):
            idx = perm[b * BS:(b + 1) * BS]
            opt.zero_grad(set_to_none=True)
            loss = LOSSES["cross_entropy"](model(X[idx]), y[idx]) / BS
            loss.backward()
            opt.step()
            seen.append(la.ParamSpace(model).vector(model))
            if rec is not None:
                rec.step(loss=loss, lr=0.1)
        if rec is not None:
            rec.end_epoch(test_accuracy=0.25)
    return seen


def test_every_k_steps_records_the_parameters_at_those_steps_and_la_train_pca(tmp_path):
    X, y = (t.to(DEVICE) for t in blobs(N))
    model = mlp(seed=1).to(DEVICE)
    init = copy.deepcopy(model)
    with la.Recorder(model, tmp_path / "rec", every_steps=K) as rec:
        seen = plain_loop(model, X, y, rec)
    traj = rec.trajectory.load()
    spe = N // BS
    # la.train's snapshots: the start, every K steps inside an epoch, every epoch's end.
    steps = sorted({0, *range(K, EPOCHS * spe + 1, K), *range(spe, EPOCHS * spe + 1, spe)})
    assert traj.step.values.tolist() == steps
    assert np.allclose(traj.epoch.values, np.array(steps) / spe)
    for i, s in enumerate(steps):  # bit for bit the parameters after those steps
        assert np.array_equal(traj.weights.values[i], seen[s].cpu().numpy()), s
    assert np.array_equal(traj.weights.values[-1], la.ParamSpace(model).vector(model).cpu().numpy())
    # Metrics: the loss at each step snapshot, the epoch metric at epoch ends, NaN where none was given.
    assert np.isnan(traj.loss.values[0]) and np.isfinite(traj.loss.values[1:]).all()
    ends = traj.step.values % spe == 0
    assert np.all(traj.test_accuracy.values[ends][1:] == 0.25) and np.isnan(traj.test_accuracy.values[~ends]).all()
    assert np.all(traj.lr.values[1:] == 0.1) and traj.attrs["kind"] == "trajectory"

    ref = la.train(init, (X, y), lr=0.1, momentum=0.9, epochs=EPOCHS, batch_size=BS, seed=SEED, every_steps=K)
    assert ref.trajectory.step.values.tolist() == steps
    assert np.array_equal(ref.trajectory.weights.values, traj.weights.values)
    dirs, ratio = la.pca_directions(traj, n=2)
    ref_dirs, ref_ratio = la.pca_directions(ref.trajectory, n=2)
    assert np.allclose(ratio, ref_ratio, rtol=1e-10)
    for d, r in zip(dirs, ref_dirs):
        assert np.allclose(d, r, atol=1e-6)


def test_a_restarted_recording_resumes_and_refuses_another_model(tmp_path):
    X, y = blobs(N)
    out = tmp_path / "rec"
    model = mlp(seed=2)
    whole = copy.deepcopy(model)
    rec = la.Recorder(model, out, every_steps=K, chunk=1)
    gens = RunGenerators(SEED, X.device)  # the script's data order continues across the restart
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def epoch(r):
        perm = torch.randperm(N, generator=gens.order)
        for b in range(N // BS):
            opt.zero_grad()
            idx = perm[b * BS:(b + 1) * BS]
            torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
            r.step()
        r.end_epoch()

    epoch(rec)
    rec.close()
    first = rec.trajectory.load()
    rec2 = la.Recorder(model, out, every_steps=K, chunk=1)  # the restarted script
    assert (rec2.steps, rec2.epochs) == (N // BS, 1)
    epoch(rec2)
    rec2.close()
    both = rec2.trajectory.load()
    assert np.array_equal(both.weights.values[:first.sizes["point"]], first.weights.values)
    assert both.step.values.tolist() == [0, 4, 6, 8, 12]
    assert np.allclose(both.epoch.values, [0, 4 / 6, 1, 8 / 6, 2])
    assert np.array_equal(both.weights.values[-1], la.ParamSpace(model).vector(model).numpy())

    # The same two epochs recorded in one go give the same store.
    gens = RunGenerators(SEED, X.device)
    model.load_state_dict(whole.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with la.Recorder(model, tmp_path / "once", every_steps=K) as once:
        epoch(once)
        epoch(once)
    assert np.array_equal(once.trajectory.weights.values, both.weights.values)

    with pytest.raises(la.StoreMismatchError, match="n_params"):
        la.Recorder(mlp(seed=2, hidden=8), out, every_steps=K)
    with pytest.raises(la.StoreMismatchError, match="every_steps"):
        la.Recorder(model, out, every_steps=3)
    fresh = la.Recorder(mlp(seed=2, hidden=8), out, every_steps=K, replace=True)
    fresh.close()  # no step: the initial weights are the final ones, recorded once
    assert fresh.trajectory.sizes["point"] == 1
    again = la.Recorder(model, out, every_steps=K, resume=False)  # a script rerun from its start
    assert again.steps == 0
    again.close()
    assert again.trajectory.sizes["point"] == 1


def test_a_metric_first_given_after_a_write_and_epoch_fractions_of_the_first_epoch(tmp_path):
    X, y = blobs(N)
    model = mlp(seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    rec = la.Recorder(model, tmp_path / "r", every_steps=2, chunk=1)  # every snapshot but the newest is written
    for b in range(N // BS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[b * BS:(b + 1) * BS]), y[b * BS:(b + 1) * BS]).backward()
        opt.step()
        rec.step(**({"grad_norm": 1.5} if b == 3 else {}))
    rec.end_epoch(val=0.5)
    rec.close()
    t = rec.trajectory.load()
    assert t.step.values.tolist() == [0, 2, 4, 6]
    # Written before the epoch's length was known, then corrected: 2/6 and 4/6 of epoch 0.
    assert np.allclose(t.epoch.values, [0, 1 / 3, 2 / 3, 1])
    assert np.isnan(t.grad_norm.values[[0, 1, 3]]).all() and t.grad_norm.values[2] == 1.5
    assert np.isnan(t.val.values[:3]).all() and t.val.values[3] == 0.5
    with pytest.raises(la.InputError, match="closed"):
        rec.step()
    with pytest.raises(la.InputError, match="single number"):
        la.Recorder(model, tmp_path / "s").step(loss=torch.ones(3))
    with pytest.raises(la.InputError, match="every_steps"):
        la.Recorder(model, tmp_path / "t", every_steps=0)


class Event:
    """Stands for a CUDA event: counts the waits."""

    waits = 0

    def synchronize(self):
        Event.waits += 1


def test_the_cuda_copy_is_pinned_non_blocking_and_reuses_two_buffers():
    assert copy_plan("cuda").pin and copy_plan("cuda").non_blocking
    assert not copy_plan("cpu").pin and not copy_plan("cpu").non_blocking and not copy_plan("mps").pin
    asked = []

    def allocate(n, dtype, pin):  # this machine has no pinned memory: record the request
        asked.append(pin)
        return torch.empty(n, dtype=dtype)

    copier = HostCopier(5, torch.float32, copy_plan("cuda"), allocate=allocate, event=Event)
    Event.waits = 0
    held, values = None, []
    for i in range(6):
        v = torch.arange(5, dtype=torch.float32) + i
        pending = copier.start(v)
        if held is not None:  # read after the next copy started: two buffers in use at once
            values.append(held.numpy())
        held = pending
    values.append(held.numpy())
    assert asked == [True, True] and copier.allocated == 2  # two pinned buffers take turns
    assert Event.waits == 6  # one wait per snapshot, when it is read
    assert all(np.array_equal(v, np.arange(5) + i) for i, v in enumerate(values))
    assert held.numpy() is values[-1] and Event.waits == 6  # read once


def test_lossatlas_trajectory_on_a_recorded_run_with_model_and_data(tmp_path):
    from lossatlas.cli import app
    from lossatlas.models import build

    d = la.load_data("digits", subset=128)
    model = build("mlp", d.input_shape, d.num_classes, seed=0)
    X, y = d.train
    out = tmp_path / "rec"
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with la.Recorder(model, out, every_steps=1) as rec:  # 9 snapshots: enough for embed's scores
        for _ in range(2):
            for b in range(0, X.shape[0], 32):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(X[b:b + 32]), y[b:b + 32]).backward()
                opt.step()
                rec.step()
            rec.end_epoch()
    runner = CliRunner()
    r = runner.invoke(app, ["trajectory", str(out), "--device", "cpu", "--steps", "4"])
    assert r.exit_code == 2 and "--model" in r.output
    r = runner.invoke(app, ["trajectory", str(out), "--model", "mlp", "--data", "digits", "--subset", "128",
                            "--device", "cpu", "--steps", "4"])
    assert r.exit_code == 0, r.output
    plane = la.RunDir(out).open("trajectory_plane")
    assert plane.loss.shape == (4, 4) and np.isfinite(plane.loss.values).all()
    assert (out / "figures" / "trajectory_pca.png").is_file()
    # The run now records its source: other flags are refused, and the source is there for later commands.
    r = runner.invoke(app, ["trajectory", str(out), "--model", "smallcnn", "--data", "digits", "--steps", "4"])
    assert r.exit_code == 2 and "already records its model and data" in " ".join(r.output.split())
    assert la.RunDir(out).read_source()["model"] == "mlp" and (out / "model.pt").is_file()
    r = runner.invoke(app, ["embed", str(out), "--source", "trajectory", "--method", "pca"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["jump", str(out), "--device", "cpu", "--seeds", "1", "--step-sizes", "0.5", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert la.RunDir(out).open("jump", load=False).sizes["point"] == 2


def test_a_recording_through_the_cuda_copy_path_is_exact(tmp_path, monkeypatch):
    # The recorder picks its copy from the parameters' device type; here the CUDA plan is forced
    # on the CPU (pinned memory asked for, non-blocking copies, a wait per snapshot read).
    from lossatlas.recording import recorder as recorder_module
    from lossatlas.recording import transfer

    asked = []
    monkeypatch.setattr(recorder_module, "copy_plan", lambda device_type: copy_plan("cuda"))
    monkeypatch.setattr(transfer, "_allocate", lambda n, dtype, pin: asked.append(pin) or torch.empty(n, dtype=dtype))
    monkeypatch.setattr(transfer, "_cuda_event", Event)
    Event.waits = 0
    X, y = blobs(N)
    model = mlp(seed=4)
    with la.Recorder(model, tmp_path / "r", every_steps=1, chunk=2) as rec:
        seen = plain_loop(model, X, y, rec, epochs=2)
    t = rec.trajectory.load()
    assert t.step.values.tolist() == list(range(len(seen)))
    assert all(np.array_equal(t.weights.values[i], v.numpy()) for i, v in enumerate(seen))
    assert asked == [True]  # one pinned host buffer: each snapshot is read out before the next copy starts
    assert Event.waits == len(seen)


def test_non_finite_losses_given_are_counted_not_the_gaps(tmp_path):
    model = mlp(seed=5)
    with la.Recorder(model, tmp_path / "r", every_steps=1) as rec:
        rec.step(loss=float("nan"))
        rec.step()
        rec.step(loss=1.0)
    t = rec.trajectory
    assert t.attrs["n_nonfinite"] == 1 and np.isnan(t.loss.values[[0, 1, 2]]).all() and t.loss.values[3] == 1.0
    again = la.Recorder(model, tmp_path / "r", every_steps=1)
    again.step(loss=float("inf"))
    again.close()
    assert again.trajectory.attrs["n_nonfinite"] == 2
