"""The metric tensor of a network's outputs, without forming it.

FIP's step θ* = argmin θᵀ g θ + β θᵀ∇L (‖θ‖ ≤ ε) is defined by the metric
g of the protected outputs f(x; w) over a batch of inputs x:

    g = Σ_x J_xᵀ H_x J_x,      J_x = ∂f(x; w)/∂w  (outputs × weights),

with H = I for the **logit** metric (JᵀJ, the Hessian of ½‖f − f₀‖², i.e.
of the `"squared_l2"` distance up to a factor 2) and H = diag(p) − ppᵀ,
p = softmax(f), for the **softmax Fisher** metric. At the anchor the Hessian
of the KL distance with respect to the logits is exactly this Fisher, and
that of the Bhattacharyya distance −log Σ √(p q) is a quarter of it
(D ≈ ⅛ δzᵀ F δz), so FIP's default invariance term is g/4 to second order.

`metric_vector_product` computes g·v by a Jacobian-vector product u = J v
(forward mode, `keras_fip.backend.jvp`) followed by a vector-Jacobian
product Jᵀ(H u) (reverse mode): one forward-mode and one reverse pass over
the batch, never the weights × weights matrix. `reduction="sum"` sums over
the inputs (as above), `"mean"` divides by their number. `variables=`
restricts g to a subset S of the weights (the block g_SS: the vector is
zero on the other weights, which stay fixed).

The module gathers two modules with one job each, and re-exports their
names: `keras_fip.metric_product` (g·v, what FIP's train step uses) and
`keras_fip.spectrum` (the analysis tools). The spectrum of g, from these
products alone:

- `top_eigenpairs` / `top_eigenvalues`: the largest eigenvalues (and unit
  eigenvectors) by Lanczos with full reorthogonalisation.
- `spectral_density`: the whole eigenvalue distribution by stochastic
  Lanczos quadrature; `smoothed_density` turns its nodes and weights into
  a Gaussian-broadened density on a (log-λ) grid.

g has rank at most N·k for N inputs and k outputs (N·(k − 1) for the
Fisher, whose H has the null vector 1). When N·k is small enough to form
the Jacobian, `metric_spectrum` gives that whole nonzero spectrum exactly,
as the eigenvalues of the N·k × N·k Gram matrix H^½ J Jᵀ H^½ (the same
nonzero eigenvalues as Jᵀ H J; `gram_eigenvalues` from a given J Jᵀ);
`numerical_rank` and `fraction_below`
summarise any list of eigenvalues against a tolerance relative to λ_max.

Example:

```python
import keras, numpy as np, keras_fip
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
x = np.random.rand(5, 4).astype("float32")
v = [np.ones(w.shape, "float32") for w in model.trainable_weights]
gv = keras_fip.geometry.metric_vector_product(model, x, v, metric="fisher")
assert [g.shape for g in gv] == [w.shape for w in model.trainable_weights]

# 15 weights; 2 inputs × 3 logits: g has rank 3 · min(2, 4 + 1) = 6.
values, vectors = keras_fip.geometry.top_eigenpairs(model, x[:2], k=2)
assert vectors.shape == (2, 15) and values[0] >= values[1]
spectrum = keras_fip.geometry.metric_spectrum(model, x[:2])   # 2·3 values
assert keras_fip.geometry.numerical_rank(spectrum) == 6
nodes, weights = keras_fip.geometry.spectral_density(model, x[:2])
assert abs(weights.sum() - 1) < 1e-9
```
"""


from keras_fip.metric_product import METRICS
from keras_fip.metric_product import REDUCTIONS
from keras_fip.metric_product import check_metric
from keras_fip.metric_product import metric_vector_product
from keras_fip.metric_product import metric_vector_product_values
from keras_fip.metric_product import model_values
from keras_fip.metric_product import output_metric
from keras_fip.metric_product import variable_positions
from keras_fip.metric_product import variable_shapes
from keras_fip.spectrum import PROBES
from keras_fip.spectrum import flatten
from keras_fip.spectrum import fraction_below
from keras_fip.spectrum import gram_eigenvalues
from keras_fip.spectrum import lanczos
from keras_fip.spectrum import metric_spectrum
from keras_fip.spectrum import numerical_rank
from keras_fip.spectrum import output_jacobian
from keras_fip.spectrum import smoothed_density
from keras_fip.spectrum import spectral_density
from keras_fip.spectrum import top_eigenpairs
from keras_fip.spectrum import top_eigenvalues
from keras_fip.spectrum import unflatten

__all__ = [
    "METRICS",
    "PROBES",
    "REDUCTIONS",
    "check_metric",
    "flatten",
    "fraction_below",
    "gram_eigenvalues",
    "lanczos",
    "metric_spectrum",
    "metric_vector_product",
    "metric_vector_product_values",
    "model_values",
    "numerical_rank",
    "output_jacobian",
    "output_metric",
    "smoothed_density",
    "spectral_density",
    "top_eigenpairs",
    "top_eigenvalues",
    "unflatten",
    "variable_positions",
    "variable_shapes",
]
