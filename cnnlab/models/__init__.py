"""Model architectures (PyTorch). Importing this package registers every model file below."""

from cnnlab.models.registry import get_model, list_models, model_info, register_model, resolve_name

from cnnlab.models import simple  # noqa: F401,E402  (registers the default CNN)
from cnnlab.models import segmentation  # noqa: F401,E402  (registers FCN-32s/16s/8s and U-Net)

__all__ = ["get_model", "list_models", "model_info", "register_model", "resolve_name"]
