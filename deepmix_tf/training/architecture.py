"""First-order bi-level search: architecture weights trained on a held-out slice of the
training split, alternating with the ordinary training steps of everything else.

Architecture weights are the non-trainable variables named `ARCHITECTURE` (for example
`layers.AutoGroup`'s feature-set logits): `fit`'s optimizer never touches them, and
`ArchitectureSearch` takes one step on them, on a held-out batch, after every training
step. The validation split stays out of the search, so it can still choose the model.
"""

import math

import keras
import tensorflow as tf

from deepmix_tf.layers.gumbel import ARCHITECTURE


def architecture_weights(model):
    """The model's architecture weights (variables named `ARCHITECTURE`), in layer order."""
    return [v for v in model.non_trainable_weights if v.name == ARCHITECTURE]


def searched_layers(model):
    """The layers of `model` (its sub-models included) that own architecture weights."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if any(v.name == ARCHITECTURE for v in layer._trainable_variables
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

    The held-out step runs the model in training mode (Gumbel samples, batch statistics),
    then puts the batch normalisations' moving statistics back: held-out rows never shape
    the ordinary model. With `steps_per_execution` > 1 it steps once per execution. At the
    end of training the architecture weights are those of the last epoch, whatever epoch
    early stopping restores the other weights from: the search's outcome is where it
    ended, and the retrain starts from scratch anyway. Its Adam state is not saved: a
    resumed search restarts it.

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
        cost_weight: float >= 0. Adds `cost_weight` times the mean `architecture_cost()`
            of the searched layers that have one (a size in [0, 1], e.g. a dimension
            search's expected table size) to the held-out loss.
        log_dir: str or None. Where each epoch's architecture probabilities go, as
            TensorBoard scalars (`architecture_summary()` of each searched layer).
    """

    def __init__(self, dataset, loss, learning_rate=0.01, epochs=1, temperatures=(1.0, 0.1),
                 warmup_epochs=0, cost_weight=0.0, log_dir=None):
        super().__init__()
        self.warmup_epochs, self.cost_weight, self.log_dir = warmup_epochs, cost_weight, log_dir
        self._writer = None
        self.epoch = 0
        self.dataset, self.loss = dataset, keras.losses.get(loss)
        self.optimizer = keras.optimizers.Adam(learning_rate, name="architecture_adam")
        self.epochs, self.temperatures = epochs, tuple(temperatures)
        self.steps = 0

    def on_train_begin(self, logs=None):
        self.weights = architecture_weights(self.model)
        if not self.weights:
            raise ValueError(f"{self.model.name!r} has no architecture weights "
                             f"(variables named {ARCHITECTURE!r}) to search")
        self.searched = searched_layers(self.model)
        self.layers = [layer for layer in self.searched if hasattr(layer, "temperature")]
        costed = [layer for layer in self.searched if hasattr(layer, "architecture_cost")]
        self.optimizer.build(self.weights)
        self._batches = iter(self.dataset)
        if self.log_dir is not None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        model, weights, optimizer, loss_fn = self.model, self.weights, self.optimizer, self.loss
        cost_weight = self.cost_weight
        moving = [v for v in self.model.non_trainable_weights if "moving_" in v.path]

        @tf.function
        def step(features, labels):
            statistics = [tf.identity(v.value) for v in moving]
            with tf.GradientTape() as tape:
                for v in weights:
                    tape.watch(v.value)
                predictions = model(features, training=True)
                labels = tf.cast(tf.reshape(labels, tf.shape(predictions)), predictions.dtype)
                loss = loss_fn(labels, predictions)
                if cost_weight and costed:
                    loss += cost_weight * tf.add_n(
                        [layer.architecture_cost() for layer in costed]) / len(costed)
            grads = tape.gradient(loss, [v.value for v in weights])
            optimizer.apply(grads, weights)
            for v, value in zip(moving, statistics):
                v.assign(value)
            return loss

        self._step = step

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        t = temperature(epoch, self.epochs, *self.temperatures)
        for layer in self.layers:
            layer.temperature.assign(t)

    def on_epoch_end(self, epoch, logs=None):
        self._final = [v.numpy() for v in self.weights]
        if self._writer is None:
            return
        with self._writer.as_default(step=epoch):
            for layer in self.searched:
                for name, value in getattr(layer, "architecture_summary", dict)().items():
                    tf.summary.scalar(f"{layer.name}/{name}", value)
            self._writer.flush()

    def on_train_end(self, logs=None):
        # After `EarlyStopping`'s restore (this callback comes after it).
        for v, value in zip(self.weights, getattr(self, "_final", [])):
            v.assign(value)

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch < self.warmup_epochs:
            return
        features, labels = next(self._batches)
        self._step(features, labels)
        self.steps += 1
