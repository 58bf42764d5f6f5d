"""DeepMix-TF: the DeepMix recommender (Deep Crossing + DNN residual blocks + CrossNetMix +
transformer node encoder) in TensorFlow/Keras 3, trained on MovieLens-1M.

The package root imports nothing heavy; import the sub-packages you need:
`deepmix_tf.data`, `deepmix_tf.layers`, `deepmix_tf.models`, `deepmix_tf.text`, `deepmix_tf.export`.
"""

__version__ = "0.1.0"
