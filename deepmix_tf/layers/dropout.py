"""Dropout whose random numbers stay cheap on CPU, with and without XLA."""

import keras

# Each kept/dropped decision uses 16 random bits: one 32-bit Philox number serves two.
_BITS = 16
_LEVELS = 1 << _BITS


@keras.saving.register_keras_serializable(package="deepmix_tf")
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` whose masks cost a third of Keras' own on CPU.

    Keras draws one float32 uniform number per element. This layer draws 32-bit Philox
    numbers (TensorFlow's stateless generator, named so that XLA does not pick its much
    slower default on CPU) for half of the elements and uses each number's two 16-bit
    halves: an element is dropped when its half is below `round(rate * 65536)`. On our
    2-core CPU a 1024 x 512 mask took 0.66 ms this way and 1.9 ms with Keras' uniform
    draw (both under XLA); in DeepMix's rating step, masks were about a fifth of the time.

    The rate applied is `round(rate * 65536) / 65536` (at most 1 / 131072 away from `rate`)
    and kept values are divided by one minus that rate, so the expected output is exactly
    the input. Masks are the same with and without XLA and follow the layer's seed.

    Args: as `keras.layers.Dropout`.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0 or self.noise_shape is not None:
            return super().call(inputs, training=training)
        import tensorflow as tf

        threshold = int(round(self.rate * _LEVELS))
        if threshold >= _LEVELS:
            return tf.zeros_like(inputs)
        seed = self.seed_generator.next()
        # Stateless ops want int32 seeds under XLA (as Keras casts them).
        seed = tf.cast(tf.math.floormod(seed, tf.int32.max - 1), tf.int32)
        size = tf.size(inputs)
        bits = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None, maxval=None,
                                           dtype=tf.uint32, alg="philox")
        halves = tf.concat([tf.bitwise.bitwise_and(bits, tf.constant(_LEVELS - 1, tf.uint32)),
                            tf.bitwise.right_shift(bits, tf.constant(_BITS, tf.uint32))], 0)
        keep = tf.reshape(halves[:size] >= tf.constant(threshold, tf.uint32),
                          tf.shape(inputs))
        scale = tf.cast(_LEVELS / (_LEVELS - threshold), inputs.dtype)
        return tf.where(keep, inputs * scale, tf.zeros_like(inputs))
