"""``--align`` of ``interpolate`` and ``connect``: the second model's hidden units permuted to
match the first (:func:`lossatlas.align`), and the barriers before and after, side by side."""

from __future__ import annotations

from .common import console


def align_method(align: str):
    """The alignment of ``--align`` (None for "none"), checked before any work."""
    from .._errors import parse_enum
    from ..alignment import AlignMethod

    return None if align.strip().lower() == "none" else parse_enum(AlignMethod, align, "alignment (--align)",
                                                                   " or none")


def aligned_endpoint(net_a, net_b, method, d, dev):
    """``net_b`` permuted to match ``net_a`` and the alignment to record (method, fingerprint);
    activation matching uses the first 512 training inputs."""
    from ..alignment import find_permutation

    perm = find_permutation(net_a, net_b, method=method, data=d.train[0][:512].to(dev), seed=0)
    return perm.apply(net_b), {"method": method.value, "fingerprint": perm.fingerprint()}


def report_alignment(run, paths: dict, alignment: dict, key: str) -> dict:
    """Barriers before and after alignment side by side (printed, in the summary under ``key``)
    and one figure per path with both curves (``figures/{key}_alignment``)."""
    from .. import plot
    from ..connectivity.barrier import barrier_stats

    rows = {}
    for name, (before, after) in paths.items():
        b0, b1 = (barrier_stats(p.t.values, p.loss.values)["barrier"] for p in (before, after))
        rows[name] = {"before": b0, "after": b1}
        console.print(f"{name}: barrier {b0:.4g} before alignment, {b1:.4g} after ({alignment['method']} matching, "
                      f"permutation {alignment['fingerprint']})")
        drawn = {"not aligned": before.copy(), f"aligned ({alignment['method']})": after.copy()}
        for label, p in drawn.items():
            p.attrs = {**p.attrs, "barrier": barrier_stats(p.t.values, p.loss.values)["barrier"]}
            if "test_loss" in p:
                p.attrs["test_barrier"] = barrier_stats(p.t.values, p.test_loss.values)["barrier"]
        suffix = "" if len(paths) == 1 else f"_{name}"
        plot.plot_connectivity(drawn, path=run.figures / f"{key}_alignment{suffix}", title=f"{name}: before and after alignment")
    run.update_summary(**{f"{key}_alignment": {**alignment, "barriers": rows}})
    return rows
