"""Building blocks shared by several architecture files: the activation option, LRN, the small-input rule."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError

# Below this side the ImageNet stems (stride-4 11x11, stride-2 7x7 + max-pool) would shrink the image to a
# few pixels before the first stage, or to nothing (AlexNet needs at least 63 px). Models then switch to the
# small-input variant each file documents.
SMALL_INPUT = 64

ACTIVATIONS = ("relu", "prelu")


def activation(name: str, channels: int) -> nn.Module:
    """ReLU, or PReLU with one learned slope per channel (He et al. 2015, "Delving deep into rectifiers")."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "prelu":
        # The paper's channel-wise form, initialised at 0.25 as in its Section 2.
        return nn.PReLU(channels, init=0.25)
    raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}")


def local_response_norm() -> nn.LocalResponseNorm:
    """Krizhevsky et al. 2012's local response normalisation (k=2, n=5, alpha=1e-4, beta=0.75), also VGG's A-LRN.
    PyTorch divides alpha by the window size n, so the paper's alpha is passed as 5 x 1e-4."""
    return nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)
