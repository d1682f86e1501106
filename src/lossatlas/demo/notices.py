"""Third-party warnings a demo user cannot act on, caught per stage and said once in plain words.

PHATE, its SGD-MDS layout, UMAP and scikit-learn warn about facts of the sampled points (a kNN
graph in several pieces, a layout that stopped early), not about anything the user typed. The
demo records them around each stage and then prints one line per kind of warning, saying what
it means for the figure, instead of a wall of library text.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

__all__ = ["Notices", "explain"]

# (pattern of the warning's text, what it means for the figure), first match wins.
_MEANINGS = (
    (r"graph is disconnected|disconnected components|not fully connected|connected components",
     "the neighbour graph of the sampled points falls apart into separate pieces (retraining runs "
     "that never come near each other): the embedding draws them as islands, and distances "
     "between islands mean nothing"),
    (r"sgd.?mds|did not converge|not converge|convergence",
     "an iterative layout (PHATE's SGD-MDS or t-SNE/UMAP's optimizer) stopped before it converged: "
     "the picture is approximate, fine points of it may move on a rerun with another seed"),
    (r"n_jobs|random_state|parallelism",
     "UMAP runs single-threaded when given a seed (so that it is reproducible): slower, same figure"),
    (r"n_neighbors|perplexity|k is larger|larger than the number",
     "a neighbourhood size was larger than the number of points allows and was reduced: the "
     "embedding of these few points is coarse"),
    (r"spectral|eigen|initiali[sz]ation",
     "the embedding's spectral start failed and a random start was used: the layout is still valid"),
)


def explain(message: str) -> str:
    """What a library warning means for the figure, in plain words (generic when unknown).

    Examples
    --------
    >>> explain("Graph is disconnected")[:30]
    'the neighbour graph of the sam'
    """
    text = message.lower()
    for pattern, meaning in _MEANINGS:
        if re.search(pattern, text):
            return meaning
    first = message.strip().splitlines()[0] if message.strip() else "(no text)"
    return f"a library warned ({first[:120]}); the figure is drawn all the same"


_PACKAGE = Path(__file__).resolve().parents[1]


def _ours(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


@dataclass
class Notices:
    """Warnings caught per stage, each kind kept once with the stages it came from."""

    seen: dict = field(default_factory=dict)  # meaning -> {"stages": [...], "example": text, "count": n}

    @contextlib.contextmanager
    def catch(self, stage: str) -> Iterator[list]:
        """Record every warning raised inside (shown to nobody); the new kinds are returned by
        :meth:`new_lines` after the block. Not thread-safe, like :mod:`warnings` itself: the demo
        enters it from its main thread only."""
        # The filters in force stay (lossatlas's own silencing of notes it has dealt with, such
        # as zarr's consolidated-metadata one); only where the shown warnings go changes.
        with warnings.catch_warnings(record=True) as caught:
            yield caught
        for w in caught:
            text = str(w.message)
            # lossatlas's own warnings say what to change: they are passed on word for word
            meaning = f"lossatlas warned: {text.strip()}" if _ours(w.filename) else explain(text)
            entry = self.seen.setdefault(meaning, {"stages": [], "example": text.strip()[:300], "count": 0,
                                                   "category": w.category.__name__, "new": True})
            entry["count"] += 1
            if stage not in entry["stages"]:
                entry["stages"].append(stage)

    def new_lines(self) -> list[str]:
        """One line per kind of warning not said before (each said once in the whole demo)."""
        out = []
        for meaning, entry in self.seen.items():
            if entry.pop("new", False):
                out.append(f"note ({', '.join(entry['stages'])}): {meaning}.")
        return out

    def as_list(self) -> list[dict]:
        """For the summary: each kind, where it came from, how often, and one original text."""
        return [{"meaning": m, **{k: v for k, v in e.items() if k != "new"}} for m, e in self.seen.items()]
