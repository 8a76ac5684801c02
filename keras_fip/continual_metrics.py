"""Continual-learning metrics from the accuracy matrix R (NumPy only).

R[t, k] is the accuracy on task k after training task t (rows: tasks
trained, columns: tasks tested), T = the last trained task. Definitions
(docs/protocols.md, named in every report):

- average accuracy  A = mean_k R[T, k]
- forgetting        F = mean_{k<T} ( max_{t<T} R[t, k] − R[T, k] )
  (Chaudhry et al. 2018; Mammoth's definition)
- backward transfer BWT = mean_{k<T} ( R[T, k] − R[k, k] )
  (Lopez-Paz & Ranzato 2017; negative when the stream forgets)

Example:

```python
import numpy as np
from keras_fip import continual_metrics as cm
R = np.array([[0.99, 0.0], [0.90, 0.98]])
cm.average_accuracy(R), cm.forgetting(R), cm.backward_transfer(R)
# (0.94, 0.09, -0.09)
```
"""

import numpy as np


def _matrix(R):
    R = np.asarray(R, dtype="float64")
    if R.ndim != 2 or R.shape[0] == 0 or R.shape[0] > R.shape[1]:
        raise ValueError(
            "R must be a 2-D accuracy matrix with one row per trained task "
            f"and one column per task (rows <= columns); got shape {R.shape}."
        )
    return R


def average_accuracy(R):
    """Mean accuracy over the tasks seen so far after the last one."""
    R = _matrix(R)
    T = R.shape[0] - 1
    return float(np.mean(R[T, : T + 1]))


def forgetting(R):
    """Mean drop from each old task's best accuracy (0 for one task)."""
    R = _matrix(R)
    T = R.shape[0] - 1
    if T == 0:
        return 0.0
    best = np.max(R[:T, :T], axis=0)
    return float(np.mean(best - R[T, :T]))


def backward_transfer(R):
    """Mean change of old tasks' accuracy since each was learned."""
    R = _matrix(R)
    T = R.shape[0] - 1
    if T == 0:
        return 0.0
    return float(np.mean(R[T, :T] - np.diag(R)[:T]))


def summary(R):
    """All three metrics as a dict."""
    return {
        "average_accuracy": average_accuracy(R),
        "forgetting": forgetting(R),
        "backward_transfer": backward_transfer(R),
    }


def format_matrix(R, precision=3):
    """R as aligned text, rows `after t`, columns `task k`."""
    R = _matrix(R)
    head = "after \\ task " + " ".join(f"{k:>6d}" for k in range(R.shape[1]))
    lines = [head]
    for t, row in enumerate(R):
        cells = " ".join(f"{v:6.{precision}f}" for v in row)
        lines.append(f"{t:>12d} {cells}")
    return "\n".join(lines)
