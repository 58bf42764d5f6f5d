"""Recommendations: the Recommender, the exported `recommend` signatures (called in a process
that imports only TensorFlow), the command line, and the ranking metrics."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from clean_client import call_in_clean_process
from conftest import REPO, make_movielens, simple_splits, write_ml1m, write_rel
from deepmix_tf.data import tfrecords
from deepmix_tf.data.spec import SpecError, load_spec, parse_spec
from deepmix_tf.export import export_run
from deepmix_tf.export import recommend as rec
from deepmix_tf.training import ranking, trainer

TINY = dict(embedding_dim=4, low_rank=4, num_experts=2, head_units=[8], batch_size=64,
            epochs=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny DeepMix rating run on small rel-movielens1m-shaped data, and its export."""
    tmp = tmp_path_factory.mktemp("recommend")
    users, movies, ratings = make_movielens()
    root = tmp / "data"
    write_ml1m(root, users, movies, ratings)
    write_rel(root, users, movies, ratings, *simple_splits(movies, ratings))
    model_dir = tmp / "run"
    trainer.train(trainer.default_config("movielens1m-rating", "deepmix", **TINY),
                  data_dir=str(root), tfrecord_dir=str(tmp / "tf"), model_dir=str(model_dir),
                  log=lambda _: None, verbose=0)
    recommender, dataset_dir, meta = rec.load_run(str(model_dir))
    export = export_run(str(model_dir), str(tmp / "serving"), "deepmix_rating")
    return {"tmp": tmp, "model_dir": model_dir, "recommender": recommender,
            "dataset_dir": dataset_dir, "meta": meta, "export": export,
            "catalogue": tfrecords.load_catalogue(dataset_dir, meta)}


def _users(run, n=4):
    """Raw features of the first n test examples' users (the last one made unknown)."""
    rows = tfrecords.read_examples(run["dataset_dir"], "test")
    features = {s.name: rows[s.name][:n].copy() for s in run["recommender"].user_specs}
    features["user_id"][-1] = 10 ** 9
    features["zip_code"][-1] = b"zzz"
    return features


def _numpy_ranking(run, features, k):
    """Top-k ids by the Keras model's own scores of every (user, item) pair, ties broken by
    catalogue order."""
    model = keras.saving.load_model(run["model_dir"] / "model.keras")
    catalogue = run["catalogue"]
    n = len(catalogue)
    out = []
    for u in range(len(features["user_id"])):
        pairs = {name: np.repeat(v[u:u + 1], n, 0) for name, v in features.items()}
        for name in model.input:
            if name in catalogue:
                values = catalogue[name].to_numpy()
                pairs[name] = values.astype(str).astype(object) if values.dtype == object \
                    else values.astype(np.int64)
        scores = np.asarray(model({k: tf.constant(v) for k, v in pairs.items()}))
        order = np.argsort(-scores, kind="stable")[:k]
        out.append((catalogue["movie_id"].to_numpy()[order], scores[order]))
    return out


@pytest.mark.slow
def test_the_signature_in_a_tensorflow_only_process_equals_a_numpy_ranking(run, tmp_path):
    features = _users(run)
    inputs = {**{k: (v.astype("S") if v.dtype == object else v) for k, v in features.items()},
              "k": np.asarray(7, np.int32)}
    outputs, report = call_in_clean_process(tmp_path, run["export"], "recommend", inputs)
    assert report == {"errors": {}, "leaked": []}
    assert outputs["item_ids"].shape == (4, 7) and outputs["scores"].shape == (4, 7)
    for row, (ids, scores) in enumerate(_numpy_ranking(run, features, 7)):
        np.testing.assert_allclose(outputs["scores"][row], scores, atol=1e-5)
        np.testing.assert_array_equal(outputs["item_ids"][row], ids)
    # The Python path gives the same answer.
    ids, scores = run["recommender"].recommend(features, 7)
    np.testing.assert_array_equal(ids, outputs["item_ids"])
    np.testing.assert_allclose(scores, outputs["scores"], atol=1e-6)


@pytest.mark.slow
def test_results_are_sorted_and_deterministic_and_an_unknown_user_gets_k_items(run):
    features = _users(run)
    first = run["recommender"].recommend(features, 10)
    second = run["recommender"].recommend(features, 10)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    ids, scores = first
    assert (np.diff(scores, axis=1) <= 0).all()
    catalogue = set(run["catalogue"]["movie_id"].tolist())
    for row in ids:  # the last row is the unknown user
        assert len(set(row.tolist())) == 10 and set(row.tolist()) <= catalogue
    assert np.isfinite(scores).all()


@pytest.mark.slow
def test_excluded_items_are_left_out_and_padding_fills_an_exhausted_catalogue(run, tmp_path):
    features = _users(run, 2)
    all_ids = run["catalogue"]["movie_id"].to_numpy()
    best, _ = run["recommender"].recommend(features, 5)
    # Row 0: its top 3 excluded, given twice and padded with ids outside the catalogue.
    # Row 1: everything but 2 items excluded, and k = 5.
    exclude = np.full((2, len(all_ids) + 4), -1, np.int64)
    exclude[0, :6] = list(best[0, :3]) * 2
    exclude[1, :len(all_ids) - 2] = all_ids[2:]
    inputs = {**{k: (v.astype("S") if v.dtype == object else v) for k, v in features.items()},
              "k": np.asarray(5, np.int32), "exclude": exclude}
    outputs, report = call_in_clean_process(tmp_path, run["export"], "recommend_excluding",
                                            inputs)
    assert report["errors"] == {}
    np.testing.assert_array_equal(outputs["item_ids"][0, :2], best[0, 3:])
    assert not set(best[0, :3]) & set(outputs["item_ids"][0].tolist())
    assert sorted(outputs["item_ids"][1, :2]) == sorted(all_ids[:2])
    np.testing.assert_array_equal(outputs["item_ids"][1, 2:], [-1, -1, -1])
    assert np.isneginf(outputs["scores"][1, 2:]).all()
    assert np.isfinite(outputs["scores"][1, :2]).all()


@pytest.mark.slow
@pytest.mark.parametrize("k, message", [
    (31, "k must be at most 30, the number of items in the catalogue"),
    (0, "k must be at least 1")])
def test_a_k_outside_the_catalogue_is_a_clear_error(run, tmp_path, k, message):
    features = _users(run, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        run["recommender"].recommend(features, k)
    inputs = {**{n: (v.astype("S") if v.dtype == object else v) for n, v in features.items()},
              "k": np.asarray(k, np.int32)}
    _, report = call_in_clean_process(tmp_path, run["export"], "recommend", inputs)
    assert message in report["errors"]["call"]


@pytest.mark.slow
def test_the_command_line_skips_what_the_user_rated_in_training(run):
    users, items, _ = rec.interactions(run["dataset_dir"], run["meta"], "train")
    user = int(users[0])
    seen = set(items[users == user].tolist())
    result = subprocess.run([sys.executable, "-m", "experiments.recommend", "--model_dir",
                             str(run["model_dir"]), "--user_id", str(user), "--k", "5"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    header = lines.index("rank\tmovie_id\ttitle\tyear\tscore")
    shown = [line.split("\t") for line in lines[header + 1:]]
    assert [row[0] for row in shown] == ["1", "2", "3", "4", "5"]
    assert not {int(row[1]) for row in shown} & seen
    titles = dict(zip(run["catalogue"]["movie_id"], run["catalogue"]["title"]))
    assert all(row[2] == titles[int(row[1])] for row in shown)


@pytest.mark.slow
def test_ranking_evaluation_scores_every_test_user_with_a_relevant_item(run):
    users, labels = rec.interactions(run["dataset_dir"], run["meta"], "test")[::2]
    wanted = len(set(users[labels >= 4].tolist()))
    held = ranking.HeldOut(run["dataset_dir"], run["meta"])
    for metrics in (ranking.evaluate_run(str(run["model_dir"]), log=None),
                    ranking.evaluate_run(str(run["model_dir"]), held, log=None),
                    ranking.popularity(held)):
        assert metrics["users"] == wanted
        assert all(0 <= metrics[m] <= 1 for m in ranking.METRICS)


def test_ranking_metrics_by_hand():
    ranked = [[5, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
              list(range(100, 120)), list(range(1, 21))]
    relevant = [{1, 12}, {1}, set()]
    metrics = ranking.ranking_metrics(ranked, relevant)
    # User 1: hit at rank 2 (in the top 10); 12 is at rank 14 (in the top 20 only).
    ndcg = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert metrics["users"] == 2  # the third has no relevant item
    assert metrics["hr@10"] == pytest.approx(0.5)
    assert metrics["ndcg@10"] == pytest.approx(ndcg / 2)
    assert metrics["recall@20"] == pytest.approx(0.5)


def test_seen_items_pads_each_users_items():
    seen = rec.seen_items(np.array([3, 1, 3, 2, 3]), np.array([30, 10, 31, 20, 32]),
                          np.array([3, 9, 1]))
    np.testing.assert_array_equal(seen, [[30, 31, 32], [-1, -1, -1], [10, -1, -1]])


def test_the_recommend_section_is_checked():
    raw = load_spec("movielens1m-rating").raw
    with pytest.raises(SpecError, match="recommend.items.*not a table joined"):
        parse_spec({**raw, "recommend": {"items": "ratings", "user": "user_id"}})
    with pytest.raises(SpecError, match="recommend.user.*no column 'who'"):
        parse_spec({**raw, "recommend": {"items": "movies", "user": "who"}})
    with pytest.raises(SpecError, match="recommend.user.*column of the item table"):
        parse_spec({**raw, "recommend": {"items": "movies", "user": "title"}})
    genre = load_spec("movielens1m-genre").raw
    with pytest.raises(SpecError, match="recommend"):
        parse_spec({**genre, "recommend": {"items": "movies", "user": "user_id"}})
    spec = parse_spec(raw)
    assert spec.recommend == {"items": "movies", "key": "movie_id", "user": "user_id",
                              "relevant_at_least": 4}
