"""The keras_fip version."""

__version__ = "0.9.0"
