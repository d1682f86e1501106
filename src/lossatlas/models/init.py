"""Initialization of the built-in architectures, from torch's global RNG or an explicit generator.

The plain constructors (``generator=None``: torch's global RNG, as for any module) and seeded
builds (:func:`lossatlas.models.build` with ``seed=``: a private ``torch.Generator``) both go
through :func:`initialize`, so seeded and unseeded models share one distribution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Initialization schemes: torch's default layer init, or He-normal (fan-out) convolutions.
SCHEMES = ("torch", "he")


def initialize(model: nn.Module, generator: torch.Generator | None = None, scheme: str = "torch") -> nn.Module:
    """(Re)initialize every parameter and batch-norm buffer of ``model`` in place.

    Parameters
    ----------
    model : torch.nn.Module
    generator : torch.Generator, optional
        Draw from this generator (on the model's device); None uses torch's global RNG.
    scheme : {"torch", "he"}
        ``"torch"`` reproduces torch's default layer init (uniform, bound from the fan-in);
        ``"he"`` uses He-normal (fan-out) convolutions, as He et al. and Zagoruyko & Komodakis
        do, and torch's default for linear layers.

    Examples
    --------
    >>> net = initialize(nn.Linear(3, 2), torch.Generator().manual_seed(0))
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                w = m.weight
                fan_in = w.shape[1] * math.prod(w.shape[2:])
                if scheme == "he" and not isinstance(m, nn.Linear):
                    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=generator)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                else:
                    # kaiming_uniform(a=sqrt(5)) is torch's own default for Linear and Conv.
                    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
                    if m.bias is not None:
                        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                        nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                # Also needed after `to_empty`, which leaves running statistics uninitialized.
                m.reset_running_stats()
                if m.affine:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
    return model
