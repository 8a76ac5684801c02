"""Losses on a memory batch, shared by the replay baselines and FIP's
label-keeping variant."""

import keras
from keras import ops


def cross_entropy(outputs, labels, from_logits=True):
    """Mean sparse categorical cross-entropy against stored labels."""
    return ops.mean(
        keras.losses.sparse_categorical_crossentropy(
            labels, outputs, from_logits=from_logits
        )
    )


def distillation(outputs, teacher, temperature):
    """T² · mean KL(softmax(teacher/T) ‖ softmax(outputs/T)) (Hinton 2015)."""
    log_p = ops.log_softmax(ops.cast(outputs, "float32") / temperature, -1)
    log_q = ops.log_softmax(
        ops.stop_gradient(ops.cast(teacher, "float32")) / temperature, -1
    )
    kl = ops.sum(ops.exp(log_q) * (log_q - log_p), axis=-1)
    return temperature**2 * ops.mean(kl)
