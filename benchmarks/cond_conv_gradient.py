"""A convolution's weight gradient inside a conditional, on JAX.

The memory terms branch on whether the memory is active. On XLA:CPU a
convolution's weight gradient inside `lax.cond` is emitted as a plain loop,
many times slower than the same gradient outside a conditional; this is why
`keras_fip.backend.memory_cond` runs both branches and selects on JAX's CPU
platform. This script times one gradient of the digits CNN
(`models.cnn()`) on a batch of `--batch` inputs: outside a conditional,
inside `lax.cond` with a traced predicate, and through `memory_cond`
(median of `--repeats` calls after warm-up, in ms).

    KERAS_BACKEND=jax python benchmarks/cond_conv_gradient.py
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402

if keras.backend.backend() != "jax":
    raise SystemExit("This benchmark is about JAX: run with KERAS_BACKEND=jax.")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402  (benchmarks/models.py)
from keras_fip import backend as fip_backend  # noqa: E402


def median_ms(fn, args, repeats):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(1000 * (time.perf_counter() - begin))
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    model = models.cnn()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 64)).astype("float32")
    trainable = [v.value for v in model.trainable_variables]
    state = [v.value for v in model.non_trainable_variables]

    def loss(weights):
        outputs, _ = model.stateless_call(weights, state, x)
        return jnp.sum(jax.nn.log_softmax(outputs)[:, 0])

    def zeros():
        return [jnp.zeros_like(w) for w in trainable]

    variants = {
        "no conditional": lambda w, p: jax.grad(loss)(w),
        "inside lax.cond": lambda w, p: jax.lax.cond(
            p, lambda: jax.grad(loss)(w), zeros),
        "memory_cond": lambda w, p: fip_backend.memory_cond(
            p, lambda: jax.grad(loss)(w), zeros),
    }
    print(f"platform {jax.default_backend()}, batch {args.batch}")
    for name, fn in variants.items():
        ms = median_ms(jax.jit(fn), (trainable, jnp.asarray(True)),
                       args.repeats)
        print(f"{name:>16}: {ms:7.2f} ms")


if __name__ == "__main__":
    main()
