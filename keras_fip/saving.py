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
import os
import zipfile

import keras

from keras_fip import compat
from keras_fip.evaluation import find_continual_optimizer

_CONFIG = compat.ARCHIVE_CONFIG
_WEIGHTS = compat.ARCHIVE_WEIGHTS
_OPTIMIZER, _VARS = compat.ARCHIVE_OPTIMIZER_GROUPS


def _refuse(filepath, problem):
    raise ValueError(
        f"{filepath} is not a `.keras` file restore_optimizer can read: "
        f"{problem}. Pass the file model.save(path) wrote for this model "
        "(for a .weights.h5 file use model.load_weights(path) instead)."
    )


def _read_config(archive, filepath):
    if _CONFIG not in archive.namelist():
        _refuse(filepath, f"the archive has no {_CONFIG}")
    try:
        return json.loads(archive.read(_CONFIG))
    except ValueError as error:
        _refuse(filepath, f"its {_CONFIG} is not valid JSON ({error})")


def _read_optimizer_store(archive, filepath):
    import h5py

    if _WEIGHTS not in archive.namelist():
        _refuse(filepath, f"the archive has no {_WEIGHTS} (the weights "
                "and the optimizer's state)")
    try:
        weights = h5py.File(io.BytesIO(archive.read(_WEIGHTS)), "r")
    except OSError as error:
        _refuse(filepath, f"its {_WEIGHTS} is not an HDF5 file ({error})")
    with weights:
        if _OPTIMIZER not in weights or _VARS not in weights[_OPTIMIZER]:
            raise ValueError(
                f"{filepath} holds no optimizer state: it was saved from a "
                "model that was not compiled (or before its optimizer was "
                "built). Compile the loaded model with a new optimizer, and "
                "record the tasks the network knows with keras_fip."
                "callbacks.remember_task(model, task_id, x, y)."
            )
        group = weights[_OPTIMIZER][_VARS]
        return {key: group[key][()] for key in group.keys()}


def restore_optimizer(model, filepath):
    """Recompiles `model` as saved in `filepath` and restores the optimizer.

    Args:
        model: the model `keras.saving.load_model(filepath)` returned.
        filepath: the `.keras` file it was loaded from.

    Returns:
        The restored optimizer (also `model.optimizer`).

    Raises:
        ValueError: the file is not a `.keras` archive, lacks its config or
            weights, holds no optimizer state, was saved through LoRA
            adapters, or holds an optimizer state that does not fit.

    Example:

    ```python
    model = keras.saving.load_model("bert_fip.keras")
    keras_fip.saving.restore_optimizer(model, "bert_fip.keras")
    model.optimizer.memory.size      # the memory as it was saved
    ```
    """
    if not os.path.isfile(filepath):
        raise FileNotFoundError(
            f"No file at {filepath}: pass the path of the `.keras` file "
            "model.save(path) wrote.")
    if not zipfile.is_zipfile(filepath):
        _refuse(filepath, "it is not a zip archive")
    with zipfile.ZipFile(filepath) as archive:
        config = _read_config(archive, filepath)
        compile_config = config.get("compile_config")
        if not compile_config:
            raise ValueError(
                f"{filepath} holds no compile config: the model was saved "
                "before `compile`, so there is no optimizer to restore."
            )
        store = _read_optimizer_store(archive, filepath)
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
    continual = find_continual_optimizer(model.optimizer)
    if continual is not None and not continual.state_built:
        raise ValueError(
            f"{filepath} was saved before its {type(continual).__name__} "
            "was bound to the model (before the first fit() with a "
            "TaskBoundary), so it holds no task state to restore. Go on "
            "with the optimizer compiled now, and record the tasks the "
            "network knows with keras_fip.callbacks.remember_task(model, "
            "task_id, x, y)."
        )
    model.optimizer.load_own_variables(store)
    return model.optimizer


