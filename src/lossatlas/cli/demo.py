"""``lossatlas demo``: the main job, what ``make demo`` runs."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from .analysis import embed, trajectory
from .common import console, reported
from .surface import surface
from .training import jump, train_cmd


def call(command, **kwargs):
    """Call another command's function from Python with its command-line defaults for every
    option not given (called directly, typer's parameters default to their OptionInfo)."""
    for name, param in inspect.signature(command).parameters.items():
        if name not in kwargs:
            default = param.default
            kwargs[name] = default.default if isinstance(default, typer.models.ParameterInfo) else default
    return command(**kwargs)


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="run directory"),
    quick: bool = typer.Option(False, help="smaller settings (for tests)"),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:N or mps"),
):
    """The main job: train an MLP on scikit-learn digits, then its surface, trajectory, J&R and embeddings."""
    with reported():
        out = Path(out)
        epochs = 6 if quick else 30
        console.rule("[bold]1. train an MLP on scikit-learn digits (SGD, momentum, weight decay, step decay)")
        call(train_cmd, model="mlp", data="digits", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
             epochs=epochs, batch_size=64, schedule="step", milestones=f"{epochs // 2},{3 * epochs // 4}",
             gamma=0.1, seed=0, init_seed=0, out=out, device=device)
        console.rule("[bold]2. 2-D loss surface on filter-normalized directions")
        call(surface, run_path=out, steps=11 if quick else 31, span=1.0, seed=0, device=device)
        console.rule("[bold]3. the optimizer's path on PCA directions")
        call(trajectory, run_path=out, steps=9 if quick else 25, margin=0.25, seed=0, device=device)
        console.rule("[bold]4. jump and retrain around the minimum")
        # Retraining at the training's first learning rate, not its final one: at lr 0.01 the
        # runs barely left their jump points in 10 epochs and PHATE's kNN graph fell apart into
        # one island per run (DeMAP 0.29 against 0.59 at lr 0.1).
        call(jump, run_path=out, seeds=2 if quick else 4, epochs=3 if quick else 10, lr=0.1, weight_decay=0.0,
             sampling="jr", device=device)
        console.rule("[bold]5. embeddings: PHATE (cosine), t-SNE, UMAP, PCA")
        call(embed, run_path=out, method="phate,tsne,umap,pca", source="jump", dims=2, seed=0)
        console.print(f"[bold green]done:[/] everything is in {out}")
