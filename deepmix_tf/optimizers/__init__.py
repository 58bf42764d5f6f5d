"""Optimizers that Keras does not provide: GRDA, and Adam with GRDA for AutoFIS's gates."""

from deepmix_tf.optimizers.grda import GRDA, GatedAdam

__all__ = ["GRDA", "GatedAdam"]
