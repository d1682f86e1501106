"""Tests of lossatlas.topology: a union-find oracle for D0, exact small complexes (cycles, filled
triangles, a wheel), total persistence by hand, invariance under relabelling the points, and the
two defects of the authors' public code (kNN on the largest potential entries; values offset by
one against the points)."""

import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr
from scipy.spatial.distance import cdist

from lossatlas._errors import InputError
from lossatlas.topology import graph_persistence, knn_graph, persistence, total_persistence, vertex_values


def union_find_d0(n, edges, f):
    """Lower-star D0 of a graph by the elder rule: vertices and edges enter at their values; when an
    edge joins two components, the one born later dies. Pairs of zero persistence are left out."""
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    pairs = []
    for u, v in sorted(edges, key=lambda e: max(f[e[0]], f[e[1]])):
        ru, rv = find(u), find(v)
        if ru == rv:
            continue
        w = max(f[u], f[v])
        young, old = (ru, rv) if f[ru] > f[rv] else (rv, ru)  # roots hold their component's minimum
        if w > f[young]:
            pairs.append((f[young], w))
        parent[young] = old
    pairs += [(f[r], np.inf) for r in range(n) if find(r) == r]
    return _sorted(np.array(pairs, dtype=float).reshape(-1, 2))


def _sorted(d):
    d = np.asarray(d, dtype=float).reshape(-1, 2)
    return d[np.lexsort((d[:, 1], d[:, 0]))]


def _edges(adj):
    adj = sp.csr_matrix(adj)
    i, j = sp.triu(adj + adj.T, k=1).nonzero()
    return list(zip(i.tolist(), j.tolist()))


def _same(a, b):
    a, b = _sorted(a), _sorted(b)
    assert a.shape == b.shape, (a, b)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def _cycle(n):
    return sp.csr_matrix(np.roll(np.eye(n), 1, axis=1))


# --------------------------------------------------------------------------------------------------
# oracles and exact complexes


@pytest.mark.parametrize("complex_", ["flag", "graph"])
def test_d0_equals_union_find_on_random_graphs(complex_):
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(2, 25))
        dense = np.triu(rng.random((n, n)) < rng.uniform(0.05, 0.4), k=1)
        f = rng.normal(size=n)
        if trial % 3 == 0:
            f = np.round(f, 1)  # ties: zero-persistence merges must be left out by both
        _same(graph_persistence(dense, f, complex_)[0], union_find_d0(n, _edges(dense), f))


def test_d0_of_knn_graph_equals_union_find_on_brute_force_neighbours():
    rng = np.random.default_rng(1)
    for _ in range(10):
        n, m, k = int(rng.integers(8, 40)), int(rng.integers(2, 12)), int(rng.integers(1, 5))
        pot, f = rng.normal(size=(n, m)), rng.normal(size=n)
        near = np.argsort(cdist(pot, pot) + np.diag(np.full(n, np.inf)), axis=1)[:, :k]
        edges = {tuple(sorted((i, int(j)))) for i in range(n) for j in near[i]}
        assert set(_edges(knn_graph(pot, k))) == edges
        _same(persistence(pot, f, k=k)[0], union_find_d0(n, sorted(edges), f))


def test_cycle_graph_gives_one_essential_d1_class():
    rng = np.random.default_rng(2)
    for n in (4, 5, 9):
        f = rng.normal(size=n)
        for complex_ in ("flag", "graph"):  # a cycle of length >= 4 has no triangle to fill it
            d = graph_persistence(_cycle(n), f, complex_)
            _same(d[1], [[f.max(), np.inf]])  # it closes with its last vertex
            _same(d[0], union_find_d0(n, _edges(_cycle(n)), f))


def test_filled_triangle_has_no_cycle_in_the_flag_complex_and_one_in_the_graph():
    f = np.array([0.3, 0.1, 0.7])
    assert graph_persistence(_cycle(3), f, "flag")[1].shape == (0, 2)
    _same(graph_persistence(_cycle(3), f, "graph")[1], [[0.7, np.inf]])


def test_wheel_rim_dies_when_its_triangles_enter():
    # Rim 0..5 low, hub 6 high: the rim cycle is born when it closes and filled when the hub enters.
    rim = np.array([0.0, 0.2, 0.1, 0.4, 0.3, 0.5])
    adj = sp.lil_matrix((7, 7))
    for i in range(6):
        adj[i, (i + 1) % 6] = adj[i, 6] = 1
    f = np.append(rim, 2.0)
    _same(graph_persistence(adj, f, "flag")[1], [[0.5, 2.0]])
    d = graph_persistence(adj, f, "graph")[1]  # without triangles the hub adds 5 more cycles, all essential
    _same(d, [[0.5, np.inf]] + [[2.0, np.inf]] * 5)


def test_vertex_values_are_not_lowered_by_edges():
    # gudhi's insert lowers existing faces to a new simplex's value; an isolated high vertex joined
    # to a low one must still be born at its own value (here it dies at once: a zero-length pair).
    adj = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    _same(graph_persistence(adj, [0.0, 5.0, 3.0], "flag")[0], [[0.0, np.inf], [3.0, np.inf]])


def test_permuting_points_and_values_together_changes_no_diagram():
    rng = np.random.default_rng(3)
    n = 60
    z = rng.normal(size=(n, 2))
    pot = np.log1p(cdist(z, z))  # [n, n], like a potential whose columns are points too
    f = (z**2).sum(1) + 0.2 * rng.normal(size=n)
    perm = rng.permutation(n)
    for complex_ in ("flag", "graph"):
        a = persistence(pot, f, k=6, complex=complex_)
        b = persistence(pot[perm][:, perm], f[perm], k=6, complex=complex_)
        c = persistence(pot[perm], f[perm], k=6, complex=complex_)  # rows alone: same distances
        assert a[0].shape[0] > 1 and a[1].shape[0] > 0  # a non-trivial fixture
        for d in (0, 1):
            _same(a[d], b[d])
            _same(a[d], c[d])


# --------------------------------------------------------------------------------------------------
# the two defects of the authors' public code


def _line_fixture():
    """Points on a line (irregular spacing) with a potential-like matrix (small for near points, as
    -log of diffusion probabilities) and a W-shaped loss: minima 0.0 (point 5) and 0.3 (point 17)
    separated by a plateau at 1.0 as wide as k, high ends."""
    n = 24
    x = np.cumsum(1 + 0.5 * np.sin(np.arange(n) * 1.7))
    pot = np.abs(x[:, None] - x[None, :])
    idx = np.arange(n)
    f = np.where(idx < 12, 0.1 * np.abs(idx - 5), 0.3 + 0.1 * np.abs(idx - 17))
    f[10:13] = 1.0
    f[[0, -1]] = 2.0
    return pot, f


def test_knn_uses_nearest_rows_of_the_potential_not_its_largest_entries():
    pot, f = _line_fixture()
    k = 3
    expected = [[0.0, np.inf], [0.3, 1.0]]  # the second basin merges over the barrier
    _same(persistence(pot, f, k=k)[0], expected)
    # The authors' choice (each point to the k largest entries of its row of the potential) links
    # every point to the far ends of the line and gives another diagram: this test catches it.
    n = len(f)
    far = np.argsort(pot, axis=1)[:, -k:]
    authors = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), far.ravel())), shape=(n, n))
    assert graph_persistence(authors, f)[0].shape != np.shape(expected)
    # and ours links only points next to each other on the line
    assert max(abs(i - j) for i, j in _edges(knn_graph(pot, k))) <= k


def test_values_must_have_one_entry_per_embedded_point():
    # The authors dropped the minimum from the embedding but not from the values, so vertex i got
    # the value of point i - 1. A values array with the minimum's value still in it is refused.
    pot, f = _line_fixture()
    with_minimum = np.concatenate([[-1.0], f])
    with pytest.raises(InputError, match="one value per embedded point"):
        persistence(pot, with_minimum, k=3)
    with pytest.raises(InputError, match="one value per embedded point"):
        persistence(pot[1:], f, k=3)
    # and each vertex gets its own point's value: shifting the values by one changes the diagram
    _same(persistence(pot, f, k=3)[0], [[0.0, np.inf], [0.3, 1.0]])
    assert not np.array_equal(persistence(pot, with_minimum[:-1], k=3)[0], persistence(pot, f, k=3)[0])


class _FittedPHATE:
    """Duck-typed stand-in for a fitted lossatlas PHATE."""

    def __init__(self, potential):
        self.potential_ = potential
        self.n_points_ = potential.shape[0]


def test_values_by_name_from_samples_and_every_accepted_form():
    pot, f = _line_fixture()
    test = 2 * f + 0.5
    ds = xr.Dataset({"loss": ("point", f), "test_loss": ("point", test)})
    emb = _FittedPHATE(pot)
    want_train, want_test = persistence(pot, f, k=3), persistence(pot, test, k=3)
    for got, want in [
        (persistence(emb, samples=ds, k=3), want_train),  # values="loss" by default
        (persistence(emb, "test_loss", samples=ds, k=3), want_test),
        (persistence(emb, ds, k=3), want_train),  # a Dataset: its train loss
        (persistence(emb, ds["test_loss"], k=3), want_test),
    ]:
        for d in (0, 1):
            _same(got[d], want[d])
    assert not np.array_equal(want_train[0], want_test[0])
    with pytest.raises(InputError, match="samples="):
        persistence(emb, "loss", k=3)
    with pytest.raises(InputError, match="no variable 'acc'"):
        persistence(emb, "acc", samples=ds, k=3)
    with pytest.raises(InputError, match="1-D"):
        vertex_values(np.zeros((24, 2)), 24)


# --------------------------------------------------------------------------------------------------
# total persistence


def test_total_persistence_by_hand():
    d = np.array([[0.0, 1.0], [0.5, 2.5], [1.0, 1.5], [0.0, np.inf]])
    assert total_persistence(d, p=2) == pytest.approx(1 + 4 + 0.25)
    assert total_persistence(d, p=1) == pytest.approx(1 + 2 + 0.5)
    # cap: the essential class ends at the largest finite value (2.5) or at the given cap
    assert total_persistence(d, p=2, essential="cap") == pytest.approx(5.25 + 2.5**2)
    assert total_persistence(d, p=2, essential="cap", cap=4.0) == pytest.approx(5.25 + 16)
    assert total_persistence(np.zeros((0, 2))) == 0.0
    with pytest.raises(InputError, match="diagrams\\[0\\]"):
        total_persistence({0: d})
    with pytest.raises(InputError, match="unknown essential"):
        total_persistence(d, essential="keep")
    with pytest.raises(InputError, match="positive"):
        total_persistence(d, p=0)


# --------------------------------------------------------------------------------------------------
# scale, flagged values, bad input


def test_larger_sets_use_a_sparse_graph():
    # 10,000 points took 6.9 s (neighbours, m=2000) + 1.0 s (flag persistence) on 2 cores; kept small here.
    rng = np.random.default_rng(4)
    n, k = 1500, 20
    z = rng.normal(size=(n, 3))
    pot = np.tanh(z @ rng.normal(size=(3, 200)))
    A = knn_graph(pot, k)
    assert sp.issparse(A) and A.nnz <= 2 * k * n and (A != A.T).nnz == 0 and A.diagonal().sum() == 0
    d = persistence(pot, (z**2).sum(1), k=k)
    assert np.isinf(d[0][:, 1]).sum() >= 1 and d[1].shape[1] == 2


def test_nan_values_are_flagged_and_left_out():
    path = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]])
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        d = graph_persistence(path, [0.0, np.nan, 1.0])
    _same(d[0], [[0.0, np.inf], [1.0, np.inf]])  # the path is cut where the run diverged


def test_bad_input_is_refused_with_a_fix():
    pot, f = _line_fixture()
    with pytest.raises(InputError, match="lower k"):
        persistence(pot, f, k=24)
    with pytest.raises(InputError, match="unknown complex"):
        persistence(pot, f, complex="cubical")
    with pytest.raises(InputError, match="2-D"):
        persistence(f, f)

    class TSNE:
        def fit(self, X):
            return self

        def get_params(self):
            return {}

    with pytest.raises(InputError, match="no diffusion potential"):
        persistence(TSNE(), f)
    with pytest.raises(InputError, match="NaN or inf in rows"):
        persistence(np.where(np.eye(24) > 0, np.nan, pot), f, k=3)


def test_missing_gudhi_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gudhi", None)
    with pytest.raises(InputError, match="lossatlas\\[topology\\]"):
        graph_persistence(_cycle(4), np.arange(4.0))


# --------------------------------------------------------------------------------------------------
# figures (lossatlas.plot.topology)


class _FittedPHATE2D(_FittedPHATE):
    def __init__(self, potential, embedding):
        super().__init__(potential)
        self.embedding_ = embedding


def _two_minima():
    rng = np.random.default_rng(5)
    out = {}
    for name, noise in (("good", 0.0), ("bad", 0.3)):
        z = rng.normal(size=(80, 2))
        f = (z**2).sum(1) + noise * rng.normal(size=80) ** 2
        out[name] = (_FittedPHATE2D(np.log1p(cdist(z, z)), z), f)
    return out


def test_persistence_diagram_figure_titles_carry_total_persistence(tmp_path):
    from lossatlas.plot.topology import plot_persistence_diagrams

    minima = _two_minima()
    diagrams = {name: persistence(emb, f, k=8) for name, (emb, f) in minima.items()}
    fig = plot_persistence_diagrams(diagrams, path=tmp_path / "pd")
    axes = fig.axes
    assert len(axes) == 4  # D0 over D1, one column per minimum
    titles = " | ".join(ax.get_title() for ax in axes)
    for d in diagrams.values():
        for dim in (0, 1):
            assert f"{total_persistence(d[dim]):.3g}" in titles
    assert (tmp_path / "pd.png").stat().st_size > 0 and (tmp_path / "pd.pdf").stat().st_size > 0
    assert len(plot_persistence_diagrams(list(diagrams.values()), separate=False).axes) == 2


def test_knn_graph_figure_draws_every_edge_and_flags_nan_values():
    from matplotlib.collections import LineCollection

    from lossatlas.plot.topology import plot_knn_graph, plot_minima_topology

    emb, f = _two_minima()["bad"]
    f = f.copy()
    f[7] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NaN values are drawn as marks, not as warnings
        fig = plot_knn_graph(emb, f, k=8)
    ax = fig.axes[0]
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(lines) == 1 and len(lines[0].get_segments()) == knn_graph(emb, 8).nnz // 2
    assert "1 point with NaN/inf loss" in ax.get_title()
    with pytest.warns(RuntimeWarning, match="NaN or inf"):
        fig = plot_minima_topology({**_two_minima(), "nan": (emb, f)}, k=8)
    assert sum(1 for a in fig.axes if a.get_title()) == 6  # 3 embeddings + 3 diagrams (+ colorbars)


def test_persistence_against_test_loss_reports_spearman():
    from scipy.stats import spearmanr

    from lossatlas.plot.topology import plot_persistence_vs_test_loss

    rng = np.random.default_rng(6)
    tp = rng.gamma(2.0, size=24)
    tl = 0.3 + 0.1 * tp + 0.05 * rng.normal(size=24)
    wd = np.repeat([0.0, 1e-4, 1e-3], 8)
    tl[0] = np.nan
    fig = plot_persistence_vs_test_loss(tp, tl, color=wd)
    title = fig.axes[0].get_title()
    rho = spearmanr(tl[1:], tp[1:]).statistic
    assert f"= {rho:.2f}" in title and "n = 23" in title and "1 network with NaN/inf" in title
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["0", "0.0001", "0.001"]
    with pytest.raises(InputError, match="test_loss 23"):
        plot_persistence_vs_test_loss(tp, tl[1:])


@pytest.mark.filterwarnings("ignore:phate")
def test_a_fitted_phate_and_its_samples_feed_persistence_directly():
    from lossatlas.embedding import PHATE

    rng = np.random.default_rng(7)
    t = np.linspace(0, 1, 15)
    weights = np.concatenate([np.outer(np.exp(-4 * t), rng.normal(size=12)) + 0.02 * rng.normal(size=(15, 12))
                              for _ in range(4)])
    samples = xr.Dataset({"weights": (("point", "param"), weights),
                          "loss": ("point", (weights**2).sum(1)), "test_loss": ("point", 1 + (weights**2).sum(1))})
    emb = PHATE(metric="euclidean", knn=4, seed=0).fit(samples)
    assert emb.potential_.shape[0] == 60
    import lossatlas as la

    got = la.persistence(emb, values=samples["loss"], k=10)  # the Public API of DESIGN.md
    want = persistence(emb.potential_, samples["loss"].values, k=10)
    assert la.total_persistence(got[0], p=2) == total_persistence(want[0])
    for d in (0, 1):
        _same(got[d], want[d])
    _same(persistence(emb, "test_loss", samples=samples, k=10)[0], want[0] + np.array([1.0, 1.0]))
