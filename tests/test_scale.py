"""Issue 18's systems side on small files: the streaming build against the whole-table build,
streaming input against in-memory input, bags and their pooling, sparse embedding updates."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from deepmix_tf.data import generate, stream, tfrecords
from deepmix_tf.data.errors import DataFormatError
from deepmix_tf.data.spec import load_spec
from deepmix_tf.layers.embedding import BagEmbedding, SparseEmbedding, SparseSGD


def _quiet(*_):
    pass


def _criteo(tmp_path, rows=3000, seed=0):
    g = generate.Generator(generate.make_fields([50] * 26, probabilities=1.1), num_dense=13,
                           seed=seed)
    generate.write_dataset(str(tmp_path), g, rows, file_format="criteo", log=_quiet)
    return str(tmp_path)


def _assert_same_build(a, b):
    ma, mb = tfrecords.read_metadata(a), tfrecords.read_metadata(b)
    for fa, fb in zip(ma["features"], mb["features"], strict=True):
        assert fa.keys() == fb.keys()
        for key in fa:
            if key in ("mean", "std"):
                assert fa[key] == pytest.approx(fb[key], rel=1e-9, abs=1e-12), fa["name"]
            else:
                assert fa[key] == fb[key], (fa["name"], key)
    assert ma["task"]["stats"]["mean"] == pytest.approx(mb["task"]["stats"]["mean"])
    assert ma["columns"] == mb["columns"]
    for split in ("train", "validation", "test"):
        assert ma["splits"][split]["examples"] == mb["splits"][split]["examples"]
        got, want = tfrecords.read_examples(a, split), tfrecords.read_examples(b, split)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_streaming_build_equals_the_whole_table_build(tmp_path):
    data = _criteo(tmp_path)
    assert stream.why_not_streaming(load_spec("criteo")) is None
    # Three pieces read by parallel threads, blocks smaller than a piece.
    a = tfrecords.build_tfrecords("criteo", data, str(tmp_path / "s"), num_shards=3,
                                  block_rows=256, log=_quiet)
    b = tfrecords.build_tfrecords("criteo", data, str(tmp_path / "w"), num_shards=3,
                                  streaming=False, log=_quiet)
    assert tfrecords.read_metadata(a)["streamed"] and len(
        tfrecords.read_metadata(a)["splits"]["train"]["files"]) >= 2
    _assert_same_build(a, b)


def test_blank_lines_move_no_split_boundary(tmp_path):
    # Line ends counted up front overcount the rows: the build counts again as read.
    data = _criteo(tmp_path, rows=1000)
    path = os.path.join(data, "criteo", "train.txt")
    lines = open(path).read().split("\n")
    open(path, "w").write("\n".join(lines[:10] + ["", ""] + lines[10:500] + [""] + lines[500:]))
    a = tfrecords.build_tfrecords("criteo", data, str(tmp_path / "s"), num_shards=2,
                                  log=_quiet)
    b = tfrecords.build_tfrecords("criteo", data, str(tmp_path / "w"), streaming=False,
                                  log=_quiet)
    _assert_same_build(a, b)


def test_streaming_build_names_the_bad_line_and_leaves_nothing(tmp_path):
    data = _criteo(tmp_path, rows=400)
    path = os.path.join(data, "criteo", "train.txt")
    lines = open(path).read().split("\n")
    fields = lines[299].split("\t")
    fields[3] = "12x"  # I3 of line 300
    lines[299] = "\t".join(fields)
    open(path, "w").write("\n".join(lines))
    out = tmp_path / "out"
    with pytest.raises(DataFormatError, match=rf"{path}, line 300, field 'I3': expected an "
                                              "integer, got '12x'"):
        tfrecords.build_tfrecords("criteo", data, str(out), num_shards=2, log=_quiet)
    lines[299] = "\t".join(fields[:20])
    open(path, "w").write("\n".join(lines))
    with pytest.raises(DataFormatError, match=rf"{path}, line 300: expected 40 '\\t'-separated "
                                              "fields"):
        tfrecords.build_tfrecords("criteo", data, str(out), num_shards=2, log=_quiet)
    assert not out.exists() or not os.listdir(out)


def _bags(tmp_path, kind="binary"):
    fields = [generate.Field("cat_0", 30, k_max=4), generate.Field("cat_1", 500, k=3),
              generate.Field("cat_2", 20, k=1)]
    planted = generate.Planted(fields={"cat_2": 3.0}, pairs=[["cat_0", "cat_1", 4.0]],
                               noise=0.1, kind=kind)
    g = generate.Generator(fields, num_dense=2, planted=planted, seed=3)
    result = generate.write_dataset(str(tmp_path / "raw"), g, 6000, chunk_rows=1000,
                                    log=_quiet)
    return g, result["spec"]


def test_bags_build_streamed_or_whole_alike(tmp_path):
    g, spec = _bags(tmp_path)
    assert stream.why_not_streaming(load_spec(spec)) is None
    a = tfrecords.build_tfrecords(spec, None, str(tmp_path / "s"), log=_quiet)
    b = tfrecords.build_tfrecords(spec, None, str(tmp_path / "w"), streaming=False, log=_quiet)
    _assert_same_build(a, b)
    train = tfrecords.read_examples(a, "train")
    want = g.rows(0, len(train["label"]))
    # Bags come back padded with -1 to the longest bag, as generated.
    assert train["cat_0"].shape[1] == 4 and train["cat_1"].shape[1] == 3
    np.testing.assert_array_equal(train["cat_0"], want["bags"]["cat_0"])
    np.testing.assert_array_equal((train["cat_0"] >= 0).sum(1), want["lengths"]["cat_0"])
    columns = {c["name"]: c for c in tfrecords.read_metadata(a)["columns"]}
    assert columns["cat_0"] == {"name": "cat_0", "dtype": "int64_list", "length": 4}
    assert pq.read_table(os.path.join(os.path.dirname(spec), "train.parquet")).num_rows == len(
        train["label"])


def test_streaming_input_equals_in_memory_input(tmp_path):
    data = _criteo(tmp_path, rows=2000)
    build = tfrecords.build_tfrecords("criteo", data, str(tmp_path / "b"), num_shards=3,
                                      block_rows=100, log=_quiet)
    whole = tfrecords.read_examples(build, "train")

    def rows(**kwargs):
        batches = list(tfrecords.make_dataset(build, "train", 64, **kwargs).as_numpy_iterator())
        assert all(len(y) == 64 for _, y in batches[:-1])
        features = {k: np.concatenate([f[k] for f, _ in batches]) for k in batches[0][0]}
        return features, np.concatenate([y for _, y in batches])

    streamed, labels = rows()
    memory, memory_labels = rows(in_memory=True)
    for name in memory:
        np.testing.assert_array_equal(streamed[name], memory[name])
        np.testing.assert_array_equal(streamed[name], whole[name])
    np.testing.assert_array_equal(labels, memory_labels)
    # Shuffled: the same rows, in a seeded order that changes with the seed and each epoch.
    key = [tuple(r) for r in np.stack([whole["I1"], whole["C1"].astype(str),
                                       whole["label"]], 1)]
    first, y = rows(shuffle=True, seed=1)
    order = [tuple(r) for r in np.stack([first["I1"], first["C1"].astype(str), y], 1)]
    assert sorted(order) == sorted(key) and order != key
    again, y2 = rows(shuffle=True, seed=1)
    np.testing.assert_array_equal(again["C1"], first["C1"])
    other, _ = rows(shuffle=True, seed=2)
    assert (other["C1"] != first["C1"]).any()
    ds = tfrecords.make_dataset(build, "train", 2000, shuffle=True, seed=1)
    epochs = [next(iter(ds))[0]["C1"].numpy() for _ in range(2)]
    assert (epochs[0] != epochs[1]).any()


def test_bag_pooling_sum_and_mean():
    ids = tf.constant([[1, 2, -1], [3, 3, 0], [-1, -1, -1]], tf.int64)
    for pooling in ("sum", "mean"):
        layer = BagEmbedding(5, 4, pooling=pooling)
        got = layer(ids).numpy()
        table = layer.get_weights()[0]
        want = np.stack([table[[1, 2]].sum(0), table[[3, 3, 0]].sum(0), np.zeros(4)])
        if pooling == "mean":
            want = want / np.array([[2], [3], [1]])
        np.testing.assert_allclose(got, want, rtol=1e-6)
        clone = BagEmbedding.from_config(layer.get_config())
        assert clone.pooling == pooling


def test_sparse_updates_leave_untouched_rows_unchanged():
    import keras

    bags = keras.Input((3,), dtype="int64")
    ids = keras.Input((), dtype="int64")
    bag_layer, id_layer = BagEmbedding(1000, 8), SparseEmbedding(1000, 8)
    x = keras.layers.Concatenate()([bag_layer(bags), id_layer(ids)])
    model = keras.Model([bags, ids], keras.layers.Dense(1)(x))
    model.compile(SparseSGD(0.5), "mse")
    before = [bag_layer.get_weights()[0], id_layer.get_weights()[0]]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model([tf.constant([[1, 2, -1]], tf.int64), tf.constant([7],
                                                                                     tf.int64)]))
    grads = tape.gradient(loss, [bag_layer.embeddings.value, id_layer.embeddings.value])
    assert all(isinstance(g, tf.IndexedSlices) for g in grads)
    rng = np.random.default_rng(0)
    x_bags = rng.integers(0, 100, (256, 3))
    x_bags[:, 2] = -1
    x_ids = rng.integers(0, 100, 256)
    model.fit([x_bags, x_ids], rng.normal(size=(256, 1)), batch_size=32, epochs=2, verbose=0)
    for layer, old, used in ((bag_layer, before[0], np.unique(x_bags[:, :2])),
                             (id_layer, before[1], np.unique(x_ids))):
        new = layer.get_weights()[0]
        untouched = np.setdiff1d(np.arange(1000), used)
        np.testing.assert_array_equal(new[untouched], old[untouched])
        assert (new[used] != old[used]).any(axis=1).all()
    # It serialises as Keras' SGD does (its dense update is SGD's own).
    config = keras.optimizers.SGD(0.5).get_config()
    assert SparseSGD.from_config(config).get_config() == config


@pytest.mark.slow
def test_dlrm_trains_on_streamed_bags(tmp_path):
    from deepmix_tf.training import trainer

    _, spec = _bags(tmp_path)
    # Adam: plain SGD from Keras' small uniform initial embeddings barely moves DLRM's dot
    # interactions in a few hundred steps (measured: validation AUC about 0.5).
    config = trainer.default_config(dataset=spec, model="dlrm", epochs=3, learning_rate=0.01,
                                    streaming="on", batch_size=128, embedding_dim=8,
                                    patience=3)
    out = trainer.train(config, tfrecord_dir=str(tmp_path / "tfrecords"),
                        model_dir=str(tmp_path / "model"), verbose=0, log=_quiet)
    # The planted label comes from a field and a pair of bags: an AUC far above chance.
    assert out["val"]["auc"] > 0.75, out["val"]
    with open(tmp_path / "model" / "config.json") as f:
        assert json.load(f)["streaming"] == "on"
    # Bags are (batch, length) inputs of the serving signature.
    from deepmix_tf.export.saved_model import export_run

    export = export_run(str(tmp_path / "model"), str(tmp_path / "serving"))
    served = tf.saved_model.load(export).signatures["serving_default"]
    assert served.structured_input_signature[1]["cat_0"].shape.as_list() == [None, 4]
