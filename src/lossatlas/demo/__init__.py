"""The demo (``lossatlas demo``, what ``make demo`` runs): good, bad and memorization minima of one
small 1-D CNN on MNIST-1D, mapped with every tool of the library.

The network is ``smallcnn`` with channels (16, 32) and a hidden layer of 256 (86,378 parameters),
initialized once (seed 0) for all three minima, trained with SGD (lr 0.05, momentum 0.9, batch 128,
step decay x0.1 twice) on MNIST-1D's 4000 training signals (generated offline):

- good: weight decay 5e-4 and random circular shifts, 40 epochs;
- bad: neither, 40 epochs;
- memorization: every training label replaced by a random one, 80 epochs with the decay at
  epochs 60 and 72. Measured: train accuracy 99.8 % at epoch 56 and 100 % from epoch 64 on
  (the same network with a hidden layer of 128 stayed at 95 % after 80 epochs). ``--quick`` uses
  1000 training signals and 60 epochs (100 % from about epoch 48).

Then, stage by stage: a filter-normalized 2-D surface of each minimum, its training path on PCA
directions, the 1-D interpolation from the good to the bad minimum (train and test data), jump
and retrain around each minimum (4 directions x 4 jumps, 10 epochs = 320 SGD steps at lr 0.05:
steps x lr = 16, 103 % of Horoi et al.'s 15,600 steps at lr 1e-3), PHATE with t-SNE, UMAP and
PCA and their DeMAP and continuity scores, persistence diagrams and total persistence, the top
Hessian eigenvalue with Keskar et al.'s sharpness and the loss rise, and the barrier between the
good and the bad minimum on a straight line and a Bezier curve.

Measured on 2026-12-01 on 2 cores, torch's default 2 threads, load average 0.5-3: the full demo
took 8 min 13 s wall (486 s in the stages, 633 s CPU), ``--quick`` 94 s (inside the test). The
dearest stages: J&R (55-90 s per minimum), the memorization training (53 s), the three 21x21
surfaces (20-26 s each, their 3-D figures included). Full results: good train/test accuracy
0.977/0.953, bad 1.000/0.929, memorization 1.000/0.098; top Hessian eigenvalue 10.1, 2.74,
0.13; total persistence D0 0.016, 4.89, 3.81 (D1 0 for all; over finite pairs only, measured
before the demo reported the kNN graph's components and the capped totals beside them). No
barrier between the good and the bad minimum: the highest loss on the line and on the Bezier
curve is the good end itself (saddle height 0). The barrier printed then, 0.038, was the old
measure (highest loss minus the mean of the ends: half the difference of the ends), measured
under the old definition; the demo now reports the standard barrier, the largest rise above the
chord between the ends. PHATE's kNN graph of the J&R samples fell into several pieces and its
DeMAP was the lowest of the four methods (about -0.2 on the good and bad
minima, t-SNE 0.75-0.86), as ``examples/minima`` found with shorter retraining. The quick minima
(1000 signals, 24 epochs) fit the random labels but hardly differ from each other (test accuracy
0.52 both): they check that every stage runs, they are no finding.

Modules: :mod:`.settings` (the full and quick settings), :mod:`.minima` (training into one run
directory per minimum), :mod:`.analyses` (the stages of one minimum), :mod:`.between` (the
comparisons), :mod:`.notices` (third-party warnings said once in plain words), :mod:`.clock` (stage
times), :mod:`.pipeline`
(:func:`run_demo`).

Example
-------
>>> from lossatlas.demo import run_demo
>>> summary = run_demo("runs/demo", quick=True)   # doctest: +SKIP
"""

from .clock import StageClock
from .minima import Minimum, source_of, train_into, train_minimum
from .notices import Notices, explain
from .pipeline import MEMORIZED, run_demo
from .settings import FULL, MINIMA, PAPER_STEPS_X_LR, QUICK, DemoSettings, settings_for

__all__ = [
    "FULL", "MEMORIZED", "MINIMA", "PAPER_STEPS_X_LR", "QUICK", "DemoSettings", "Minimum", "Notices", "StageClock",
    "explain", "run_demo", "settings_for", "source_of", "train_into", "train_minimum",
]
