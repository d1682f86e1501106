"""The base class of the built-in architectures: what every family shares.

Each architecture names itself, the input ranks it takes and its initialization scheme in its
class statement (``class ResNet(Architecture, arch="resnet", ranks=(3,), init_scheme="he")``);
its constructor calls ``super().__init__(input_shape, num_classes)``, which checks both, builds
its layers, and ends with :meth:`Architecture.finish`, which records the ``spec`` and initializes
every parameter. One place thus checks the common arguments, writes the spec and draws the
initial weights, for the plain constructors and for seeded builds alike.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from torch import nn

from .._errors import positive_int, require
from .arguments import make_spec, sample_shape
from .init import SCHEMES, initialize


class Architecture(nn.Module):
    """A built-in architecture: checked ``input_shape`` and ``num_classes``, a ``spec``, a scheme.

    Subclasses pass ``arch`` (the name :func:`lossatlas.models.build` knows them by), ``ranks``
    (the accepted ranks of ``input_shape``) and ``init_scheme`` (see
    :func:`lossatlas.models.init.initialize`) as keywords of their class statement.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample without the batch dimension, of a rank in the class's ``ranks``.
    num_classes : int
        Number of output logits.

    Attributes
    ----------
    input_shape : tuple of int
        The checked shape of one sample.
    num_classes : int
    spec : dict
        Plain-typed description from which ``build(**spec)`` rebuilds the architecture (set by
        :meth:`finish`).

    Examples
    --------
    >>> import torch
    >>> class Linear(Architecture, arch="linear", ranks=(1,)):
    ...     def __init__(self, input_shape, num_classes):
    ...         super().__init__(input_shape, num_classes)
    ...         self.fc = nn.Linear(self.input_shape[0], self.num_classes)
    ...         self.finish()
    >>> Linear((3,), 2).spec
    {'name': 'linear', 'input_shape': [3], 'num_classes': 2}
    """

    #: Name of the architecture in :func:`lossatlas.models.build` and in its ``spec``.
    arch: ClassVar[str]
    #: Ranks of ``input_shape`` the architecture takes (1: flat, 2: ``(C, L)``, 3: ``(C, H, W)``).
    ranks: ClassVar[tuple[int, ...]]
    #: Initialization scheme of :func:`lossatlas.models.init.initialize` (also for seeded builds).
    init_scheme: ClassVar[str]

    def __init_subclass__(
        cls, *, arch: str, ranks: Sequence[int], init_scheme: str = "torch", **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        require(init_scheme in SCHEMES, f"init_scheme must be one of {SCHEMES}; got {init_scheme!r}")
        cls.arch = arch
        cls.ranks = tuple(ranks)
        cls.init_scheme = init_scheme

    def __init__(self, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.input_shape = sample_shape(input_shape, self.arch, self.ranks)
        self.num_classes = positive_int("num_classes", num_classes)

    def finish(self, **settings: Any) -> None:
        """Record ``spec`` (with the architecture's own ``settings``) and initialize the weights.

        Called once, at the end of the subclass's constructor, when every layer exists.
        """
        self.spec = make_spec(self.arch, self.input_shape, self.num_classes, **settings)
        initialize(self, None, self.init_scheme)
