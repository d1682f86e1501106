"""The demo's settings: one full set (``make demo``) and one quick set (tests), in one place.

The three minima share the model, its initialization and the data split; they differ only in
weight decay, augmentation and labels (:data:`MINIMA`). Every number below was chosen by
measurement (see :mod:`lossatlas.demo` for what was measured).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .._errors import require

__all__ = ["DemoSettings", "EARLIER_RETRAINING", "RetrainingSettings", "FULL", "MINIMA", "PAPER_STEPS_X_LR", "QUICK", "settings_for"]

#: Horoi et al. retrain 40 CIFAR-10 epochs at batch 128 (about 15,600 SGD steps) at lr 1e-3.
PAPER_STEPS_X_LR = 15_600 * 1e-3

#: What makes each minimum: the data's augmentation and labels, and the training's weight decay.
MINIMA = {
    "good": dict(augment=True, random_labels=0.0, weight_decay=5e-4),
    "bad": dict(augment=False, random_labels=0.0, weight_decay=0.0),
    "memorization": dict(augment=False, random_labels=1.0, weight_decay=0.0),
}


@dataclass(frozen=True)
class RetrainingSettings:
    """The jump-and-retrain settings and their steps x lr accounting, shared by the demo's
    settings and the ``minima-protocol`` study's (the demo's J&R stage runs on either); a
    subclass gives ``batch_size`` and ``n_train()``.

    ``jr_lr`` and ``jr_epochs`` None: "with the original optimizer" (Horoi et al.), the default of
    every study and of ``lossatlas jump``: the minimum's own final learning rate (after its
    schedule) and a quarter of its training epochs (the ICLR paper: 50 epochs after 200)."""

    jr_seeds: int = 4
    jr_step_sizes: tuple = (0.25, 0.5, 0.75, 1.0)
    jr_epochs: int | None = None
    jr_lr: float | None = None

    def jr_steps(self, epochs: int | None = None) -> int:
        """SGD steps of one retraining run of ``epochs`` (default :attr:`jr_epochs`; the last
        batch of an epoch may be partial)."""
        epochs = self.jr_epochs if epochs is None else epochs
        require(epochs is not None, "jr_epochs is None (a quarter of each minimum's training): give the epochs")
        return epochs * math.ceil(self.n_train() / self.batch_size)

    def jr_travel(self, lr: float | None = None, epochs: int | None = None) -> dict:
        """Steps x learning rate of a retraining run at ``lr`` for ``epochs`` (default
        :attr:`jr_lr`, :attr:`jr_epochs`), against the paper's."""
        lr = self.jr_lr if lr is None else lr
        require(lr is not None, "jr_lr is None (each minimum's final learning rate): give the learning rate")
        steps = self.jr_steps(epochs)
        product = steps * lr
        return {"steps": steps, "lr": lr, "steps_x_lr": product, "paper_steps_x_lr": PAPER_STEPS_X_LR,
                "fraction_of_paper": product / PAPER_STEPS_X_LR}


@dataclass(frozen=True)
class DemoSettings(RetrainingSettings):
    """Every setting of the demo (plain values, recorded in ``config/demo.yaml``)."""

    # the network (a 1-D CNN on MNIST-1D) and the data split
    channels: tuple = (16, 32)
    hidden: int = 256
    init_seed: int = 0
    data_seed: int = 0
    subset: int | None = None
    test_subset: int | None = None
    # training: SGD with momentum and a step decay at half and three quarters of the epochs
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 40
    memorization_epochs: int = 80
    # 2-D surfaces, trajectory contours and the interpolation
    surface_steps: int = 21
    surface_span: float = 1.0
    surface_figures: str = "all"  # or "contour"
    trajectory_steps: int = 15
    interpolation_steps: int = 41
    # jump and retrain: the fields of RetrainingSettings; the demo's own settings below keep the
    # earlier protocol (:data:`EARLIER_RETRAINING`)
    # embeddings and topology
    methods: tuple = ("phate", "tsne", "umap", "pca")
    topology_k: int = 20
    # sharpness (Keskar et al.'s box, loss rise along filter-normalized directions) and curvature
    sharpness_eps: tuple = (1e-3,)
    sharpness_subspace: int | None = 100
    sharpness_maxiter: int = 10
    rise_radius: float = 0.25
    rise_directions: int = 10
    # mode connectivity: the straight line, and a trained quadratic Bezier curve (0 steps: none)
    connect_points: int = 41
    bezier_steps: int = 400

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def epochs_of(self, minimum: str) -> int:
        return self.memorization_epochs if minimum == "memorization" else self.epochs

    def milestones_of(self, minimum: str) -> tuple[int, int]:
        """Step decay (x0.1 twice): at 1/2 and 3/4 of the epochs; for memorization at 3/4 and 9/10,
        since an early drop stalls the fitting of random labels (measured: 99.8 % at epoch 56 of
        80 at the constant rate)."""
        e = self.epochs_of(minimum)
        return (3 * e // 4, 9 * e // 10) if minimum == "memorization" else (e // 2, 3 * e // 4)

    def n_train(self) -> int:
        """Training samples: MNIST-1D's own split holds 4000."""
        return self.subset or 4000


#: The retraining of the demo and of the ``minima`` study as first built: lr 0.05 (the runs'
#: *initial* rate, 100 times their final one) for 10 epochs, chosen so that steps x lr matches the
#: paper's 15.6. This is the earlier protocol; the papers retrain at the run's final rate (the
#: default, ``jr_lr=None``). Kept so that the committed results of both stay reproducible.
EARLIER_RETRAINING = {"jr_lr": 0.05, "jr_epochs": 10}

FULL = DemoSettings(**EARLIER_RETRAINING)

QUICK = DemoSettings(
    subset=1000, test_subset=500, epochs=24, memorization_epochs=60,
    surface_steps=9, surface_figures="contour", trajectory_steps=7, interpolation_steps=17,
    jr_seeds=2, jr_step_sizes=(0.5, 1.0), jr_epochs=4, jr_lr=0.05,
    topology_k=10, sharpness_eps=(1e-3,), sharpness_subspace=None, sharpness_maxiter=3,
    rise_directions=4, connect_points=17, bezier_steps=0,
)


def settings_for(quick: bool) -> DemoSettings:
    """The quick settings (under two minutes on 2 cores; for tests) or the full ones (under ten)."""
    return QUICK if quick else FULL
