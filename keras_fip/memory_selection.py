"""Which samples a fixed-capacity memory keeps (pure NumPy policies).

Both return `(keep_old, keep_new)`: indices into the samples already stored
and into the samples being added, whose union fills at most `capacity`.
"""

import numpy as np


def class_balanced_keep(old_labels, new_labels, capacity, rng):
    """Class-balanced: each class seen gets `capacity // C` slots.

    Slots a class cannot fill (too few samples) are shared among the others
    (water-filling). Stored samples are kept before new ones, so a class's
    memory is only topped up, never reshuffled; new samples of a class are
    drawn at random with `rng`.

    Example:

    ```python
    import numpy as np
    from keras_fip.memory_selection import class_balanced_keep
    keep_old, keep_new = class_balanced_keep(
        np.array([0, 0, 0]), np.array([1, 1, 1, 1]), 4,
        np.random.default_rng(0))
    len(keep_old), len(keep_new)   # (2, 2)
    ```
    """
    classes = np.union1d(old_labels, new_labels)
    available = {
        c: (np.flatnonzero(old_labels == c), np.flatnonzero(new_labels == c))
        for c in classes
    }
    demand = {c: len(o) + len(nw) for c, (o, nw) in available.items()}
    quota = dict.fromkeys(classes, 0)
    free = capacity
    open_classes = [c for c in classes if demand[c] > 0]
    while free > 0 and open_classes:
        share, extra = divmod(free, len(open_classes))
        for i, c in enumerate(open_classes):
            take = min(share + (1 if i < extra else 0), demand[c] - quota[c])
            quota[c] += take
            free -= take
        open_classes = [c for c in open_classes if quota[c] < demand[c]]
    keep_old, keep_new = [], []
    for c in classes:
        old, new = available[c]
        kept_old = old[: quota[c]]
        keep_old.append(kept_old)
        wanted = quota[c] - len(kept_old)
        keep_new.append(np.sort(rng.permutation(new)[:wanted]))
    return (np.concatenate(keep_old).astype(int),
            np.concatenate(keep_new).astype(int))


def reservoir_keep(num_stored, num_new, num_seen, capacity, rng):
    """Reservoir sampling (Vitter's algorithm R) over everything ever added.

    Args:
        num_stored: samples in the memory now.
        num_new: samples being added.
        num_seen: samples offered to the reservoir before these.
        capacity: the memory's size.
        rng: a NumPy generator.
    """
    owner = [("old", i) for i in range(num_stored)]
    for i in range(num_new):
        if len(owner) < capacity:
            owner.append(("new", i))
        else:
            j = int(rng.integers(0, num_seen + i + 1))
            if j < capacity:
                owner[j] = ("new", i)
    keep_old = np.array([i for k, i in owner if k == "old"], int)
    keep_new = np.array([i for k, i in owner if k == "new"], int)
    return keep_old, keep_new
