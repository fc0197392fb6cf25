"""Look inside a model of your own: define it in plain PyTorch, train it anywhere, save its weights, and hand the
file to cnnlab with `--model FILE.py:NAME`. This file trains `DigitNet` for one MNIST epoch (under a minute on 2
cores, 98.2% test accuracy) and saves `digitnet.safetensors`; then, from this folder:

    cnnlab show features --model your_own_model.py:DigitNet --weights digitnet.safetensors --index 0
    cnnlab show deconv --model your_own_model.py:DigitNet --weights digitnet.safetensors
    cnnlab report --model your_own_model.py:DigitNet --weights digitnet.safetensors
    cnnlab serve --model your_own_model.py:DigitNet --weights digitnet.safetensors

cnnlab imports this file to build `DigitNet()`, which runs its top level: hence the `__main__` guard around the
training below. `python examples/your_own_model.py --quick` trains on 2,000 images (the tests' check).
"""

import sys

import torch
from torch import nn


class DigitNet(nn.Module):
    """Two conv blocks and a linear classifier; layers as attributes, so that cnnlab names them conv1, pool2, ..."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc(x.flatten(1))


def train(limit=None):
    from safetensors.torch import save_file

    from cnnlab.data import load_dataset

    data = load_dataset("mnist", "train")
    # cnnlab normalizes with the dataset's mean and std (`--dataset`, default mnist): train with the same
    x = (torch.tensor(data.images[:limit]).float()[:, None] / 255 - data.info.mean) / data.info.std
    y = torch.from_numpy(data.labels[:limit]).long()
    torch.manual_seed(0)
    model = DigitNet()
    optimizer = torch.optim.Adam(model.parameters(), 2e-3)
    for batch in torch.randperm(len(y)).split(64):
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_file(model.state_dict(), "digitnet.safetensors")
    print(f"trained on {len(y):,} images; wrote digitnet.safetensors (last batch loss {loss.item():.3f})")


if __name__ == "__main__":
    train(2000 if "--quick" in sys.argv else None)
