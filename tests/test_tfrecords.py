"""TFRecords build and tf.data reader, on small files the tests write."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from deepmix_tf.data import movielens, tfrecords
from deepmix_tf.data.errors import DataFormatError


def _build(small_data, tmp_path, protocol="rel-movielens1m", **kwargs):
    return tfrecords.build_tfrecords(small_data["root"], str(tmp_path / "out"),
                                     protocol=protocol, num_shards=3, svd_dim=4,
                                     log=lambda _: None, **kwargs)


def test_round_trip_equals_source_rows(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    users = {u[0]: u for u in small_data["users"]}
    movies = {m[0]: m for m in small_data["movies"]}
    for split in movielens.SPLITS:
        got = tfrecords.read_examples(out, "rating", split)
        source = small_data["rating_split"][split]
        assert got["user_id"].tolist() == [r[0] for r in source]
        assert got["movie_id"].tolist() == [r[1] for r in source]
        assert got["rating"].tolist() == [float(r[2]) for r in source]
        assert got["timestamp"].tolist() == [r[3] for r in source]
        assert got["zip_code"].astype(str).tolist() == [users[r[0]][4] for r in source]
        assert got["age"].tolist() == [users[r[0]][2] for r in source]
        assert got["genres"].astype(str).tolist() == [movies[r[1]][3] for r in source]
        assert got["year"].tolist() == [movies[r[1]][2] for r in source]
    genre = tfrecords.read_examples(out, "genre", "test")
    source = small_data["movie_split"]["test"]
    assert genre["movie_id"].tolist() == [m[0] for m in source]
    expected = tfrecords.genre_labels([m[3] for m in source])
    np.testing.assert_array_equal(genre["genres"], expected)


def test_genre_examples_never_carry_the_genre_column_as_input(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    features, _ = next(iter(tfrecords.make_dataset(out, "genre", "train", 8)))
    assert "genres" not in features


def test_metadata_counts_vocabularies_and_sources(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    meta = tfrecords.read_metadata(out)
    for name, rows in small_data["rating_split"].items():
        assert meta["tasks"]["rating"]["splits"][name]["examples"] == len(rows)
    for name, rows in small_data["movie_split"].items():
        assert meta["tasks"]["genre"]["splits"][name]["examples"] == len(rows)
    assert len(meta["sources"]) == 9 and all(len(v) == 32 for v in meta["sources"].values())
    vocab = meta["tasks"]["rating"]["vocabularies"]
    train = small_data["rating_split"]["train"]
    # Vocabularies come from the training split only.
    assert vocab["movie_id"] == sorted({r[1] for r in train})
    assert vocab["user_id"] == sorted({r[0] for r in train})
    assert vocab["zip_code"] == sorted({u[4][:3] for u in small_data["users"]})
    assert vocab["occupation"][0] == 0  # occupation 0 ("other") is a real value
    assert "" not in vocab["certificate"]  # unknown certificate maps to OOV
    genre_years = meta["tasks"]["genre"]["vocabularies"]["year"]
    assert genre_years == sorted(m[2] for m in small_data["movie_split"]["train"])


def test_test_only_ids_are_not_in_vocabulary(small_data, tmp_path):
    train_movies = {r[1] for r in small_data["rating_split"]["train"]}
    # Remove one movie from training: it must then be out of vocabulary.
    dropped = sorted(train_movies)[0]
    rating_split = dict(small_data["rating_split"])
    rating_split["train"] = [r for r in rating_split["train"] if r[1] != dropped]
    from conftest import write_rel
    write_rel(small_data["root"], small_data["users"], small_data["movies"],
              small_data["ratings"], rating_split, small_data["movie_split"])
    out = _build(small_data, tmp_path)
    assert dropped not in tfrecords.read_metadata(out)["tasks"]["rating"]["vocabularies"][
        "movie_id"]


def test_graph_table_spectral_size_is_set_per_task(small_data, tmp_path):
    messages = []
    out = tfrecords.build_tfrecords(small_data["root"], str(tmp_path / "out"), num_shards=3,
                                    svd_dim={"rating": 3, "genre": 5}, log=messages.append)
    assert tfrecords.read_metadata(out)["svd_dim"] == {"rating": 3, "genre": 5}
    for task, size in (("rating", 3), ("genre", 5)):
        with np.load(os.path.join(out, task, "movie_graph.npz")) as table:
            names = table["names"].tolist()
            assert table["values"].shape[1] == len(names)
        assert [n for n in names if n.startswith("svd_")] == [f"svd_{i}" for i in range(size)]
    # Another size is another build; the defaults are SVD_DIMS.
    messages.clear()
    tfrecords.build_tfrecords(small_data["root"], str(tmp_path / "out"), num_shards=3,
                              svd_dim={"rating": 3, "genre": 4}, log=messages.append)
    assert "up to date" not in messages[0]
    assert tfrecords.svd_dims() == tfrecords.SVD_DIMS
    assert tfrecords.svd_dims(6) == {"rating": 6, "genre": 6}
    with pytest.raises(ValueError, match="every task"):
        tfrecords.svd_dims({"genre": 4})
    with pytest.raises(ValueError, match="rating task must be a positive int"):
        tfrecords.svd_dims({"rating": 0, "genre": 4})


def test_build_command_line_sets_one_task_s_spectral_size(small_data, tmp_path):
    def build(*flags):
        return subprocess.run(
            [sys.executable, "-m", "experiments.build_tfrecords",
             f"--data_dir={small_data['root']}", f"--output_dir={tmp_path / 'out'}", *flags],
            cwd=REPO, capture_output=True, text=True, timeout=600,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    done = build("--svd_dim=genre=3")
    assert done.returncode == 0, done.stderr[-3000:]
    meta = tfrecords.read_metadata(str(tmp_path / "out" / "rel-movielens1m"))
    assert meta["svd_dim"] == {**tfrecords.SVD_DIMS, "genre": 3}
    assert meta["num_shards"] == 4  # what experiments.train builds, so it is reused
    done = build("--svd_dim=genre=0")
    assert done.returncode != 0 and "--svd_dim: expected task=size" in done.stderr


def test_rebuild_is_skipped_when_sources_unchanged(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    stamp = os.path.getmtime(os.path.join(out, "metadata.json"))
    messages = []
    tfrecords.build_tfrecords(small_data["root"], str(tmp_path / "out"), num_shards=3,
                              svd_dim=4, log=messages.append)
    assert os.path.getmtime(os.path.join(out, "metadata.json")) == stamp
    assert "up to date" in messages[0]
    # The same files reached by another path (relative here) are the same build.
    messages.clear()
    tfrecords.build_tfrecords(os.path.relpath(small_data["root"]), str(tmp_path / "out"),
                              num_shards=3, svd_dim=4, log=messages.append)
    assert "up to date" in messages[0]
    # A changed source file triggers a rebuild.
    path = os.path.join(small_data["root"], "rel-movielens1m", "regression", "users.csv")
    with open(path, "a") as f:
        f.write("1000,F,25,3,55555\n")
    fingerprint = tfrecords.read_metadata(out)["fingerprint"]
    _build(small_data, tmp_path)
    assert tfrecords.read_metadata(out)["fingerprint"] != fingerprint


def test_malformed_input_leaves_no_partial_output(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    before = tfrecords.read_metadata(out)
    path = os.path.join(small_data["root"], "rel-movielens1m", "regression", "ratings",
                        "train.csv")
    with open(path, "a") as f:
        f.write("1,2,3,4,5\n")
    with pytest.raises(DataFormatError, match=r"train\.csv, line \d+"):
        _build(small_data, tmp_path)
    # The earlier complete build is untouched, and no temporary folder is left behind.
    assert tfrecords.read_metadata(out) == before
    assert os.listdir(tmp_path / "out") == ["rel-movielens1m"]


def test_failed_first_build_leaves_nothing(small_data, tmp_path):
    path = os.path.join(small_data["root"], "rel-movielens1m", "classification", "movies",
                        "test.csv")
    with open(path, "a") as f:
        f.write('99,X,1999,NotAGenre,d,c,1,e,G,p,u\n')
    with pytest.raises(DataFormatError, match="NotAGenre"):
        _build(small_data, tmp_path)
    out = tmp_path / "out"
    assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("protocol", ["chronological", "random"])
def test_raw_ml1m_protocols(small_data, tmp_path, protocol):
    out = _build(small_data, tmp_path, protocol=protocol)
    meta = tfrecords.read_metadata(out)
    counts = [meta["tasks"]["rating"]["splits"][s]["examples"] for s in movielens.SPLITS]
    assert sum(counts) == len(small_data["ratings"])
    got = tfrecords.read_examples(out, "rating", "train")
    assert got["has_timestamp"].sum() == len(got["has_timestamp"]) - (
        3 if protocol == "chronological" else np.sum(got["timestamp"] == 0))


def test_dataset_shuffle_is_seeded_and_complete(small_data, tmp_path):
    out = _build(small_data, tmp_path)

    def order(seed, **kwargs):
        ds = tfrecords.make_dataset(out, "rating", "train", 7, shuffle=True, seed=seed, **kwargs)
        return [(int(u), int(m)) for f, _ in ds for u, m in zip(f["user_id"], f["movie_id"])]

    source = sorted((r[0], r[1]) for r in small_data["rating_split"]["train"])
    for kwargs in ({}, {"in_memory": True}, {"cache": True}):
        first = order(1, **kwargs)
        assert sorted(first) == source
        assert first == order(1, **kwargs)
        assert first != order(2, **kwargs)
        assert first != sorted(first)


def test_in_memory_reshuffles_each_epoch(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    ds = tfrecords.make_dataset(out, "rating", "train", 1000, shuffle=True, in_memory=True)
    epochs = [next(iter(ds))[0]["user_id"].numpy().tolist() for _ in range(2)]
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])


def test_dense_movie_table(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    ids, values = tfrecords.load_dense_table(out, "genre")
    assert ids.tolist() == [m[0] for m in small_data["movies"]]
    assert values.shape == (len(ids), 2 + 5 + 1 + 7 + 21 + 4)
    assert np.isfinite(values).all()
    counts = {}
    for r in small_data["ratings"]:
        counts[r[1]] = counts.get(r[1], 0) + 1
    np.testing.assert_allclose(values[:, 0], [np.log1p(counts.get(m, 0)) for m in ids],
                               rtol=1e-6)


def test_shard_by_file_across_workers(small_data, tmp_path):
    import tensorflow as tf
    out = _build(small_data, tmp_path)
    seen = []
    for worker in range(3):
        context = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=worker)
        got = tfrecords.read_examples(out, "rating", "train", input_context=context)
        seen.append(list(zip(got["user_id"], got["movie_id"])))
    assert all(seen) and sum(map(len, seen)) == len(small_data["rating_split"]["train"])
    assert not set(seen[0]) & set(seen[1])


def test_metadata_is_plain_json(small_data, tmp_path):
    out = _build(small_data, tmp_path)
    with open(os.path.join(out, "metadata.json")) as f:
        meta = json.load(f)
    names = [f["name"] for f in meta["tasks"]["rating"]["features"]]
    assert names[:2] == ["user_id", "gender"] and meta["genres"] == list(movielens.GENRES)
