"""Small models and data shared by the tests."""

import os

import torch
from torch import nn

# The device every device-generic test passes explicitly: the suite runs on a GPU with
# LOSSATLAS_TEST_DEVICE=cuda, and on the CPU otherwise.
DEVICE = torch.device(os.environ.get("LOSSATLAS_TEST_DEVICE", "cpu"))


def mlp(seed=0, d_in=16, hidden=12, classes=4, bn=False):
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        layers = [nn.Flatten(), nn.Linear(d_in, hidden)]
        if bn:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes)]
        return nn.Sequential(*layers)


def cnn(seed=0, classes=4, bn=True, dropout=0.0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layers = [nn.Conv2d(1, 6, 3, padding=1)]
        if bn:
            layers.append(nn.BatchNorm2d(6))
        layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1)]
        if bn:
            layers.append(nn.BatchNorm2d(8))
        layers += [nn.ReLU(), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * 4 * 4, classes)]
        return nn.Sequential(*layers)


def blobs(n=96, d_in=16, classes=4, seed=0, image=False):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centers = torch.randn(classes, d_in, generator=gen) * 2
    X = centers[y] + torch.randn(n, d_in, generator=gen)
    if image:
        X = X.reshape(n, 1, 8, 8) if d_in == 64 else X
    return X, y


def train_briefly(model, X, y, steps=60, lr=0.1):
    """A few steps of full-batch SGD so the model sits near a minimum (global RNG untouched)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    model.eval()
    return model


class Stop(Exception):
    """Raised by :func:`stop_after` to interrupt a sampler mid-run."""


def stop_after(n):
    """A progress callback that interrupts the work once ``n`` units are done."""

    def progress(done, total):
        if done >= n:
            raise Stop

    return progress


def clusters(n=48, shape=(16,), classes=4, seed=0, noise=0.8):
    """``n`` samples of ``classes`` Gaussian clusters in ``shape``, from their own generator."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    X = torch.randn(classes, *shape, generator=gen)[y] + noise * torch.randn(n, *shape, generator=gen)
    return X, y
