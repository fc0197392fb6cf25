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
# # Lab 1: convnets on MNIST with Keras
#
# Three convnets, written the way a Keras user writes them (`keras.Sequential`, `compile`, `fit`, `evaluate`),
# trained on MNIST from cnnlab's offline loader, then compared: parameters, seconds, test accuracy, and their
# learning curves side by side. Keras 3 runs here on its torch backend (no TensorFlow).
#
# This script is paired with `lab1_keras.ipynb` by jupytext (`make lab` opens it in JupyterLab, which keeps the two
# in step); from a shell:
#
#     python labs/lab1_keras.py            # the full lab (labs/README.md has its numbers)
#     python labs/lab1_keras.py --quick    # a few hundred steps, as the test suite runs it

# %%
# Run this cell first. QUICK = True: a short run on part of MNIST (100 steps per net, about a minute),
# as the test suite runs it; QUICK = False: the full lab (labs/README.md has its numbers and times).
QUICK = False
import importlib.util, os, subprocess, sys

QUICK = QUICK or "--quick" in sys.argv or os.environ.get("CNNLAB_QUICK") == "1"
if importlib.util.find_spec("cnnlab") is None:  # Colab, or a kernel without cnnlab: install it, keeping its torch
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "cnnlab[labs] @ git+https://github.com/cnnlab/cnnlab"], check=True)

# %%
import time

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported

import keras
import matplotlib.pyplot as plt
import numpy as np
from keras import layers

from cnnlab.data import load_dataset

EPOCHS = 1 if QUICK else 3
BATCH_SIZE = 128
keras.utils.set_random_seed(0)

# %% [markdown]
# ## The data
# 60,000 training and 10,000 test digits, 28x28 grey levels; scaled to [0, 1], with a channel axis.

# %%
train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
train_size, test_size = (12_800, 2_000) if QUICK else (None, None)  # QUICK: the first of each, scaled alone
x_train = (train.images[:train_size] / 255.0).astype("float32")[..., None]
x_test = (test.images[:test_size] / 255.0).astype("float32")[..., None]
y_train, y_test = train.labels[:train_size], test.labels[:test_size]
print(x_train.shape, "train,", x_test.shape, "test")

# %% [markdown]
# ## Three convnets
# The Keras example's net (two 3x3 convolutions with max pooling, dropout), LeNet-5 (5x5 convolutions, average
# pooling, tanh, as in 1998) and a deeper net with batch normalization.

# %%
def keras_example():
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ], name="keras_example")


def lenet5():
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(6, 5, padding="same", activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Conv2D(16, 5, activation="tanh"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(120, activation="tanh"),
        layers.Dense(84, activation="tanh"),
        layers.Dense(10, activation="softmax"),
    ], name="lenet5")


def deeper_batch_norm():
    def block(filters):
        # momentum 0.9 (Keras's default is 0.99): the moving averages that evaluation uses settle within a short run
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False), layers.BatchNormalization(momentum=0.9),
                layers.ReLU(), layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(momentum=0.9), layers.ReLU(), layers.MaxPooling2D(2)]

    return keras.Sequential([keras.Input(shape=(28, 28, 1)), *block(16), *block(32), layers.Flatten(),
                             layers.Dense(10, activation="softmax")], name="deeper_batch_norm")


# %% [markdown]
# ## Training
# The same recipe for all three: Adam, cross-entropy, the test set as validation after each epoch.

# %%
results = {}
for build in (keras_example, lenet5, deeper_batch_norm):
    model = build()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=BATCH_SIZE, epochs=EPOCHS, validation_data=(x_test, y_test),
                        verbose=2)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    results[model.name] = dict(params=model.count_params(), seconds=seconds, accuracy=accuracy,
                               history=history.history)

# %% [markdown]
# ## Comparison

# %%
print(f"{'model':<20}{'parameters':>12}{'seconds':>10}{'test accuracy':>15}")
for name, r in results.items():
    print(f"{name:<20}{r['params']:>12,}{r['seconds']:>10.1f}{r['accuracy']:>15.2%}")

# %%
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
epochs = np.arange(1, EPOCHS + 1)
for i, (name, r) in enumerate(results.items()):
    color = f"C{i}"  # one colour per model in both panels
    left.plot(epochs, r["history"]["loss"], "--", color=color, label=f"{name} train")
    left.plot(epochs, r["history"]["val_loss"], color=color, label=f"{name} test")
    right.plot(epochs, r["history"]["val_accuracy"], marker="o", color=color, label=name)
left.set(title="loss (dashed: training)", xlabel="epoch", xticks=epochs)
right.set(title="test accuracy", xlabel="epoch", xticks=epochs)
left.legend(fontsize=8)
right.legend(fontsize=8)
figure.tight_layout()
figure.savefig("lab1_curves.png", dpi=120)
print("curves: lab1_curves.png")
