"""GRDA: generalized regularized dual averaging (Chao and Cheng, 2019), the optimizer AutoFIS
trains its interaction gates with.

Dual averaging from the starting point w0, with a soft threshold that grows with the step
count n:

    a_n = w0 - lr * (g_1 + ... + g_n)
    w_n = sign(a_n) * max(|a_n| - c * lr^(1/2 + mu) * n^mu, 0)

Weights whose accumulated gradient cannot outgrow the threshold become exactly 0 (and stay
0 while it keeps growing); `c` sets how hard, `mu` (0.5 < mu < 1) how fast it grows.
"""

import keras


@keras.saving.register_keras_serializable(package="deepmix_tf")
class GRDA(keras.optimizers.Optimizer):
    """Generalized regularized dual averaging: sparse weights with exact zeros.

    Args:
        learning_rate: float or schedule. The step size `lr` of the dual average (a
            schedule's value at each step is used for that step's gradient and threshold).
        c: float >= 0. Strength of the sparsity threshold (0: plain dual averaging, SGD
            from w0 without zeros).
        mu: float in (0.5, 1). Growth exponent of the threshold in the step count.
        **kwargs: `keras.optimizers.Optimizer` arguments (name, clipnorm, ...).

    Example:
    >>> gates = keras.Variable([1.0, 1.0])
    >>> optimizer = GRDA(learning_rate=0.1, c=0.5, mu=0.7)
    >>> optimizer.apply([keras.ops.convert_to_tensor([0.0, -1.0])], [gates])
    """

    def __init__(self, learning_rate=0.005, c=0.005, mu=0.7, name="grda", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if c < 0:
            raise ValueError(f"GRDA c must be >= 0, got {c}")
        if not 0.5 < mu < 1:
            raise ValueError(f"GRDA mu must be in (0.5, 1), got {mu}")
        self.c, self.mu = float(c), float(mu)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._accumulators = [self.add_variable_from_reference(v, "accumulator")
                              for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        accumulator = self._accumulators[self._get_variable_index(variable)]
        # The dual average starts at the variable's value at the first step (w0).
        start = ops.where(ops.equal(self.iterations, 0), variable, accumulator)
        self.assign(accumulator, start - lr * ops.cast(gradient, variable.dtype))
        step = ops.cast(self.iterations + 1, variable.dtype)
        threshold = self.c * ops.power(lr, 0.5 + self.mu) * ops.power(step, self.mu)
        self.assign(variable, ops.sign(accumulator)
                    * ops.maximum(ops.abs(accumulator) - threshold, 0.0))

    def get_config(self):
        return {**super().get_config(), "c": self.c, "mu": self.mu}


@keras.saving.register_keras_serializable(package="deepmix_tf")
class GatedAdam(keras.optimizers.Adam):
    """Adam for every variable but the interaction gates (`layers.GatedInteraction`), which
    a `GRDA` of its own trains: AutoFIS's search stage.

    Args:
        learning_rate: Adam's learning rate.
        gate_learning_rate, c, mu: the gates' `GRDA` (`gate_learning_rate` None: Adam's
            learning rate, when it is a float).
        **kwargs: `keras.optimizers.Adam` arguments.
    """

    def __init__(self, learning_rate=0.001, gate_learning_rate=None, c=0.005, mu=0.7,
                 name="gated_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.gate_learning_rate = gate_learning_rate
        self.gate_optimizer = GRDA(learning_rate if gate_learning_rate is None
                                   else gate_learning_rate, c=c, mu=mu, name="gates_grda")

    def build(self, var_list):
        from deepmix_tf.layers.feature_interaction.gated_interaction import GATES

        # Built before training starts (eagerly), so that GRDA's dual average starts at the
        # gates' initial values. Adam holds no state for the gates: the same variables
        # whether `fit` or a loaded model builds it, so saved state loads back.
        super().build([v for v in var_list if v.name != GATES])
        gates = [v for v in var_list if v.name == GATES]
        if gates:
            self.gate_optimizer.build(gates)

    @property
    def variables(self):
        # Adam's state, then the gates' GRDA state (its dual averages and step count), so
        # that a saved model restores both.
        return super().variables + self.gate_optimizer.variables

    def apply(self, grads, trainable_variables=None):
        from deepmix_tf.layers.feature_interaction.gated_interaction import GATES

        if trainable_variables is None:
            # Adam's own list leaves the gates out: the gradients could not be matched.
            raise ValueError("GatedAdam.apply needs the variables beside the gradients "
                             "(apply_gradients(zip(grads, variables)))")
        pairs = list(zip(grads, trainable_variables))
        gates = [(g, v) for g, v in pairs if v.name == GATES]
        rest = [(g, v) for g, v in pairs if v.name != GATES]
        if gates:
            self.gate_optimizer.apply(*map(list, zip(*gates)))
        if rest:
            return super().apply(*map(list, zip(*rest)))

    def get_config(self):
        return {**super().get_config(), "gate_learning_rate": self.gate_learning_rate,
                "c": self.gate_optimizer.c, "mu": self.gate_optimizer.mu}
