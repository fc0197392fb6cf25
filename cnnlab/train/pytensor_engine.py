"""The PyTensor engine (`cnnlab train --engine pytensor`): training the way Theano taught it, in Theano's maintained
successor. The model is a symbolic graph; PyTensor differentiates it (`pytensor.grad`) and compiles one function that
does a whole training step (forward, loss, gradients and the optimizer's `updates`) to C, once per run.

The graph is translated layer by layer from the engines' common torch model: its parameters and buffers become shared
variables holding the torch tensors under their torch names and in their torch layout, so checkpoints load into the
torch model as they are. Optimizers are PyTorch's update rules (SGD with momentum and Nesterov, Adam, AdamW) written
as PyTensor expressions, picked by the same `make_optimizer` as the other engines.

PyTensor 3 has no convolution or pooling op for CNNs (Theano's `nnet.conv2d` and `pool_2d` are gone), so both are
written here from slicing and one matrix product. Inside the graph images are NHWC: a convolution's shifted windows
then concatenate along the channels into the rows of one matrix (im2col), which multiplies the kernel matrix with no
transposes of the large tensors.
"""

from __future__ import annotations

import functools
import time
import types
import warnings

import numpy as np
import torch

with warnings.catch_warnings():
    # Without a BLAS library to link (pip's PyTensor), PyTensor calls NumPy's BLAS instead: fine here (README.md
    # has the cost). It says so in a five-line warning the first time anything reads the setting: read here.
    warnings.simplefilter("ignore")
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    pytensor.config.blas__ldflags  # noqa: B018

from cnnlab.errors import ConfigError
from cnnlab.train.config import TrainConfig
from cnnlab.scratch.windows import pair
from cnnlab.train.engine import make_optimizer, schedule_fn, sequential_layers

# Python numbers in expressions become float32 constants, as in the torch model (float64 would upcast the graph).
pytensor.config.floatX = "float32"
# The C linker: PyTensor 3's default, Numba, took minutes to compile this graph's first call and ran it 5x slower.
MODE = Mode(linker="cvm", optimizer="fast_run")


# -- layers: each maps (layer, input, graph) to its output; 4-D tensors are NHWC ---------------------------------
def _output_size(length, kernel: int, stride: int, dilation: int = 1):
    """How many positions a kernel of `kernel` taps takes along an axis of `length` (symbolic or not)."""
    return (length - dilation * (kernel - 1) - 1) // stride + 1


def _shifted(h, axis: int, taps: int, stride: int, dilation: int, size):
    """The `taps` views of NHWC `h` along `axis` (1: rows, 2: columns) that a kernel's taps see, each `size` long:
    tap t starts at t * dilation and steps by `stride`.

    A kernel's windows are cut one axis at a time: PyTensor compiles a C module for each pattern of slice (a
    first, inner or last offset, and its gradient), and kh*kw cuts of both axes at once made 30 of them for
    simple-cnn's first training, the rows then the columns 12 (80 -> 63 modules in all, 35 -> 30 s; a Trainer from
    the warm cache 4.1 -> 2.5 s, and its steps run faster)."""
    views = []
    for tap in range(taps):
        index = [slice(None)] * 4
        index[axis] = slice(tap * dilation, tap * dilation + stride * (size - 1) + 1, stride)
        views.append(h[tuple(index)])
    return views


def conv2d(h, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Convolution of NHWC `h` with a torch-layout kernel (O, C, kh, kw): the windows side by side along the channels
    (im2col: the kh row offsets, then the kw column offsets of those), times the kernel as a (kw*kh*C, O) matrix."""
    out_channels, in_channels, kh, kw = weight.type.shape
    if any(padding):
        h = pt.pad(h, ((0, 0), (padding[0],) * 2, (padding[1],) * 2, (0, 0)))
    (sh, sw), (dh, dw) = stride, dilation
    height, width = _output_size(h.shape[1], kh, sh, dh), _output_size(h.shape[2], kw, sw, dw)
    rows = pt.concatenate(_shifted(h, 1, kh, sh, dh, height), axis=3)  # [N, height, W, kh*C]
    columns = pt.concatenate(_shifted(rows, 2, kw, sw, dw, width), axis=3)  # [N, height, width, kw*kh*C]
    kernel = weight.dimshuffle(3, 2, 1, 0).reshape((kw * kh * in_channels, out_channels))
    out = pt.dot(columns.reshape((-1, kw * kh * in_channels)), kernel)
    if bias is not None:
        out = out + bias
    return out.reshape((h.shape[0], height, width, out_channels))


def pool2d(h, kernel, stride, mode):
    """Max, average or sum of each window (no padding)."""
    (kh, kw), (sh, sw) = kernel, stride
    _, height, width, channels = h.type.shape
    if (kh, kw) == (sh, sw) and height and width and height % kh == 0 and width % kw == 0:
        # Windows that tile the map: a reshape puts each window on two axes of its own, and one reduction pools
        # them. Its gradient is one element-wise op, where the shifted views' is a scatter per window position
        # (the views below): the first max-pool's backward went from the step's costliest op to a small one.
        blocks = h.reshape((h.shape[0], height // kh, kh, width // kw, kw, channels))
        if mode == "max":
            return blocks.max(axis=(2, 4))
        total = blocks.sum(axis=(2, 4))
        return total / (kh * kw) if mode == "average" else total
    # Otherwise the maximum (or sum) of the kh row offsets, then of the kw column offsets of that: both separate
    # into the two axes.
    combine = pt.maximum if mode == "max" else pt.add
    rows = functools.reduce(combine, _shifted(h, 1, kh, sh, 1, _output_size(h.shape[1], kh, sh)))
    total = functools.reduce(combine, _shifted(rows, 2, kw, sw, 1, _output_size(h.shape[2], kw, sw)))
    return total / (kh * kw) if mode == "average" else total


def _pooling(kind):
    def build(m, h, g):
        if m.padding not in (0, (0, 0)) or m.ceil_mode or getattr(m, "dilation", 1) not in (1, (1, 1)):
            raise ConfigError(f"the pytensor engine pools without padding, ceil_mode or dilation; {m} has them")
        return pool2d(h, pair(m.kernel_size, "kernel_size"), pair(m.stride or m.kernel_size, "stride"), kind)
    return build


def _conv(m, h, g):
    if m.groups != 1 or isinstance(m.padding, str):
        raise ConfigError(f"the pytensor engine convolves with groups=1 and numeric padding; {m} has other")
    return conv2d(h, g.param("weight"), g.param("bias") if m.bias is not None else None, m.stride, m.padding,
                  m.dilation)


def _partial_conv(m, h, g):
    """LeNet-5's C3: the dense kernel gathered from the connected kernels (zeros elsewhere), then a convolution."""
    kernel = pt.concatenate([g.param("weight"), pt.zeros((1,))])[pt.constant(m.index.numpy())]
    return conv2d(h, pt.specify_shape(kernel, tuple(m.index.shape)), g.param("bias"))


def _linear(m, h, g):
    out = pt.dot(h, g.param("weight").T)
    return out + g.param("bias") if m.bias is not None else out


def _flatten(m, h, g):
    # torch flattens NCHW: back to that order first, so that the next layer's weights read the same features.
    return (h.dimshuffle(0, 3, 1, 2) if h.ndim == 4 else h).flatten(2)


def _batch_norm(m, h, g):
    axes = (0, 1, 2) if h.ndim == 4 else (0,)
    if g.training and m.training:
        mean, var = h.mean(axis=axes), h.var(axis=axes)
        count = pt.cast(h.size // h.shape[-1], "float32")
        momentum = m.momentum
        g.updates += [(g.param("running_mean"), (1 - momentum) * g.param("running_mean") + momentum * mean),
                      # torch keeps the unbiased variance
                      (g.param("running_var"),
                       (1 - momentum) * g.param("running_var") + momentum * var * count / (count - 1)),
                      (g.param("num_batches_tracked"), g.param("num_batches_tracked") + 1)]
    else:
        mean, var = g.param("running_mean"), g.param("running_var")
    out = (h - mean) / pt.sqrt(var + m.eps)
    return out * g.param("weight") + g.param("bias") if m.affine else out


def _dropout(m, h, g):
    if not (g.training and m.p):
        return h
    g.rng, draw = g.rng.uniform(size=h.shape)
    return h * pt.cast(draw >= m.p, "float32") / (1 - m.p)


def _subsampling(m, h, g):
    """LeNet-5's S2/S4: the sum of each 2x2 block, times a trained coefficient, plus a trained bias, per map."""
    return pool2d(h, (2, 2), (2, 2), "sum") * g.param("weight") + g.param("bias")


def _prelu(m, h, g):
    return pt.switch(h > 0, h, g.param("weight") * h)


LAYERS = {
    "Conv2d": _conv,
    "PartialConv2d": _partial_conv,
    "Linear": _linear,
    "MaxPool2d": _pooling("max"),
    "AvgPool2d": _pooling("average"),
    "Subsampling": _subsampling,
    "BatchNorm2d": _batch_norm,
    "ReLU": lambda m, h, g: pt.maximum(h, 0),
    "LeakyReLU": lambda m, h, g: pt.switch(h > 0, h, m.negative_slope * h),
    "PReLU": _prelu,
    "Tanh": lambda m, h, g: pt.tanh(h),
    "ScaledTanh": lambda m, h, g: 1.7159 * pt.tanh(2 / 3 * h),
    "Sigmoid": lambda m, h, g: pt.sigmoid(h),
    "Dropout": _dropout,
    "Flatten": _flatten,
}


class Graph:
    """The torch model's forward pass as a PyTensor expression; `shared` holds its state_dict as shared variables."""

    def __init__(self, model: torch.nn.Module, model_name: str, seed: int):
        self.layers = sequential_layers(model, "pytensor", LAYERS, model_name)
        self.shared = {name: pytensor.shared(value.detach().cpu().numpy().copy(), name=name, shape=tuple(value.shape))
                       for name, value in model.state_dict().items()}
        self.trainable = [self.shared[name] for name, p in model.named_parameters() if p.requires_grad]
        self.random = pt.random.shared_rng(seed=seed, name="dropout")  # dropout masks
        self.training, self.updates, self._prefix, self.rng = False, [], "", self.random

    def param(self, name: str):
        return self.shared[self._prefix + name]

    def __call__(self, x, training: bool):
        """Logits of NCHW `x`; with `training`, batch statistics and dropout, and the buffers' `updates`."""
        self.training, self.updates, self.rng = training, [], self.random
        h = x.dimshuffle(0, 2, 3, 1) if x.ndim == 4 else x
        for prefix, module, kind in self.layers:
            self._prefix = prefix
            h = LAYERS[kind](module, h, self)
        if self.rng is not self.random:  # the generator's state after this step's draws
            self.updates.append((self.random, self.rng))
        return h


# -- PyTorch's update rules as expressions (torch.optim.SGD, Adam, AdamW, their defaults) -------------------------
def _zeros_like(p):
    return pytensor.shared(np.zeros_like(p.get_value()), name=f"{p.name}.state")


class SGD:
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.params, self.lr = params, pytensor.shared(np.float32(lr), name="lr")
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        # a zero buffer makes torch's first step (buffer = gradient) the general rule
        self.state = [_zeros_like(p) for p in params] if momentum else []

    def updates(self, grads):
        updates = []
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                buffer = self.momentum * self.state[i] + g
                updates.append((self.state[i], buffer))
                g = g + self.momentum * buffer if self.nesterov else buffer
            updates.append((p, p - self.lr * g))
        return updates


class Adam:
    decoupled = False  # AdamW: weight decay shrinks the weights rather than adding to the gradient

    def __init__(self, params, lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr = params, pytensor.shared(np.float32(lr), name="lr")
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.step = pytensor.shared(np.float64(0), name="step")  # bias corrections in double, as torch's
        self.state = [_zeros_like(p) for p in params] + [_zeros_like(p) for p in params]

    def updates(self, grads):
        (beta1, beta2), n, step = self.betas, len(self.params), self.step + 1
        step_size = pt.cast(self.lr / (1 - beta1 ** step), "float32")
        correction2 = pt.cast(pt.sqrt(1 - beta2 ** step), "float32")
        updates = [(self.step, step)]
        for p, g, m, v in zip(self.params, grads, self.state[:n], self.state[n:]):
            if self.weight_decay and not self.decoupled:
                g = g + self.weight_decay * p
            m_new, v_new = m + (1 - beta1) * (g - m), beta2 * v + (1 - beta2) * g * g
            shrunk = p * (1 - self.lr * self.weight_decay) if self.decoupled and self.weight_decay else p
            change = step_size * m_new / (pt.sqrt(v_new) / correction2 + self.eps)
            updates += [(m, m_new), (v, v_new), (p, shrunk - change)]
        return updates


class AdamW(Adam):
    decoupled = True

    def __init__(self, params, lr, weight_decay=1e-2, **kwargs):
        super().__init__(params, lr, weight_decay, **kwargs)


OPTIMIZERS = types.SimpleNamespace(SGD=SGD, Adam=Adam, AdamW=AdamW)


def cross_entropy_sum(logits, y, label_smoothing: float = 0.0):
    """Summed softmax cross-entropy, with torch's label smoothing (that share of each target spread over the classes)."""
    log_p = logits - pt.logsumexp(logits, axis=1, keepdims=True)
    loss = -log_p[pt.arange(y.shape[0]), y]
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * log_p.mean(axis=1)
    return loss.sum()


def compile_function(inputs, outputs, updates=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the BLAS notice again, on the first compilation
        return pytensor.function(inputs, outputs, updates=list(updates), mode=MODE)


class PyTensorEngine:
    name = "pytensor"

    def __init__(self, config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int,
                 input_shape: tuple[int, int, int]):
        self.graph = graph = Graph(model, config.model, config.seed)
        self.optimizer = make_optimizer(config, graph.trainable, OPTIMIZERS)
        self.schedule = schedule_fn(config, steps_per_epoch)
        self.base_lr, self.step = config.lr, 0
        self.lr = config.lr * self.schedule(0)
        x, y = pt.tensor4("x", dtype="float32", shape=(None, *input_shape)), pt.lvector("y")
        scale = pt.scalar("scale", dtype="float32")
        logits = graph(x, training=model.training)
        loss_sum = cross_entropy_sum(logits, y, config.label_smoothing)
        grads = pytensor.grad(loss_sum * scale, graph.trainable)
        correct = pt.eq(logits.argmax(axis=1), y).sum()
        start = time.perf_counter()
        self.train_step = compile_function([x, y, scale], [loss_sum, correct],
                                           updates=graph.updates + self.optimizer.updates(grads))
        self.compile_seconds = time.perf_counter() - start
        self.precision = f"fp32, PyTensor C (train step compiled in {self.compile_seconds:.0f} s)"
        self.eval_inputs = x
        self.eval_logits = None  # compiled when first asked for: a step-by-step comparison never evaluates

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, loss_scale: float | None = None) -> tuple[float, int]:
        # as torch's LambdaLR: step i uses base_lr * factor(i)
        self.lr = self.base_lr * self.schedule(self.step)
        self.optimizer.lr.set_value(np.float32(self.lr))
        scale = loss_scale if loss_scale is not None else 1 / len(y)
        loss_sum, correct = self.train_step(x.numpy(), y.numpy(), np.float32(scale))
        self.step += 1
        return float(loss_sum), int(correct)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.eval_logits is None:
            self.eval_logits = compile_function([self.eval_inputs], self.graph(self.eval_inputs, training=False))
        return torch.from_numpy(self.eval_logits(x.numpy()))

    def weights(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(np.array(v.get_value())) for name, v in self.graph.shared.items()}

    def state_dict(self) -> dict:
        optimizer = [torch.from_numpy(np.array(v.get_value())) for v in self.optimizer.state]
        if hasattr(self.optimizer, "step"):
            optimizer.append(torch.tensor(float(self.optimizer.step.get_value()), dtype=torch.float64))
        return {"model": self.weights(), "optimizer": optimizer, "step": self.step,
                "rng": self.graph.random.get_value().bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["model"].items():
            self.graph.shared[name].set_value(value.numpy().copy())
        saved = list(state["optimizer"])
        if hasattr(self.optimizer, "step"):
            self.optimizer.step.set_value(np.float64(saved.pop().item()))
        for shared, value in zip(self.optimizer.state, saved, strict=True):
            shared.set_value(value.numpy().copy())
        self.step = state["step"]
        self.lr = self.base_lr * self.schedule(max(0, self.step - 1))
        generator = self.graph.random.get_value()
        generator.bit_generator.state = state["rng"]
        self.graph.random.set_value(generator)


ENGINE = PyTensorEngine
