"""What a command says about the model it measures: the training `surface` does first when given
no checkpoint (its settings and result, recorded as ``config/train.yaml`` and in
``summary.json``), and whether the model or its landscape diverged, in words."""

from __future__ import annotations

import math
from typing import Optional

from .common import console

# Training of a model given without a checkpoint (surface alone, no earlier `lossatlas train`).
BUILTIN_TRAIN = dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=64)


def diverged(loss: float, accuracy: Optional[float], num_classes: Optional[int]) -> Optional[str]:
    """A sentence when a model's loss is not finite, or its accuracy is at chance, else None.

    Examples
    --------
    >>> diverged(float("nan"), 0.1, 10)
    'its loss is NaN: training diverged (lower the learning rate)'
    >>> diverged(0.05, 0.99, 10) is None
    True
    """
    if not math.isfinite(loss):
        return f"its loss is {loss}: training diverged (lower the learning rate)"
    if accuracy is not None and num_classes and num_classes > 1 and accuracy <= 1.5 / num_classes:
        return (f"its accuracy {100 * accuracy:.1f}% is at chance for {num_classes} classes: the model has not "
                "learned (diverged or untrained); its landscape is not that of a minimum")
    return None


def train_first(run, src, net, data, device, epochs: int, loss: str = "cross_entropy") -> dict:
    """Train ``net`` for ``epochs`` with the built-in settings, saying so before and after;
    records ``config/train.yaml`` (as `lossatlas train` would) and ``summary.json["train"]``."""
    from ..training import TrainConfig, train

    cfg = TrainConfig(**BUILTIN_TRAIN, epochs=epochs, seed=src.init_seed, loss=loss).validate()
    how = (f"{epochs} epochs of {cfg.optimizer} on {cfg.loss} (lr {cfg.lr:g}, momentum {cfg.momentum:g}, batch {cfg.batch_size}, "
           f"seed {cfg.seed})")
    if epochs == 0:
        console.print(f"no checkpoint and --train-epochs 0: {src.model} keeps its initialization (init seed {src.init_seed})")
    else:
        console.print(f"no checkpoint: training {src.model} on {data.name} first, {how}; "
                      "give --checkpoint to use trained weights instead")
    run.write_config("train", {"source": src.as_dict(), "train": cfg.as_dict(), "by": "surface (no checkpoint given)"})
    result = train(net, data, optimizer=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum, epochs=epochs,
                   batch_size=cfg.batch_size, seed=cfg.seed, loss=cfg.loss, device=device, progress=True)
    t = result.trajectory
    final = {k: float(t[k].values[-1]) for k in ("loss", "accuracy", "test_loss", "test_accuracy") if k in t}
    said = ", ".join(f"{k.replace('_', ' ')} {100 * v:.1f}%" if "accuracy" in k else f"{k.replace('_', ' ')} {v:.4g}"
                     for k, v in final.items())
    console.print(f"trained: {said}" if epochs else f"at initialization: {said}")
    bad = diverged(final.get("loss", float("nan")), final.get("accuracy"), getattr(data, "num_classes", None))
    if bad and epochs:
        console.print(f"[bold yellow]warning:[/] the trained model diverged: {bad}")
    run.update_summary(train={"epochs": epochs, "settings": cfg.as_dict(), "final": final, "by": "surface",
                              **({"diverged": bad} if bad else {})})
    return final


def landscape_flags(ds, num_classes: Optional[int]) -> list[str]:
    """Sentences about a surface or line that did not come out as a landscape of a minimum: a
    centre that diverged or sits at chance, or a loss at the edge far above the centre's."""
    import numpy as np

    from ..surface import center_value

    out = []
    center = center_value(ds, "loss")
    acc = center_value(ds, "accuracy") if "accuracy" in ds else None
    if center is not None:
        bad = diverged(center, acc, num_classes)
        if bad:
            out.append(f"the centre of this landscape is not a trained minimum: {bad}")
    loss = np.asarray(ds.loss.values, float)
    finite = loss[np.isfinite(loss)]
    if finite.size < loss.size:
        out.append(f"{loss.size - finite.size} of {loss.size} points have a NaN or infinite loss (kept and flagged)")
    if center is not None and math.isfinite(center) and finite.size and finite.max() > 100 * max(center, 1e-3) and finite.max() > 50:
        out.append(f"the loss at the edge reaches {finite.max():.3g}, {finite.max() / max(center, 1e-3):.0f} times the "
                   "centre's: the plot's colours are dominated by the edge (try a smaller --span)")
    return out
