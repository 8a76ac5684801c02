"""The keras_fip version."""

__version__ = "0.6.0"
