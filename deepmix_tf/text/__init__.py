"""Text side of DeepMix: a pretrained sentence encoder (KerasHub, offline) and the
NodeEncoder that turns its outputs into movie node embeddings."""

from deepmix_tf.text.movie_text import TEXT_FIELDS, movie_text, movie_texts
from deepmix_tf.text.sentence_encoder import (EncoderNotFoundError, SentenceEncoder,
                                              default_preset, embed_sentences)


def __getattr__(name):
    # NodeEncoder imports keras_hub: only on first use.
    if name == "NodeEncoder":
        from deepmix_tf.text.node_encoder import NodeEncoder

        return NodeEncoder
    raise AttributeError(name)


__all__ = ["EncoderNotFoundError", "NodeEncoder", "SentenceEncoder", "TEXT_FIELDS",
           "default_preset", "embed_sentences", "movie_text", "movie_texts"]
