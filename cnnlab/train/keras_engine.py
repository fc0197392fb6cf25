"""The Keras engine (`cnnlab train --engine keras`): the model as a `keras.Sequential` of Keras layers, on Keras 3's
torch backend (never TensorFlow).

The Sequential is translated layer by layer from the engines' common torch model, with its initial weights (Keras
keeps kernels as (kh, kw, in, out) and dense weights as (in, out): they are transposed on the way in and out, so
checkpoints keep torch's names and layout). A step is what Keras's own torch trainer does: the model called in
training mode, the loss, `backward()`, an optimizer step. The optimizer is torch.optim's, from the same
`make_optimizer` as every engine, on the Keras variables (torch Parameters under this backend): Keras's own SGD and
Adam differ from PyTorch's in small ways (where Adam's epsilon sits, decoupled weight decay everywhere), and the
engines are meant to train alike step for step.

Two Keras differences remain: dropout masks come from Keras's random generator, and batch norm's moving variance
uses the batch's biased variance where torch's running_var uses the unbiased one (a factor n/(n-1); evaluation only).
"""

from __future__ import annotations

import os

import torch

if os.environ.setdefault("KERAS_BACKEND", "torch") != "torch":
    os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported: it reads the backend once

import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from cnnlab.errors import ConfigError  # noqa: E402
from cnnlab.train.config import TrainConfig  # noqa: E402
from cnnlab.train.engine import make_optimizer, schedule_fn, sequential_layers  # noqa: E402

if keras.backend.backend() != "torch":
    raise ConfigError(f"--engine keras needs Keras's torch backend; Keras was already imported with "
                      f"{keras.backend.backend()!r} (unset KERAS_BACKEND)")

# torch's NCHW shapes: images cross between the engines as they are. Keras's own NHWC (data_format="channels_last")
# was no faster on the torch backend: its pooling makes each input a contiguous NCHW copy. Instead the kernels are
# stored so that torch computes in NHWC memory under the NCHW shapes, as the torch engine does (`_kernels_out_major`).
CHANNELS_FIRST = dict(data_format="channels_first")


def _kernels_out_major(model: keras.Sequential) -> None:
    """Store each Conv2D kernel, (kh, kw, in, out) to Keras, in (out, kh, kw, in) memory order. Keras's torch
    backend hands the convolution the kernel permuted to torch's (out, in, kh, kw), and with this storage that view
    is channels-last: torch then convolves in NHWC memory and returns NHWC maps, which ReLU and max-pooling keep
    (the logical shape stays NCHW). NHWC max-pooling is vectorized across channels where NCHW's is not: 8x
    faster for simple-cnn's pools on one core."""
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kernel = layer.kernel.value
            kernel.data = kernel.data.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)


class ScaledTanh(layers.Layer):
    """LeNet-5's squashing function, 1.7159 tanh(2a/3)."""

    def call(self, x):
        return 1.7159 * ops.tanh(x * (2 / 3))


class Subsampling(layers.Layer):
    """LeNet-5's S2/S4: the sum of each 2x2 block, times a trained coefficient, plus a trained bias, per map."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.weight = self.add_weight(shape=(channels,), initializer="ones", name="weight")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def call(self, x):
        pooled = ops.average_pool(x, 2, 2, **CHANNELS_FIRST) * 4
        return pooled * self.weight[:, None, None] + self.bias[:, None, None]


class PartialConv2D(layers.Layer):
    """LeNet-5's C3: a convolution whose kernel is gathered from the connected kernels (zeros elsewhere)."""

    def __init__(self, index, **kwargs):
        super().__init__(**kwargs)
        self.index = index.numpy()  # (out, in, kh, kw) positions in [connected weights..., 0]
        self.weight = self.add_weight(shape=(int(self.index.max()),), initializer="zeros", name="weight")
        self.bias = self.add_weight(shape=(self.index.shape[0],), initializer="zeros", name="bias")

    def call(self, x):
        kernel = ops.take(ops.concatenate([self.weight, ops.zeros((1,))]), self.index)
        return ops.conv(x, ops.transpose(kernel, (2, 3, 1, 0)), **CHANNELS_FIRST) + self.bias[:, None, None]


def _no_padding(m):
    if m.padding not in (0, (0, 0)) or m.ceil_mode:
        raise ConfigError(f"the keras engine pools without padding or ceil_mode; {m} has them")
    return dict(pool_size=m.kernel_size, strides=m.stride or m.kernel_size, **CHANNELS_FIRST)


def _conv(m):
    if m.groups != 1 or isinstance(m.padding, str):
        raise ConfigError(f"the keras engine convolves with groups=1 and numeric padding; {m} has other")
    conv = layers.Conv2D(m.out_channels, m.kernel_size, m.stride, dilation_rate=m.dilation,
                         use_bias=m.bias is not None, **CHANNELS_FIRST)
    return [layers.ZeroPadding2D(m.padding, **CHANNELS_FIRST), conv] if any(m.padding) else [conv]


def _torch_conv(kernel):  # Keras (kh, kw, in, out) <-> torch (out, in, kh, kw)
    return kernel.permute(3, 2, 0, 1)


def _keras_conv(weight):
    return weight.permute(2, 3, 1, 0)


def _transposed(weight):
    return weight.T


# Each torch layer: the Keras layers that compute it, and its variables as (torch name, Keras variable name,
# torch -> Keras layout, Keras -> torch layout); None keeps the layout.
LAYERS = {
    "Conv2d": (_conv, [("weight", "kernel", _keras_conv, _torch_conv), ("bias", "bias", None, None)]),
    "PartialConv2d": (lambda m: [PartialConv2D(m.index)],
                      [("weight", "weight", None, None), ("bias", "bias", None, None)]),
    "Linear": (lambda m: [layers.Dense(m.out_features, use_bias=m.bias is not None)],
               [("weight", "kernel", _transposed, _transposed), ("bias", "bias", None, None)]),
    "MaxPool2d": (lambda m: [layers.MaxPooling2D(**_no_padding(m))], []),
    "AvgPool2d": (lambda m: [layers.AveragePooling2D(**_no_padding(m))], []),
    "Subsampling": (lambda m: [Subsampling(m.weight.numel())], [("weight", "weight", None, None),
                                                                ("bias", "bias", None, None)]),
    "BatchNorm2d": (lambda m: [layers.BatchNormalization(axis=1, momentum=1 - m.momentum, epsilon=m.eps,
                                                         center=m.affine, scale=m.affine)],
                    [("weight", "gamma", None, None), ("bias", "beta", None, None),
                     ("running_mean", "moving_mean", None, None), ("running_var", "moving_variance", None, None)]),
    "ReLU": (lambda m: [layers.ReLU()], []),
    "LeakyReLU": (lambda m: [layers.LeakyReLU(m.negative_slope)], []),
    "Tanh": (lambda m: [layers.Activation("tanh")], []),
    "ScaledTanh": (lambda m: [ScaledTanh()], []),
    "Sigmoid": (lambda m: [layers.Activation("sigmoid")], []),
    "Dropout": (lambda m: [layers.Dropout(m.p)], []),
    # Flatten's data_format="channels_first" would reorder to channels-last first: the default keeps torch's order
    "Flatten": (lambda m: [layers.Flatten(data_format="channels_last")], []),
}


def keras_model(model: torch.nn.Module, model_name: str, input_shape) -> tuple[keras.Sequential, list]:
    """The keras.Sequential computing what `model` computes, with its weights, and the variables' mapping:
    [(torch state_dict name, Keras variable, to Keras layout, to torch layout)]."""
    stack, mapping = [keras.Input(tuple(input_shape))], []
    for prefix, module, kind in sequential_layers(model, "keras", LAYERS, model_name):
        build, variables = LAYERS[kind]
        made = build(module)
        stack += made
        for torch_name, keras_name, to_keras, to_torch in variables:
            if getattr(module, torch_name, None) is not None:
                mapping.append((prefix + torch_name, keras_name, made[-1], to_keras, to_torch))
    sequential = keras.Sequential(stack, name=model_name.replace("-", "_"))
    found = []
    for torch_name, keras_name, layer, to_keras, to_torch in mapping:
        variable = next(v for v in layer.variables if v.path.rsplit("/", 1)[-1] == keras_name)
        found.append((torch_name, variable, to_keras, to_torch))
    return sequential, found


class KerasEngine:
    name = "keras"
    precision = "fp32, Keras 3 on torch"

    def __init__(self, config: TrainConfig, model: torch.nn.Module, steps_per_epoch: int,
                 input_shape: tuple[int, int, int]):
        keras.utils.set_random_seed(config.seed)  # dropout masks
        self.torch_model = model  # the layout of the weights it saves
        self.model, self.variables = keras_model(model, config.model, input_shape)
        _kernels_out_major(self.model)  # before the optimizer holds the kernels; assigning weights keeps the order
        self.load_weights(model.state_dict())
        self.optimizer = make_optimizer(config, [v.value for v in self.model.trainable_variables])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule_fn(config, steps_per_epoch))
        self.label_smoothing = config.label_smoothing
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.steps = 0  # batch norm's num_batches_tracked

    def _seed_generators(self) -> list:
        """The random state of each dropout layer, saved so that a resumed run draws the masks it would have."""
        return [layer.seed_generator for layer in self.model.layers if hasattr(layer, "seed_generator")]

    def load_weights(self, state: dict) -> None:
        for name, variable, to_keras, _ in self.variables:
            value = state[name].detach().cpu()
            variable.assign((to_keras(value) if to_keras else value).contiguous())

    def train_batch(self, x: torch.Tensor, y: torch.Tensor, loss_scale: float | None = None):
        logits = self.model(x, training=True)
        log_p = ops.log_softmax(logits, axis=1)
        loss = -ops.take_along_axis(log_p, y[:, None], axis=1)[:, 0]
        if self.label_smoothing:
            loss = (1 - self.label_smoothing) * loss - self.label_smoothing * ops.mean(log_p, axis=1)
        loss_sum = ops.sum(loss)
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum * (loss_scale if loss_scale is not None else 1 / len(y))).backward()
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.steps += 1
        return loss_sum.detach(), (logits.detach().argmax(1) == y).sum()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x, training=False).float()

    def weights(self) -> dict[str, torch.Tensor]:
        state = {name: value.clone() for name, value in self.torch_model.state_dict().items()}
        for name, variable, _, to_torch in self.variables:
            value = variable.value.detach().cpu()
            state[name] = (to_torch(value) if to_torch else value).contiguous().clone()
        for name in state:
            if name.endswith("num_batches_tracked"):
                state[name] = torch.tensor(self.steps)
        return state

    def state_dict(self) -> dict:
        return {"model": self.weights(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "steps": self.steps,
                "seeds": [g.state.value.detach().clone() for g in self._seed_generators()]}

    def load_state_dict(self, state: dict) -> None:
        self.load_weights(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps = state["steps"]
        for generator, seed in zip(self._seed_generators(), state["seeds"], strict=True):
            generator.state.assign(seed)
        self.lr = self.optimizer.param_groups[0]["lr"]


ENGINE = KerasEngine
