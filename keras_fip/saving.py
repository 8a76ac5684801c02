"""Restoring an FIP optimizer (and its memory) from a `.keras` file.

Keras restores a model's optimizer on load only when the model's `compile`
is the stock one. KerasHub tasks (`BertTextClassifier`, ...) override
`compile`, so `keras.saving.load_model` returns them with a default optimizer
and skips the saved optimizer state, memory included (with a warning).
`restore_optimizer` recompiles such a model from the file's compile config
and loads the saved optimizer variables, failing loudly on any mismatch.

LoRA: Keras merges a LoRA-enabled layer's adapters into its kernel when it
saves (`.keras` and `.weights.h5` alike), so the loaded model has no
adapters, and an optimizer built for them (its Adam moments, a memory's
weight snapshot of the adapters) has nothing to be restored onto.
`restore_optimizer` refuses such a file with what to do instead.
"""

import io
import json
import zipfile

import keras


def _read_optimizer_store(archive):
    import h5py

    with archive.open("model.weights.h5") as f:
        weights = h5py.File(io.BytesIO(f.read()), "r")
        if "optimizer" not in weights or "vars" not in weights["optimizer"]:
            raise ValueError(
                "The file holds no optimizer state: it was saved from a "
                "model that was not compiled (or before it was trained)."
            )
        group = weights["optimizer"]["vars"]
        return {key: group[key][()] for key in group.keys()}


def restore_optimizer(model, filepath):
    """Recompiles `model` as saved in `filepath` and restores the optimizer.

    Args:
        model: the model `keras.saving.load_model(filepath)` returned.
        filepath: the `.keras` file it was loaded from.

    Returns:
        The restored optimizer (also `model.optimizer`).

    Example:

    ```python
    model = keras.saving.load_model("bert_fip.keras")
    keras_fip.saving.restore_optimizer(model, "bert_fip.keras")
    model.optimizer.memory.size      # the memory as it was saved
    ```
    """
    with zipfile.ZipFile(filepath) as archive:
        config = json.loads(archive.read("config.json"))
        compile_config = config.get("compile_config")
        if not compile_config:
            raise ValueError(
                f"{filepath} holds no compile config: the model was saved "
                "before `compile`, so there is no optimizer to restore."
            )
        store = _read_optimizer_store(archive)
    optimizer_config = compile_config.get("optimizer", {}).get("config", {})
    if optimizer_config.get("lora_adapters"):
        raise ValueError(
            f"{filepath} was saved from a model trained through LoRA "
            "adapters. Keras merges the adapters into the kernels when it "
            "saves, so the loaded model has none and the optimizer's state "
            "(built for the adapters) cannot be restored onto it. To go on "
            "adapting: enable LoRA again on the loaded backbone "
            "(backbone.enable_lora(rank)), compile a new FIPOptimizer, and "
            "record the known task again with keras_fip.callbacks."
            "remember_task(model, task_id, x).")
    compile_args = keras.saving.deserialize_keras_object(compile_config)
    model.compile(**compile_args)
    model.optimizer.build(model.trainable_variables)
    model.optimizer.load_own_variables(store)
    return model.optimizer


