"""The pretrained sentence encoder (against the original model's golden embeddings), the
NodeEncoder, movie texts and the node-embedding files."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from conftest import require_shared
from deepmix_tf.data import tfrecords
from deepmix_tf.data.spec import load_spec
from deepmix_tf.text import (TEXT_FIELDS, EncoderNotFoundError, SentenceEncoder,
                             embed_sentences, movie_text)
from deepmix_tf.text.node_embeddings import NodeConfig, read_metadata
from deepmix_tf.text.node_encoder import NodeEncoder
from deepmix_tf.text.pipeline import encode_nodes, item_texts

GENRE = "movielens1m-genre"


def text_fields(dataset):
    """The item-text fields a spec declares."""
    return tuple(load_spec(dataset).text["fields"])


@pytest.mark.slow
def test_embeddings_match_the_original_sentence_transformers_model():
    with open(require_shared("golden", "minilm_golden.json")) as f:
        golden = json.load(f)
    ours = embed_sentences(golden["sentences"])
    theirs = np.asarray(golden["embeddings"], np.float32)
    cosine = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert ours.shape == theirs.shape
    assert cosine.min() >= 0.9999, {i: float(c) for i, c in enumerate(cosine) if c < 0.9999}
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


# Word pieces of the original tokenizer (Hugging Face `transformers` 5.24 BertTokenizer of
# the same model folder), computed outside this project: compatibility characters, Korean,
# zero-width and control characters, accents, tabs and a final capital sigma.
ORIGINAL_WORD_PIECES = {
    "Alien\u00b3 (1992)\u2026 \ud55c\uad6d\uc5b4, Caf\u00e9\u200bna\u00efve\t\u00c9COLE": [
        "alien", "##\u00b3", "(", "1992", ")", "\u2026", "\u1112", "##\u1161", "##\u11ab",
        "##\u1100", "##\u116e", "##\u11a8", "##\u110b", "##\u1165", ",", "cafe", "##nai",
        "##ve", "ecole"],
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u0391\u03a3 \ufb01lm \u00bd \u216b": [
        "\u03bf", "##\u03b4", "##\u03c5", "##\u03c3", "##\u03c3", "##\u03b5", "##\u03b1",
        "##\u03c3", "\ufb01", "##lm", "\u00bd", "[UNK]"],
}


def test_word_pieces_match_the_original_tokenizer():
    # KerasHub's own `lowercase=True` folds with NFKC ("\u2026" -> "...", Korean -> [UNK]),
    # which changed 22 of the 3,883 movie texts' embeddings (cosine down to 0.972).
    encoder = SentenceEncoder()
    vocabulary = encoder.tokenizer.get_vocabulary()
    for text, expected in ORIGINAL_WORD_PIECES.items():
        ids, mask = encoder.tokenize([text])
        pieces = [vocabulary[i] for i in ids[0][mask[0]]]
        assert pieces == ["[CLS]", *expected, "[SEP]"], text


def test_padding_does_not_change_a_sentence_embedding():
    text = "Toy Story (1995). Animation, Children's, Comedy. Directed by John Lasseter."
    longer = "A much longer text. " * 40
    alone = embed_sentences([text], batch_size=1)
    # Same text padded to the length of a long neighbour, in two batch layouts.
    together = embed_sentences([longer, text, "Short."], batch_size=3)
    np.testing.assert_allclose(alone[0], together[1], atol=1e-5)
    encoder = SentenceEncoder()
    ids, mask = encoder.tokenize([text, longer])
    assert ids.shape[1] == mask.sum(axis=1).max() and mask[0].sum() < mask[1].sum()


def test_long_texts_are_cut_at_the_sequence_length():
    encoder = SentenceEncoder(sequence_length=16)
    ids, mask = encoder.tokenize(["word " * 100])
    assert ids.shape == (1, 16) and mask.all()
    assert ids[0, 0] == encoder.tokenizer.cls_token_id
    assert ids[0, -1] == encoder.tokenizer.sep_token_id


def test_a_missing_encoder_folder_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderNotFoundError, match="model.safetensors"):
        SentenceEncoder(preset=str(tmp_path))


def test_movie_text_leaves_genres_out_for_the_genre_task():
    movie = {"title": "Heat", "year": 1995, "genres": "Action|Crime|Thriller",
             "director": "Michael Mann", "cast": "Al Pacino, Robert De Niro", "runtime": "",
             "languages": "English", "certificate": "R", "plot": "A cop hunts a thief."}
    assert movie_text(movie) == (
        "Heat (1995). Action, Crime, Thriller. Directed by Michael Mann. Starring Al Pacino, "
        "Robert De Niro. Language: English. Rated R. A cop hunts a thief.")
    assert movie_text(movie, text_fields("movielens1m-rating")) == movie_text(movie)
    # The genre specs' item texts never hold their label.
    for dataset in (GENRE, "ml-1m-genre"):
        assert "genres" not in text_fields(dataset)
        genre_text = movie_text(movie, text_fields(dataset))
        assert "Action" not in genre_text and "Thriller" not in genre_text
    assert movie_text(movie, text_fields(GENRE)).startswith(
        "Heat (1995). Directed by Michael Mann.")
    assert movie_text(movie, text_fields("ml-1m-genre")) == "Heat (1995)."
    assert movie_text({"title": "Untitled", "year": 0}) == "Untitled."
    with pytest.raises(ValueError, match="unknown text fields"):
        movie_text(movie, ("title", "budget"))
    assert set(text_fields("movielens1m-rating")) == set(TEXT_FIELDS)


def test_item_texts_come_from_the_table_the_spec_names(small_data):
    for dataset, fields in ((GENRE, text_fields(GENRE)), ("ml-1m-genre", ("title", "year"))):
        ids, texts, used = item_texts(load_spec(dataset), small_data["root"])
        assert used == fields
        assert ids.tolist() == [m[0] for m in small_data["movies"]]
        # Movie 5's title is "Movie 5, The" (1955); no text names a genre.
        assert texts[4].startswith("Movie 5, The (1955).")
        assert not any(g in text for text in texts
                       for g in load_spec(dataset).task["classes"])
    with pytest.raises(ValueError, match="declares no item text"):
        item_texts(load_spec("criteo"), small_data["root"])


def _sequence(batch=3, length=6, hidden=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, length, hidden)).astype("float32")
    mask = np.ones((batch, length), bool)
    mask[0, 3:] = False
    return x, mask


@pytest.mark.parametrize("pool_sequence", [False, True])
def test_node_encoder_ignores_padding_and_trains_its_queries(pool_sequence):
    encoder = NodeEncoder(num_queries=3, num_heads=2, intermediate_dim=32, node_dim=8,
                          dropout=0.0, pool_sequence=pool_sequence)
    x, mask = _sequence()
    out = np.asarray(encoder(x, mask))
    assert out.shape == (3, 8)
    noisy = x.copy()
    noisy[0, 3:] = 1e3  # padding positions of the first sequence
    np.testing.assert_allclose(np.asarray(encoder(noisy, mask)), out, atol=1e-5)
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(encoder(x, mask, training=True) ** 2)
    grads = tape.gradient(loss, encoder.trainable_weights)
    names = [w.path for w, g in zip(encoder.trainable_weights, grads)
             if g is None or not np.any(np.asarray(g))]
    assert not names
    assert any("queries" in w.path for w in encoder.trainable_weights)


def test_node_encoder_keras_round_trip(tmp_path):
    x, mask = _sequence()
    seq_in = keras.Input((None, 16))
    mask_in = keras.Input((None,), dtype="bool")
    model = keras.Model([seq_in, mask_in],
                        NodeEncoder(num_queries=2, num_heads=2, intermediate_dim=16,
                                    node_dim=4)(seq_in, mask_in))
    model.save(tmp_path / "n.keras")
    loaded = keras.saving.load_model(tmp_path / "n.keras")
    np.testing.assert_array_equal(model.predict([x, mask], verbose=0),
                                  loaded.predict([x, mask], verbose=0))


TINY_NODES = NodeConfig(num_queries=2, num_heads=2, intermediate_dim=32, node_dim=8, epochs=2,
                        batch_size=8, sequence_length=64)


@pytest.mark.slow
def test_node_embedding_files_are_complete_deterministic_and_cached(small_data, tmp_path):
    build = tfrecords.build_tfrecords(GENRE, small_data["root"], str(tmp_path / "tf"),
                                      log=lambda _: None)
    out = str(tmp_path / "nodes")
    messages = []
    path = encode_nodes(small_data["root"], build, out, config=TINY_NODES,
                        log=messages.append, progress=False)
    first = np.load(path)
    ids = np.load(os.path.join(out, "node_embeddings.ids.npy"))
    assert first.shape == (len(small_data["movies"]), 8) and np.isfinite(first).all()
    assert ids.tolist() == [m[0] for m in small_data["movies"]]
    meta = read_metadata(out)
    assert meta["text_fields"] == list(text_fields(GENRE)) and "genres" not in meta[
        "text_fields"]
    assert meta["dataset"] == GENRE
    assert meta["encoder"]["sequence_length"] == 64 and len(meta["inputs_sha256"]) == 64
    # Unchanged inputs: reused, not recomputed.
    messages.clear()
    encode_nodes(small_data["root"], build, out, config=TINY_NODES,
                 log=messages.append, progress=False)
    assert "up to date" in messages[0]
    # Recomputed with the same seed: the same embeddings.
    encode_nodes(small_data["root"], build, out, config=TINY_NODES,
                 force=True, log=lambda _: None, progress=False)
    np.testing.assert_allclose(np.load(path), first, atol=1e-5)


@pytest.mark.slow
def test_graph_prior_node_embeddings_are_one_per_spectral_column_and_deterministic(
        small_data, tmp_path):
    build = tfrecords.build_tfrecords(GENRE, small_data["root"], str(tmp_path / "tf"),
                                      log=lambda _: None)
    out = str(tmp_path / "nodes")
    config = dataclasses.replace(TINY_NODES, objective="graph_prior", min_ratings=1,
                                 pool_sequence=True)
    path = encode_nodes(small_data["root"], build, out, config=config,
                        log=lambda _: None, progress=False)
    node = np.load(path)
    _, _, names = tfrecords.load_dense_table(build, "movie_graph", with_names=True)
    assert node.shape == (len(small_data["movies"]),
                          sum(name.startswith("svd_") for name in names))
    assert np.isfinite(node).all() and np.linalg.norm(node, axis=1).min() > 0
    meta = read_metadata(out)
    assert meta["config"]["objective"] == "graph_prior"
    assert "spectral position" in meta["training"]["objective"]
    assert "cross-fitted" in meta["training"]["objective"]
    assert [len(f) for f in meta["training"]["fold_held_out_losses"]] == [
        config.epochs] * config.folds
    # Same seed, recomputed: the same vectors (every fold's decoder is seeded).
    encode_nodes(small_data["root"], build, out, config=config, force=True,
                 log=lambda _: None, progress=False)
    np.testing.assert_allclose(np.load(path), node, atol=1e-5)
    with pytest.raises(ValueError, match="objective"):
        NodeConfig(objective="labels")
    with pytest.raises(ValueError, match="folds"):
        NodeConfig(folds=1)
