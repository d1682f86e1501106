"""``run_demo``: every stage of the demo in order, each timed, its products stored, then the summary
and the report."""

from __future__ import annotations

from pathlib import Path

from .. import plot
from ..sources import resolve_device
from ..store import RunDir
from ..topology import persistence_totals, totals_text
from .analyses import embedding_stage, jump_stage, surface_stage, topology_stage, trajectory_stage
from .between import connect_stage, interpolation_stage, sharpness_stage
from .clock import StageClock
from .minima import Minimum, train_minimum
from .notices import Notices
from .settings import MINIMA, DemoSettings, settings_for

__all__ = ["MEMORIZED", "run_demo"]

#: The memorization network must fit its random labels at least this well.
MEMORIZED = 0.99

STAGES = 10


def _build_report(out: Path):
    """The HTML report of the whole demo directory (``lossatlas.report``), or None when this
    installation has no report package yet."""
    try:
        from ..report import build_report
    except ImportError:
        return None
    return build_report(out)


def run_demo(out, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
             settings: DemoSettings | None = None) -> dict:
    """Train a good, a bad and a memorization minimum of one 1-D CNN on MNIST-1D and map them.

    Parameters
    ----------
    out : path
        The demo directory: ``out/good``, ``out/bad``, ``out/memorization`` (one run directory
        per minimum) and the comparisons, figures, ``summary.json`` and ``report.html`` at the top.
    quick : bool
        The small settings (:data:`lossatlas.demo.QUICK`, for tests) instead of the full ones.
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    replace : bool
        Redo products stored in ``out`` with other settings (otherwise they are refused; stored
        products of the same settings are reused).
    console : rich.console.Console, optional
    settings : DemoSettings, optional
        Overrides ``quick``.

    Returns
    -------
    dict
        The summary written to ``out/summary.json``.

    Examples
    --------
    >>> summary = run_demo("runs/demo", quick=True)                 # doctest: +SKIP
    >>> summary["minima"]["memorization"]["train_accuracy"] >= 0.99  # doctest: +SKIP
    True
    """
    from rich.console import Console

    console = console or Console(highlight=False)
    s = settings or settings_for(quick)
    dev = resolve_device(device)  # a device this machine lacks is refused before any work
    out = Path(out)
    top = RunDir(out)
    top.write_config("demo", {"quick": quick, "device": device, "settings": s.as_dict()})
    clock, notices = StageClock(), Notices()
    pinned = s.jr_lr is not None and s.jr_epochs is not None
    # unpinned (None): each minimum retrains at its own final rate, recorded in its run's summary
    travel = s.jr_travel() if pinned else {"rule": "each minimum's final learning rate, a quarter of its epochs"}
    console.print(f"lossatlas demo ({'quick' if quick else 'full'} settings) on {dev}: smallcnn channels "
                  f"{tuple(s.channels)}, hidden {s.hidden}, MNIST-1D with {s.n_train()} training samples")

    def rule(i: int, text: str) -> None:
        console.rule(f"[bold]{i}/{STAGES}. {text}")

    def say_notices() -> None:
        for line in notices.new_lines():
            console.print(f"[yellow]{line}[/]")

    minima: dict[str, Minimum] = {}
    rule(1, "train a good, a bad and a memorization minimum from one initialization")
    for name in MINIMA:
        with clock.stage(f"train_{name}"), notices.catch(f"training {name}"):
            console.print(f"{name}: {s.epochs_of(name)} epochs, SGD lr {s.lr:g}, momentum {s.momentum:g}, "
                          f"weight decay {MINIMA[name]['weight_decay']:g}, augmentation {MINIMA[name]['augment']}, "
                          f"random labels {MINIMA[name]['random_labels']:.0%}")
            minima[name] = m = train_minimum(out, name, s, device, dev, replace=replace)
        f = m.final
        console.print(f"  train loss {f['loss']:.4g}, accuracy {f['accuracy']:.4f}; test loss {f['test_loss']:.4g}, "
                      f"accuracy {f['test_accuracy']:.4f}")
    say_notices()
    caveat = too_small_caveat(minima, quick)
    if caveat:
        console.print(f"[bold yellow]{caveat}[/]")
        top.update_summary(caveat=caveat)
    mem = minima["memorization"].final["accuracy"]
    n_params = minima["good"].landscape.space.size
    memorization = {"channels": list(s.channels), "hidden": s.hidden, "parameters": n_params,
                    "epochs": s.memorization_epochs, "milestones": list(s.milestones_of("memorization")),
                    "train_samples": s.n_train(), "train_accuracy": mem, "fits_random_labels": mem >= MEMORIZED}
    if mem >= MEMORIZED:
        console.print(f"[green]the memorization network fits its random labels:[/] {mem:.2%} train accuracy "
                      f"({n_params} parameters, {s.memorization_epochs} epochs)")
    else:
        console.print(f"[bold red]the memorization network fits only {mem:.2%} of its random labels "
                      f"(wanted {MEMORIZED:.0%}): train it longer or wider[/]")

    rule(2, "filter-normalized 2-D surface of each minimum")
    for name, m in minima.items():
        with clock.stage(f"surface_{name}"):
            r = surface_stage(m, s, replace)
        console.print(f"{name}: {r['points']} points, loss at the centre {r['center_loss']:.4g}")

    rule(3, "the training paths on their PCA directions")
    for name, m in minima.items():
        with clock.stage(f"trajectory_{name}"):
            r = trajectory_stage(m, s, replace)
        console.print(f"{name}: PCA directions capture {100 * r['explained_total']:.1f}% of the variance")

    rule(4, "1-D interpolation from the good to the bad minimum")
    with clock.stage("interpolation"):
        r = interpolation_stage(top, minima["good"], minima["bad"], s, replace)
    console.print(f"between the two minima (t in [0, 1]): barrier {r['barrier']:.4g} (largest rise above the chord "
                  f"between the ends), saddle {r['saddle_height']:.4g} above the higher end ({r['bn']})")

    rule(5, "jump and retrain around each minimum")
    if pinned:
        console.print(f"{s.jr_seeds} directions x {len(s.jr_step_sizes)} jumps, each retrained {travel['steps']} SGD steps "
                      f"at lr {s.jr_lr:g}; steps x lr = {travel['steps_x_lr']:.3g}: {travel['fraction_of_paper']:.0%} of "
                      f"Horoi et al.'s retraining ({travel['paper_steps_x_lr']:.3g}: 40 CIFAR-10 epochs at batch 128 and lr 1e-3)")
    else:
        console.print(f"{s.jr_seeds} directions x {len(s.jr_step_sizes)} jumps, each retrained at {travel['rule']}")
    samples = {}
    for name, m in minima.items():
        with clock.stage(f"jump_{name}"), notices.catch(f"J&R {name}"):
            samples[name] = jump_stage(m, s, replace)
    say_notices()

    rule(6, "embeddings of the J&R samples: PHATE, t-SNE, UMAP, PCA")
    scores = {}
    for name, m in minima.items():
        with clock.stage(f"embedding_{name}"), notices.catch(f"embedding {name}"):
            scores[name] = embedding_stage(m, s, samples[name])
        console.print(f"{name}: " + "; ".join(f"{k} DeMAP {v.get('DeMAP', float('nan')):.2f}, continuity "
                                                f"{v.get('continuity', float('nan')):.2f}" for k, v in scores[name].items()))
    say_notices()

    rule(7, "persistence diagrams and total persistence")
    topology, fits = {}, {}
    for name, m in minima.items():
        with clock.stage(f"topology_{name}"), notices.catch(f"topology {name}"):
            diagrams, fits[name], totals = topology_stage(m, s, samples[name])
        topology[name] = (diagrams, totals)
        console.print(f"{name}: total persistence {totals_text(persistence_totals(diagrams))}")
    with clock.stage("topology_figures"), notices.catch("topology figures"):
        plot.plot_persistence_diagrams({n: d for n, (d, _) in topology.items()}, p=2,
                                       path=top.figures / "persistence_diagrams",
                                       title="persistence diagrams of the J&R samples")
        plot.plot_minima_topology({n: (fits[n], samples[n]["loss"], samples[n]) for n in minima},
                                  k=min(s.topology_k, min(x.sizes["point"] for x in samples.values()) - 1),
                                  path=top.figures / "minima_topology")
    say_notices()

    rule(8, "sharpness and the top Hessian eigenvalue")
    with clock.stage("sharpness"):
        sharp = sharpness_stage(top, minima, s)
    for name, row in sharp.items():
        first = next(iter(row["sharpness"].items()))
        console.print(f"{name}: top Hessian eigenvalue {row['top_hessian_eigenvalue']:.4g}, sharpness "
                      f"({first[0]}) {first[1]:.4g}, mean loss rise at radius {s.rise_radius:g}: {row['mean_rise']:.4g}")

    rule(9, "the barrier between the good and the bad minimum")
    with clock.stage("connect"):
        conn = connect_stage(top, minima["good"], minima["bad"], s, replace)
    console.print(", ".join(f"{k}: barrier {v:.4g}, saddle {conn['saddle_heights'][k]:.4g} above the higher end"
                            for k, v in conn["barriers"].items())
                  + " (barrier: the largest rise above the chord between the ends)")

    rule(10, "summary and report")
    per_minimum = {}
    for name, m in minima.items():
        row = sharp[name]
        per_minimum[name] = {
            "train_loss": m.final["loss"], "train_accuracy": m.final["accuracy"],
            "test_loss": m.final["test_loss"], "test_accuracy": m.final["test_accuracy"],
            "total_persistence_d0": topology[name][1].get(0, 0.0), "total_persistence_d1": topology[name][1].get(1, 0.0),
            **{k: v for k, v in persistence_totals(topology[name][0]).items() if not k.startswith("total_persistence")},
            "top_hessian_eigenvalue": row["top_hessian_eigenvalue"], "sharpness": row["sharpness"],
            "mean_rise": row.get("mean_rise"), "basin_volume": row.get("basin_volume"),
            "basin_radius": row.get("basin_radius"), "basin_radius_std": row.get("basin_radius_std"),
            "embedding_scores": scores[name], "epochs": s.epochs_of(name), "run": str(m.run.path),
        }
    summary = {
        **({"caveat": caveat} if caveat else {}),
        "minima": per_minimum,
        "demo": {"quick": quick, "device": str(dev), "settings": s.as_dict(), "memorization": memorization,
                 "retraining": travel, "timings": clock.stages, "total": clock.total()},
        "notices": notices.as_list(),
    }
    top.update_summary(**summary)
    report = _build_report(out)
    if report is None:
        console.print("[yellow]no lossatlas.report in this installation: report.html not written[/]")
    summary["demo"]["total"] = clock.total()
    top.update_summary(demo=summary["demo"])
    total = summary["demo"]["total"]
    console.print(f"{total['wall_s']:.0f} s wall, {total['cpu_s']:.0f} s CPU (load average "
                  f"{total['load_average_at_end'][0]:.1f} at the end)")
    console.print(f"[bold green]done:[/] everything is in {out}" + (f"; open {report}" if report else ""))
    return top.summary()


def too_small_caveat(minima: dict, quick: bool) -> str:
    """The warning that the minima cannot show what the papers show: always for the quick settings
    (small networks, a short training), and whenever the good minimum does not test better than
    the bad one; "" otherwise.

    Example
    -------
    >>> too_small_caveat(minima, quick=True)   # doctest: +SKIP
    'quick settings: the minima are too small to show the papers' findings (the good minimum tests at 51.6 %, ...'
    """
    good, bad = minima["good"].final["test_accuracy"], minima["bad"].final["test_accuracy"]
    if not quick and good > bad:
        return ""
    why = "quick settings: the minima are too small" if quick else "the minima are too small or too briefly trained"
    return (f"{why} to show the papers' findings (the good minimum tests at {100 * good:.1f} %, the bad at "
            f"{100 * bad:.1f} %); read the figures as a tour of the tools, not as results "
            "(the full settings train larger minima for longer)")
