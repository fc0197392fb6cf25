"""Model architectures (PyTorch). Importing this package registers every model file below.

    cnnlab.models.list()                  # every registered name ("simple-cnn", "resnet20", "vgg16", ...)
    model = cnnlab.models.get("resnet20", num_classes=10, in_channels=1, input_size=28)
    cnnlab.models.summary("vgg16")        # layer by layer: shapes, receptive fields, parameters, MACs
"""

from cnnlab.models.registry import get_model, list_models, model_info, register_model, resolve_name
from cnnlab.models.weights import load_weights

# Importing a model file registers its models.
from cnnlab.models import alexnet, googlenet, lenet, localization, resnet, segmentation, simple, vgg  # noqa: F401,E402
from cnnlab.models.zoo import Summary, summary  # noqa: E402

# The names `import cnnlab` users call: cnnlab.models.list() / get() / summary().
list = list_models  # noqa: A001
get = get_model

__all__ = ["Summary", "get", "get_model", "list", "list_models", "load_weights", "model_info", "register_model",
           "resolve_name", "summary"]
