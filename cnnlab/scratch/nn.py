"""Layers with parameters, named and initialized as in `torch.nn`, so that a scratch model and its PyTorch twin
exchange `state_dict()`s: same keys, same shapes, same layout (weights are (out, in, kh, kw); Linear is (out, in)).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from cnnlab.errors import CheckpointError
from cnnlab.scratch import functional as F
from cnnlab.scratch.rng import generator
from cnnlab.scratch.tensor import Tensor
from cnnlab.scratch.windows import pair


class Parameter(Tensor):
    """A Tensor a Module trains: it requires a gradient and shows up in `parameters()`."""

    def __init__(self, data):
        super().__init__(np.asarray(data, dtype=np.float32), requires_grad=True)


def _uniform(shape, bound: float) -> Parameter:
    return Parameter(generator().uniform(-bound, bound, size=shape))


class Module:
    """Holds parameters, buffers (running statistics) and sub-modules, found by attribute assignment."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        for registry in (self._parameters, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, dtype) -> Module:
        """Cast parameters and floating-point buffers: float64 for gradient checks, float32 to train."""
        for _, module in self.named_modules():
            for p in module._parameters.values():
                p.data = p.data.astype(dtype)
            for name, value in module._buffers.items():
                if np.issubdtype(value.dtype, np.floating):
                    module.register_buffer(name, value.astype(dtype))
        return self

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Name -> array copy, parameters then buffers of each module, in PyTorch's naming."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            for name, value in [*((n, p.data) for n, p in module._parameters.items()), *module._buffers.items()]:
                state[f"{prefix}.{name}" if prefix else name] = np.array(value)
        return state

    def load_state_dict(self, state) -> None:
        """Copy values in from any mapping of name -> array-like (NumPy arrays, or PyTorch tensors via
        `np.asarray`); names and shapes must match exactly."""
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise CheckpointError(f"state_dict does not fit the model: missing {missing or 'none'}, "
                                  f"unexpected {unexpected or 'none'}")
        for prefix, module in self.named_modules():
            for name in [*module._parameters, *module._buffers]:
                key = f"{prefix}.{name}" if prefix else name
                value = np.asarray(state[key])
                if value.shape != own[key].shape:
                    raise CheckpointError(f"state_dict: {key} has shape {value.shape}, the model expects "
                                          f"{own[key].shape}")
                if name in module._parameters:
                    module._parameters[name].data = value.astype(own[key].dtype)
                else:
                    module.register_buffer(name, value.astype(own[key].dtype))

    def __repr__(self) -> str:
        children = "".join(f"\n  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"

    def extra_repr(self) -> str:
        return ""


class Sequential(Module):
    """Layers applied in order; built from modules (named "0", "1", ...) or from an OrderedDict of named ones."""

    def __init__(self, *layers):
        super().__init__()
        named = layers[0].items() if len(layers) == 1 and isinstance(layers[0], OrderedDict) else \
            ((str(i), layer) for i, layer in enumerate(layers))
        for name, layer in named:
            setattr(self, name, layer)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self._modules.values():
            x = layer(x)
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1 / math.sqrt(in_features)  # PyTorch's default: kaiming_uniform(a=sqrt(5)) reduces to this
        self.weight = _uniform((out_features, in_features), bound)
        self.bias = _uniform((out_features,), bound) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = pair(kernel_size, "kernel_size"), pair(stride, "stride")
        self.padding, self.dilation = pair(padding, "padding"), pair(dilation, "dilation")
        bound = 1 / math.sqrt(in_channels // groups * self.kernel_size[0] * self.kernel_size[1])
        self.weight = _uniform((out_channels, in_channels // groups, *self.kernel_size), bound)
        self.bias = _uniform((out_channels,), bound) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class ConvTranspose2d(Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = pair(kernel_size, "kernel_size"), pair(stride, "stride")
        self.padding, self.dilation = pair(padding, "padding"), pair(dilation, "dilation")
        self.output_padding = pair(output_padding, "output_padding")
        # PyTorch computes the fan-in from weight.shape[1]: (out/groups) * kh * kw
        bound = 1 / math.sqrt(out_channels // groups * self.kernel_size[0] * self.kernel_size[1])
        self.weight = _uniform((in_channels, out_channels // groups, *self.kernel_size), bound)
        self.bias = _uniform((out_channels,), bound) if bias else None

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                                  self.groups, self.dilation)

    def extra_repr(self):
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


class _Pool2d(Module):
    function = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride if stride is not None else kernel_size, padding

    def forward(self, x):
        return type(self).function(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    function = staticmethod(F.max_pool2d)


class AvgPool2d(_Pool2d):
    function = staticmethod(F.avg_pool2d)


class SumPool2d(_Pool2d):
    function = staticmethod(F.sum_pool2d)


class ReLU(Module):
    def __init__(self, inplace: bool = False):  # `inplace` is accepted for PyTorch compatibility; NumPy copies
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)


class PReLU(Module):
    def __init__(self, num_parameters: int = 1, init: float = 0.25):
        super().__init__()
        self.weight = Parameter(np.full(num_parameters, init))

    def forward(self, x):
        return F.prelu(x, self.weight)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Dropout(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


class BatchNorm2d(Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = Parameter(np.ones(num_features)) if affine else None
        self.bias = Parameter(np.zeros(num_features)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=np.float32))
            self.register_buffer("running_var", np.ones(num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        if self.training and self.running_mean is not None:
            self.register_buffer("num_batches_tracked", self.num_batches_tracked + 1)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                            self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LocalResponseNorm(Module):
    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
