"""Checkpoints as users have them: each file format and key layout loads to identical values."""

import pytest
import torch
from torch import nn

from helpers import DEVICE
from lossatlas._errors import InputError
from lossatlas.models import build, load_checkpoint
from lossatlas.store import read_checkpoint, write_checkpoint


def _trained(seed=0):
    """A model with every kind of entry: weights, biases, BN statistics and an int64 counter."""
    model = build("smallcnn", (1, 8, 8), 3, seed=seed, channels=(4,), hidden=8, batch_norm=True)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.arange(16) % 3
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()  # moves the weights and the BN statistics; the optimizer gains momentum buffers
    return model.eval(), opt


def _assert_same_state(model, reference):
    got, want = model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert torch.equal(got[k].cpu(), want[k].cpu()), k


def _prefixed(state, prefix):
    return {prefix + k: v for k, v in state.items()}


def _compiled(module):
    # torch.compile wraps lazily: state_dict() adds `_orig_mod.` without compiling anything.
    return torch.compile(module)


FORMATS = {
    "bare": lambda m, o: m.state_dict(),
    **{
        f"nested-{key}": (lambda key: lambda m, o: {key: m.state_dict(), "optimizer": o.state_dict(), "epoch": 7})(key)
        for key in ("state_dict", "model", "model_state_dict", "net")
    },
    "dataparallel": lambda m, o: nn.DataParallel(m).state_dict(),
    "ddp-style-in-training-dict": lambda m, o: {"model": _prefixed(m.state_dict(), "module."), "epoch": 3},
    "torch.compile": lambda m, o: _compiled(m).state_dict(),
    "compile-of-dataparallel": lambda m, o: _compiled(nn.DataParallel(m)).state_dict(),
    "dataparallel-of-compile": lambda m, o: nn.DataParallel(_compiled(m)).state_dict(),
    "lightning": lambda m, o: {
        "state_dict": _prefixed(m.state_dict(), "model."),
        "epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "optimizer_states": [o.state_dict()], "lr_schedulers": [], "hyper_parameters": {"lr": 0.1},
    },
    "lightning-net-compiled": lambda m, o: {"state_dict": _prefixed(m.state_dict(), "net._orig_mod."), "epoch": 1},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_loads_identical_values(tmp_path, fmt):
    source, opt = _trained(seed=0)
    path = tmp_path / "ckpt.pt"
    torch.save(FORMATS[fmt](source, opt), path)
    target = build("smallcnn", (1, 8, 8), 3, seed=1, channels=(4,), hidden=8, batch_norm=True).to(DEVICE)
    assert not torch.equal(target.features[0].weight.cpu(), source.features[0].weight)
    assert load_checkpoint(target, path) is target
    _assert_same_state(target, source)
    assert all(p.device == DEVICE for p in target.state_dict().values())  # loaded onto the model's device


@pytest.mark.parametrize("name", ["model.safetensors", "weights.bin"])
def test_safetensors_loads_identical_values(tmp_path, name):
    from safetensors.torch import save_file

    source, _ = _trained(seed=0)
    path = tmp_path / name  # recognised by its suffix, or by its header when named otherwise
    save_file(source.state_dict(), str(path))
    target = build("smallcnn", (1, 8, 8), 3, seed=1, channels=(4,), hidden=8, batch_norm=True).to(DEVICE)
    load_checkpoint(target, path)
    _assert_same_state(target, source)


def test_read_checkpoint_returns_the_keys_as_stored(tmp_path):
    source, opt = _trained()
    torch.save({"model_state_dict": nn.DataParallel(source).state_dict(), "optimizer": opt.state_dict()},
               tmp_path / "dp.pt")
    state = read_checkpoint(tmp_path / "dp.pt")
    assert set(state) == {"module." + k for k in source.state_dict()}  # model-agnostic: no key changed


class _Wrapped(nn.Module):
    """A model whose keys all start with one submodule's name, like a Lightning checkpoint's."""

    def __init__(self, inner):
        super().__init__()
        self.model = inner

    def forward(self, x):
        return self.model(x)


def test_a_shared_prefix_of_the_model_itself_is_kept(tmp_path):
    source = _Wrapped(_trained(seed=0)[0])
    torch.save(source.state_dict(), tmp_path / "bare.pt")  # every key starts with "model."
    target = _Wrapped(_trained(seed=1)[0])
    load_checkpoint(target, tmp_path / "bare.pt")
    _assert_same_state(target, source)
    # The same model saved from a LightningModule whose attribute is `net`: only "net." goes.
    torch.save({"state_dict": _prefixed(source.state_dict(), "net."), "epoch": 2}, tmp_path / "lit.pt")
    target = _Wrapped(_trained(seed=2)[0])
    load_checkpoint(target, tmp_path / "lit.pt")
    _assert_same_state(target, source)
    # A model that is itself wrapped in DataParallel takes a DataParallel checkpoint as stored.
    wrapped = nn.DataParallel(_trained(seed=3)[0])
    torch.save(nn.DataParallel(source.model).state_dict(), tmp_path / "dp.pt")
    load_checkpoint(wrapped, tmp_path / "dp.pt")
    _assert_same_state(wrapped.module, source.model)


def test_mismatch_names_the_keys_and_loads_nothing(tmp_path):
    source, _ = _trained(seed=0)
    state = nn.DataParallel(source).state_dict()
    del state["module.head.3.bias"]
    state["module.extra.weight"] = torch.zeros(2)
    state["module.head.1.weight"] = torch.zeros(5, 5)
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "bad.pt")
    target = build("smallcnn", (1, 8, 8), 3, seed=1, channels=(4,), hidden=8, batch_norm=True)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(InputError, match="does not match") as err:
        load_checkpoint(target, tmp_path / "bad.pt")
    message = str(err.value)
    # Named in the reading that matched best (without `module.`), and saying so.
    assert "head.3.bias" in message and "extra.weight" in message and "head.1.weight" in message
    assert "(5, 5)" in message and "module." in message
    assert "model factory" in message and "--model" not in message  # a library message names no CLI flag
    after = target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # refused before loading anything


def test_pickled_module_is_refused(tmp_path):
    source, _ = _trained()
    torch.save(source, tmp_path / "module.pt")  # a whole pickled module: loading it would run code
    with pytest.raises(InputError, match="weights_only=True"):
        read_checkpoint(tmp_path / "module.pt")
    with pytest.raises(InputError, match="pickled modules are refused"):
        load_checkpoint(build("smallcnn", (1, 8, 8), 3, channels=(4,), hidden=8, batch_norm=True),
                        tmp_path / "module.pt")


def test_files_without_a_state_dict_are_refused(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "nostate.pt")
    with pytest.raises(InputError, match="holds no state dict") as err:
        read_checkpoint(tmp_path / "nostate.pt")
    assert "model_state_dict" in str(err.value) and "epoch" in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="safetensors"):
        read_checkpoint(tmp_path / "broken.safetensors")


def test_write_checkpoint_round_trips_atomically(tmp_path):
    source, _ = _trained()
    path = write_checkpoint(tmp_path / "out" / "net.pt", source.state_dict(), epoch=5, lr=0.1)
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temporary file left beside it
    assert torch.load(path, weights_only=True)["epoch"] == 5
    target = build("smallcnn", (1, 8, 8), 3, seed=1, channels=(4,), hidden=8, batch_norm=True)
    load_checkpoint(target, path)
    _assert_same_state(target, source)
