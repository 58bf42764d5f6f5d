"""DeepMix-TF: the DeepMix recommender (Deep Crossing + DNN residual blocks + CrossNetMix +
transformer node encoder) and its baselines in TensorFlow/Keras 3, on any tabular dataset a
spec declares (`deepmix_tf.data.spec`; MovieLens-1M and Criteo ship as specs).

The package root imports nothing heavy; import the sub-packages you need:
`deepmix_tf.data`, `deepmix_tf.tasks`, `deepmix_tf.layers`, `deepmix_tf.models`,
`deepmix_tf.text`, `deepmix_tf.export`.
"""

__version__ = "0.1.0"
