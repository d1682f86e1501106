"""Horoi et al. at their own protocol: batch-norm ResNets that fit their training set, mapped by
jump and retrain at the final learning rate, PHATE and persistence.

The ``minima`` study departs from the papers in ways that bear on their findings (its networks
have no batch norm, and it retrains at its runs' *initial* learning rate). This study follows the
papers (Horoi et al., ICLR 2021 section 5.1 and IDA 2022 section 3) as far as one CPU core allows:

- **network**: He et al.'s CIFAR ResNet-20 with batch norm (``lossatlas.models.ResNet``, option-A
  shortcuts) at half the published width (stages of 8, 16 and 32 filters; 68k parameters),
  standing in for the papers' Wide ResNets;
- **data**: Fashion-MNIST (Debian's files) averaged to 14 x 14 pixels
  (:func:`lossatlas.studies.skip_width.fashion_mnist_14`), a seeded subset of its training
  images and of its official test set;
- **training**: SGD with momentum 0.9 at lr 0.1, x0.1 at 1/2 and 3/4 of the epochs (final rate
  1e-3), to convergence: 200 epochs for every minimum, as in the ICLR paper, at batch 32 (a small
  training set gives few steps per epoch). Measured before the study: the good minimum needs the
  long first phase (100 epochs at 0.1 then the decays: train accuracy 0.996; 100 epochs with
  decays at 50 and 75 stalled at 0.96, at width 2 and 4 alike), the memorization one fits its
  random labels from epoch ~54 of such a schedule. Minima: *good* (weight decay 5e-4 and augmentation: random crops, 1 pixel of
  padding), *bad* (neither), *memorization* (every training label random); each must fit its
  training set (train accuracy at least 0.99, recorded as ``fits``); good and bad again from a
  second initialization;
- **J&R**: 4 filter-normalized directions x jumps (0.25, 0.5, 0.75, 1.0), retrained "with the
  original optimizer": each minimum's own optimizer, momentum, weight decay, augmentation and
  batch size at its *final* learning rate (:func:`lossatlas.demo.analyses.retraining_of`). The
  papers retrain for a quarter of the training (the default, ``jr_epochs=None``); the full
  settings retrain 20 epochs (a tenth), so that the study fits in about an hour of one core;
- **analyses**: PHATE (cosine), t-SNE, UMAP and PCA with DeMAP and continuity; the shape of the
  retraining runs (:func:`lossatlas.studies.minima.retraining_shape`: return ratio, outward
  fraction) and their distances; total persistence of the loss filtration on the kNN graph of
  PHATE's potential under both filtrations (the authors' graph filtration and the flag complex),
  with essential classes dropped and capped, and the number of the graph's components;
- **sensitivity to the retraining rate**: around the good and the bad minimum of the first
  initialization, J&R at the final rate, ten times it and the initial rate, with the same
  directions and seeds: one figure of the PHATE embeddings side by side and one table.

Layout: ``OUT/good``, ``OUT/bad``, ``OUT/memorization``, ``OUT/good-init1``, ``OUT/bad-init1``
(each a run: ``trajectory.zarr``, ``model.pt``, ``jump.zarr``, ``embedding.zarr``; the
sensitivity sets as ``jump_lr-10x.zarr``, ``jump_lr-initial.zarr``), ``OUT/figures``,
``OUT/summary.json`` (``minima``, ``patterns``, ``sensitivity``, ``minima_protocol`` with the CPU
time of each stage) and ``OUT/report.html``. Resumable: a rerun reuses the stored minima and J&R
sets of the same settings and refuses those of other settings (``replace=True`` redoes them).

Example
-------
>>> from lossatlas.studies import run_study
>>> summary = run_study("minima-protocol", "runs/study-minima-protocol", quick=True)   # doctest: +SKIP
>>> summary["minima"]["init0"]["good"]["jr_lr"] == summary["minima"]["init0"]["good"]["final_lr"]   # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..demo.analyses import embedding_stage, jump_stage, retraining_record
from ..demo.settings import MINIMA
from . import common
from ._protocol_findings import draw_figures, minimum_row, patterns, sensitivity_rows, sensitivity_table
from ._protocol_stages import ProtocolSettings, distances, minimum_spec, persistence_both, sensitivity_set
from .minima import _phate_of, retraining_shape

__all__ = ["FULL", "QUICK", "TITLE", "ProtocolSettings", "run"]

TITLE = ("Horoi et al. at their protocol: batch-norm ResNets that fit Fashion-MNIST, J&R at the final "
         "learning rate, PHATE and persistence")

#: The full study: 20 retraining epochs instead of a quarter of the 200 (50): J&R is most of the
#: cost (nine sets of 16 runs), and at 50 epochs the study would take about two hours of one core.
FULL = ProtocolSettings(jr_epochs=20)

#: Tests: ResNet-8 at 2 channels on 200 of scikit-learn's digits, 4 epochs, 2 x 2 jumps retrained
#: a quarter of the training (1 epoch); PHATE and PCA only.
QUICK = ProtocolSettings(data="digits", subset=200, test_subset=100, depth=8, channels=2, width=1, batch_size=50,
                         good_epochs=4, bad_epochs=4, memorization_epochs=4, jr_seeds=2, jr_step_sizes=(0.5, 1.0),
                         methods=("phate", "pca"), topology_k=5)


def _analyse(m, s: ProtocolSettings, replace: bool, clock, notices, say) -> dict:
    """J&R at the final rate around minimum ``m``, its embeddings, shape and persistence."""
    tag = m.run.path.name
    with notices.catch(f"J&R {tag}"):
        with clock.stage(f"jump_{tag}"):
            samples = jump_stage(m, s, replace)
        with clock.stage(f"embedding_{tag}"):
            scores = embedding_stage(m, s, samples)
        with clock.stage(f"topology_{tag}"):
            both = persistence_both(samples, s.topology_k)
    meta = samples.drop_vars("weights").load()
    shape = retraining_shape(samples, m.theta)
    retraining = retraining_record(m, s)
    m.run.update_summary(topology_both={cx: t for cx, (_, t) in both.items()})
    res = {"minimum": m, "samples": samples, "meta": meta, "phate": _phate_of(m.run.open("embedding")),
           "scores": scores, "persistence": both, "shape": shape, "distances": distances(samples, m.theta),
           "retraining": retraining}
    f, g = m.final, both["graph"][1]
    say(f"{tag}: train acc {f['accuracy']:.4f}, test acc {f['test_accuracy']:.4f}; J&R at lr {retraining['jr_lr']:.3g} "
        f"(final {retraining['final_lr']:.3g}), {retraining['jr_epochs']} epochs; return ratio {shape['return_ratio']:.3f}, "
        f"outward {shape['outward_fraction']:.0%}; total persistence D0 {g['total_persistence_d0']:.3g} "
        f"(capped {g['capped_total_persistence_d0']:.3g}, {g['components']} components); "
        f"PHATE DeMAP {scores.get('phate', {}).get('DeMAP', np.nan):.2f}")
    return res


@common.study_run('summary = run(Path("runs/study-minima-protocol"), quick=True)',
                  'summary["minima"]["init0"]["good"]["train_accuracy"]')
def run(out: Path, quick: bool = False, device: str = "auto", replace: bool = False, console=None,
        settings: ProtocolSettings | None = None) -> dict:
    s = settings or (QUICK if quick else FULL)
    st = common.start_study(out, "study-minima-protocol", {"quick": quick, "device": device, "settings": s.as_dict()},
                            device=device, console=console)
    out, clock, notices, say = Path(out), st.clock, st.notices, st.say
    first = s.init_seeds[0]
    wanted = [(kind, seed) for seed in s.init_seeds for kind in (MINIMA if seed == first else s.repeat)]
    say(f"minima-protocol study ({'quick' if quick else 'full'}) on {st.device}: ResNet-{s.depth} with batch norm "
        f"(channels {s.channels} x width {s.width}) on {s.subset} images of {s.data}; SGD lr {s.lr:g}, momentum "
        f"{s.momentum:g}, batch {s.batch_size}; J&R {s.jr_seeds} directions x {len(s.jr_step_sizes)} jumps at each "
        f"minimum's final learning rate, {s.jr_epochs or 'a quarter of the training'} epochs")

    st.console.rule(f"[bold]1/4. train {len(wanted)} minima")
    minima = {}
    for kind, seed in wanted:
        spec = minimum_spec(s, kind, seed, device)
        with clock.stage(f"train_{spec.name}"):
            m = common.train_minimum(out, spec, st.device, replace=replace)
        minima[(kind, seed)] = dataclasses.replace(m, name=kind)  # the J&R stage reads the kind from the name
        say(f"{spec.name}: {spec.describe()}; train acc {m.final['accuracy']:.4f}, test acc {m.final['test_accuracy']:.4f}"
            + ("" if m.final["accuracy"] >= 0.99 else " [yellow](does not fit its training set)[/]"))

    st.console.rule("[bold]2/4. J&R at the final learning rate, embeddings, persistence")
    inits: dict = {}
    for (kind, seed), m in minima.items():
        inits.setdefault(f"init{seed}", {})[kind] = _analyse(m, s, replace, clock, notices, say)

    st.console.rule("[bold]3/4. sensitivity of J&R to the retraining rate")
    sets, samples_of = {}, {}
    for kind in s.sensitivity_minima:
        m = minima[(kind, first)]
        for label in s.sensitivity_rates:
            with clock.stage(f"sensitivity_{kind}_{label.replace(' ', '_')}"), notices.catch(f"sensitivity {kind}"):
                samples, rec = sensitivity_set(m, s, label, replace)
            rec.update(retraining_shape(samples, m.theta), **distances(samples, m.theta))
            sets.setdefault(kind, {})[label] = rec
            samples_of[(kind, label)] = samples.drop_vars("weights").load()
            say(f"{kind} at {label} (lr {rec['jr_lr']:.3g}): return ratio {rec['return_ratio']:.3f}, outward "
                f"{rec['outward_fraction']:.0%}, retrained loss {rec['retrained_loss_mean']:.3g}, distance "
                f"{rec['distance_at_jump']:.3g} -> {rec['distance_retrained']:.3g}")

    st.console.rule("[bold]4/4. figures, summary and report")
    with clock.stage("figures"):
        figures = draw_figures(st.top.figures, inits, sets, samples_of,
                               f"{s.jr_seeds} directions x {len(s.jr_step_sizes)} jumps at the final learning rate")
    # one cap for every minimum's capped totals (beside each set's own): the largest finite loss sampled
    losses = np.concatenate([np.asarray(r["meta"]["loss"].values, float) for res in inits.values() for r in res.values()])
    cap = float(losses[np.isfinite(losses)].max()) if np.isfinite(losses).any() else None
    rows = {tag: {k: minimum_row(r, cap) for k, r in res.items()} for tag, res in inits.items()}
    pats = {tag: patterns(r) for tag, r in rows.items()}
    sens = sensitivity_rows(sets)
    summary = {"minima": rows, "patterns": pats, "sensitivity": sens, "sensitivity_table": sensitivity_table(sens),
               "minima_protocol": {"title": TITLE, "quick": quick, "device": str(st.device), "settings": s.as_dict(),
                                   "figures": figures},
               "notices": notices.as_list()}
    say("patterns: " + "; ".join(f"{tag}: " + ", ".join(f"{k} {v}" for k, v in p.items() if isinstance(v, bool))
                                 for tag, p in pats.items()))
    return common.finish_study(out, "minima_protocol", summary, clock, st.console)
