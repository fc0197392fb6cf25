"""Errors a user can fix. The CLI prints their one-line message and exits 2; anything else is a bug."""


def listed(names, most: int = 8) -> str:
    """User-given names (JSON keys, options) for a one-line message: as they are when plain, quoted and escaped
    otherwise (a key may hold a newline), the first `most` of them."""
    names = list(names)
    shown = ", ".join(n if isinstance(n, str) and n.isidentifier() else repr(n)[:40] for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def first_line(err: BaseException, most: int | None = None) -> str:
    """The first line of an exception's message (at most `most` characters; "" if it has none): what a one-line
    error quotes of a library's or a user's multi-line exception."""
    return (str(err).strip().splitlines() or [""])[0][:most]


def one_line(message: str) -> str:
    """The message on one line, whatever a user-named file or value put in it (a newline in a JSON key), or a
    library quoting it: control characters escaped, as Python writes them in a string."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


class CnnlabError(Exception):
    """Base class: the message is one line that names the input and what is wrong with it. The line is made here,
    for every error and every caller (the CLI, a notebook): a message that quotes a user's file or a library's
    words about it (safetensors quotes the header it could not read) may hold a newline."""

    def __init__(self, message="", *args):
        super().__init__(one_line(str(message)), *args)


class DatasetError(CnnlabError):
    """A dataset file is missing, malformed or fails its checksum."""


class ImageError(CnnlabError):
    """A user image cannot be read or used."""


class CheckpointError(CnnlabError):
    """A run folder or weights file is missing, malformed or does not fit the model."""


class ConfigError(CnnlabError):
    """A configuration value or command-line argument is invalid."""


class LayerError(ConfigError):
    """A layer name, channel or pixel that the model does not have."""


class ModelOutputError(CnnlabError):
    """A model's output is not what its use needs: class scores [N, K] (a segmentation's [N, K, H, W]) of finite
    numbers (a user's model may return anything, and NaN once its weights diverged)."""


class MissingDependency(CnnlabError):
    """An optional package (one of pyproject.toml's extras) is not installed."""


# The optional packages and the extra of pyproject.toml that installs each (`make install` installs them all).
OPTIONAL_PACKAGES = {**dict.fromkeys(("keras", "pytensor"), "labs"),
                     **dict.fromkeys(("onnx", "onnxruntime", "onnxscript"), "export"),
                     **dict.fromkeys(("fastapi", "uvicorn", "multipart", "python_multipart"), "explorer"),
                     **dict.fromkeys(("webdataset", "braceexpand", "datasets", "pyarrow"), "data")}


def import_optional(module: str, purpose: str):
    """`importlib.import_module(module)`, where a missing optional package is one line saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        package = (err.name or "").split(".")[0]
        if package not in OPTIONAL_PACKAGES:
            raise
        raise MissingDependency(f"{purpose} needs the package {package}: pip install "
                                f"'cnnlab[{OPTIONAL_PACKAGES[package]}]' (`make install` does)") from None
