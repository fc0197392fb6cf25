# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 2: your first CNN in Theano (PyTensor)
#
# The classic Theano tutorial's convolutional network (deeplearning.net's "Convolutional Neural Networks (LeNet)"),
# in PyTensor, Theano's maintained successor: a convolution + pooling layer class, a hidden layer and logistic
# regression, stacked on a symbolic input; the cost's gradient by `pytensor.grad`; the updates; compiled training and
# test functions that read their minibatch from shared data. It reaches 99% on MNIST.
#
# This script is paired with `lab2_theano.ipynb` by jupytext (`make lab` opens it in JupyterLab, which keeps the
# two in step); from a shell:
#
#     python labs/lab2_theano.py           # the full lab (labs/README.md has its numbers)
#     python labs/lab2_theano.py --quick   # a few hundred steps, as the test suite runs it
#
# Theano name                       -> here (PyTensor)
#   import theano; theano.tensor as T -> import pytensor; pytensor.tensor as pt
#   theano.shared, theano.function    -> pytensor.shared, pytensor.function (same arguments: updates, givens)
#   T.grad                            -> pytensor.grad
#   T.matrix, T.ivector, T.lscalar    -> pt.matrix, pt.ivector, pt.lscalar
#   T.tanh, T.nnet.relu, T.nnet.softmax, T.log, T.mean, T.neq, T.argmax
#                                     -> pt.tanh, pt.maximum(x, 0), pt.special.softmax, pt.log, pt.mean, pt.neq,
#                                        pt.argmax
#   T.nnet.conv2d, pool.pool_2d       -> conv2d, pool2d from cnnlab.train.pytensor_engine: PyTensor 3 dropped
#                                        Theano's CNN ops; these are built from slicing and one matrix product
#                                        (im2col), and take images as (batch, rows, cols, channels), not
#                                        (batch, channels, rows, cols).
#   theano.config.floatX              -> pytensor.config.floatX
#
# Differences from the 2010s tutorial, for speed on a CPU: ReLU instead of tanh, SGD with momentum (one more shared
# variable per parameter, updated in the same `updates`) and a learning rate annealed after each epoch (a shared
# variable too), 6 epochs instead of 200.

# %%
# Run this cell first. QUICK = True: a short run on part of MNIST (400 steps, about a minute with PyTensor's first compilation),
# as the test suite runs it; QUICK = False: the full lab (labs/README.md has its numbers and times).
QUICK = False
import importlib.util, os, subprocess, sys

QUICK = QUICK or "--quick" in sys.argv or os.environ.get("CNNLAB_QUICK") == "1"
if importlib.util.find_spec("cnnlab") is None:  # Colab, or a kernel without cnnlab: install it, keeping its torch
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "cnnlab[labs] @ git+https://github.com/cnnlab/cnnlab"], check=True)

# %%
import time

import numpy as np
import pytensor
import pytensor.tensor as pt

from cnnlab.data import load_dataset
from cnnlab.train.pytensor_engine import MODE, conv2d, pool2d

pytensor.config.floatX = "float32"
rng = np.random.default_rng(23455)  # the tutorial's seed

# %% [markdown]
# ## The data, in shared variables
# As in the tutorial, the whole dataset lives in shared variables; a minibatch is a slice chosen by its index.

# %%
def shared_dataset(split, limit=None):
    data = load_dataset("mnist", split)
    x = (data.images[:limit] / 255.0).astype("float32").reshape(-1, 28 * 28)
    return pytensor.shared(x, borrow=True), pytensor.shared(data.labels[:limit].astype("int32"), borrow=True)


train_x, train_y = shared_dataset("train", 25_600 if QUICK else None)
test_x, test_y = shared_dataset("test", 2_000 if QUICK else None)

# %% [markdown]
# ## The layers

# %%
class LeNetConvPoolLayer:
    """Convolution, then max-pooling, then the non-linearity (the tutorial's order)."""

    def __init__(self, rng, input, filter_shape, poolsize=(2, 2)):
        # filter_shape: (number of filters, input feature maps, filter height, filter width)
        fan_in = np.prod(filter_shape[1:])
        fan_out = filter_shape[0] * np.prod(filter_shape[2:]) / np.prod(poolsize)
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        self.W = pytensor.shared(rng.uniform(-bound, bound, filter_shape).astype("float32"), name="W",
                                 shape=filter_shape)  # conv2d reads the kernel size from the static shape
        self.b = pytensor.shared(np.zeros(filter_shape[0], dtype="float32"), name="b")
        conv_out = conv2d(input, self.W, self.b)
        pooled_out = pool2d(conv_out, poolsize, poolsize, "max")
        self.output = pt.maximum(pooled_out, 0)
        self.params = [self.W, self.b]


class HiddenLayer:
    def __init__(self, rng, input, n_in, n_out, activation=lambda a: pt.maximum(a, 0)):
        bound = np.sqrt(6.0 / (n_in + n_out))
        self.W = pytensor.shared(rng.uniform(-bound, bound, (n_in, n_out)).astype("float32"), name="W")
        self.b = pytensor.shared(np.zeros(n_out, dtype="float32"), name="b")
        self.output = activation(pt.dot(input, self.W) + self.b)
        self.params = [self.W, self.b]


class LogisticRegression:
    def __init__(self, input, n_in, n_out):
        self.W = pytensor.shared(np.zeros((n_in, n_out), dtype="float32"), name="W")
        self.b = pytensor.shared(np.zeros(n_out, dtype="float32"), name="b")
        self.p_y_given_x = pt.special.softmax(pt.dot(input, self.W) + self.b, axis=1)
        self.y_pred = pt.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]

    def negative_log_likelihood(self, y):
        return -pt.mean(pt.log(self.p_y_given_x)[pt.arange(y.shape[0]), y])

    def errors(self, y):
        return pt.mean(pt.neq(self.y_pred, y))


# %% [markdown]
# ## The model: symbolic input, two conv+pool layers, a hidden layer, logistic regression

# %%
batch_size, nkerns, momentum = 64, (20, 50), 0.9
learning_rate = pytensor.shared(np.float32(0.01), name="learning_rate")  # shared: lowered after each epoch
index = pt.lscalar()  # index of a minibatch
x = pt.matrix("x")  # rasterized images
y = pt.ivector("y")  # labels

layer0_input = x.reshape((x.shape[0], 28, 28, 1))  # (batch, rows, cols, channels)
layer0 = LeNetConvPoolLayer(rng, layer0_input, filter_shape=(nkerns[0], 1, 5, 5))  # -> 12x12
layer1 = LeNetConvPoolLayer(rng, layer0.output, filter_shape=(nkerns[1], nkerns[0], 5, 5))  # -> 4x4
layer2 = HiddenLayer(rng, layer1.output.flatten(2), n_in=nkerns[1] * 4 * 4, n_out=500)
layer3 = LogisticRegression(layer2.output, n_in=500, n_out=10)

cost = layer3.negative_log_likelihood(y)
params = layer3.params + layer2.params + layer1.params + layer0.params

# %% [markdown]
# ## Gradients, updates, compiled functions

# %%
grads = pytensor.grad(cost, params)
velocities = [pytensor.shared(np.zeros_like(p.get_value()), name="v") for p in params]
updates = []
for p, g, v in zip(params, grads, velocities):
    v_new = momentum * v - learning_rate * g
    updates += [(v, v_new), (p, p + v_new)]

start = time.perf_counter()
train_model = pytensor.function(
    [index], cost, updates=updates, mode=MODE,
    givens={x: train_x[index * batch_size:(index + 1) * batch_size],
            y: train_y[index * batch_size:(index + 1) * batch_size]})
test_model = pytensor.function(
    [index], layer3.errors(y), mode=MODE,
    givens={x: test_x[index * 1000:(index + 1) * 1000], y: test_y[index * 1000:(index + 1) * 1000]})
print(f"compiled in {time.perf_counter() - start:.1f} s")

# %% [markdown]
# ## Training

# %%
n_train_batches = train_x.get_value(borrow=True).shape[0] // batch_size
n_test_batches = test_x.get_value(borrow=True).shape[0] // 1000
epochs = 1 if QUICK else 6
start = time.perf_counter()
for epoch in range(1, epochs + 1):
    costs = [train_model(i) for i in rng.permutation(n_train_batches)]
    test_error = np.mean([test_model(i) for i in range(n_test_batches)])
    print(f"epoch {epoch}: training cost {np.mean(costs):.4f}, test error {test_error:.2%} "
          f"({time.perf_counter() - start:.0f} s)")
    learning_rate.set_value(np.float32(learning_rate.get_value() * 0.6))  # annealing: the last epochs settle
print(f"test accuracy {1 - test_error:.2%}")
