"""`torch.compile` as weightspace's elementwise kernels want it (the SIREN step, fused sin/cos,
the stacked optimisers' update).

- ``dynamic=True``: one compiled variant serves every batch size.
- Python floats (omega, polynomial coefficients, optimiser constants) become constants of the
  generated C++. Dynamo's default passes each one in as a runtime argument, and Inductor then
  loads it and converts it from double inside the innermost loop. On the 2-core CPU, the fused
  sin/cos ran about twice as fast with constants: 0.88 vs 0.37 and 2.8 vs 1.4 ns/element in
  two A/B runs on one tensor, the second while the VM was slow. The stacked Adam/SGD/RMSprop
  update took 1.02 instead of 1.13 ms per step (ad-hoc A/B, medians of 5 interleaved rounds;
  64 networks of 25k parameters, mixed optimisers, 2 threads).
- No "duck sizing": by default Dynamo assumes that sizes equal at compile time stay equal
  (2 networks and an image's 2 coordinates), and a later call that breaks the coincidence
  compiles again.

Both settings are applied around every call, because Dynamo reads them whenever it traces.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_CONSTANT_FLOATS = torch._dynamo.config.patch(specialize_float=True)
_NO_DUCK_SIZING = torch.fx.experimental._config.patch(use_duck_shape=False)


def compile_kernel(fn: Callable) -> Callable:
    """``torch.compile(fn, dynamic=True)`` with the settings above. Compiling happens on the
    first call, so a missing C++ compiler raises there; callers catch that and fall back."""
    return _NO_DUCK_SIZING(_CONSTANT_FLOATS(torch.compile(fn, dynamic=True)))


__all__ = ["compile_kernel"]
