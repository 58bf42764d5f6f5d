"""AutoDim: the dimension-search embedding, the search on a held-out slice, the retrain
with the chosen widths, and a planted check."""

import json
import os

import keras
import numpy as np
import pytest

from conftest import assert_reloads_equal

from deepmix_tf.data import generate as gen
from deepmix_tf.data import tfrecords
from deepmix_tf.layers import (AutoDis, DimensionSearchEmbedding, FrequencyBucketEmbedding,
                               frequency_buckets)
from deepmix_tf.models import Config, build_model, load_tables
from deepmix_tf.models.preprocessing import NumericTransform
from deepmix_tf.models.stacking import embedding_parameters, embedding_rows
from deepmix_tf.training import dimensions, trainer


def _path(layer, x, k, columns=None):
    """Candidate k's output at inference: BN_k(E_k[x] W_k)."""
    table = layer.tables[0 if layer.share_weights else k].numpy()
    e = table[x][:, :columns] if columns else table[x]
    return np.asarray(layer.norms[k](e @ layer.projections[k].numpy(), training=False))


def test_the_search_mixes_candidates_while_training_and_takes_the_argmax_otherwise():
    x = np.array([1, 2, 3, 7])
    layer = DimensionSearchEmbedding(10, candidates=[2, 4, 8], output_dim=4, seed=0)
    layer(x)
    assert [tuple(t.shape) for t in layer.tables] == [(10, 2), (10, 4), (10, 8)]
    assert not layer.logits.trainable and layer.logits.name == "architecture_logits"
    layer.logits.assign([0.0, 3.0, 1.0])
    assert layer.chosen_width() == 4 and layer.probabilities().sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.asarray(layer(x)), _path(layer, x, 1), rtol=1e-5)
    first, second = np.asarray(layer(x, training=True)), np.asarray(layer(x, training=True))
    assert not np.allclose(first, second)  # a fresh relaxed sample each call
    # The expected table size under softmax(alpha), as a fraction of the widest.
    layer.logits.assign([0.0, 0.0, 0.0])
    assert float(layer.architecture_cost()) == pytest.approx((2 + 4 + 8) / 3 / 8)


def test_shared_candidates_are_slices_of_one_table_and_bags_pool():
    x = np.array([0, 5, 9])
    shared = DimensionSearchEmbedding(10, candidates=[2, 8], output_dim=3, share_weights=True)
    shared(x)
    assert [tuple(t.shape) for t in shared.tables] == [(10, 8)]
    shared.logits.assign([1.0, 0.0])
    np.testing.assert_allclose(np.asarray(shared(x)), _path(shared, x, 0, columns=2), rtol=1e-5)
    bags = DimensionSearchEmbedding(10, candidates=[2, 4], output_dim=3, pooling="mean")
    ids = np.array([[1, 2, -1], [4, -1, -1]])
    bags(ids)
    bags.logits.assign([0.0, 1.0])
    table, w = bags.tables[1].numpy(), bags.projections[1].numpy()
    pooled = np.stack([(table[1] + table[2]) / 2, table[4]])
    expected = np.asarray(bags.norms[1](pooled @ w, training=False))
    np.testing.assert_allclose(np.asarray(bags(ids)), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="increasing"):
        DimensionSearchEmbedding(10, candidates=[4, 2])


def _planted(tmp_path, rows, pairs=(("cat_0", "cat_1"), ("cat_0", "cat_2"), ("cat_0", "cat_3")),
             dim=8, shared_vectors=True):
    """cat_0 drives the label through three pairs; cat_4..cat_7 carry no signal."""
    planted = gen.Planted(pairs=[[a, b, 2.0] for a, b in pairs], noise=0.1, dim=dim,
                          shared_vectors=shared_vectors)
    g = gen.Generator(gen.make_fields([100] * 8), num_dense=0, planted=planted, seed=0)
    gen.write_dataset(str(tmp_path / "data"), g, rows, name="planted-dims", log=lambda _: None)
    spec = str(tmp_path / "data" / "spec.json")
    return spec, tfrecords.build_tfrecords(spec, output_dir=str(tmp_path / "tf"),
                                           log=lambda _: None)


def test_the_retrain_uses_exactly_the_chosen_widths(tmp_path):
    spec, build = _planted(tmp_path, 1_000)
    meta = tfrecords.read_metadata(build)
    rows = {f["name"]: embedding_rows(f) for f in meta["features"]}
    widths = [{"field": f"cat_{i}", "width": w, "rows": rows[f"cat_{i}"]}
              for i, w in enumerate([2, 16, 4, 8, 2, 2, 4, 16])]
    config = dimensions.retrain_config(
        Config(dataset=spec, model="deepmix", embedding_search="search"), widths)
    assert config.embedding_search == "off"
    assert config.embedding_dims == {w["field"]: w["width"] for w in widths}
    _, network, full = build_model(config, meta)
    for w in widths:
        layer = network.get_layer(f"{w['field']}_embedding")
        assert layer.embeddings.shape == (w["rows"], w["width"])
    assert network.get_layer("stacking").output.shape[-1] == sum(w["width"] for w in widths)
    assert embedding_parameters(network) == dimensions.table_parameters(widths)
    # DLRM's dot products need one width: the others are mapped to embedding_dim.
    _, dlrm, _ = build_model(config.replace(model="dlrm"), meta)
    mapped = {layer.name for layer in dlrm.layers if layer.name.endswith("_to_common")}
    assert mapped == {f"{w['field']}_to_common" for w in widths
                      if w["width"] != config.embedding_dim}
    with pytest.raises(ValueError, match="not embedded features"):
        build_model(config.replace(embedding_dims={"nope": 4}), meta)
    with pytest.raises(ValueError, match="one or the other"):
        config.replace(embedding_search="search")


def test_a_search_writes_its_widths_and_round_trips(tmp_path):
    spec, build = _planted(tmp_path, 3_000)
    config = trainer.default_config(spec, "deepmix", embedding_search="search", epochs=2,
                                    batch_size=256, embedding_candidates=[2, 4, 8],
                                    embedding_dim=8, patience=5)
    metrics = trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / "s"),
                            log=lambda _: None, verbose=0)
    assert metrics["architecture_search"]["steps"] > 0
    model = keras.saving.load_model(tmp_path / "s" / "model.keras")
    widths = dimensions.write_search(str(tmp_path / "s"), model, config)
    assert [w["field"] for w in widths] == [f"cat_{i}" for i in range(8)]
    # The held-out steps moved every field's logits from their uniform start.
    assert all(max(w["probabilities"].values()) > 1 / 3 + 1e-3 for w in widths), widths
    written = json.loads((tmp_path / "s" / "dimensions.json").read_text())
    assert written["fields"] == widths
    retrain = Config.from_json(str(tmp_path / "s" / "retrain_config.json"))
    assert retrain.embedding_dims == {w["field"]: w["width"] for w in widths}
    # The architecture probabilities per epoch are TensorBoard scalars.
    logs = tmp_path / "s" / "logs" / "architecture"
    assert any(name.startswith("events") for name in os.listdir(logs))
    # Saved and loaded, the searched model predicts the same (hard widths at inference).
    features = {k: v[:64] for k, v in tfrecords.read_examples(build, "test").items()
                if k in model.input}
    loaded = assert_reloads_equal(model, features, tmp_path / "again.keras")
    assert dimensions.searched_widths(loaded) == widths


def test_frequency_buckets_hold_equal_shares_of_the_occurrences_head_first():
    counts = np.array([0, 10, 1, 5, 1, 3, 0, 25, 10])
    # Ranked: row 7 (25), rows 1 and 8 (10 each, the lower row first), 3, 5, 2, 4, then
    # the unseen 0 and 6. Of 55 occurrences, 0 come before row 7 and 25 before row 1:
    # both start within the first half; 35 come before row 8, which starts the second.
    np.testing.assert_array_equal(frequency_buckets(counts, 2), [1, 0, 1, 1, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(frequency_buckets(counts, 3), [2, 1, 2, 2, 2, 2, 2, 0, 1])
    np.testing.assert_array_equal(frequency_buckets(counts, 1), np.zeros(9))
    x = np.array([0, 1, 7, 8, 3])
    bucket_of = frequency_buckets(counts, 2)
    layer = FrequencyBucketEmbedding(np.bincount(bucket_of).tolist(), [8, 2])
    layer(x)
    layer.set_buckets(bucket_of)
    assert [tuple(t.shape) for t in layer.tables] == [(2, 8), (7, 2)]
    assert layer.maps[0] is None and tuple(layer.maps[1].shape) == (2, 8)
    # Each row is its bucket's table row at its place among that bucket's rows (tail:
    # rows 0, 2, 3, 4, 5, 6, 8).
    head, tail, w = (layer.tables[0].numpy(), layer.tables[1].numpy(), layer.maps[1].numpy())
    expected = np.stack([tail[0] @ w, head[0], head[1], tail[6] @ w, tail[2] @ w])
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="built for"):
        layer.set_buckets(np.zeros(9, np.int32))


def test_a_bucketed_search_samples_each_id_from_its_buckets_logits():
    bucket_of = np.array([0, 0, 1, 1, 1, 1], np.int32)
    layer = DimensionSearchEmbedding(6, candidates=[2, 4, 8], output_dim=4,
                                     bucket_rows=[2, 4])
    x = np.array([0, 3, 1, 5])
    layer(x)
    layer.set_buckets(bucket_of)
    assert tuple(layer.logits.shape) == (2, 3)
    layer.logits.assign([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])  # head: 8, tail: 2
    assert layer.chosen_width() == [8, 2]
    expected = np.where(bucket_of[x][:, None] == 0, _path(layer, x, 2), _path(layer, x, 0))
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)
    # While training, each id's Gumbel sample comes from its bucket's logits: decisive
    # logits make the relaxed samples one-hot. (Batch statistics: compare the candidates
    # each id mixes, through one-hot-heavy probabilities, not BN's moving averages.)
    layer.logits.assign([[-50.0, -50.0, 50.0], [50.0, -50.0, -50.0]])
    layer.temperature.assign(0.1)
    stacked = [np.asarray(layer.norms[k](layer.tables[k].numpy()[x] @ layer.projections[k]
                                         .numpy(), training=True)) for k in range(3)]
    sampled = np.where(bucket_of[x][:, None] == 0, stacked[2], stacked[0])
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), sampled, rtol=1e-4,
                               atol=1e-5)
    # The expected size weighs each bucket by its rows.
    layer.logits.assign([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert float(layer.architecture_cost()) == pytest.approx((2 + 4 + 8) / 3 / 8)
    layer.logits.assign([[-50.0, -50.0, 50.0], [50.0, -50.0, -50.0]])
    assert float(layer.architecture_cost()) == pytest.approx(2 / 6 * 1 + 4 / 6 * 2 / 8)
    assert set(layer.architecture_summary()) == {f"bucket_{b}/width_{w}" for b in (0, 1)
                                                 for w in (2, 4, 8)}
    with pytest.raises(ValueError, match="bags"):
        DimensionSearchEmbedding(6, bucket_rows=[2, 4], pooling="sum")


def test_a_bucketed_search_retrains_with_a_width_per_bucket(small_data, tmp_path):
    build = tfrecords.build_tfrecords("movielens1m-rating", small_data["root"],
                                      str(tmp_path / "tf"), svd_dim=4, log=lambda _: None)
    config = trainer.default_config(
        "movielens1m-rating", "deepmix", embedding_search="search", epochs=2, batch_size=64,
        embedding_candidates=[2, 4, 8], embedding_dim=8, embedding_buckets=2,
        architecture_warmup_epochs=0, head_units=[8], num_experts=2, low_rank=4)
    trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / "s"),
                  log=lambda _: None, verbose=0)
    model = keras.saving.load_model(tmp_path / "s" / "model.keras")
    widths = dimensions.write_search(str(tmp_path / "s"), model, config)
    meta = tfrecords.read_metadata(build)
    buckets = trainer.frequency_buckets(build, meta, config)
    single = [f["name"] for f in meta["features"] if f["type"] == "categorical"
              and f["name"] in model.input]
    assert [w["field"] for w in widths] == single and set(buckets) == set(single)
    for w in widths:
        assert w["bucket_rows"] == np.bincount(buckets[w["field"]], minlength=2).tolist()
        assert len(w["width"]) == 2 and len(w["probabilities"]) == 2
    # The users' head bucket holds fewer users than the tail (their counts differ).
    users = np.bincount(buckets["user_id"], minlength=2)
    assert 0 < users[0] < users[1]
    # A retrain from chosen widths: a table of each bucket's rows at its width.
    chosen = {"user_id": [8, 2], "movie_id": [4, 4]}
    retrain = dimensions.retrain_config(config, [
        {"field": "user_id", "width": [8, 2]}, {"field": "movie_id", "width": [4, 4]}])
    assert retrain.embedding_dims == {"user_id": [8, 2], "movie_id": 4}
    retrain = retrain.replace(embedding_dims=chosen)
    tables = load_tables(build, retrain, meta)
    _, network, full = build_model(retrain, {**meta, "frequency_buckets": buckets}, tables)
    user = network.get_layer("user_id_embedding")
    assert [tuple(t.shape) for t in user.tables] == [(users[0], 8), (users[1], 2)]
    np.testing.assert_array_equal(user.bucket_of.numpy(), buckets["user_id"])
    movie = network.get_layer("movie_id_embedding")  # both buckets at 4: no map
    assert [tuple(t.shape) for t in movie.tables] == [
        (n, 4) for n in np.bincount(buckets["movie_id"], minlength=2)] and movie.maps == [None] * 2
    assert user.output.shape[-1] == 8 and movie.output.shape[-1] == 4
    assert dimensions.table_parameters(
        [{"field": "u", "rows": int(users.sum()), "bucket_rows": users.tolist(),
          "width": [8, 2]}]) == users[0] * 8 + users[1] * 2
    features = {k: v[:16] for k, v in tfrecords.read_examples(build, "test").items()
                if k in full.input}
    assert_reloads_equal(full, features, tmp_path / "retrain.keras")
    assert_reloads_equal(model, features, tmp_path / "search.keras")
    with pytest.raises(ValueError, match="one per bucket"):
        retrain.replace(embedding_dims={"user_id": [8, 2, 2]})
    with pytest.raises(ValueError, match="one per bucket"):
        retrain.replace(embedding_dims={"user_id": [[8, 8], [2, 2]]})
    with pytest.raises(ValueError, match="frequency buckets"):
        build_model(retrain, meta, tables)
    with pytest.raises(ValueError, match="only single-id"):
        build_model(retrain.replace(embedding_dims={"genres": [8, 2]}),
                    {**meta, "frequency_buckets": buckets}, tables)


@pytest.mark.slow
def test_the_search_gives_noise_the_smallest_width_and_the_busy_field_the_largest(tmp_path):
    # A vector per pair: cat_0 carries 3 x 4 numbers per value, its partners 4.
    spec, build = _planted(tmp_path, 200_000, dim=4, shared_vectors=False)
    config = trainer.default_config(spec, "dlrm", embedding_search="search", epochs=15,
                                    architecture_warmup_epochs=5,
                                    embedding_candidates=[2, 4, 8, 16])
    trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / "s"),
                  log=lambda _: None, verbose=0)
    model = keras.saving.load_model(tmp_path / "s" / "model.keras")
    widths = {w["field"]: w for w in dimensions.searched_widths(model)}
    chosen = {name: w["width"] for name, w in widths.items()}
    # Decisively (not a tie of untouched logits, whose argmax is also the first, 2).
    assert all(chosen[f"cat_{i}"] == 2 and widths[f"cat_{i}"]["probabilities"]["2"] > 0.4
               for i in range(4, 8)), widths
    # The field of three interactions gets the largest width (BUILD.md, "AutoDim").
    assert chosen["cat_0"] == 16 and widths["cat_0"]["probabilities"]["16"] > 0.9, widths


# -------------------------------------------------------------------------------- AutoDis


def test_autodis_embeds_each_value_as_a_soft_mix_of_its_fields_meta_embeddings():
    layer = AutoDis(buckets=4, output_dim=3, temperature=0.5, skip=0.1)
    x = np.array([[0.3, -1.0], [2.0, 0.0]], "float32")
    out = np.asarray(layer(x))
    assert out.shape == (2, 2, 3)
    w, mixing, meta = (layer.bucket_weights.numpy(), layer.mixing.numpy(),
                       layer.meta_embeddings.numpy())
    for b in range(2):
        for f in range(2):
            h = w[f] * x[b, f]
            h = np.where(h > 0, h, 0.2 * h)  # LeakyReLU's default slope
            logits = (h @ mixing[f] + 0.1 * h) / 0.5
            p = np.exp(logits - logits.max())
            p /= p.sum()
            np.testing.assert_allclose(out[b, f], p @ meta[f], rtol=1e-4, atol=1e-6)
    again = AutoDis.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


def _band(tmp_path, rows):
    """The label: a pair of fields, and +3 where dense_0 (uniform in [0, 1)) is in [0.4, 0.6)."""
    planted = gen.Planted(pairs=[["cat_0", "cat_1", 1.0]], bands=[[0, 0.4, 0.6, 3.0]],
                          noise=0.1, dim=4)
    g = gen.Generator(gen.make_fields([100] * 4), num_dense=2, planted=planted, seed=0)
    gen.write_dataset(str(tmp_path / "data"), g, rows, name="planted-band", log=lambda _: None)
    spec = str(tmp_path / "data" / "spec.json")
    return spec, tfrecords.build_tfrecords(spec, output_dir=str(tmp_path / "tf"),
                                           log=lambda _: None)


def test_numeric_fields_embed_by_autodis_or_equal_frequency_buckets(tmp_path):
    spec, build = _band(tmp_path, 4_000)
    meta = tfrecords.read_metadata(build)
    config = Config(dataset=spec, model="deepmix", embedding_dim=4, numeric_embedding="autodis",
                    numeric_fields=["dense_0"])
    _, network, full = build_model(config, meta)
    assert network.get_layer("autodis").output.shape[1:] == (1, 4)
    # dense_0 left the dense vector for an embedding; dense_1 stays raw.
    assert network.get_layer("stacking").output.shape[-1] == 4 * 4 + 4 + 1
    boundaries = trainer.numeric_boundaries(build, meta, config.replace(
        numeric_embedding="buckets", numeric_buckets=4))
    assert list(boundaries) == ["dense_0"] and len(boundaries["dense_0"]) == 3
    # Equal frequency: each bucket holds about a quarter of the training values.
    values = tfrecords.read_examples(build, "train")["dense_0"]
    f = next(f for f in meta["features"] if f["name"] == "dense_0")
    transformed = np.asarray(NumericTransform(f["clip"], f["transform"], f["mean"],
                                              f["std"])(values))
    counts = np.bincount(np.searchsorted(boundaries["dense_0"], transformed, side="right"),
                         minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), 0.25, atol=0.01)
    buckets = config.replace(numeric_embedding="buckets", numeric_buckets=4)
    _, _, model = build_model(buckets, {**meta, "numeric_boundaries": boundaries})
    features = {k: v[:16] for k, v in tfrecords.read_examples(build, "test").items()
                if k in model.input}
    loaded = assert_reloads_equal(model, features, tmp_path / "m.keras")
    with pytest.raises(ValueError, match="needs the training split's bucket"):
        build_model(buckets, meta)
    with pytest.raises(ValueError, match="not numeric inputs"):
        build_model(config.replace(numeric_fields=["cat_0"]), meta)


@pytest.mark.slow
def test_autodis_recovers_a_band_effect_better_than_the_standardized_value(tmp_path):
    spec, build = _band(tmp_path, 200_000)
    auc = {}
    for mode in ("raw", "autodis"):
        config = trainer.default_config(spec, "deepmix", epochs=8, numeric_embedding=mode)
        auc[mode] = trainer.train(config, dataset_dir=build, model_dir=str(tmp_path / mode),
                                  log=lambda _: None, verbose=0)["val"]["auc"]
    assert auc["autodis"] > auc["raw"] + 0.01, auc


def test_autodis_embeds_dense_table_columns_named_by_table_and_column(small_data, tmp_path):
    build = tfrecords.build_tfrecords("movielens1m-rating", small_data["root"],
                                      str(tmp_path / "out"), svd_dim=4, log=lambda _: None)
    meta = tfrecords.read_metadata(build)
    meta = {**meta, "table_columns": trainer.table_columns(build, meta)}
    assert meta["table_columns"]["movie_graph"][:2] == ["log_count", "mean_rating"]
    from deepmix_tf.models import load_tables

    config = Config(dataset="movielens1m-rating", model="deepmix", embedding_dim=4)
    tables = load_tables(build, config, meta)
    width = meta["dense_tables"]["movie_graph"]["dim"]
    _, plain, _ = build_model(config, meta, tables)
    embedded = config.replace(numeric_embedding="autodis",
                              numeric_fields=["movie_graph/log_count", "movie_graph/mean_rating"])
    _, network, full = build_model(embedded, meta, tables)
    assert network.get_layer("autodis").output.shape[1:] == (2, 4)
    # Two columns leave the dense vector and come back as two 4-wide embeddings.
    assert (network.get_layer("stacking").output.shape[-1]
            == plain.get_layer("stacking").output.shape[-1] - 2 + 2 * 4)
    assert width > 2
    features = {k: v[:8] for k, v in tfrecords.read_examples(build, "test").items()
                if k in full.input}
    assert np.isfinite(np.asarray(full(features))).all()
    with pytest.raises(ValueError, match="movie_graph/log_count"):
        build_model(embedded.replace(numeric_fields=["movie_graph/nope"]), meta, tables)
