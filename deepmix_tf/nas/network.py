"""`model="nas"`: the weight-sharing supernet over a search space, or the stand-alone network
of one searched architecture, over Deep Crossing's stacked features."""

import keras
import numpy as np

from deepmix_tf.layers.supernet import SuperNet, child_network
from deepmix_tf.models.stacking import stack
from deepmix_tf.nas.space import SearchSpace

SUPERNET = "supernet"


def search_space(config, fields):
    """The run's `SearchSpace`: `config.nas_space`, over the embedded `fields`; without
    `embedding_widths` there, each field's widths are `embedding_dim`, its half and its
    quarter."""
    d = config.embedding_dim
    widths = sorted({max(1, d // 4), max(1, d // 2), d})
    return SearchSpace(**{"embedding_widths": widths, **config.nas_space,
                          "fields": tuple(fields)})


def nas_network(embeddings, dense, fields, config):
    """The supernet (`config.architecture` None: every field embedded at the space's widest
    width) or the architecture's own network, over the stacked embeddings and dense
    features; returns the head's output. `fields` names the first embeddings, those whose
    width the space searches (the others, of embedded numeric inputs, are kept whole)."""
    space = search_space(config, fields)
    x0 = stack(embeddings, dense)
    if config.architecture is None:
        widest = space.embedding_widths[-1]
        narrow = [n for n, e in zip(fields, embeddings) if e.shape[-1] != widest]
        if narrow:
            raise ValueError(f"the supernet embeds every field at the space's widest width "
                             f"{widest}; {narrow} are not (set embedding_dim={widest})")
        segments = [(n, i * widest, widest) for i, n in enumerate(fields)]
        return SuperNet(space, segments, name=SUPERNET)(x0)
    space.check(config.architecture)
    return child_network(x0, config.architecture)


class SupernetSampler(keras.callbacks.Callback):
    """Single-path supernet training: a uniformly random architecture of the space before
    every training step (`SearchSpace.sample`), and a fixed reference architecture (a
    sample of `seed`) for validation and after training, so that the per-epoch validation
    metric compares epochs on one architecture.

    Args:
        supernet: the model's `layers.SuperNet`.
        seed: int. Seeds the samples.
    """

    def __init__(self, supernet, seed=0):
        super().__init__()
        self.supernet = supernet
        self.rng = np.random.default_rng(seed)
        self.reference = supernet.space.sample(np.random.default_rng([seed, 1]))
        self.sampled = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.supernet.set_architecture(self.supernet.space.sample(self.rng))
        self.sampled += 1

    def on_test_begin(self, logs=None):  # fit's own validation
        self.supernet.set_architecture(self.reference)

    def on_epoch_end(self, epoch, logs=None):  # before `trainer._Validation`
        self.supernet.set_architecture(self.reference)

    def on_train_end(self, logs=None):
        self.supernet.set_architecture(self.reference)
