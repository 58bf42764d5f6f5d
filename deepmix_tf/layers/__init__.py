"""Keras 3 layers of DeepMix: feature interaction and residual blocks."""

from deepmix_tf.layers.autodis import AutoDis
from deepmix_tf.layers.dimension_search import (DimensionSearchEmbedding,
                                               FrequencyBucketEmbedding, frequency_buckets)
from deepmix_tf.layers.dropout import Dropout
from deepmix_tf.layers.feature_interaction.auto_group import AutoGroup
from deepmix_tf.layers.feature_interaction.cross_net_mix import CrossNetMix
from deepmix_tf.layers.feature_interaction.gated_interaction import GatedInteraction
from deepmix_tf.layers.residual.deep_crossing_residual_unit import DeepCrossingResidualUnit
from deepmix_tf.layers.residual.residual_block import ResidualBlock

__all__ = ["AutoDis", "AutoGroup", "CrossNetMix", "DeepCrossingResidualUnit", "DimensionSearchEmbedding",
           "Dropout", "FrequencyBucketEmbedding", "GatedInteraction", "ResidualBlock",
           "frequency_buckets"]
