"""Built-in architectures for the papers' experiments, buildable by name from a config, and
checkpoint loading into any model.

Every model takes ``input_shape`` (without the batch dimension: ``(C, H, W)`` for images,
``(C, L)`` for 1-D signals, ``(D,)`` for flat vectors) and ``num_classes``, and maps a batch to
logits ``[N, num_classes]``. Each carries a ``spec`` dict (plain lists, ints, strings) so that
``build(**model.spec)`` rebuilds the same architecture, which is what configs and checkpoints
store. Forward passes avoid in-place operations so that landscapes can be evaluated with
``torch.func.functional_call`` under ``torch.vmap`` over stacks of parameter sets.

Modules: ``mlp``, ``cnn`` (SmallCNN, SmallVGG, VGG-9), ``resnet``, ``wide_resnet`` (one per
family, each citing its source); ``init`` (seeded initialization); ``registry`` (names and
:func:`build`); ``checkpoint`` (:func:`load_checkpoint`); ``architecture`` (the base class
:class:`Architecture`: argument checks, ``spec`` and initialization), ``arguments`` and ``layers``
(what the families share).
"""

from .architecture import Architecture
from .checkpoint import WRAPPERS, key_readings, load_checkpoint
from .cnn import VGG9, SmallCNN, SmallVGG
from .init import SCHEMES, initialize
from .layers import ACTIVATIONS, GlobalAvgPool
from .mlp import MLP
from .registry import ALIASES, MODELS, build, count_parameters, model_names
from .resnet import ResNet, resnet
from .wide_resnet import WideResNet, wide_resnet

__all__ = [
    "ACTIVATIONS", "ALIASES", "Architecture", "MLP", "MODELS", "SCHEMES", "VGG9", "WRAPPERS",
    "GlobalAvgPool", "ResNet", "SmallCNN", "SmallVGG", "WideResNet", "build", "count_parameters", "initialize",
    "key_readings", "load_checkpoint", "model_names", "resnet", "wide_resnet",
]
