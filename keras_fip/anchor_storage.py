"""Deprecated: `keras_fip.anchor_storage` is now `keras_fip.anchors`.

Kept for one release so that code written for keras_fip 0.5 runs; import
`keras_fip.anchors` instead (same functions: `resolve`, `footprint_bytes`,
`encode_top_k`, `coarse_grained`, `check_storage`, `STORAGES`).
"""

import warnings

from keras_fip.anchors import AUTO_OUTPUT_BYTES  # noqa: F401
from keras_fip.anchors import COUNTERS  # noqa: F401
from keras_fip.anchors import PER_SAMPLE_BOOKKEEPING  # noqa: F401
from keras_fip.anchors import STORAGES  # noqa: F401
from keras_fip.anchors import check_storage  # noqa: F401
from keras_fip.anchors import coarse_grained  # noqa: F401
from keras_fip.anchors import encode_top_k  # noqa: F401
from keras_fip.anchors import footprint_bytes  # noqa: F401
from keras_fip.anchors import resolve  # noqa: F401

warnings.warn(
    "keras_fip.anchor_storage is deprecated and will be removed in "
    "keras_fip 0.7; import keras_fip.anchors instead.",
    DeprecationWarning, stacklevel=2)
