"""The stages of the ``minima-protocol`` study (:mod:`lossatlas.studies.minima_protocol`): its
minima's sources and training settings, the persistence of a J&R set under both filtrations,
distances of retraining runs from their minimum, and J&R at other retraining rates.

A module of the study, not a study itself (its name starts with ``_``, so the registry skips it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..demo.analyses import jump_stage, retraining_of, retraining_record
from ..demo.settings import MINIMA, RetrainingSettings
from ..embedding import PHATE, embed
from ..sources import Source
from ..topology import persistence, persistence_totals
from ..training import TrainConfig
from . import common

__all__ = ["ProtocolSettings", "distances", "minimum_spec", "persistence_both", "rate_of", "sensitivity_set"]

#: The filtrations the study measures: the authors' (vertices and edges of the kNN graph, every
#: cycle essential) and the flag complex (cycles filled by triangles die); D0 is the same in both.
COMPLEXES = ("graph", "flag")


@dataclass(frozen=True)
class ProtocolSettings(common.StudySettings, RetrainingSettings):
    """Every setting of the study (plain values, recorded in ``config/study-minima-protocol.yaml``).

    The J&R fields are :class:`lossatlas.demo.settings.RetrainingSettings`' (the demo's J&R
    stage runs on either): ``jr_lr`` None retrains at each minimum's final learning rate,
    ``jr_epochs`` None for a quarter of its training epochs."""

    # data: Fashion-MNIST at 14 x 14, seeded subsets of the training and the official test images
    data: str = "lossatlas.studies.skip_width:fashion_mnist_14"
    subset: int | None = 500
    test_subset: int | None = 1000
    data_seed: int = 0
    # the network: He et al.'s CIFAR ResNet (batch norm, option-A shortcuts)
    depth: int = 20
    channels: int = 4
    width: int = 2
    # training: SGD with momentum, x0.1 at the milestones (fractions of each minimum's epochs)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4  # the good minimum's (the bad and memorization ones have none)
    batch_size: int = 32
    good_epochs: int = 200
    bad_epochs: int = 200
    memorization_epochs: int = 200
    milestones: tuple = (0.5, 0.75)
    init_seeds: tuple = (0, 1)
    repeat: tuple = ("good", "bad")  # trained again from every init seed after the first
    # jump and retrain: the fields of RetrainingSettings
    # embeddings and topology
    methods: tuple = ("phate", "tsne", "umap", "pca")
    topology_k: int = 20
    # sensitivity of J&R to the retraining rate: these minima (of the first init), these rates
    sensitivity_minima: tuple = ("good", "bad")
    sensitivity_rates: tuple = ("final", "10x final", "initial")

    def epochs_of(self, minimum: str) -> int:
        return {"good": self.good_epochs, "bad": self.bad_epochs, "memorization": self.memorization_epochs}[minimum]

    def milestones_of(self, minimum: str) -> tuple:
        e = self.epochs_of(minimum)
        return tuple(sorted({max(1, int(round(f * e))) for f in self.milestones}))

    def n_train(self) -> int:
        return int(self.subset or 0)


def minimum_spec(s: ProtocolSettings, kind: str, init_seed: int, device: str) -> common.MinimumSpec:
    """Minimum ``kind`` (good, bad, memorization) from initialization ``init_seed``: sub-run
    ``kind``, or ``kind-initN`` for an initialization after the first."""
    what = MINIMA[kind]
    name = kind if init_seed == s.init_seeds[0] else f"{kind}-init{init_seed}"
    src = Source(model="resnet", model_args={"depth": s.depth, "channels": s.channels, "width": s.width},
                 init_seed=init_seed, data=s.data, data_seed=s.data_seed, subset=s.subset, test_subset=s.test_subset,
                 augment=what["augment"], random_labels=what["random_labels"], device=device)
    cfg = TrainConfig(optimizer="sgd", lr=s.lr, momentum=s.momentum,
                      weight_decay=s.weight_decay if what["weight_decay"] else 0.0, epochs=s.epochs_of(kind),
                      batch_size=s.batch_size, schedule="step", milestones=s.milestones_of(kind), gamma=0.1,
                      seed=init_seed)
    return common.MinimumSpec(name, src, cfg)


def rate_of(label: str, final: float, initial: float) -> float:
    """The learning rate a sensitivity label names: ``final``, ``Nx final`` or ``initial``.

    Examples
    --------
    >>> rate_of("10x final", 0.001, 0.1)
    0.01
    """
    if label == "final":
        return final
    if label == "initial":
        return initial
    factor, _, rest = label.partition("x ")
    if rest != "final":
        raise ValueError(f"unknown rate {label!r}: give 'final', 'initial' or 'Nx final'")
    return float(factor) * final


def product_name(label: str) -> str:
    """The J&R product of a sensitivity rate (``jump`` for the final rate)."""
    return "jump" if label == "final" else "jump_lr-" + label.replace("x final", "x").replace(" ", "")


def persistence_both(samples: xr.Dataset, k: int) -> dict:
    """Persistence of the loss filtration on the kNN graph of PHATE's potential, under the
    authors' graph filtration and the flag complex: ``{complex: (diagrams, totals)}``, totals as
    :func:`lossatlas.topology.persistence_totals` (components, finite pairs, capped totals)."""
    fit = PHATE(metric="cosine", seed=0).fit(samples)
    k = int(min(k, samples.sizes["point"] - 1))
    out = {}
    for cx in COMPLEXES:
        d = persistence(fit, values="loss", samples=samples, k=k, complex=cx)
        out[cx] = (d, {**persistence_totals(d, p=2), "k": k})
    return out


def distances(samples: xr.Dataset, theta) -> dict:
    """Mean Euclidean distance of the runs from the minimum at the jump, after retraining and at
    their farthest, and the mean train loss at the jump and after retraining."""
    w = np.asarray(samples["weights"].values, np.float64)
    t = np.asarray(theta.detach().cpu().double().numpy(), np.float64)
    d = np.linalg.norm(w - t[None, :], axis=1)
    epoch = np.asarray(samples["epoch"].values)
    loss = np.asarray(samples["loss"].values, np.float64)
    last = int(epoch.max())
    seed, step = np.asarray(samples["seed"].values), np.asarray(samples["step_size"].values)
    farthest = [d[(seed == a) & (step == b)].max() for a, b in set(zip(seed.tolist(), step.tolist()))]
    return {"distance_at_jump": float(d[epoch == 0].mean()), "distance_retrained": float(d[epoch == last].mean()),
            "distance_farthest": float(np.mean(farthest)), "jump_loss_mean": float(np.nanmean(loss[epoch == 0])),
            "retrained_loss_mean": float(np.nanmean(loss[epoch == last]))}


def sensitivity_set(m, s: ProtocolSettings, label: str, replace: bool) -> tuple[xr.Dataset, dict]:
    """J&R around ``m`` at the rate ``label`` names (same directions, seeds and epochs as the
    main set; stored as its own product), with its record and PHATE embedding."""
    r = retraining_of(m, s)
    lr = rate_of(label, r["final_lr"], s.lr)
    name = product_name(label)
    samples = jump_stage(m, s, replace, lr=None if label == "final" else lr, name=name)
    if name == "jump":
        emb = m.run.open("embedding")
        phate = np.asarray(emb.embedding.sel({"method": "phate"}).values)
        demap = float(emb.attrs.get("phate_demap", np.nan))
    else:
        emb = embed(samples, methods=("phate",), seed=0)
        m.run.save(f"embedding_{name}", emb)
        phate, demap = np.asarray(emb.embedding.values[0]), float(emb.attrs.get("phate_demap", np.nan))
    record = retraining_record(m, s, None if label == "final" else lr)
    return samples, {**record, "rate": label, "product": name, "phate": phate, "phate_demap": demap}
