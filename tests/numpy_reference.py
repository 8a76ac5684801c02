"""An independent NumPy (float64) implementation of one FIP training run.

It shares no code with keras_fip: a one-hidden-layer ReLU MLP with
hand-written backpropagation, the Bhattacharyya invariance term summed over
the memory batch (eps = max(1e-10, 1e-3·min q)), d = β∇CE + ∇D, and Keras's
Adam update (epsilon 1e-7, bias correction folded into the step size). The
cross-backend parity test compares every backend's first 20 logged losses
with the trace this produces; this file is how the golden trace is made.
"""

import numpy as np


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _forward(params, x):
    w1, b1, w2, b2 = params
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0.0)
    return pre, hidden, hidden @ w2 + b2


def _backward(params, x, pre, hidden, d_logits):
    _, _, w2, _ = params
    d_hidden = (d_logits @ w2.T) * (pre > 0)
    return [x.T @ d_hidden, d_hidden.sum(0),
            hidden.T @ d_logits, d_logits.sum(0)]


def fip_trace(params, x, y, memory_x, order, steps, batch_size,
              memory_batch_size, learning_rate=1e-3, beta=1.0):
    """Returns `(running_mean_ce, invariance)` per step, as Keras logs them.

    Args:
        params: `[w1, b1, w2, b2]` initial weights (the anchor too).
        x, y: the new task's inputs and labels, in training order.
        memory_x: the protected inputs, as stored in the memory.
        order: the memory's sampling permutation (its first len(memory_x)).
        steps, batch_size, memory_batch_size: the run's shape.
        learning_rate, beta: Adam's learning rate and β.
    """
    params = [np.asarray(p, "float64") for p in params]
    x, memory_x = np.asarray(x, "float64"), np.asarray(memory_x, "float64")
    anchor_q = _softmax(_forward(params, memory_x)[2])
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps_adam = 0.9, 0.999, 1e-7
    count, cursor, ce_sum = len(memory_x), 0, 0.0
    losses, invariances = [], []
    for step in range(steps):
        xb = x[step * batch_size : (step + 1) * batch_size]
        yb = y[step * batch_size : (step + 1) * batch_size]
        pre, hidden, logits = _forward(params, xb)
        p = _softmax(logits)
        ce = -np.mean(np.log(p[np.arange(len(yb)), yb]))
        d_logits = p.copy()
        d_logits[np.arange(len(yb)), yb] -= 1.0
        g_ce = _backward(params, xb, pre, hidden, d_logits / len(yb))

        index = order[(cursor + np.arange(memory_batch_size)) % count]
        cursor = (cursor + memory_batch_size) % count
        xm, q = memory_x[index], anchor_q[index]
        pre_m, hidden_m, logits_m = _forward(params, xm)
        pm = _softmax(logits_m)
        eps = max(1e-10, 1e-3 * q.min())
        root = np.sqrt(pm * q + eps)
        s = root.sum(-1, keepdims=True)
        # The value is the exact distance −log Σ sqrt(p q), floored at 0
        # (keras_fip.distances.bhattacharyya); the gradient below is the
        # reference code's, with eps.
        exact = -np.log(np.sqrt(pm * q).sum(-1))
        invariance = float(np.sum(np.maximum(exact, 0.0)))
        d_p = -(q / (2.0 * root)) / s
        d_logits_m = pm * (d_p - np.sum(d_p * pm, -1, keepdims=True))
        g_inv = _backward(params, xm, pre_m, hidden_m, d_logits_m)

        t = step + 1
        alpha = learning_rate * np.sqrt(1 - b2**t) / (1 - b1**t)
        for i, (gc, gi) in enumerate(zip(g_ce, g_inv)):
            g = beta * gc + gi
            m[i] += (g - m[i]) * (1 - b1)
            v[i] += (g * g - v[i]) * (1 - b2)
            params[i] = params[i] - m[i] * alpha / (np.sqrt(v[i]) + eps_adam)
        ce_sum += ce
        losses.append(ce_sum / t)
        invariances.append(invariance)
    return np.array(losses), np.array(invariances)
