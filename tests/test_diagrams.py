"""Persistence that silently measures nothing (issue 19, item 4): a kNN graph in several pieces.

Each connected component of the kNN graph leaves one essential D0 class. Total persistence over
the finite pairs drops them all, so points sampled in separate basins gave exactly 0, with no
word said. ``la.persistence`` now warns, its result carries the number of components, and
``persistence_totals`` reports beside each total the components, the finite pairs and the total
with essential classes capped at the largest filtration value.
"""

import pickle
import warnings

import numpy as np
import pytest

import lossatlas as la
from lossatlas.diagrams import Diagrams, totals_text
from lossatlas.topology import DisconnectedGraphWarning, persistence, persistence_totals, total_persistence


def _islands(n_islands=3, per=6, seed=0):
    """Points in ``n_islands`` far-apart clusters, each a single bowl of loss around its centre."""
    rng = np.random.default_rng(seed)
    centres = 100.0 * np.arange(n_islands)[:, None] * np.ones((1, 4))
    offsets = rng.normal(size=(n_islands, per, 4))
    pot = (centres[:, None, :] + offsets).reshape(-1, 4)
    loss = (offsets ** 2).sum(-1).reshape(-1) + np.repeat(np.arange(n_islands) * 0.5, per)
    return pot, loss


def test_a_split_knn_graph_warns_and_its_empty_total_is_flagged():
    pot, loss = _islands()
    with pytest.warns(DisconnectedGraphWarning, match=r"k=3\) of the 18 points has 3 connected components"):
        d = persistence(pot, loss, k=3)
    # before: no warning, and total persistence D0 = 0.0 (three bowls, each one essential class);
    # the capped total, which counts them, is 112.4
    assert total_persistence(d[0]) == 0.0
    assert d.components == 3 and d.k == 3 and d.max_value == loss.max()
    totals = persistence_totals(d, p=2)
    assert totals["components"] == 3 and totals["empty_d0"] and totals["finite_pairs_d0"] == 0
    assert totals["essential_d0"] == 3
    # capped at the largest filtration value: each island's class lives from its minimum to there
    births = np.array([loss[i * 6:(i + 1) * 6].min() for i in range(3)])
    assert totals["capped_total_persistence_d0"] == pytest.approx(np.sum((loss.max() - births) ** 2))
    assert totals["capped_total_persistence_d0"] > 0
    text = totals_text(totals)
    assert "3 components" in text and "no finite pair" in text and "no measurement" in text


def test_a_connected_graph_does_not_warn_and_keeps_the_plain_dict_api():
    pot, loss = _islands(n_islands=1, per=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DisconnectedGraphWarning)
        d = persistence(pot, loss, k=6)
    assert d.components == 1 and isinstance(d, dict) and set(d) == {0, 1}
    assert dict(d) == {0: d[0], 1: d[1]}
    totals = persistence_totals(d)
    assert totals["total_persistence_d0"] == total_persistence(d[0])
    # exactly one essential class: the capped total adds (max - global minimum)^2 to the finite ones
    assert totals["essential_d0"] == 1
    assert totals["capped_total_persistence_d0"] == pytest.approx(
        totals["total_persistence_d0"] + (loss.max() - loss.min()) ** 2)
    back = pickle.loads(pickle.dumps(d))
    assert back.components == 1 and np.array_equal(back[0], d[0])


def test_capped_totals_compare_minima_on_one_cap():
    a = Diagrams({0: np.array([[0.0, 0.5], [0.1, np.inf]]), 1: np.zeros((0, 2))}, components=1, max_value=1.0)
    b = Diagrams({0: np.array([[0.0, np.inf]]), 1: np.zeros((0, 2))}, components=1, max_value=2.0)
    assert persistence_totals(a, p=1)["capped_total_persistence_d0"] == pytest.approx(0.5 + 0.9)
    assert persistence_totals(b, p=1)["capped_total_persistence_d0"] == pytest.approx(2.0)
    assert persistence_totals(b, p=1, cap=1.0)["capped_total_persistence_d0"] == pytest.approx(1.0)
    plain = persistence_totals({0: np.array([[0.0, 1.5], [0.2, np.inf]]), 1: np.zeros((0, 2))}, p=1)
    assert plain["components"] is None and plain["cap"] == 1.5
    assert plain["capped_total_persistence_d0"] == pytest.approx(1.5 + 1.3)


def test_public_names():
    assert la.persistence_totals is persistence_totals
    assert issubclass(la.DisconnectedGraphWarning, UserWarning)


def test_figure_titles_flag_the_empty_diagram_and_the_components():
    from lossatlas.plot.topology import plot_persistence_diagrams

    pot, loss = _islands()
    with pytest.warns(DisconnectedGraphWarning):
        d = persistence(pot, loss, k=3)
    fig = plot_persistence_diagrams({"islands": d})
    titles = " | ".join(ax.get_title() for ax in fig.axes)
    assert "no finite pair" in titles and "3 components" in titles


def test_components_equal_the_essential_d0_classes_on_random_graphs():
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from lossatlas.topology import graph_persistence

    rng = np.random.default_rng(7)
    for _ in range(5):
        n = 25
        adj = sp.random(n, n, density=0.04, random_state=rng, format="csr")
        values = rng.normal(size=n)
        d = graph_persistence(adj, values)
        want = connected_components(adj + adj.T, directed=False)[0]  # the scipy oracle
        assert d.components == want == int(np.isinf(d[0][:, 1]).sum())
