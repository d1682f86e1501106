"""Tests of lossatlas.data: loaders on small files written here, splits, labels, augmentation."""

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lossatlas._errors import InputError
from lossatlas.data import DATASETS, Data, RandomCropFlip, RandomShift1D, fingerprint, load_data

# ---------------------------------------------------------------------------------------------
# Small files in the official formats
# ---------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_idx_dir(directory: Path, gz: bool, n_train=30, n_test=12, seed=0):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for name, a in arrays.items():
        write_idx(directory / name, a, gz)
    return arrays


def make_cifar10_dir(parent: Path, per_batch=4, n_test=6, protocol=2):
    directory = parent / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(1)
    batches = {}
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batches[f"data_batch_{i}"] = (data, labels)
    batches["test_batch"] = (rng.integers(0, 256, (n_test, 3072), dtype=np.uint8),
                             [int(v) for v in rng.integers(0, 10, n_test)])
    for name, (data, labels) in batches.items():
        with open(directory / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels,
                         b"filenames": [b"x.png"] * len(labels)}, f, protocol=protocol)
    with open(directory / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}, f,
                    protocol=protocol)
    return directory, batches


def make_cifar100_dir(directory: Path, n_train=12, n_test=5):
    directory.mkdir(parents=True)
    rng = np.random.default_rng(2)
    parts = {}
    for name, n in (("train", n_train), ("test", n_test)):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
             b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)]}
        with open(directory / name, "wb") as f:
            pickle.dump(d, f)
        parts[name] = d
    with open(directory / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, f)
    return parts


# ---------------------------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_values_shapes_and_official_split(tmp_path, gz):
    arrays = make_idx_dir(tmp_path, gz)
    d = load_data("mnist", tmp_path, normalize=False)
    X, y = d.train
    assert X.shape == (30, 1, 28, 28) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert torch.equal(y, torch.from_numpy(arrays["train-labels-idx1-ubyte"].astype(np.int64)))
    assert X[3, 0, 5, 7].item() == pytest.approx(arrays["train-images-idx3-ubyte"][3, 5, 7] / 255.0)
    # The official test set is used, in its order.
    Xt, yt = d.test
    assert torch.allclose(Xt[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"] / 255.0).float())
    assert torch.equal(yt, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"].astype(np.int64)))
    assert d.info["split"] == "official"


def test_idx_normalization_uses_training_statistics(tmp_path):
    arrays = make_idx_dir(tmp_path, gz=True)
    d = load_data("mnist", tmp_path)
    X = d.train[0]
    assert abs(X.mean().item()) < 1e-5 and X.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    raw = arrays["train-images-idx3-ubyte"] / 255.0
    assert d.mean.tolist() == pytest.approx([raw.mean()], rel=1e-5)
    assert d.std.tolist() == pytest.approx([raw.std()], rel=1e-5)
    raw_test = arrays["t10k-images-idx3-ubyte"] / 255.0
    expect = (raw_test - raw.mean()) / raw.std()
    assert np.allclose(d.test[0][:, 0].numpy(), expect, atol=1e-5)


def test_fashion_root_may_be_parent_with_standard_subdirectory(tmp_path):
    make_idx_dir(tmp_path / "fashion-mnist", gz=True)
    d = load_data("fashion-mnist", tmp_path)
    assert d.name == "fashion-mnist" and len(d.train[1]) == 30 and d.info["classes"][9] == "Ankle boot"


def test_idx_bad_magic_and_truncation(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    content = path.read_bytes()
    path.write_bytes(b"\x00\x00\x08\x01" + content[4:])  # a labels header on an images file
    with pytest.raises(InputError, match="magic number"):
        load_data("mnist", tmp_path)
    path.write_bytes(b"<html>" + content[6:])
    with pytest.raises(InputError, match="magic number.*expected 0x00000803"):
        load_data("mnist", tmp_path)
    path.write_bytes(content[:-100])
    with pytest.raises(InputError, match="truncated"):
        load_data("mnist", tmp_path)


def test_idx_missing_files_say_what_and_how(tmp_path):
    make_idx_dir(tmp_path, gz=True)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(InputError, match=r"t10k-labels-idx1-ubyte\[\.gz\].*dataset-fashion-mnist"):
        load_data("fashion-mnist", tmp_path)
    with pytest.raises(InputError, match="does not exist.*dataset-fashion-mnist"):
        load_data("fashion-mnist", tmp_path / "nowhere")
    with pytest.raises(InputError, match="needs root="):
        load_data("mnist")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_if_installed():
    d = load_data("fashion-mnist", normalize=False, subset=1000, test_subset=500)
    assert d.train[0].shape == (1000, 1, 28, 28) and d.test[0].shape == (500, 1, 28, 28)
    assert torch.bincount(d.train[1], minlength=10).tolist() == [100] * 10


# ---------------------------------------------------------------------------------------------
# CIFAR
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5])
def test_cifar10_loader(tmp_path, protocol):
    directory, batches = make_cifar10_dir(tmp_path, protocol=protocol)
    d = load_data("cifar10", tmp_path, normalize=False)  # the parent of cifar-10-batches-py
    X, y = d.train
    assert X.shape == (20, 3, 32, 32) and d.test[0].shape == (6, 3, 32, 32)
    assert y.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert d.test[1].tolist() == batches["test_batch"][1]
    # Batch 2, image 1 is sample 5; channel 2, row 7, column 11 is byte 2*1024 + 7*32 + 11.
    assert X[5, 2, 7, 11].item() == pytest.approx(batches["data_batch_2"][0][1, 2 * 1024 + 7 * 32 + 11] / 255)
    assert d.test[0][0, 0, 0, 0].item() == pytest.approx(batches["test_batch"][0][0, 0] / 255)
    assert d.info["classes"][3] == "class3" and d.info["split"] == "official"

    dn = load_data("cifar10", directory)  # the directory itself
    Xn = dn.train[0]
    assert torch.allclose(Xn.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(Xn.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    raw = X.double()
    assert torch.allclose(dn.mean.double(), raw.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(dn.std.double(), raw.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)


def test_cifar100_fine_and_coarse(tmp_path):
    parts = make_cifar100_dir(tmp_path / "cifar-100-python")
    fine = load_data("cifar100", tmp_path, normalize=False)
    assert fine.num_classes == 100 and fine.train[0].shape == (12, 3, 32, 32) and fine.test[0].shape == (5, 3, 32, 32)
    assert fine.train[1].tolist() == parts["train"][b"fine_labels"]
    assert fine.test[1].tolist() == parts["test"][b"fine_labels"]
    assert fine.train[0][4, 1, 31, 0].item() == pytest.approx(parts["train"][b"data"][4, 1024 + 31 * 32] / 255)
    coarse = load_data("cifar100", tmp_path / "cifar-100-python", label_mode="coarse")
    assert coarse.num_classes == 20 and coarse.train[1].tolist() == parts["train"][b"coarse_labels"]
    assert coarse.info["classes"][:2] == ["c0", "c1"]
    with pytest.raises(InputError, match="label_mode"):
        load_data("cifar100", tmp_path, label_mode="medium")


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_refuses_pickles_with_other_objects(tmp_path):
    directory, _ = make_cifar10_dir(tmp_path)
    with open(directory / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Evil()}, f)
    with pytest.raises(InputError, match="refusing to unpickle .*getcwd"):
        load_data("cifar10", tmp_path)


def test_cifar_missing_files(tmp_path):
    directory, _ = make_cifar10_dir(tmp_path)
    os.remove(directory / "data_batch_3")
    with pytest.raises(InputError, match="data_batch_3.*cifar.html"):
        load_data("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------
# Bundled sets: splits and subsets
# ---------------------------------------------------------------------------------------------


def _class_counts(y, k=10):
    return torch.bincount(y, minlength=k)


def test_digits_stratified_split_and_seeds():
    a = load_data("digits", seed=0)
    assert a.train[0].shape == (1438, 1, 8, 8) and a.test[0].shape == (359, 1, 8, 8)
    total = _class_counts(a.train[1]) + _class_counts(a.test[1])
    # Each class contributes its share of the test set, within one sample.
    assert torch.all((_class_counts(a.test[1]).double() - 0.2 * total.double()).abs() <= 1)
    assert torch.all(_class_counts(a.train[1]) > 0) and torch.all(_class_counts(a.test[1]) > 0)
    b = load_data("digits", seed=0)
    assert torch.equal(a.train[0], b.train[0]) and torch.equal(a.test[1], b.test[1])
    assert a.fingerprint == b.fingerprint
    c = load_data("digits", seed=1)
    assert not torch.equal(a.test[0], c.test[0]) and a.fingerprint != c.fingerprint
    # Raw values lie on the 0..16 grid scaled to [0, 1].
    raw = load_data("digits", normalize=False).train[0]
    assert raw.min() == 0 and raw.max() == 1 and torch.allclose(raw * 16, (raw * 16).round())


def test_digits_test_fraction_and_subsets():
    d = load_data("digits", test_fraction=0.5, subset=100, test_subset=50, seed=3)
    assert len(d.train[1]) == 100 and len(d.test[1]) == 50
    assert _class_counts(d.train[1]).tolist() == pytest.approx([10] * 10, abs=1)
    assert _class_counts(d.test[1]).tolist() == pytest.approx([5] * 10, abs=1)
    full = load_data("digits", test_fraction=0.5, seed=3)
    assert len(full.test[1]) == round(0.5 * 1797) and len(full.train[1]) == 1797 - round(0.5 * 1797)


def test_mnist5k_split_is_stratified_and_shuffled():
    d = load_data("mnist5k", seed=0, normalize=False)
    assert d.train[0].shape == (4000, 1, 28, 28) and d.test[0].shape == (1000, 1, 28, 28)
    assert _class_counts(d.train[1]).tolist() == [400] * 10
    assert _class_counts(d.test[1]).tolist() == [100] * 10
    # The file is sorted by class; the split must not be.
    assert len(set(d.train[1][:50].tolist())) > 3 and len(set(d.test[1][:50].tolist())) > 3
    assert 0 <= d.train[0].min() and d.train[0].max() <= 1 and d.train[0].max() > 0.99
    e = load_data("mnist5k", seed=1, normalize=False)
    assert not torch.equal(d.test[1], e.test[1])
    s = load_data("mnist5k", seed=1, subset=200, test_subset=100)
    assert _class_counts(s.train[1]).tolist() == [20] * 10 and _class_counts(s.test[1]).tolist() == [10] * 10


# ---------------------------------------------------------------------------------------------
# MNIST-1D
# ---------------------------------------------------------------------------------------------


def test_mnist1d_generated_locally_and_cached(tmp_path, monkeypatch):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    d = load_data("mnist1d", tmp_path)
    # The package seeds NumPy's global generator; the loader must put it back.
    assert np.array_equal(np.random.get_state()[1], before)
    assert d.train[0].shape == (4000, 1, 40) and d.test[0].shape == (1000, 1, 40)
    assert d.input_shape == (1, 40) and d.info["split"] == "package" and not d.info["cache_hit"]
    files = list(tmp_path.glob("mnist1d-*.npz"))
    assert len(files) == 1

    import mnist1d.data

    def no_generation(*args, **kwargs):
        raise AssertionError("the cached file should have been used")

    monkeypatch.setattr(mnist1d.data, "make_dataset", no_generation)
    again = load_data("mnist1d", tmp_path)
    assert again.info["cache_hit"]
    assert torch.equal(again.train[0], d.train[0]) and torch.equal(again.test[1], d.test[1])
    assert again.fingerprint == d.fingerprint


def test_mnist1d_matches_the_package_generator(tmp_path):
    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    args.num_samples = 500
    ref = mnist1d.data.make_dataset(args)
    d = load_data("mnist1d", tmp_path, normalize=False, mnist1d_args={"num_samples": 500})
    assert np.allclose(d.train[0][:, 0].numpy(), ref["x"], atol=1e-6)
    assert np.array_equal(d.test[1].numpy(), ref["y_test"])
    other = load_data("mnist1d", tmp_path, mnist1d_args={"num_samples": 500}, test_fraction=0.5)
    assert len(other.train[1]) == 250 and len(other.test[1]) == 250
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1  # the split does not change the cache


# ---------------------------------------------------------------------------------------------
# Random labels
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.25, 0.5, 1.0])
def test_random_labels(fraction):
    clean = load_data("digits", seed=2)
    noisy = load_data("digits", seed=2, random_labels=fraction)
    y, true = noisy.train[1], noisy.true_train_y
    assert torch.equal(true, clean.train[1]) and torch.equal(noisy.train[0], clean.train[0])
    assert torch.equal(noisy.test[1], clean.test[1]) and torch.equal(noisy.test[0], clean.test[0])
    changed = (y != true).double().mean().item()
    assert noisy.info["random_labels_requested"] == fraction
    assert noisy.info["labels_changed_fraction"] == pytest.approx(changed)
    assert changed == pytest.approx(fraction * (1 - 1 / 10), abs=0.03)
    assert y.min() >= 0 and y.max() < 10
    # The new labels are spread over all classes, not a relabelling of one class.
    assert torch.all(_class_counts(y[y != true]) > 0.3 * (y != true).sum() / 10)
    assert noisy.fingerprint != clean.fingerprint
    assert torch.equal(clean.true_train_y, clean.train[1]) and clean.info["labels_changed_fraction"] == 0.0


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_crop_flip_determinism_shape_and_pickle():
    t = RandomCropFlip(pad=4, flip=True)
    x = torch.randn(64, 3, 32, 32)
    a, b, c = t(x, _gen(0)), t(x, _gen(0)), t(x, _gen(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    t2 = pickle.loads(pickle.dumps(t))
    assert t2 == t and torch.equal(t2(x, _gen(0)), a)
    with pytest.raises(InputError, match="Generator"):
        t(x, None)


def test_crop_moves_content_by_at_most_pad():
    pad, n, h, w, r, c = 3, 600, 12, 12, 5, 6
    x = torch.zeros(n, 1, h, w)
    x[:, 0, r, c] = 1.0
    out = RandomCropFlip(pad=pad, flip=False)(x, _gen(0))
    assert torch.all(out.sum(dim=(1, 2, 3)) == 1)  # the point stays inside (it is away from the edge)
    pos = out[:, 0].reshape(n, -1).argmax(dim=1)
    dr, dc = pos // w - r, pos % w - c
    assert dr.abs().max() <= pad and dc.abs().max() <= pad
    assert set(dr.tolist()) == set(range(-pad, pad + 1)) and set(dc.tolist()) == set(range(-pad, pad + 1))
    # Content near the border leaves the window for some offsets and zeros come in.
    edge = torch.ones(n, 1, h, w)
    assert (RandomCropFlip(pad=pad, flip=False)(edge, _gen(0)) == 0).any()


def test_flip_on_about_half_the_batch():
    n = 2000
    x = torch.randn(n, 2, 5, 7)
    out = RandomCropFlip(pad=0, flip=True)(x, _gen(5))
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 0.45 < mirrored.double().mean().item() < 0.55
    # With crop and flip together a point lands within pad of itself or of its mirror image.
    pad, w, c = 2, 10, 3
    y = torch.zeros(n, 1, 10, w)
    y[:, 0, 4, c] = 1
    col = RandomCropFlip(pad=pad, flip=True)(y, _gen(1))[:, 0].sum(1).argmax(1)
    near = ((col - c).abs() <= pad) | ((col - (w - 1 - c)).abs() <= pad)
    assert torch.all(near) and (col > w // 2).any() and (col < w // 2).any()


@pytest.mark.parametrize("mode", ["circular", "zeros"])
def test_shift_1d(mode):
    m, n, length = 3, 500, 20
    t = RandomShift1D(max_shift=m, mode=mode)
    x = torch.randn(n, 2, length)
    a = t(x, _gen(0))
    assert a.shape == x.shape and torch.equal(a, t(x, _gen(0))) and not torch.equal(a, t(x, _gen(1)))
    assert pickle.loads(pickle.dumps(t)) == t
    shifts = []
    for i in range(n):
        matches = [s for s in range(-m, m + 1) if torch.equal(a[i], _shifted(x[i], s, mode))]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert set(shifts) == set(range(-m, m + 1))


def _shifted(x, s, mode):
    if mode == "circular":
        return torch.roll(x, s, dims=-1)
    out = torch.zeros_like(x)
    if s >= 0:
        out[:, s:] = x[:, : x.shape[-1] - s]
    else:
        out[:, :s] = x[:, -s:]
    return out


def test_load_data_augment_choices(tmp_path):
    assert load_data("digits", subset=50).augment is None
    assert load_data("digits", subset=50, augment=True).augment == RandomCropFlip(pad=1, flip=False)
    make_cifar10_dir(tmp_path)
    d = load_data("cifar10", tmp_path, augment=True)
    assert d.augment == RandomCropFlip(pad=4, flip=True)
    before = d.train[0].clone()
    out = d.augment(d.train[0], _gen(0))
    assert out.shape == before.shape and torch.equal(d.train[0], before)
    custom = RandomCropFlip(pad=2, flip=False)
    assert load_data("digits", subset=50, augment=custom).augment is custom


# ---------------------------------------------------------------------------------------------
# Fingerprint, describe, dtype
# ---------------------------------------------------------------------------------------------


def test_fingerprint():
    x = torch.arange(12.0).reshape(3, 4)
    y = torch.tensor([0, 1, 2])
    f = fingerprint(x, y)
    assert len(f) == 16 and int(f, 16) >= 0
    assert fingerprint(x.clone(), y.clone()) == f
    x2 = x.clone()
    x2[1, 2] += 1e-3
    assert fingerprint(x2, y) != f
    assert fingerprint(x.double(), y) != f and fingerprint(x.reshape(4, 3), y) != f
    a = load_data("digits", subset=100)
    assert a.fingerprint == load_data("digits", subset=100).fingerprint
    assert a.fingerprint == fingerprint(a.train[0], a.train[1], a.test[0], a.test[1])
    assert a.fingerprint != load_data("digits", subset=101).fingerprint
    assert a.fingerprint != load_data("digits", subset=100, normalize=False).fingerprint


def test_describe_is_serializable_and_dtype():
    d = load_data("digits", subset=60, random_labels=0.5, augment=True, dtype=torch.float64)
    assert isinstance(d, Data) and d.train[0].dtype == torch.float64
    desc = d.describe()
    assert json.loads(json.dumps(desc)) == desc
    assert yaml.safe_load(yaml.safe_dump(desc)) == desc
    assert desc["train_size"] == 60 and desc["input_shape"] == [1, 8, 8] and desc["num_classes"] == 10
    assert desc["fingerprint"] == d.fingerprint and desc["info"]["random_labels_requested"] == 0.5
    assert "digits" in repr(d)


# ---------------------------------------------------------------------------------------------
# Input errors
# ---------------------------------------------------------------------------------------------


def test_input_errors(tmp_path):
    with pytest.raises(InputError, match="unknown dataset 'imagenet'.*" + ".*".join(DATASETS)):
        load_data("imagenet")
    for bad in (-0.1, 1.5, float("nan"), True):
        with pytest.raises(InputError, match=r"random_labels .* \[0, 1\]"):
            load_data("digits", random_labels=bad)
    with pytest.raises(InputError, match=r"subset=2000 is larger than the training set .*1438"):
        load_data("digits", subset=2000)
    with pytest.raises(InputError, match=r"test_subset=400 is larger than the test set .*359"):
        load_data("digits", test_subset=400)
    with pytest.raises(InputError, match="positive integer"):
        load_data("digits", subset=0)
    with pytest.raises(InputError, match="official test set"):
        make_idx_dir(tmp_path, gz=False)
        load_data("mnist", tmp_path, test_fraction=0.1)
    with pytest.raises(InputError, match="strictly between 0 and 1"):
        load_data("digits", test_fraction=1.0)
    with pytest.raises(InputError, match="floating torch dtype"):
        load_data("digits", dtype=torch.int64)
    with pytest.raises(InputError, match="seed"):
        load_data("digits", seed=-1)
    with pytest.raises(InputError, match="num_samples"):
        load_data("mnist1d", tmp_path, mnist1d_args={"samples": 10})
    with pytest.raises(InputError, match="pad"):
        RandomCropFlip(pad=-1)
    with pytest.raises(InputError, match="mode"):
        RandomShift1D(mode="reflect")
    with pytest.raises(InputError, match=r"\[N, C, H, W\]"):
        RandomCropFlip()(torch.zeros(3, 8, 8), _gen(0))


# ---------------------------------------------------------------------------------------------
# A user's own data: .pt files and factories get the options of built-in data
# ---------------------------------------------------------------------------------------------


def _user_tensors(n=120, n_test=40, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 20, 20, generator=g) * 3 + 1
    y = torch.arange(n) % classes
    Xt = torch.randn(n_test, 1, 20, 20, generator=g)
    yt = torch.arange(n_test) % classes
    return X, y, Xt, yt


def test_pt_data_subset_augment_and_random_labels_apply(tmp_path):
    # On the old code load_tensors took no options and the CLI dropped them: .pt data were
    # silently used whole, unaugmented and with true labels.
    from lossatlas.data import load_tensors

    X, y, Xt, yt = _user_tensors()
    path = tmp_path / "mine.pt"
    torch.save({"X": X, "y": y, "X_test": Xt, "y_test": yt}, path)
    plain = load_tensors(path)
    assert torch.equal(plain.train[0], X) and torch.equal(plain.test[1], yt) and plain.augment is None
    d = load_tensors(path, subset=40, test_subset=20, augment=True, random_labels=0.5, seed=3)
    assert len(d.train[1]) == 40 and len(d.test[1]) == 20
    assert _class_counts(d.true_train_y, 4).tolist() == [10] * 4  # stratified, as for built-in data
    assert _class_counts(d.test[1], 4).tolist() == [5] * 4
    assert d.augment == RandomCropFlip(pad=4, flip=False)
    assert d.info["random_labels_count"] == 20 and 0 < d.info["labels_changed_fraction"] <= 0.5
    assert 0 <= int(d.train[1].min()) and int(d.train[1].max()) < 4
    # Every selected sample is one of the file's samples, with its true label.
    rows = {tuple(r.flatten().tolist()[:5]): int(lab) for r, lab in zip(X, y)}
    assert all(rows[tuple(r.flatten().tolist()[:5])] == int(lab) for r, lab in zip(d.train[0], d.true_train_y))
    desc = d.describe()
    assert desc["info"]["subset"] == 40 and desc["info"]["test_subset"] == 20
    assert desc["args"]["random_labels"] == 0.5 and desc["args"]["augment"] is True
    assert desc["augment"] == repr(RandomCropFlip(pad=4, flip=False))
    # Same options, same data; another seed, another subset.
    assert load_tensors(path, subset=40, test_subset=20, augment=True, random_labels=0.5, seed=3).fingerprint == d.fingerprint
    assert load_tensors(path, subset=40, seed=4).fingerprint != load_tensors(path, subset=40, seed=3).fingerprint
    # Without a test pair, test_fraction holds out a stratified test split.
    torch.save({"X": X, "y": y}, tmp_path / "train_only.pt")
    split = load_tensors(tmp_path / "train_only.pt", test_fraction=0.25)
    assert len(split.test[1]) == 30 and sorted(_class_counts(split.test[1], 4).tolist()) == [7, 7, 8, 8]
    assert len(load_tensors(tmp_path / "train_only.pt").test[1]) == 0
    with pytest.raises(InputError, match="test_fraction does not apply"):
        load_tensors(path, test_fraction=0.2)
    with pytest.raises(InputError, match="larger than the training set"):
        load_tensors(path, subset=121)


def test_pt_data_keeps_token_ids_and_refuses_labels_it_cannot_randomize(tmp_path):
    from lossatlas.data import load_tensors

    tokens = torch.randint(0, 50, (30, 7))
    torch.save({"X": tokens, "y": torch.arange(30) % 3}, tmp_path / "tok.pt")
    d = load_tensors(tmp_path / "tok.pt", subset=9)
    assert d.train[0].dtype == torch.int64 and d.num_classes == 3
    assert _class_counts(d.train[1], 3).tolist() == [3, 3, 3]
    with pytest.raises(InputError, match="built-in transform only for images"):
        load_tensors(tmp_path / "tok.pt", augment=True)
    torch.save({"X": torch.randn(30, 2), "y": torch.randn(30)}, tmp_path / "reg.pt")
    r = load_tensors(tmp_path / "reg.pt", subset=10, seed=1)
    assert len(r.train[1]) == 10 and r.num_classes == 0 and r.info["subset_stratified"] is False
    with pytest.raises(InputError, match="random_labels needs class labels"):
        load_tensors(tmp_path / "reg.pt", random_labels=0.1)
    torch.save({"X": torch.randn(30, 2), "y": torch.zeros(30, dtype=torch.long), "X_test": torch.randn(3, 2)},
               tmp_path / "half.pt")
    with pytest.raises(InputError, match="both X_test and y_test"):
        load_tensors(tmp_path / "half.pt")


def test_split_falls_back_to_a_shuffle_where_stratification_cannot_apply():
    from lossatlas.data.split import stratified_choice, stratified_split

    y = np.array([0] * 10 + [1])  # a class with one sample
    train, test, stratified = stratified_split(y, 3, random_state=0)
    assert not stratified and sorted(np.concatenate([train, test]).tolist()) == list(range(11))
    idx, stratified = stratified_choice(np.arange(20) % 10, 5, random_state=0)  # fewer than the classes
    assert not stratified and len(set(idx.tolist())) == 5
    a, _, _ = stratified_split(np.arange(40) % 4, 8, random_state=1)
    b, _, _ = stratified_split(np.arange(40) % 4, 8, random_state=1)
    assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# Recorded data: describe() rebuilds the same split; a run's normalization statistics reused
# ---------------------------------------------------------------------------------------------


def test_describe_rebuilds_exactly_the_same_data(tmp_path):
    from lossatlas.data import load_recorded, load_tensors

    d = load_data("digits", seed=5, subset=300, test_subset=100, random_labels=0.3, augment=True)
    stored = yaml.safe_load(yaml.safe_dump(d.describe()))  # as a run directory keeps it
    args = stored["args"]
    assert args["seed"] == 5 and args["subset"] == 300 and args["test_subset"] == 100
    assert args["normalization"] == [d.mean.double().tolist(), d.std.double().tolist()]
    again = load_recorded(stored)
    assert again.fingerprint == d.fingerprint and torch.equal(again.train[0], d.train[0])
    assert torch.equal(again.true_train_y, d.true_train_y) and again.augment == d.augment
    # A record whose files changed is refused, not silently re-split.
    X, y, Xt, yt = _user_tensors()
    path = tmp_path / "mine.pt"
    torch.save({"X": X, "y": y, "X_test": Xt, "y_test": yt}, path)
    p = load_tensors(path, subset=60, normalize=True, seed=2)
    record = json.loads(json.dumps(p.describe()))
    assert load_recorded(record).fingerprint == p.fingerprint
    torch.save({"X": X + 1, "y": y, "X_test": Xt, "y_test": yt}, path)
    with pytest.raises(InputError, match="fingerprint"):
        load_recorded(record)
    custom = load_data("digits", subset=50, augment=lambda x, g: x)
    with pytest.raises(InputError, match="user's own transform"):
        load_recorded(custom.describe())
    assert load_recorded(custom.describe(), augment=custom.augment).fingerprint == custom.fingerprint


def test_given_normalization_is_applied_exactly():
    raw = load_data("digits", seed=0, normalize=False)
    d = load_data("digits", seed=0, normalization=(0.5, [0.25]))
    assert torch.allclose(d.train[0], (raw.train[0] - 0.5) / 0.25) and d.info["normalization"] == "given"
    assert d.mean.tolist() == [0.5] and d.std.tolist() == [0.25]
    # Re-evaluating a run on part of its data: its own statistics, not those of the part.
    run = load_data("digits", seed=0)
    part = load_data("digits", seed=0, subset=50, normalization=tuple(run.describe()["args"]["normalization"]))
    fresh = load_data("digits", seed=0, subset=50)
    assert torch.equal(part.test[0], run.test[0]) and not torch.equal(fresh.test[0], run.test[0])
    with pytest.raises(InputError, match="3 values but the data have 1 channel"):
        load_data("digits", normalization=([0.1, 0.2, 0.3], 1.0))
    with pytest.raises(InputError, match="std must be positive"):
        load_data("digits", normalization=(0.0, 0.0))
    with pytest.raises(InputError, match="normalize=True"):
        load_data("digits", normalize=False, normalization=(0.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Data factories
# ---------------------------------------------------------------------------------------------

FACTORY_MODULE = '''
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


class Squares(Dataset):
    def __len__(self):
        return 30

    def __getitem__(self, i):
        return torch.full((1, 4), float(i)), i % 3


def pairs(n=40):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 4, generator=g), torch.arange(n) % 4


def four():
    X, y = pairs(40)
    return X[:30], y[:30], X[30:], y[30:]


def loader():
    return DataLoader(Squares(), batch_size=7, shuffle=True)


def loaders():
    X, y = pairs(40)
    return (DataLoader(TensorDataset(X[:30], y[:30]), batch_size=8),
            DataLoader(TensorDataset(X[30:], y[30:]), batch_size=8))


def dicts():
    return DataLoader([{"input_ids": torch.zeros(3)}] * 4, batch_size=2)


def nothing():
    return 42
'''


def test_load_factory_returns_and_options(tmp_path, monkeypatch):
    from lossatlas.data import load_any, load_factory

    pkg = tmp_path / "userdata_h3"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "make.py").write_text(FACTORY_MODULE)
    monkeypatch.chdir(tmp_path)  # importable from the working directory, as under python -m
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])

    d = load_factory("userdata_h3.make:pairs", factory_args={"n": 24}, subset=12, seed=1)
    assert len(d.train[1]) == 12 and d.num_classes == 4 and d.name == "userdata_h3.make:pairs"
    assert d.describe()["args"]["factory_args"] == {"n": 24}
    four = load_factory("userdata_h3.make:four", test_subset=4)
    assert len(four.train[1]) == 30 and len(four.test[1]) == 4 and four.info["split"] == "given"
    before = torch.random.get_rng_state()
    dl = load_factory("userdata_h3.make:loader", test_fraction=0.2, random_labels=0.5, seed=2)
    assert torch.equal(torch.random.get_rng_state(), before)  # a shuffling loader drew nothing globally
    assert len(dl.train[1]) == 24 and len(dl.test[1]) == 6 and dl.input_shape == (1, 4)
    assert sorted(torch.cat([dl.train[0], dl.test[0]])[:, 0, 0].tolist()) == [float(i) for i in range(30)]
    both = load_any("userdata_h3.make:loaders", normalize=True)
    assert len(both.test[1]) == 10 and abs(both.train[0].mean().item()) < 1e-5

    with pytest.raises(InputError, match="dict batches.*Landscape"):
        load_factory("userdata_h3.make:dicts")
    with pytest.raises(InputError, match="returned int"):
        load_factory("userdata_h3.make:nothing")
    with pytest.raises(InputError, match="does not take the arguments"):
        load_factory("userdata_h3.make:pairs", factory_args={"size": 3})
    with pytest.raises(InputError, match="cannot import"):
        load_factory("userdata_h3.nowhere:pairs")
    with pytest.raises(InputError, match="no 'missing'"):
        load_factory("userdata_h3.make:missing")
    with pytest.raises(InputError, match="package.module:factory"):
        load_factory("userdata_h3.make")
    with pytest.raises(InputError, match="subset"):
        load_factory("userdata_h3.make:pairs", subset=0)  # options checked before the factory runs
    with pytest.raises(InputError, match="unknown data"):
        load_any("no-such-thing")
