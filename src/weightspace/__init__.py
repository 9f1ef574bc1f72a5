"""weightspace: neural networks as data.

The names below are imported on first use (PEP 562), so `import weightspace` and the
command line's ``--help`` do not load PyTorch; ``from weightspace import Weights`` and
``weightspace.forward`` work as usual.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "GroupElement": "weightspace.core",
    "HyperINR": "weightspace.inr.hyper",
    "HyperINRConfig": "weightspace.inr.hyper",
    "LayerSpec": "weightspace.core",
    "MetaConfig": "weightspace.inr.meta",
    "ModulatedSiren": "weightspace.inr.modulated",
    "ModulatedSirenConfig": "weightspace.inr.modulated",
    "NetworkSpec": "weightspace.core",
    "RunConfig": "weightspace.zoo.search_space",
    "SearchSpace": "weightspace.zoo.search_space",
    "Sine": "weightspace.core",
    "Weights": "weightspace.core",
    "Zoo": "weightspace.zoo.store",
    "ZooError": "weightspace.zoo.store",
    "ZooRecipe": "weightspace.zoo.search_space",
    "ZooWriter": "weightspace.zoo.store",
    "act": "weightspace.core",
    "assert_equivariant": "weightspace.core",
    "assert_invariant": "weightspace.core",
    "assert_not_invariant": "weightspace.core",
    "build_classifier_zoo": "weightspace.zoo.train_zoo",
    "create_model": "weightspace.models.registry",
    "detokenize": "weightspace.core",
    "forward": "weightspace.core",
    "get_zoo_recipe": "weightspace.zoo.search_space",
    "list_models": "weightspace.models.registry",
    "meta_train": "weightspace.inr.meta",
    "permute": "weightspace.core",
    "read_vectors": "weightspace.zoo.vectors",
    "sample_group_element": "weightspace.core",
    "spec_for_row": "weightspace.zoo.search_space",
    "tokenize": "weightspace.core",
    "uncoupled_permutation": "weightspace.core",
    "vector_spec": "weightspace.zoo.vectors",
    "write_vector_zoo": "weightspace.zoo.vectors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'weightspace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
