"""Neural functionals (after Zhou et al., NeurIPS 2023): NP and HNP invariant models.

NP treats every neuron, input and output ones included, as permutable; HNP fixes the input
and output neurons. Both use `EquivariantLayer` (the linear equivariant maps are shared
with the DWS model: ``io="permutable"`` drops the dense input/output terms) and NFN's
design around it: no normalisation between layers, mean pooling to an invariant vector,
and a two-layer MLP head with dropout. (NFN's Gaussian Fourier input features are not
used here.)
"""

from __future__ import annotations

from weightspace.models.dws_light import EquivariantClassifier
from weightspace.models.registry import register_model


@register_model("nfn_np", output="invariant", supports_conv=True, summary="NFN with NP layers (all neurons permutable)")
class NFNNP(EquivariantClassifier):
    io, norm, stats, head_layers = "permutable", "none", ("mean",), 2


@register_model("nfn_hnp", output="invariant", supports_conv=True, summary="NFN with HNP layers (input/output neurons fixed)")
class NFNHNP(EquivariantClassifier):
    io, norm, stats, head_layers = "fixed", "none", ("mean",), 2
