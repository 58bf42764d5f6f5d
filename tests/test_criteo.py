"""Criteo's format end to end through the shipped `criteo` spec, on files the tests write:
build, training (DeepMix, DCN-V2, DLRM) with the binary task, export, and serving in a clean
process."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from clean_client import serve_in_clean_process
from deepmix_tf.data import tfrecords
from deepmix_tf.data.errors import DataFormatError
from deepmix_tf.export import export_run
from deepmix_tf.training import trainer

NUMERIC = [f"I{i}" for i in range(1, 14)]
CATEGORICAL = [f"C{i}" for i in range(1, 27)]


def write_criteo(path, rows=3000, seed=0):
    """A Kaggle-format train.txt: label, 13 counts, 26 hashed categoricals, tab-separated,
    empty fields missing. The click depends on I1 and on C1's value (a planted signal)."""
    rng = np.random.default_rng(seed)
    pools = {c: [f"{rng.integers(0, 2 ** 32):08x}" for _ in range(12)] for c in CATEGORICAL}
    c1_effect = dict(zip(pools["C1"], rng.normal(0, 1.5, len(pools["C1"]))))
    lines = []
    for _ in range(rows):
        counts = rng.geometric(0.05, len(NUMERIC)) - 2  # some -1, as in Criteo's I-fields
        cats = {c: pools[c][rng.integers(0, len(pools[c]))] for c in CATEGORICAL}
        logit = 1.5 * (np.log1p(max(counts[0], 0)) - 2.5) + c1_effect[cats["C1"]]
        label = int(rng.random() < 1 / (1 + np.exp(-logit)))
        fields = [str(label)]
        fields += ["" if rng.random() < 0.1 else str(v) for v in counts]
        fields += ["" if rng.random() < 0.05 and c != "C1" else cats[c] for c in CATEGORICAL]
        lines.append("\t".join(fields))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def criteo_root(tmp_path):
    root = tmp_path / "data"
    write_criteo(root / "criteo" / "train.txt")
    return str(root)


def test_criteo_build_reads_every_field_and_splits_in_file_order(criteo_root, tmp_path):
    out = tfrecords.build_tfrecords("criteo", criteo_root, str(tmp_path / "tf"),
                                    log=lambda _: None)
    meta = tfrecords.read_metadata(out)
    assert meta["task"]["type"] == "binary"
    counts = [meta["splits"][s]["examples"] for s in ("train", "validation", "test")]
    assert counts == [2571, 214, 215]  # 6 : 0.5 : 0.5, as DLRM splits its 7 days
    first = tfrecords.read_examples(out, "train")
    lines = open(os.path.join(criteo_root, "criteo", "train.txt")).read().splitlines()
    fields = lines[0].split("\t")
    assert first["label"][0] == float(fields[0])
    assert first["I1"][0] == (int(fields[1]) if fields[1] else 0)
    assert first["C2"][0].decode() == fields[15]
    test = tfrecords.read_examples(out, "test")
    assert test["C1"][-1].decode() == lines[-1].split("\t")[14]  # the last line is last
    features = {f["name"]: f for f in meta["features"]}
    assert features["I1"]["transform"] == ["log1p", "standardize"]
    assert features["C1"]["vocabulary"] and "" not in features["C3"]["vocabulary"]


def test_a_malformed_criteo_line_names_file_line_and_field(tmp_path):
    path = write_criteo(tmp_path / "data" / "criteo" / "train.txt", rows=50)
    lines = path.read_text().splitlines()
    fields = lines[6].split("\t")
    fields[3] = "twelve"
    lines[6] = "\t".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"train\.txt, line 7, field 'I3': expected an "
                                              r"integer, got 'twelve'"):
        tfrecords.build_tfrecords("criteo", str(tmp_path / "data"), str(tmp_path / "tf"),
                                  log=lambda _: None)
    assert not os.path.exists(tmp_path / "tf" / "criteo")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["deepmix", "dcn_v2", "dlrm"])
def test_criteo_trains_with_the_binary_task_and_serves_it(criteo_root, tmp_path, model):
    model_dir = tmp_path / "run"
    config = trainer.default_config("criteo", model, embedding_dim=4, low_rank=4,
                                    num_experts=2, head_units=[16], batch_size=128, epochs=6,
                                    patience=6, learning_rate=3e-3)
    trainer.train(config, data_dir=criteo_root, tfrecord_dir=str(tmp_path / "tf"),
                  model_dir=str(model_dir), log=lambda _: None, verbose=0)
    run = json.loads((model_dir / "metrics.json").read_text())
    assert run["task"] == "click" and run["task_type"] == "binary"
    for split in ("val", "test"):
        assert set(run[split]) >= {"auc", "log_loss"}
    # The planted signal is learnt: well above chance, and better than the base rate's loss.
    assert run["val"]["auc"] > 0.7, run["val"]
    build = run["build"]["dir"]
    rate = tfrecords.read_metadata(build)["task"]["stats"]["mean"]
    base = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert run["test"]["log_loss"] < base

    export = export_run(str(model_dir), str(tmp_path / "serving"), model_name=model)
    model = keras.saving.load_model(model_dir / "model.keras")
    features, _ = next(iter(tfrecords.make_dataset(build, "test", 64)))
    features = {k: v.numpy().astype("S") if v.dtype == tf.string else v.numpy()
                for k, v in features.items() if k in model.input}
    features["C1"][:2] = [b"unseen00", b""]  # unknown and missing values take the OOV row
    expected = 1 / (1 + np.exp(-np.asarray(model({k: tf.constant(v)
                                                   for k, v in features.items()}))))
    outputs, report = serve_in_clean_process(tmp_path, export, features, "I1")
    assert sorted(outputs) == ["predicted", "probability"]
    np.testing.assert_allclose(outputs["probability"], expected, atol=1e-5)
    np.testing.assert_array_equal(outputs["predicted"], outputs["probability"] >= 0.5)
    assert report["leaked"] == []
    assert "int64" in report["errors"]["wrong_dtype"]  # refused, saying what it expects
    assert "missing a required argument" in report["errors"]["missing"]


def test_criteo_counts_embed_by_autodis_and_its_fields_search_a_width_per_bucket(
        criteo_root, tmp_path):
    from deepmix_tf.models import build_model

    build = tfrecords.build_tfrecords("criteo", criteo_root, str(tmp_path / "tf"),
                                      log=lambda _: None)
    meta = tfrecords.read_metadata(build)
    config = trainer.default_config("criteo", "dlrm", embedding_dim=4,
                                    numeric_embedding="autodis", embedding_search="search",
                                    embedding_candidates=[2, 4], embedding_buckets=2)
    buckets = trainer.frequency_buckets(build, meta, config)
    assert sorted(buckets) == sorted(CATEGORICAL)
    _, network, full = build_model(config, {**meta, "frequency_buckets": buckets})
    # The 13 counts each get an AutoDis embedding; the 26 fields a width per bucket.
    assert network.get_layer("autodis").output.shape[1:] == (13, 4)
    assert all(network.get_layer(f"{c}_embedding").bucket_rows
               == np.bincount(buckets[c], minlength=2).tolist() for c in CATEGORICAL)
    features, _ = next(iter(tfrecords.make_dataset(build, "test", 32)))
    assert np.isfinite(np.asarray(full({k: v for k, v in features.items()
                                        if k in full.input}))).all()
