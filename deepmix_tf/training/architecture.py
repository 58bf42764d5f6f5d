"""First-order bi-level search: architecture weights trained on a held-out slice of the
training split, alternating with the ordinary training steps of everything else.

Architecture weights are the non-trainable variables named `STRUCTURE` (for example
`layers.AutoGroup`'s feature-set logits): `fit`'s optimizer never touches them, and
`ArchitectureSearch` takes one step on them, on a held-out batch, after every training
step. The validation split stays out of the search, so it can still choose the model.
"""

import math

import keras
import tensorflow as tf

from deepmix_tf.layers.feature_interaction.auto_group import STRUCTURE


def architecture_weights(model):
    """The model's architecture weights (variables named `STRUCTURE`), in layer order."""
    return [v for v in model.non_trainable_weights if v.name == STRUCTURE]


def searched_layers(model):
    """The layers of `model` (its sub-models included) that own architecture weights."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if any(v.name == STRUCTURE for v in layer._trainable_variables
                   + layer._non_trainable_variables)]


def temperature(epoch, epochs, start, end):
    """The Gumbel-softmax temperature of `epoch` (0-based): from `start` at the first epoch
    to `end` at the last, geometrically."""
    if epochs <= 1:
        return float(start)
    return float(start * math.exp(math.log(end / start) * min(epoch, epochs - 1) / (epochs - 1)))


class ArchitectureSearch(keras.callbacks.Callback):
    """After each training step, one Adam step on the architecture weights, with the loss
    of the next batch of `dataset` (a held-out slice of the training split; repeated). At
    each epoch's start, every searched layer's `temperature` is set along
    `temperature(epoch, epochs, *temperatures)`, so a resumed run anneals the same way.

    Args:
        dataset: a repeating dataset of (features, label) held-out batches (preprocessed
            features, as the network takes them).
        loss: the training loss (a Keras loss or its name).
        learning_rate: of the architecture weights' Adam.
        epochs: the run's epochs (for the temperature schedule).
        temperatures: (start, end) of the schedule.
        warmup_epochs: epochs of ordinary training before the architecture weights move
            (the relaxed architectures are still sampled): until the embeddings mean
            something, every interaction looks like noise and a search drops them all.
    """

    def __init__(self, dataset, loss, learning_rate=0.01, epochs=1, temperatures=(1.0, 0.1),
                 warmup_epochs=0):
        super().__init__()
        self.warmup_epochs = warmup_epochs
        self.epoch = 0
        self.dataset, self.loss = dataset, keras.losses.get(loss)
        self.optimizer = keras.optimizers.Adam(learning_rate, name="architecture_adam")
        self.epochs, self.temperatures = epochs, tuple(temperatures)
        self.steps = 0

    def on_train_begin(self, logs=None):
        self.weights = architecture_weights(self.model)
        if not self.weights:
            raise ValueError(f"{self.model.name!r} has no architecture weights "
                             f"(variables named {STRUCTURE!r}) to search")
        self.layers = [layer for layer in searched_layers(self.model)
                       if hasattr(layer, "temperature")]
        self.optimizer.build(self.weights)
        self._batches = iter(self.dataset)
        model, weights, optimizer, loss_fn = self.model, self.weights, self.optimizer, self.loss

        @tf.function
        def step(features, labels):
            with tf.GradientTape() as tape:
                for v in weights:
                    tape.watch(v.value)
                predictions = model(features, training=True)
                labels = tf.cast(tf.reshape(labels, tf.shape(predictions)), predictions.dtype)
                loss = loss_fn(labels, predictions)
            grads = tape.gradient(loss, [v.value for v in weights])
            optimizer.apply(grads, weights)
            return loss

        self._step = step

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        t = temperature(epoch, self.epochs, *self.temperatures)
        for layer in self.layers:
            layer.temperature.assign(t)

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch < self.warmup_epochs:
            return
        features, labels = next(self._batches)
        self._step(features, labels)
        self.steps += 1
