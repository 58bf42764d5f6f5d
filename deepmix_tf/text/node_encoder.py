"""NodeEncoder: trainable queries read a text encoder's outputs through transformer decoder
layers (GraphLLM's graph transformer), giving one fixed-size vector per node."""

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="deepmix_tf")
class NodeEncoder(keras.layers.Layer):
    """Node embedding from a node's token sequence:

        q_0 = Q                                         (num_queries, d), trainable, new
        q_j = TransformerDecoder_j(q_{j-1}, H, mask)    self-attention over the queries (no
                                                        causal mask), cross-attention over H
        z   = W mean(q_L over queries) + b              (node_dim,)

or, with `pool_sequence=True`, `z = W [mean(q_L); normalise(mean(H over real tokens))] + b`:
the projection also reads the encoder's own mean-pooled sentence vector, so a linear
function of the sentence embedding is one it can learn directly.

    `H` (length, d) is the pretrained encoder's output for the node's text and `mask` its
    padding mask, so padding never reaches a query.

    Args:
        num_queries: int. Number of trainable query vectors. Defaults to 4.
        num_layers: int. Number of `keras_hub.layers.TransformerDecoder` layers. Defaults to 1.
        num_heads: int. Attention heads per layer. Defaults to 4.
        intermediate_dim: int. Feed-forward width of each layer. Defaults to 512.
        node_dim: int. Size of the node embedding. Defaults to 64.
        dropout: float. Dropout inside the decoder layers. Defaults to 0.1.
        projection_initializer: initializer of `W`. Defaults to "glorot_uniform"; "zeros"
            starts a regression from predicting `b`.
        pool_sequence: bool. Whether the projection also reads the L2-normalised mean of
            `H` over real tokens. Defaults to False.

    Call arguments:
        encoder_sequence: float tensor (batch, length, d).
        padding_mask: bool tensor (batch, length), True at real tokens.

    Example:
    >>> NodeEncoder(num_queries=2, node_dim=8)(keras.random.normal((3, 5, 16)),
    ...                                        keras.ops.ones((3, 5), "bool")).shape
    (3, 8)
    """

    def __init__(self, num_queries=4, num_layers=1, num_heads=4, intermediate_dim=512,
                 node_dim=64, dropout=0.1, projection_initializer="glorot_uniform",
                 pool_sequence=False, **kwargs):
        super().__init__(**kwargs)
        self.num_queries, self.num_layers, self.num_heads = num_queries, num_layers, num_heads
        self.intermediate_dim, self.node_dim, self.dropout = intermediate_dim, node_dim, dropout
        self.decoders = [keras_hub.layers.TransformerDecoder(
            intermediate_dim=intermediate_dim, num_heads=num_heads, dropout=dropout,
            name=f"decoder_{j}") for j in range(num_layers)]
        self.pool_sequence = pool_sequence
        self.projection_initializer = keras.initializers.get(projection_initializer)
        self.projection = keras.layers.Dense(node_dim, name="projection",
                                             kernel_initializer=self.projection_initializer)

    def build(self, encoder_sequence_shape, padding_mask_shape=None):
        hidden = encoder_sequence_shape[-1]
        self.queries = self.add_weight(
            name="queries", shape=(self.num_queries, hidden),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        query_shape = (encoder_sequence_shape[0], self.num_queries, hidden)
        for decoder in self.decoders:
            decoder.build(query_shape, encoder_sequence_shape)
        self.projection.build((encoder_sequence_shape[0],
                               2 * hidden if self.pool_sequence else hidden))

    def call(self, encoder_sequence, padding_mask, training=False):
        batch = keras.ops.shape(encoder_sequence)[0]
        q = keras.ops.broadcast_to(
            keras.ops.cast(self.queries, encoder_sequence.dtype)[None],
            (batch, self.num_queries, keras.ops.shape(self.queries)[-1]))
        for decoder in self.decoders:
            q = decoder(q, encoder_sequence, encoder_padding_mask=padding_mask,
                        use_causal_mask=False, training=training)
        pooled = keras.ops.mean(q, axis=1)
        if self.pool_sequence:
            mask = keras.ops.expand_dims(keras.ops.cast(padding_mask, encoder_sequence.dtype), -1)
            mean = (keras.ops.sum(encoder_sequence * mask, axis=1)
                    / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0))
            pooled = keras.ops.concatenate([pooled, keras.ops.normalize(mean, axis=-1)], -1)
        return self.projection(pooled)

    def compute_output_shape(self, encoder_sequence_shape, padding_mask_shape=None):
        return (encoder_sequence_shape[0], self.node_dim)

    def get_config(self):
        return {**super().get_config(), "num_queries": self.num_queries,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim, "node_dim": self.node_dim,
                "dropout": self.dropout, "pool_sequence": self.pool_sequence,
                "projection_initializer": keras.initializers.serialize(
                    self.projection_initializer)}
