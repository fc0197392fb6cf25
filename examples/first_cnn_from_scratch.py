"""Lab: implement and train your first convolutional neural network, from scratch.

The network is built from operations of `cnnlab.scratch` (NumPy only); `loss.backward()` computes every gradient
by reverse-mode automatic differentiation, and the optimizer follows them downhill. One to two minutes on 2 cores:

    python examples/first_cnn_from_scratch.py        # asserts >= 99% MNIST test accuracy
    python examples/first_cnn_from_scratch.py --quick  # seconds: 2,000 training images, one epoch (the tests)
"""

import sys
import time

import numpy as np

from cnnlab.data import load_dataset
from cnnlab.schedules import lr_factor
from cnnlab.scratch import Tensor, manual_seed, nn, no_grad, optim
from cnnlab.scratch import functional as F

EPOCHS, BATCH_SIZE, LR, TARGET, LIMIT = 3, 64, 2e-3, 0.99, None  # LIMIT None: all 60,000 training images
if "--quick" in sys.argv:  # the tests' check that this file runs (1 epoch of 2,000 images: 83.1% measured)
    EPOCHS, TARGET, LIMIT = 1, 0.7, 2000


def load(split: str, limit: int | None = None):
    data = load_dataset("mnist", split)
    images = (data.images[:limit] / 255.0 - data.info.mean) / data.info.std  # zero mean, unit variance
    return images[:, None].astype(np.float32), data.labels[:limit]  # [N, 1 channel, 28, 28], [N]


# 1. The model: two convolution -> ReLU -> max-pool stages extract features, two fully connected layers classify.
manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 16, kernel_size=5),  # 16 filters of 1x5x5:   1x28x28 -> 16x24x24
    nn.ReLU(),
    nn.MaxPool2d(2),  # keep the strongest response of each 2x2 window: -> 16x12x12
    nn.Conv2d(16, 32, kernel_size=5),  # 32 "3-D" filters of 16x5x5: -> 32x8x8
    nn.ReLU(),
    nn.MaxPool2d(2),  # -> 32x4x4
    nn.Flatten(),  # -> 512
    nn.Linear(512, 128),
    nn.ReLU(),
    nn.Linear(128, 10),  # one score (logit) per digit
)


def accuracy(images, labels) -> float:
    model.eval()
    with no_grad():  # evaluation records no graph
        predictions = np.concatenate([model(Tensor(images[i:i + 1000])).data.argmax(1)
                                      for i in range(0, len(images), 1000)])
    return float((predictions == labels).mean())


# 2. Training: mini-batches, softmax cross-entropy, backpropagation, Adam with a one-cycle learning-rate schedule.
x_train, y_train = load("train", LIMIT)
x_test, y_test = load("test")
optimizer = optim.Adam(model.parameters(), lr=LR)
steps_per_epoch = -(-len(x_train) // BATCH_SIZE)
rng = np.random.default_rng(0)
step = 0
for epoch in range(1, EPOCHS + 1):
    model.train()
    start, total_loss = time.perf_counter(), 0.0
    order = rng.permutation(len(x_train))
    for i in range(0, len(order), BATCH_SIZE):
        batch = order[i:i + BATCH_SIZE]
        loss = F.cross_entropy(model(Tensor(x_train[batch])), y_train[batch])
        optimizer.zero_grad()
        loss.backward()  # fills .grad of every parameter
        optimizer.param_groups[0]["lr"] = LR * lr_factor("onecycle", step, EPOCHS * steps_per_epoch, warmup=0.25)
        optimizer.step()
        step += 1
        total_loss += loss.item() * len(batch)
    print(f"epoch {epoch}: train loss {total_loss / len(x_train):.4f}, "
          f"test accuracy {accuracy(x_test, y_test):.2%} ({time.perf_counter() - start:.0f} s)")

# 3. Evaluation.
final = accuracy(x_test, y_test)
print(f"test accuracy after {EPOCHS} epochs: {final:.2%}")
assert final >= TARGET, f"expected at least {TARGET:.0%} test accuracy, got {final:.2%}"
