"""Automated DeepMix design: the search space (`space`) and, in `layers.SuperNet`, the
weight-sharing supernet over it."""

from deepmix_tf.nas.space import OPERATORS, SearchSpace

__all__ = ["OPERATORS", "SearchSpace"]
