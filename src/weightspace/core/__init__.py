"""Core types: the spec of an architecture, a batch of weights, the functional forward,
and the symmetry group acting on weights."""

from weightspace.core.activations import ACTIVATIONS, Sine
from weightspace.core.functional import forward
from weightspace.core.spec import LayerSpec, NetworkSpec, PermutationGroup
from weightspace.core.symmetry import (
    GroupElement,
    act,
    assert_equivariant,
    assert_invariant,
    assert_not_invariant,
    function_preserving_kinds,
    permute,
    sample_group_element,
    sample_uncoupled,
    uncoupled_permutation,
)
from weightspace.core.tokens import TokenLayout, detokenize, token_width, tokenize
from weightspace.core.weights import Weights

__all__ = [
    "ACTIVATIONS",
    "GroupElement",
    "LayerSpec",
    "NetworkSpec",
    "PermutationGroup",
    "Sine",
    "TokenLayout",
    "Weights",
    "act",
    "assert_equivariant",
    "assert_invariant",
    "assert_not_invariant",
    "detokenize",
    "forward",
    "function_preserving_kinds",
    "permute",
    "sample_group_element",
    "sample_uncoupled",
    "token_width",
    "tokenize",
    "uncoupled_permutation",
]
