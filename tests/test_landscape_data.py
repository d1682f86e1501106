"""Landscape's data: batch-norm edge cases, subsets of each split, dict batches and Hugging Face
models (issue 8 item 6, issue 9 item 7)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lossatlas._errors import InputError
from lossatlas.landscape import Landscape, as_batches

from helpers import DEVICE, blobs, mlp


@pytest.mark.parametrize("bn", ["batch", "recompute"])
def test_a_last_batch_of_one_sample_is_folded_into_the_one_before(bn):
    X, y = blobs(n=33, d_in=16)
    model = mlp(bn=True)
    model.train()
    model(X * 2)
    model.eval()
    # 33 = 32 + 1: the old code raised a raw ValueError from batch norm on the last batch.
    f = Landscape(model, (X, y), bn=bn, batch_size=32, device=DEVICE)
    assert [len(b[1]) for b in f.splits[0].batches] == [33]
    got = f.evaluate(f.origin)["loss"].item()
    assert got == pytest.approx(Landscape(model, (X, y), bn=bn, batch_size=33, device=DEVICE).evaluate(f.origin)["loss"].item())
    m = copy.deepcopy(model)
    if bn == "batch":
        m.train()
        with torch.no_grad():
            ref = F.cross_entropy(m(X), y).item()
        assert got == pytest.approx(ref, rel=1e-5)
    # Other batches are left as they are, and bn="eval" never folds.
    X2, y2 = blobs(n=34, d_in=16)
    assert [len(b[1]) for b in Landscape(model, (X2, y2), bn=bn, batch_size=32).splits[0].batches] == [32, 2]
    assert [len(b[1]) for b in Landscape(model, (X, y), bn="eval", batch_size=32).splits[0].batches] == [32, 1]


def test_batch_statistics_of_one_sample_are_refused_before_work():
    X, y = blobs(n=8, d_in=16)
    model = mlp(bn=True)
    for bn in ("batch", "recompute"):
        with pytest.raises(InputError, match="at least 2 samples"):
            Landscape(model, (X[:1], y[:1]), bn=bn)
        with pytest.raises(InputError, match="test data has 1"):
            Landscape(model, (X, y), bn=bn, test=(X[:1], y[:1]))
    assert Landscape(mlp(), (X[:1], y[:1]), bn="batch").n_samples == {"train": 1}  # no batch norm: fine


def test_samples_subsets_the_training_data_and_test_samples_the_test_data():
    X, y = blobs(n=400)
    Xt, yt = blobs(n=50, seed=1)
    model = mlp()
    # The old code applied samples to the test split as well and failed with "only 50 samples".
    f = Landscape(model, (X, y), test=(Xt, yt), samples=100, device=DEVICE)
    assert f.n_samples == {"train": 100, "test": 50}
    full_test = Landscape(model, (X, y), test=(Xt, yt), device=DEVICE).evaluate(f.origin)["test_loss"]
    assert torch.equal(f.evaluate(f.origin)["test_loss"], full_test)
    g = Landscape(model, (X, y), test=(Xt, yt), samples=100, test_samples=20, device=DEVICE)
    assert g.n_samples == {"train": 100, "test": 20}
    assert g.fingerprint != f.fingerprint
    with pytest.raises(InputError, match=r"test_samples=60 but the test data has only 50 samples"):
        Landscape(model, (X, y), test=(Xt, yt), test_samples=60)
    with pytest.raises(InputError, match=r"samples=500 but the training data has only 400 samples"):
        Landscape(model, (X, y), test=(Xt, yt), samples=500)
    with pytest.raises(InputError, match="no test data"):
        Landscape(model, (X, y), test_samples=10)
    with pytest.raises(InputError, match="test_samples must be"):
        Landscape(model, (X, y), test=(Xt, yt), test_samples=0)


class _DictData(Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.X[i], "labels": self.y[i], "index": torch.tensor(i)}


def test_dataloader_of_dicts_and_the_default_dict_forward():
    X, y = blobs(n=50)
    model = mlp()

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, pixels, index=None):
            return self.net(pixels)

    loader = DataLoader(_DictData(X, y), batch_size=16)
    # Without forward=: the model is called with every entry but the labels, as keywords.
    f = Landscape(Named(), loader, device=DEVICE)
    g = Landscape(model, (X, y), device=DEVICE)
    assert f.evaluate(f.origin)["loss"].item() == pytest.approx(g.evaluate(g.origin)["loss"].item(), rel=1e-6)
    h = Landscape(model, loader, forward=lambda m, b: m(b["pixels"]), batch_size=16, device=DEVICE)
    assert h.evaluate(h.origin)["accuracy"].item() == pytest.approx(g.evaluate(g.origin)["accuracy"].item())
    batches = as_batches(loader, 20, None, 0, torch.device("cpu"))
    assert [len(b["labels"]) for b in batches] == [20, 20, 10] and set(batches[0]) == {"pixels", "labels", "index"}


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=3)
    with torch.random.fork_rng():  # the model's initialization draws from the global generator
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(config)
    return model.eval(), transformers


def _token_batches(gen, sizes, length=12, vocab=40):
    batches = []
    for n in sizes:
        ids = torch.randint(1, vocab, (n, length), generator=gen)
        mask = torch.ones(n, length, dtype=torch.int64)
        cut = torch.randint(4, length + 1, (n,), generator=gen)
        mask[torch.arange(length) >= cut.unsqueeze(1)] = 0  # padded tails of various lengths
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (n,), generator=gen)})
    return batches


def test_hugging_face_bert_plane_centre_equals_the_models_own_loss():
    model, transformers = _tiny_bert()
    gen = torch.Generator().manual_seed(0)
    batches = _token_batches(gen, [8, 8, 5])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # the model's own loss, averaged over samples as the landscape averages
        own = sum(model(**b).loss.item() * len(b["labels"]) for b in batches) / 21

    def forward(m, b):
        return m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits

    f = Landscape(model, batches, forward=forward, batch_size=8, device=DEVICE)
    assert f.n_samples == {"train": 21} and f.keys == ("loss", "accuracy")
    assert f.evaluate(f.origin)["loss"].item() == pytest.approx(own, rel=1e-5)

    from lossatlas.space import random_directions
    from lossatlas.surface import plane

    dirs = random_directions(model, n=2, seed=0)
    ds = plane(f, f.origin, dirs, span=0.5, steps=3)
    assert float(ds.loss.values[1, 1]) == pytest.approx(own, rel=1e-5)
    assert abs(ds.loss.values - own).max() > 1e-4  # the plane does move (an untrained BERT is flat)
    # A DataLoader of the same dicts and the default dict forward (.logits taken) agree.
    loader = DataLoader([{k: v[i] for k, v in b.items()} for b in batches for i in range(len(b["labels"]))],
                        batch_size=8)
    g = Landscape(model, loader, batch_size=8, device=DEVICE)
    assert g.evaluate(g.origin)["loss"].item() == pytest.approx(own, rel=1e-5)
    assert g.fingerprint == f.fingerprint
    now = model.state_dict()
    assert all(torch.equal(before[k], now[k]) for k in before) and not model.training
