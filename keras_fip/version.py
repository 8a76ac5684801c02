"""The keras_fip version."""

__version__ = "0.7.0"
