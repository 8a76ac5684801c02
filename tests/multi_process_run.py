"""Two FIP tasks in several JAX processes (`tests/test_multi_process.py`).

    python tests/multi_process_run.py PROCESS_ID NUM_PROCESSES \
        COORDINATOR OUTPUT.npz

Each process sees `4 // NUM_PROCESSES` CPU devices (set here through
`XLA_FLAGS=--xla_force_host_platform_device_count`), so every run has 4
global devices, and trains the same tiny MLP with
`FIPOptimizer(Adam, memory=Memory(16))` on two tasks under
`keras.distribution.DataParallel` over all of them, global batches of 8.
With `NUM_PROCESSES=1` it is the one-process reference (4 devices, no
`initialize`). Process 0 writes the final weights and the memory's state
to `OUTPUT.npz`.

The recipe, for 2 processes on this machine (CPU devices; JAX talks
between the processes through gloo, its default CPU collectives):

    # in two shells, or with & in one (any free port):
    KERAS_BACKEND=jax python tests/multi_process_run.py 0 2 \
        127.0.0.1:12345 out.npz
    KERAS_BACKEND=jax python tests/multi_process_run.py 1 2 \
        127.0.0.1:12345 out.npz

What each process runs:

1. `keras.distribution.initialize(job_addresses="127.0.0.1:12345",
   num_processes=2, process_id=i)` before any JAX computation. Called
   after `keras.utils.set_random_seed(0)` it keeps that seed (the same
   initial weights as the one-process run); without a seed it makes the
   processes agree on a random one.
2. `keras.distribution.set_distribution(keras.distribution.DataParallel(
   devices=keras.distribution.list_devices(), auto_shard_dataset=False))`:
   the *global* devices; each process shards its arrays itself (Keras
   shards only a `tf.data.Dataset` by itself, and refuses arrays unless
   `auto_shard_dataset=False`).
3. Build and compile the model with `FIPOptimizer` as on one process.
4. `model.fit(x_local, y_local, batch_size=global_batch // 2,
   shuffle=False, callbacks=[TaskBoundary(t, x, y)])`: `fit` is given the
   process's own part of every global batch (Keras makes each global
   batch with `jax.make_array_from_process_local_data`; the devices of
   `list_devices()` come process by process, so process 0's rows come
   first: `local_rows`), and `TaskBoundary` the *whole* task, the same
   in every process, so every process fills the same memory host side
   (the memory's variables must hold the same values everywhere).
5. Read arrays on the host with `keras_fip.arrays.as_numpy` in every
   process (an array sharded over several processes is gathered, a
   collective every process joins); write files from process 0 only.

On several hosts the same script runs once per host: the coordinator is
process 0's address (`job_addresses="10.0.0.1:12345"`, a port open
between the hosts), each host passes its own `process_id` and the
accelerators are its local devices (no `XLA_FLAGS`); each host reads its
own share of the data and every host needs the whole task data for
`TaskBoundary`.
"""

import os
import sys
import traceback

GLOBAL_DEVICES = 4
GLOBAL_BATCH = 8
SAMPLES = 32  # per task: 4 global batches
EPOCHS = 2


def _set_devices(num_processes):
    """This process's CPU devices (before JAX starts its backend)."""
    local = GLOBAL_DEVICES // num_processes
    flag = f"--xla_force_host_platform_device_count={local}"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join([*flags, flag])
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def tasks(seed=0, features=8, classes=4):
    """Two deterministic toy tasks: classes (0, 1), then (2, 3)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features)) * 3
    y = np.arange(2 * SAMPLES) % classes
    x = (centers[y] + rng.normal(size=y.shape + (features,))).astype(
        "float32")
    first = y < classes // 2
    return (x[first], y[first]), (x[~first], y[~first])


def local_rows(n, process_id, num_processes, batch=GLOBAL_BATCH):
    """The rows process `process_id` feeds: its slice of each global batch.

    Global batch k is rows `k*batch ... (k+1)*batch - 1`; process i feeds
    the i-th of its `num_processes` equal parts.
    """
    import numpy as np

    per_process = batch // num_processes
    return np.arange(n).reshape(-1, num_processes, per_process)[
        :, process_id].ravel()


def main(process_id, num_processes, coordinator, output):
    _set_devices(num_processes)
    # TensorFlow, installed here for its own suite, is not used by a JAX
    # run; Keras's seeding imports it when it can (seconds per process).
    sys.modules.setdefault("tensorflow", None)
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)  # before initialize: no seed exchange
    if num_processes > 1:
        keras.distribution.initialize(job_addresses=coordinator,
                                      num_processes=num_processes,
                                      process_id=process_id)
    import jax

    import keras_fip
    from keras_fip.arrays import as_numpy

    assert jax.device_count() == GLOBAL_DEVICES, jax.devices()
    assert jax.process_count() == num_processes
    # Each process gives `fit` its own rows (`local_rows`): no auto-sharding
    # (which takes only a tf.data.Dataset).
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False))

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    optimizer = keras_fip.FIPOptimizer(
        keras.optimizers.Adam(1e-2), memory=keras_fip.Memory(16),
        memory_batch_size=8)
    model.compile(optimizer=optimizer, loss=keras.losses.
                  SparseCategoricalCrossentropy(from_logits=True))
    active = []  # whether the memory protects anything, as a task begins

    class Active(keras.callbacks.Callback):  # listed after TaskBoundary
        def on_train_begin(self, logs=None):
            active.append(optimizer.memory.is_active)

    for t, (x, y) in enumerate(tasks()):
        rows = local_rows(len(x), process_id, num_processes)
        model.fit(x[rows], y[rows], batch_size=GLOBAL_BATCH // num_processes,
                  epochs=EPOCHS, shuffle=False, verbose=0,
                  callbacks=[keras_fip.callbacks.TaskBoundary(t, x, y),
                             Active()])
        if t == 0:
            stored_after_first = optimizer.memory.size

    # An array sharded over every process's devices reads whole anywhere.
    full = np.arange(4 * GLOBAL_DEVICES, dtype="float32").reshape(-1, 2)
    distribution = keras.distribution.distribution()
    sharded = keras.distribution.distribute_tensor(
        full, distribution.get_data_layout(full.shape))
    gathered = as_numpy(sharded)
    if not np.array_equal(gathered, full):
        raise AssertionError(f"process {process_id}: as_numpy of a sharded "
                             f"array gave {gathered}, not {full}")

    memory = optimizer.memory
    # Every process reads (a gather is a collective); process 0 writes.
    arrays = {f"weight_{i}": as_numpy(v)
              for i, v in enumerate(model.trainable_variables)}
    arrays.update({
        "memory_size": np.asarray(memory.size),
        "memory_stored_after_first": np.asarray(stored_after_first),
        "memory_active_at_begin": np.asarray(active),
        "memory_inputs": memory.stored_inputs(),
        "memory_cursor": as_numpy(memory.cursor),
        "invariance_loss": as_numpy(optimizer.invariance_loss),
        "processes": np.asarray(jax.process_count()),
        "sharded_fully_addressable": np.asarray(sharded.is_fully_addressable),
        # Not checked: whether the memory's inputs are sharded too.
        "memory_inputs_fully_addressable": np.asarray(
            memory.inputs.value.is_fully_addressable),
    })
    if process_id == 0:
        np.savez(output, **arrays)
    if num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    try:
        main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
    except BaseException:
        # Exit now: a normal exit waits in JAX's shutdown barrier for the
        # other processes, which wait for this one in a collective.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
