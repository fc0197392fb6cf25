"""cnnlab: convolutional neural networks for computer vision, from the single convolution up to ResNets."""

__version__ = "0.1.0"
