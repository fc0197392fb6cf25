"""cnnlab.scratch: a convolutional-network engine in NumPy alone, small enough to read in an afternoon.

    from cnnlab.scratch import Tensor, nn, optim, functional as F

`Tensor` (tensor.py) records operations and `backward()` applies the chain rule; the operations live in
conv.py (convolution, transposed convolution), pool.py (max/avg/sum pooling) and functional.py (the rest);
nn.py has the layers, optim.py the optimizers, gradcheck.py the finite-difference check they all pass.
"""

from cnnlab.scratch import functional, nn, optim
from cnnlab.scratch.errors import ShapeError
from cnnlab.scratch.gradcheck import gradcheck
from cnnlab.scratch.rng import manual_seed
from cnnlab.scratch.tensor import Tensor, no_grad

__all__ = ["Tensor", "no_grad", "functional", "nn", "optim", "gradcheck", "manual_seed", "ShapeError"]
