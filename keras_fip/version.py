"""The keras_fip version."""

__version__ = "0.8.0"
