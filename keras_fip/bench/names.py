"""The names `keras-fip bench` knows, without importing Keras.

`keras_fip.bench.registry` defines what each name runs and checks that it
defines exactly these (so `keras-fip bench --help` starts without a backend).
"""

METHODS = ("finetune", "joint", "er", "derpp", "agem", "ewc", "lwf", "si",
           "fip", "fip-reference", "fip-l2")
VARIANTS = ("fip-0.5", "fip-labels", "fip-beta0.5", "fip-mb64", "fip-mb200",
            "fip-stored", "fip-l2-beta1", "der", "derpp-0.2", "er-0.2",
            "fip-exact-mu1", "fip-exact-mu10", "fip-exact-mu100")
STREAMS = ("split-digits", "permuted-digits", "split-wordnet",
           "split-wordnet-b")
