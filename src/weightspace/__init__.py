"""weightspace: neural networks as data."""

from weightspace.core import (
    GroupElement,
    LayerSpec,
    NetworkSpec,
    Sine,
    Weights,
    act,
    assert_equivariant,
    assert_invariant,
    assert_not_invariant,
    detokenize,
    forward,
    permute,
    sample_group_element,
    tokenize,
    uncoupled_permutation,
)
from weightspace.inr.hyper import HyperINR, HyperINRConfig
from weightspace.inr.meta import MetaConfig, meta_train
from weightspace.inr.modulated import ModulatedSiren, ModulatedSirenConfig
from weightspace.models.registry import create_model, list_models
from weightspace.zoo.search_space import RunConfig, SearchSpace, ZooRecipe, get_zoo_recipe, spec_for_row
from weightspace.zoo.store import Zoo, ZooError, ZooWriter
from weightspace.zoo.train_zoo import build_classifier_zoo
from weightspace.zoo.vectors import read_vectors, vector_spec, write_vector_zoo

__version__ = "0.1.0"

__all__ = [
    "GroupElement",
    "HyperINR",
    "HyperINRConfig",
    "LayerSpec",
    "MetaConfig",
    "ModulatedSiren",
    "ModulatedSirenConfig",
    "NetworkSpec",
    "RunConfig",
    "SearchSpace",
    "Sine",
    "Weights",
    "Zoo",
    "ZooError",
    "ZooRecipe",
    "ZooWriter",
    "__version__",
    "act",
    "assert_equivariant",
    "assert_invariant",
    "assert_not_invariant",
    "build_classifier_zoo",
    "create_model",
    "detokenize",
    "forward",
    "get_zoo_recipe",
    "list_models",
    "meta_train",
    "permute",
    "read_vectors",
    "sample_group_element",
    "spec_for_row",
    "tokenize",
    "uncoupled_permutation",
    "vector_spec",
    "write_vector_zoo",
]
