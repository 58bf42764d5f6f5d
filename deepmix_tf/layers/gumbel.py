"""The Gumbel-softmax relaxation of a categorical choice (Jang et al., ICLR 2017), the
architecture weights of AutoGroup's feature sets (and of other differentiable searches)."""

import keras
from keras import ops

# The variable name of architecture weights (AutoGroup's set logits, the dimension search's
# width logits): not trainable by `fit`; `training.architecture.ArchitectureSearch` trains
# them on a held-out slice of the training split.
ARCHITECTURE = "architecture_logits"


def gumbel_softmax(logits, temperature, seed=None):
    """A relaxed one-hot sample of the categorical distribution softmax(logits):

        y = softmax((logits + g) / temperature),    g = -log(-log(u)),  u ~ U(0, 1)

    As `temperature` falls towards 0 the samples approach one-hot vectors (the argmax of
    `logits + g`), whose frequencies are softmax(logits); at a high temperature they
    approach the uniform vector. Gradients reach `logits` through `y` (Jang et al.'s
    reparameterisation).

    Args:
        logits: float tensor (..., choices): unnormalised log-probabilities.
        temperature: positive float or scalar tensor.
        seed: a `keras.random.SeedGenerator`, an int, or None.

    Returns:
        A tensor of `logits`' shape whose last axis sums to 1.

    Example:
    >>> y = gumbel_softmax(keras.ops.zeros((4, 3)), 0.5, seed=0)
    >>> y.shape
    (4, 3)
    """
    u = keras.random.uniform(ops.shape(logits), minval=1e-10, maxval=1.0, seed=seed,
                             dtype=logits.dtype)
    g = -ops.log(-ops.log(u))
    return ops.softmax((logits + g) / ops.cast(temperature, logits.dtype), axis=-1)
