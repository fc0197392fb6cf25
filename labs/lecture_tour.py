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
# # The lecture, slide by slide
#
# *On Neural Networks Architectures* (Belharbi, 2017) walks from a single convolution to ResNets, transfer and
# segmentation. This notebook follows it in order, each slide a live cell: change a number and run it again.
# The convolutions are cnnlab's NumPy engine (`cnnlab.scratch`, readable in an afternoon, checked against
# PyTorch); the trained networks are cnnlab's PyTorch engine through `import cnnlab`.
#
# This script is paired with `lecture_tour.ipynb` by jupytext (`make lab` opens it in JupyterLab).

# %%
# Run this cell first. QUICK = True: every training on a slice of the data (about a minute and a half on 2 cores),
# as the test suite runs it; QUICK = False: longer trainings and better pictures (labs/README.md has the times).
QUICK = False
import importlib.util, os, subprocess, sys

QUICK = QUICK or "--quick" in sys.argv or os.environ.get("CNNLAB_QUICK") == "1"
if importlib.util.find_spec("cnnlab") is None:  # Colab, or a kernel without cnnlab: install it, keeping its torch
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "cnnlab @ git+https://github.com/cnnlab/cnnlab"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import cnnlab
from cnnlab.scratch import Tensor, nn, optim
from cnnlab.scratch import functional as F

torch.manual_seed(0)
mnist = cnnlab.data.load("mnist", "test", limit=1000)
digit = mnist.images[0]  # a 7, uint8 28x28


def grid(images, titles, cmap="gray", size=2.2):
    """A row of images with their titles."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size + 0.4), squeeze=False)
    for ax, image, title in zip(axes[0], images, titles):
        ax.imshow(image, cmap=cmap)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    plt.close(fig)  # shown once: as the cell's value
    return fig


# %% [markdown]
# ## Convolution: the slide's 5x5 image and its 3x3 filter
# The filter slides over the image; at each position the output is the sum of the element-wise products
# (a *multiply-and-sum*). Stride 1 and no padding: a 5x5 image gives a 3x3 feature map.

# %%
image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], np.float32)
kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)

by_hand = np.array([[(image[i:i + 3, j:j + 3] * kernel).sum() for j in range(3)] for i in range(3)])
by_engine = F.conv2d(Tensor(image[None, None]), Tensor(kernel[None, None])).data[0, 0]
print(by_hand)
assert (by_hand == by_engine).all() and (by_hand == [[4, 3, 4], [2, 4, 3], [2, 3, 4]]).all()

# %% [markdown]
# ## Hand-crafted filters
# Before networks learned their filters, people designed them: identity, edge detectors, sharpen, blurs. The same
# multiply-and-sum, with the filter's numbers chosen by hand, applied to a photograph.

# %%
from cnnlab.viz.handcrafted import CATALOGUE, apply, load_image

photo = load_image() @ np.array([0.299, 0.587, 0.114], np.float32)  # grey, [H, W]
responses = [apply(photo[..., None], f.kernel)[..., 0] for f in CATALOGUE]
grid([photo, *responses], ["photo", *(f.operation.split("\n")[0] for f in CATALOGUE)], size=1.9)

# %%
for f in CATALOGUE:
    print(f"{f.operation.splitlines()[0]:<18} {'' if f.scale == 1 else f'{f.scale} x '}{f.matrix}")

# %% [markdown]
# ## Depth, stride and zero-padding
# A filter spans every channel of its input (a "3-D" filter on a colour image), and its output side is
# (W - F + 2P) / S + 1 for an input side W, filter side F, padding P and stride S.

# %%
colour = torch.from_numpy(load_image()).permute(2, 0, 1)[None]  # [1, 3, H, W]
for filter_side, stride, padding in [(3, 1, 0), (3, 1, 1), (5, 2, 2), (7, 3, 0)]:
    conv = torch.nn.Conv2d(3, 1, filter_side, stride, padding)  # one filter of depth 3
    side = (colour.shape[-1] - filter_side + 2 * padding) // stride + 1
    out = conv(colour)
    print(f"F={filter_side} S={stride} P={padding}: filter {tuple(conv.weight.shape[1:])}, "
          f"output {tuple(out.shape[2:])}, formula {side}")
    assert out.shape[-1] == side

# %% [markdown]
# ## ReLU
# max(0, x): the negative responses of a filter become 0, and what is left is where the pattern is present.

# %%
edges = apply(digit[:, :, None].astype(np.float32) / 255, CATALOGUE[3].kernel)[..., 0]
relu = F.relu(Tensor(edges)).data
print(f"{(edges < 0).mean():.0%} of the responses were negative; after ReLU: {(relu < 0).mean():.0%}")
grid([digit, edges, relu], ["digit", "edge filter", "ReLU"], cmap="RdBu_r")

# %% [markdown]
# ## Pooling: max, average, sum — and the invariance claim
# A 2x2 pooling keeps one number per window. The lecture's claim: pooling makes the features invariant to small
# translations. Measured here: how alike (cosine similarity) the feature map of the digit and of the digit moved
# by a few pixels are, compared position by position, before and after max pooling.

# %%
maps = Tensor(relu[None, None].astype(np.float32))
pooled = {name: layer(maps).data[0, 0] for name, layer in
          [("max", nn.MaxPool2d(2)), ("average", nn.AvgPool2d(2)), ("sum", nn.SumPool2d(2))]}
grid([relu, *pooled.values()], ["feature map", *(f"{n} pooling" for n in pooled)])

# %%
def similarity(a, b):
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def max_pool(a, times):
    for _ in range(times):
        a = nn.MaxPool2d(2)(Tensor(a[None, None].astype(np.float32))).data[0, 0]
    return a


for shift in (1, 2, 4):
    moved = np.roll(relu, shift, axis=1)
    print(f"moved {shift} px: map {similarity(relu, moved):.2f}, after one 2x2 max pooling "
          f"{similarity(max_pool(relu, 1), max_pool(moved, 1)):.2f}, after two "
          f"{similarity(max_pool(relu, 2), max_pool(moved, 2)):.2f}")

# %% [markdown]
# ## Fully connected layer and softmax
# The last layers see the whole image: a matrix product, then softmax turns the scores into probabilities, and
# the cross-entropy is how surprised the network is by the true class.

# %%
fc = nn.Linear(14 * 14, 10)
scores = fc(Tensor(pooled["max"].reshape(1, -1)))
probabilities = F.softmax(scores, dim=1).data[0]
print("probabilities:", probabilities.round(3), "sum", probabilities.sum().round(6))
print("cross-entropy for the true class 7:", F.cross_entropy(scores, [7]).item())

# %% [markdown]
# ## Backpropagation, on the NumPy engine
# `loss.backward()` sends the gradient back through every operation (each a forward and its gradient, in
# `cnnlab/scratch`). The gradient is checked against finite differences, then a small CNN learns.

# %%
from cnnlab.scratch.gradcheck import gradcheck

x = np.random.default_rng(0).normal(size=(2, 1, 6, 6))
w = np.random.default_rng(1).normal(size=(3, 1, 3, 3))
gradcheck(lambda x, w: F.relu(F.conv2d(x, w)).sum(), x, w)  # raises if any gradient is off
print("conv2d + ReLU gradients match finite differences")

train = cnnlab.data.load("mnist", "train", limit=2000 if QUICK else 20000)
images = ((train.images / 255.0 - train.info.mean) / train.info.std)[:, None].astype(np.float32)
net = nn.Sequential(nn.Conv2d(1, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 12 * 12, 10))
optimizer = optim.Adam(net.parameters(), lr=2e-3)
for step, start in enumerate(range(0, len(images), 64)):
    loss = F.cross_entropy(net(Tensor(images[start:start + 64])), train.labels[start:start + 64])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
test = ((mnist.images / 255.0 - train.info.mean) / train.info.std)[:, None].astype(np.float32)
scratch_accuracy = float((net(Tensor(test)).data.argmax(1) == mnist.labels).mean())
print(f"after {step + 1} steps: loss {loss.item():.3f}, test accuracy {scratch_accuracy:.1%}")

# %% [markdown]
# ## Learned filters, and the feature maps of layers 1 to 5
# A deeper CNN trained in PyTorch through cnnlab: its first layer learns edge and blob detectors like the
# hand-crafted ones; deeper layers respond to larger, more abstract parts of the digit.

# %%
run = cnnlab.train(model="deep-cnn", epochs=1, train_limit=5000 if QUICK else 60000,
                   test_limit=1000 if QUICK else None, batch_size=128, lr=3e-3)
run

# %%
run.show.filters()

# %%
run.show.features(0, max_maps=8)

# %% [markdown]
# The lecture's visualization figure (Zeiler & Fergus): the test images that excite a feature most, and that
# feature's activation projected back to pixels.

# %%
run.show.deconv(layers="conv1,conv3,conv5", features=2, limit=1000 if QUICK else None)

# %% [markdown]
# ## Architectures: VGG and ResNet
# The papers' tables, read back from the models cnnlab builds (on PyTorch's meta device: nothing is computed).

# %%
from IPython.display import Markdown

from cnnlab.models.zoo import resnet_table, vgg_table

Markdown(vgg_table())

# %%
Markdown(resnet_table())

# %%
cnnlab.models.summary("resnet20", input_shape=(1, 28, 28))

# %% [markdown]
# ## Transfer
# The features the network learned on digits, reused for clothes (Fashion-MNIST) with a new last layer and only
# 10 labelled images per class: the frozen backbone against the same network trained from scratch.

# %%
# The same budget for both: 8 epochs of the 100 images (16 steps). Measured on 500 test images, seeds 0-2: reused
# 52-55%, from scratch 20-39%; with 15 epochs the network trained from scratch catches up from some seeds (68% to
# 62% from seed 2), at twice the time. QUICK: 500 test images, which both runs evaluate after every epoch.
budget = dict(labels_per_class=10, epochs=8, test_limit=500 if QUICK else None)
reused = cnnlab.transfer(run, "fashion-mnist", "feature-extract", **budget)
scratch = cnnlab.train(model="deep-cnn", dataset="fashion-mnist", **budget)
print(f"reused features {reused.history[-1]['test_acc']:.1%}, from scratch {scratch.history[-1]['test_acc']:.1%}")

# %% [markdown]
# ## Segmentation by learned deconvolution
# A transposed convolution ("deconvolution") sends each input value back over a filter-sized patch: it upsamples.
# A segmentation network learns these upsampling filters to label every pixel of a scene of digits: the recipe's
# U-Net, or FCN-8s, whose upsampling filters start as bilinear interpolation.

# %%
up = F.conv_transpose2d(Tensor(np.array([[[[1, 2], [3, 4]]]], np.float32)), Tensor(np.ones((1, 1, 2, 2), np.float32)),
                        stride=2)
print(up.data[0, 0])

# QUICK: FCN-8s, two epochs of 2,000 scenes of 1-3 digits (mean IoU about 0.2; background alone: 0.08). A U-Net
# this short learns it from some seeds only, and calls everything background from others. The recipe itself (the
# U-Net on 62,000 scenes of up to 7 digits, a few minutes) reaches 0.90.
quick = dict(model="fcn-8s", model_options={}, dataset_options={}, train_limit=2000, epochs=2)
seg = cnnlab.train("segmentation", test_limit=100, **(quick if QUICK else {}))
scores = seg.evaluate(limit=100)
print(f"mean IoU {scores.mean_iou:.3f}, pixel accuracy {scores.accuracy:.1%}")

# %%
from cnnlab.viz.segmentation_figures import scenes_figure

scenes_figure(scores.data.images[:, 0].numpy(), scores.data.labels.numpy(), scores.evaluation.predictions.numpy(),
              scores.classes, count=3)
