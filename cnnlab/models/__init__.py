"""Model architectures (PyTorch). Importing this package registers every model file below."""

from cnnlab.models.registry import get_model, list_models, model_info, register_model, resolve_name
from cnnlab.models.weights import load_weights

# Importing a model file registers its models.
from cnnlab.models import alexnet, googlenet, lenet, localization, resnet, segmentation, simple, vgg  # noqa: F401,E402

__all__ = ["get_model", "list_models", "load_weights", "model_info", "register_model", "resolve_name"]
