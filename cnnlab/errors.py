"""Errors a user can fix. The CLI prints their one-line message and exits 2; anything else is a bug."""


class CnnlabError(Exception):
    """Base class: the message is one line that names the input and what is wrong with it."""


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
