"""What a layer of a model is: one test of a leaf and one list of layer kinds, shared by every look inside (the
tracer's feature maps, saliency's choice of a Grad-CAM layer, the deconvnet's chain, the explorer's rows and
formulas, the experiments) and by the complexity count.

Layers defined outside torch.nn count too, recognised by their class names: LeNet-5's PartialConv2d,
Subsampling and ScaledTanh, the experiments' SumPool2d.
"""

from __future__ import annotations

from torch import nn

ACTIVATION_WORDS = ("ReLU", "Tanh", "Sigmoid")  # in the class name of a home-made activation (ScaledTanh)


def is_leaf(module: nn.Module) -> bool:
    """A module that holds no other: one layer, not a block of them."""
    return next(module.children(), None) is None


def leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if is_leaf(m)]


def layer_kind(module: nn.Module) -> str | None:
    """conv, deconv, pool, activation, batchnorm, lrn, flatten or linear: what a leaf layer is. None for a block
    (a block named "...Conv..." is not itself one layer) and for a layer that changes nothing a picture would show
    (dropout, identity)."""
    if not is_leaf(module) or isinstance(module, (nn.Identity, nn.Dropout, nn.Dropout2d)):
        return None
    for types, kind in ((nn.ConvTranspose2d, "deconv"), (nn.Linear, "linear"), (nn.Flatten, "flatten"),
                        (nn.modules.batchnorm._BatchNorm, "batchnorm"), (nn.LocalResponseNorm, "lrn")):
        if isinstance(module, types):
            return kind
    name = type(module).__name__
    if isinstance(module, nn.Conv2d) or "Conv" in name:
        return "conv"
    if "Pool" in name or name == "Subsampling":
        return "pool"
    if type(module).__module__ == "torch.nn.modules.activation" or any(w in name for w in ACTIVATION_WORDS):
        return "activation"
    return None


def is_feature_layer(module: nn.Module) -> bool:
    """A layer whose output is feature maps worth drawing: a convolution, transposed or not, or a pooling."""
    return layer_kind(module) in ("conv", "deconv", "pool")
