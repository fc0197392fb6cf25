"""The one error the engine raises for bad input: shapes or hyper-parameters that do not fit together."""

from cnnlab.errors import CnnlabError


class ShapeError(CnnlabError, ValueError):
    """Shapes or hyper-parameters that do not fit together (a `ValueError`, so NumPy habits still catch it)."""
