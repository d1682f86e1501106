"""Permutation alignment of two networks (weight and activation matching, Git Re-Basin): the
permutation groups traced from the model, the matching, and the aligned copy."""

from .apply import AlignMethod, Permutation, align, find_permutation
from .groups import Group, PermutationSpec, find_groups
from .trace import trace_model

__all__ = ["AlignMethod", "Group", "Permutation", "PermutationSpec", "align", "find_groups", "find_permutation",
           "trace_model"]
