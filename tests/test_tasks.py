"""The task objects (deepmix_tf.tasks): label encoding, output layers, metrics, decisions and
serving outputs of regression, binary and multi-label tasks."""

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from deepmix_tf import tasks
from deepmix_tf.training import metrics

RATING = {"name": "rating", "type": "regression", "label": "rating", "range": [1, 5],
          "stats": {"mean": 3.0}}
CLICK = {"name": "click", "type": "binary", "label": "clicked", "stats": {"mean": 0.2}}
GENRE = {"name": "genre", "type": "multi_label", "label": "genres",
         "classes": ["Drama", "Action", "Comedy"], "separator": "|",
         "stats": {"mean": [0.5, 0.25, 0.25]}}


def _head_model(task, width=2):
    x = keras.Input((width,))
    return keras.Model(x, task.head(x))


def test_make_task_builds_each_type_and_rejects_an_unknown_one():
    assert type(tasks.make_task(RATING)) is tasks.Regression
    assert type(tasks.make_task(CLICK)) is tasks.Binary
    assert type(tasks.make_task(GENRE)) is tasks.MultiLabel
    assert sorted(tasks.TASK_TYPES) == ["binary", "multi_label", "regression"]
    with pytest.raises(ValueError, match="unknown task type 'ranking'"):
        tasks.make_task({"name": "rank", "type": "ranking", "label": "y"})
    with pytest.raises(ValueError, match="unknown task type None"):
        tasks.make_task({"name": "rank", "label": "y"})


def test_regression_clips_to_its_range_at_inference_but_not_in_training():
    task = tasks.make_task(RATING)
    assert (task.outputs, task.label_shape(), task.monitor) == (1, [], "val_mae")
    model = _head_model(task)
    head = model.get_layer("rating")
    assert isinstance(head, tasks.RatingHead) and (head.low, head.high) == (1, 5)
    head.dense.set_weights([np.array([[10.0], [0.0]], np.float32), np.zeros(1, np.float32)])
    x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.05, 0.0]], np.float32)
    # The training mean is the starting point: mean + w^T x.
    np.testing.assert_allclose(np.asarray(model(x, training=True)), [13.0, -7.0, 3.5])
    np.testing.assert_allclose(np.asarray(model(x, training=False)), [5.0, 1.0, 3.5])
    # Without a range nothing is clipped.
    free = tasks.make_task({**RATING, "range": None})
    free_model = _head_model(free)
    free_model.get_layer("rating").dense.set_weights(head.dense.get_weights())
    np.testing.assert_allclose(np.asarray(free_model(x, training=False)), [13.0, -7.0, 3.5])
    # Evaluation clips too, and the serving output says so.
    y, p = np.array([1.0, 5.0]), np.array([0.0, 6.0])
    assert task.validation_metrics(y, p) == {"mae": 0.0, "rmse": 0.0}
    assert free.validation_metrics(y, p) == {"mae": 1.0, "rmse": 1.0}
    results, decision = task.evaluate({"val": (y, p), "test": (y, p + 1)})
    assert decision is None and sorted(results) == ["test", "val"]
    assert results["test"] == metrics.regression_metrics(y, p + 1, 1, 5)
    (name, dtype, shape, meaning), = task.signature_outputs()
    assert (name, dtype, shape) == ("rating", "float32", "(batch,)") and "[1, 5]" in meaning
    assert sorted(task.serving_outputs(tf.constant([2.0]), {})) == ["rating"]


def _pairwise_auc(y, scores):
    """ROC AUC by counting: the share of (positive, negative) pairs ranked right, ties
    counting one half."""
    positives = [s for s, label in zip(scores, y) if label == 1]
    negatives = [s for s, label in zip(scores, y) if label == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_binary_metrics_equal_a_direct_computation():
    task = tasks.make_task(CLICK)
    y = np.array([1, 0, 1, 0, 1, 0, 0], np.float32)
    logits = np.array([2.0, -1.0, 0.5, 0.5, -0.3, 0.5, -3.0], np.float32)
    probability = 1 / (1 + np.exp(-logits.astype(np.float64)))
    log_loss = -np.mean(y * np.log(probability) + (1 - y) * np.log(1 - probability))
    auc = _pairwise_auc(y, logits)
    # 4 + 2 + 2 pairs ranked right, and two ties (0.5 against 0.5) of one half each.
    assert auc == pytest.approx(9 / 12)
    results, decision = task.evaluate({"val": (y, logits), "test": (y[::-1], logits)})
    assert decision == {"threshold": 0.5}
    assert results["val"]["auc"] == pytest.approx(auc, abs=1e-12)
    assert results["val"]["log_loss"] == pytest.approx(log_loss, rel=1e-6)
    assert results["val"]["accuracy"] == pytest.approx(np.mean((probability >= 0.5) == y))
    assert results["test"]["auc"] == pytest.approx(_pairwise_auc(y[::-1], logits))
    assert metrics.binary_metrics(y, logits)["auc"] == pytest.approx(auc)
    assert task.validation_logs(y, logits) == {"val_auc": pytest.approx(auc)}
    # Large logits stay finite; one class only has no AUC.
    big = metrics.binary_metrics([1, 0], [800.0, -800.0])
    assert big == {"auc": 1.0, "log_loss": pytest.approx(0.0)}
    assert np.isnan(metrics.binary_metrics([1, 1], [0.0, 1.0])["auc"])
    assert (task.metric_names, task.lower_is_better) == (("auc", "log_loss"), {"log_loss"})


def test_binary_head_starts_at_the_training_click_rate_and_serves_probabilities():
    task = tasks.make_task(CLICK)
    model = _head_model(task)
    start = np.asarray(model(np.zeros((3, 2), np.float32)))
    np.testing.assert_allclose(1 / (1 + np.exp(-start)), 0.2, rtol=1e-5)
    outputs = task.serving_outputs(tf.constant([0.0, 2.0, -2.0]), {"threshold": 0.5})
    assert sorted(outputs) == sorted(name for name, *_ in task.signature_outputs()) == [
        "predicted", "probability"]
    np.testing.assert_allclose(outputs["probability"], 1 / (1 + np.exp(-np.array([0, 2, -2]))),
                               rtol=1e-6)
    assert np.asarray(outputs["predicted"]).tolist() == [True, True, False]


def _click_spec(tmp_path, rows=400, seed=0):
    """A tiny click log and a spec of it (binary task)."""
    rng = np.random.default_rng(seed)
    with open(tmp_path / "events.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "price", "clicked"])
        for _ in range(rows):
            writer.writerow([f"u{rng.integers(0, 20)}", f"{rng.uniform(0, 100):.2f}",
                             int(rng.random() < 0.3)])
    spec = {
        "name": "tiny-clicks", "root": ".",
        "tables": {"events": {"files": "events.csv", "format": {"type": "csv"}, "columns": [
            {"name": "user"}, {"name": "price", "dtype": "float32", "optional": True},
            {"name": "clicked", "dtype": "int64", "values": [0, 1]}]}},
        "examples": {"table": "events"},
        "split": {"type": "random", "seed": 42, "fractions": [0.8, 0.1, 0.1]},
        "task": {"name": "click", "type": "binary", "label": "clicked"},
        "features": [{"name": "user", "type": "categorical"},
                     {"name": "price", "type": "numeric", "transform": ["log1p", "standardize"]}],
    }
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_a_binary_build_keeps_the_click_rate_and_its_model_starts_there(tmp_path):
    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import Config, build_model, load_tables

    spec = _click_spec(tmp_path)
    build = tfrecords.build_tfrecords(spec, None, str(tmp_path / "tf"), num_shards=1,
                                      log=lambda _: None)
    meta = tfrecords.read_metadata(build)
    train = tfrecords.read_examples(build, "train")
    rate = float(np.mean(train["clicked"]))
    assert 0.1 < rate < 0.5
    assert meta["task"]["stats"]["mean"] == pytest.approx(rate)
    assert meta["label"] == {"name": "clicked", "shape": []}
    # Without bias features the bias model is its head alone: the training click rate.
    config = Config(dataset=spec, model="biases", bias_features=[])
    _, _, full = build_model(config, meta, load_tables(build, config, meta))
    features = tfrecords.read_examples(build, "test")
    logits = np.asarray(full({k: tf.constant(features[k]) for k in full.input}))
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), rate, rtol=1e-4)


def test_multi_label_encodes_a_separator_joined_column_in_class_order():
    task = tasks.make_task(GENRE)
    assert (task.outputs, task.label_shape(), task.classes) == (3, [3], GENRE["classes"])
    got = task.encode_labels(["Comedy|Drama", "", "Action", "Drama|Drama"])
    np.testing.assert_array_equal(got, [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 0, 0]])
    assert got.dtype == np.float32
    other = tasks.make_task({**GENRE, "separator": ", ", "classes": ["b", "a"]})
    np.testing.assert_array_equal(other.encode_labels(["a, b", "a"]), [[1, 1], [0, 1]])
    assert task.label_stats(got)["mean"] == pytest.approx([0.5, 0.25, 0.25])
    assert _head_model(task).output.shape == (None, 3)


def test_multi_label_serving_outputs_have_the_documented_names():
    task = tasks.make_task(GENRE)
    logits = tf.constant([[0.0, 2.0, -2.0], [-1.0, -1.0, 3.0]])
    decision = {"thresholds": [0.5, 0.9, 0.1]}
    outputs = task.serving_outputs(logits, decision)
    documented = [name for name, *_ in task.signature_outputs()]
    assert documented == ["probabilities", "predicted", "genre_names", "threshold"]
    assert sorted(outputs) == sorted(documented)
    probabilities = 1 / (1 + np.exp(-np.asarray(logits)))
    np.testing.assert_allclose(outputs["probabilities"], probabilities, rtol=1e-6)
    np.testing.assert_array_equal(outputs["predicted"], probabilities >= [0.5, 0.9, 0.1])
    assert np.asarray(outputs["genre_names"]).astype(str).tolist() == [GENRE["classes"]] * 2
    np.testing.assert_allclose(outputs["threshold"], [[0.5, 0.9, 0.1]] * 2, rtol=1e-6)
    # Without a decision: one threshold of 0.5 for every label.
    np.testing.assert_allclose(task.serving_outputs(logits, {})["threshold"], 0.5)
    # The label column's name follows the task's name.
    other = tasks.make_task({**GENRE, "name": "topic"})
    assert "topic_names" in other.serving_outputs(logits, decision)


def test_multi_label_decision_is_chosen_on_validation():
    task = tasks.make_task(GENRE)
    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < [0.5, 0.25, 0.25]).astype(np.float32)
    logits = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 1, y.shape)
    results, decision = task.evaluate({"val": (y, logits), "test": (y, logits)})
    assert decision == metrics.choose_label_thresholds(y, logits, GENRE["stats"]["mean"])
    assert len(decision["thresholds"]) == task.outputs
    assert results["val"] == metrics.f1_scores(y, 1 / (1 + np.exp(-logits)),
                                               decision["thresholds"])
    assert results["val"]["micro_f1"] == pytest.approx(decision["val_micro_f1"], abs=1e-6)
