"""Counting a model: parameters, multiply-accumulates (MACs) per layer, and depth in weight layers.

The counter is our own, built on forward hooks, rather than fvcore, thop or ptflops: the whole convention is
the two rules in `layer_macs` (a reader can check them against the papers), it follows the papers' and
torchvision's convention exactly (multiply-adds of convolutions, transposed convolutions and fully connected
layers; normalisation, activations, pooling, up-sampling by interpolation and shortcut additions cost nothing;
`torch.utils.flop_counter.FlopCounterMode` counts the same, twice over, as tests/test_models_complexity.py checks
for every registered model), it runs on the meta device so an ImageNet-size
count computes nothing, and it adds no dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.models.layer_kinds import is_leaf


@dataclass(frozen=True)
class LayerRow:
    name: str  # qualified module name, as in state_dict() keys
    kind: str  # the module's class name
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # parameters the module itself owns (counted at its first call only)
    macs: int  # multiply-accumulates for one input


@dataclass(frozen=True)
class Profile:
    rows: list[LayerRow]
    params: int
    trainable: int
    macs: int
    weight_layers: int | None = None  # depth as the papers count it (`weight_layers`); None: not a tensor output


def layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """MACs of one call for a batch of one: every output value of a convolution costs one multiply-add per
    weight it sees (kernel area x input channels per group); every input value of a transposed convolution one
    per weight it spreads over the output (kernel area x output channels per group); of a fully connected layer,
    one per input."""
    if hasattr(module, "macs"):  # a layer with its own rule, e.g. LeNet's partially connected C3
        return module.macs(output)
    if isinstance(module, nn.ConvTranspose2d):
        kh, kw = module.kernel_size
        return inputs[0][0].numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return 0


def _counted_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaves, plus containers that own parameters directly (so every parameter lands in exactly one row)."""
    return [(name, m) for name, m in model.named_modules()
            if is_leaf(m) or any(True for _ in m.parameters(recurse=False))]


def _example_input(model: nn.Module, input_shape: tuple[int, int, int], requires_grad: bool = False) -> torch.Tensor:
    device = next(model.parameters()).device
    return torch.zeros((1, *input_shape), device=device, requires_grad=requires_grad)


def profile(model: nn.Module, input_shape: tuple[int, int, int]) -> Profile:
    """One row per layer call, in execution order, for a single (C, H, W) input, and the depth in weight layers,
    from one eval-mode forward (its autograd graph gives the depth). Build the model under `torch.device("meta")`
    to count an ImageNet net without computing anything (a forward there is mostly Python: `cnnlab zoo` made two
    of each model, 10.7 s)."""
    rows: list[LayerRow] = []
    seen: set[int] = set()

    def hook(name):
        def record(module, inputs, output):
            first = id(module) not in seen
            seen.add(id(module))
            params = sum(p.numel() for p in module.parameters(recurse=False)) if first else 0
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            macs = layer_macs(module, inputs, output) if isinstance(output, torch.Tensor) else 0
            rows.append(LayerRow(name, type(module).__name__, shape, params, macs))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in _counted_modules(model)]
    was_training = model.training
    try:
        model.eval()  # auxiliary heads and dropout are training-only: count the network that predicts
        with torch.enable_grad():
            output = model(_example_input(model, input_shape, requires_grad=True))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    depth = _longest_weight_path(output.grad_fn) if isinstance(output, torch.Tensor) else None
    return Profile(rows, params, trainable, sum(r.macs for r in rows), depth)


_WEIGHT_OPS = {"ConvolutionBackward0", "AddmmBackward0", "MmBackward0"}


def weight_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Depth as the papers count it: the most convolution / fully connected layers on any path from input to
    output (ResNet-34: 33 convolutions + 1 fc; projection shortcuts lie on shorter paths; GoogLeNet: 22).
    Read from the autograd graph of one eval-mode forward (`profile` counts it with the rest)."""
    return profile(model, input_shape).weight_layers


def _longest_weight_path(root) -> int:
    """Longest path by dynamic programming, each node after the nodes it depends on."""
    depth: dict = {}
    for node in post_order(root):
        own = 1 if type(node).__name__ in _WEIGHT_OPS else 0
        depth[node] = own + max((depth[p] for p, _ in node.next_functions if p is not None), default=0)
    return depth[root] if root is not None else 0


def post_order(root) -> list:
    """The autograd graph's nodes that `root` depends on, each after every node it depends on. Iterative:
    ResNet-152's graph is too deep for recursion."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif node is not None and node not in seen:
            seen.add(node)
            stack.append((node, True))
            stack.extend((parent, False) for parent, _ in node.next_functions if parent is not None)
    return order
