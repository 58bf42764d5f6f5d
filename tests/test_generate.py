"""The DLRM-style data generators (`deepmix_tf.data.generate`): bag counts and ranges,
distinct indices, chunk determinism, fitted and Zipf frequencies, planted labels a probe can
recover, and the Parquet and Criteo writers. Numpy only, small sizes."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from deepmix_tf.data import generate as gen
from deepmix_tf.data import readers, spec as spec_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def distinct(bags):
    """Whether every bag's valid indices are distinct."""
    s = np.sort(np.where(bags >= 0, bags, np.iinfo(np.int64).max), axis=1)
    valid = s[:, 1:] != np.iinfo(np.int64).max
    return not ((s[:, 1:] == s[:, :-1]) & valid).any()


def auc(score, label):
    """Rank-based ROC AUC (ties averaged)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    values, inverse = np.unique(score, return_inverse=True)
    ranks = (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]
    pos = label > 0.5
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def one_hot(values, m):
    out = np.zeros((len(values), m))
    out[np.arange(len(values)), values] = 1.0
    return out


def probe(train_x, train_y, test_x):
    """Least-squares predictions of a linear probe with an intercept."""
    add = lambda x: np.hstack([x, np.ones((len(x), 1))])  # noqa: E731
    w = np.linalg.lstsq(add(train_x), train_y, rcond=None)[0]
    return add(test_x) @ w


# ------------------------------------------------------------------------------- bags


def test_fixed_k_gives_exactly_k_indices():
    g = gen.Generator(gen.make_fields([1000, 50], k=5), num_dense=2, seed=1)
    rows = g.rows(0, 5000)
    for name in ("cat_0", "cat_1"):
        bags = rows["bags"][name]
        assert bags.shape == (5000, 5) and bags.dtype == np.int64
        assert ((bags >= 0).sum(axis=1) == 5).all()
        assert (rows["lengths"][name] == 5).all() and rows["lengths"][name].dtype == np.int32
    assert rows["label"].dtype == np.float32 and set(np.unique(rows["label"])) == {0.0, 1.0}


def test_random_k_lengths_and_padding():
    g = gen.Generator(gen.make_fields([50], k_max=6, probabilities=1.1), num_dense=0)
    rows = g.rows(0, 4000)
    bags, lengths = rows["bags"]["cat_0"], rows["lengths"]["cat_0"]
    assert bags.shape == (4000, 6) and rows["dense"].shape == (4000, 0)
    assert lengths.min() == 1 and lengths.max() == 6
    position = np.arange(6)[None, :]
    assert (bags[position >= lengths[:, None]] == -1).all()   # padded tail
    assert (bags[position < lengths[:, None]] >= 0).all()
    assert ((bags >= 0).sum(axis=1) == lengths).all()


def test_ranges_and_dense_distributions():
    g = gen.Generator(gen.make_fields([7, 300], k=3), num_dense=4, seed=2)
    rows = g.rows(0, 5000)
    for name, m in (("cat_0", 7), ("cat_1", 300)):
        valid = rows["bags"][name][rows["bags"][name] >= 0]
        assert valid.min() >= 0 and valid.max() < m
    dense = rows["dense"]
    assert dense.dtype == np.float32 and dense.min() >= 0 and dense.max() < 1
    assert abs(dense.mean() - 0.5) < 0.01
    normal = gen.Generator([], num_dense=4, dense_dist="normal", seed=3).rows(0, 5000)["dense"]
    assert abs(normal.mean()) < 0.03 and abs(normal.std() - 1) < 0.03   # 20k values


@pytest.mark.parametrize("m,k,k_max,zipf", [(12, 10, None, None), (1000, 8, None, None),
                                            (30, 1, 20, 1.2), (12, 10, None, 0.5)])
def test_indices_distinct_within_every_bag(m, k, k_max, zipf):
    g = gen.Generator(gen.make_fields([m], k=k, k_max=k_max, probabilities=zipf), num_dense=0)
    bags = g.rows(0, 8000)["bags"]["cat_0"]
    assert distinct(bags)
    assert ((bags >= 0).sum(axis=1) == g.rows(0, 8000)["lengths"]["cat_0"]).all()


def test_impossible_bags_raise():
    with pytest.raises(ValueError, match="at least as many table rows"):
        gen.Field("cat_0", 5, k=6)
    p = np.zeros(100)
    p[:3] = 1.0
    with pytest.raises(ValueError, match="only 3 values have non-zero probability"):
        gen.Field("cat_0", 100, k=4, probabilities=p)
    p = np.full(100, 1e-12)
    p[0] = 1.0
    field = gen.Field("cat_0", 100, k=3, probabilities=p)
    with pytest.raises(ValueError, match="redraw rounds"):
        gen.sample_bags(np.random.default_rng(0), 50, field, max_rounds=5)


# ------------------------------------------------------------------------------- determinism


def test_same_seed_same_rows_however_chunked():
    fields = gen.make_fields([100, 40], k_max=4, probabilities=1.0)
    planted = {"fields": {"cat_0": 1.0}, "pairs": [["cat_0", "cat_1", 1.0]], "dense": {0: 1.0}}
    g = gen.Generator(fields, num_dense=3, planted=planted, seed=7)
    whole = g.rows(0, 20000)
    parts = list(gen.Generator(fields, num_dense=3, planted=planted, seed=7)
                 .chunks(20000, chunk_rows=3001))
    assert len(parts) == 7

    def joined(key, name=None):
        return np.concatenate([p[key] if name is None else p[key][name] for p in parts])

    for key in ("dense", "label"):
        np.testing.assert_array_equal(joined(key), whole[key])
    for name in ("cat_0", "cat_1"):
        np.testing.assert_array_equal(joined("bags", name), whole["bags"][name])
        np.testing.assert_array_equal(joined("lengths", name), whole["lengths"][name])
    middle = g.rows(12345, 15000)
    np.testing.assert_array_equal(middle["bags"]["cat_1"], whole["bags"]["cat_1"][12345:15000])
    other = gen.Generator(fields, num_dense=3, planted=planted, seed=8).rows(0, 20000)
    assert not np.array_equal(other["dense"], whole["dense"])
    assert not np.array_equal(other["bags"]["cat_0"], whole["bags"]["cat_0"])


# ------------------------------------------------------------------------------- synthetic


def test_sampler_is_the_inverse_cdf():
    rng = np.random.default_rng(0)
    p = rng.random(500) ** 4
    p[rng.random(500) < 0.3] = 0.0      # runs of zero-probability values
    p[-5:] = 0.0
    sampler = gen.Sampler(500, p / p.sum())
    cdf = sampler.cdf[sampler.cdf < 1]   # bucket edges, exactly
    u = np.concatenate([rng.random(50000), [0.0, 1 - 2 ** -53], cdf, np.arange(500) / 500])
    expected = np.searchsorted(sampler.cdf, u, side="right")
    np.testing.assert_array_equal(sampler.quantile(u), expected)
    assert (p[sampler.quantile(u)] > 0).all()


def test_fitted_frequencies_are_reproduced():
    rng = np.random.default_rng(1)
    observed = rng.choice(50, size=20000, p=gen.zipf_probabilities(50, 1.3))
    p = gen.fit_frequencies(observed, num_rows=60)
    assert p.shape == (60,) and abs(p.sum() - 1) < 1e-12 and (p[50:] == 0).all()
    np.testing.assert_allclose(p, np.bincount(observed, minlength=60) / 20000)
    draws = gen.Sampler(60, p).draw(np.random.default_rng(2), 200000)
    empirical = np.bincount(draws, minlength=60) / len(draws)
    top = int(np.argmax(p))
    assert abs(empirical[top] - p[top]) < 0.01
    assert np.abs(empirical - p).max() < 0.01 and (empirical[p == 0] == 0).all()
    with pytest.raises(ValueError, match="outside"):
        gen.fit_frequencies([0, 5], num_rows=5)


def test_zipf_head_heavier_than_uniform():
    m, n = 10000, 200000
    zipf = gen.Sampler(m, gen.zipf_probabilities(m, 1.05)).draw(np.random.default_rng(0), n)
    uniform = gen.Sampler(m).draw(np.random.default_rng(0), n)
    head = lambda x: np.mean(x < m // 100)  # noqa: E731  share of the top 1% of values
    assert head(zipf) > 0.4 and abs(head(uniform) - 0.01) < 0.002
    assert np.bincount(zipf).max() > 20 * np.bincount(uniform).max()


def test_vocabulary_indices():
    vocab = ["a", "b", "c"]
    np.testing.assert_array_equal(
        gen.vocabulary_indices(np.array([b"c", b"a", b"x", b"c"], object), vocab), [2, 0, 2])
    np.testing.assert_array_equal(
        gen.vocabulary_indices(np.array(["a|b", "", "c|z"], object), vocab, "|"), [0, 1, 2])
    np.testing.assert_array_equal(gen.vocabulary_indices(np.array([5, 7, 9]), [9, 5]), [1, 0])


# ------------------------------------------------------------------------------- planted


def planted_generator(kind, base_rate=0.5):
    fields = gen.make_fields([20, 20, 20, 20])
    planted = gen.Planted(fields={"cat_0": 1.5}, pairs=[["cat_1", "cat_2", 2.5]], noise=0.05,
                          kind=kind, base_rate=base_rate, seed=11)
    return gen.Generator(fields, num_dense=2, planted=planted, seed=5)


def test_planted_binary_label_recovered_by_a_probe():
    g = planted_generator("binary")
    rows = g.rows(0, 40000)
    bag = {n: rows["bags"][n][:, 0] for n in rows["bags"]}
    y = rows["label"]
    assert abs(y.mean() - 0.5) < 0.02
    features = np.hstack([one_hot(bag["cat_0"], 20), one_hot(bag["cat_1"] * 20 + bag["cat_2"],
                                                             400)])
    train, test = slice(0, 30000), slice(30000, None)
    assert auc(probe(features[train], y[train], features[test]), y[test]) > 0.8
    unnamed = one_hot(bag["cat_3"], 20)
    assert 0.45 < auc(probe(unnamed[train], y[train], unnamed[test]), y[test]) < 0.55
    truth = json.loads(json.dumps(g.truth))
    assert truth["fields"] == {"cat_0": 1.5} and truth["pairs"] == [["cat_1", "cat_2", 2.5]]
    assert truth["seed"] == 11 and truth["data_seed"] == 5 and truth["kind"] == "binary"


def test_planted_regression_and_base_rate():
    rows = planted_generator("regression").rows(0, 40000)
    bag = {n: rows["bags"][n][:, 0] for n in rows["bags"]}
    y = rows["label"]
    features = np.hstack([one_hot(bag["cat_0"], 20), one_hot(bag["cat_1"] * 20 + bag["cat_2"],
                                                             400)])
    predicted = probe(features[:30000], y[:30000], features[30000:])
    r2 = 1 - np.mean((predicted - y[30000:]) ** 2) / np.var(y[30000:])
    assert r2 > 0.5
    assert abs(planted_generator("binary", base_rate=0.2).rows(0, 40000)["label"].mean()
               - 0.2) < 0.02


def test_a_planted_band_adds_its_weight_inside_the_band_only():
    planted = gen.Planted(bands=[[1, 0.25, 0.5, 3.0]], noise=0.0, kind="regression")
    rows = gen.Generator(gen.make_fields([10]), num_dense=2, planted=planted,
                         seed=0).rows(0, 2000)
    x = rows["dense"][:, 1]
    np.testing.assert_allclose(rows["label"], 3.0 * ((x >= 0.25) & (x < 0.5)), atol=1e-6)
    assert gen.Planted.parse(planted.to_dict()) == planted
    with pytest.raises(ValueError, match="low < high"):
        gen.Planted(bands=[[0, 0.5, 0.5, 1.0]])


def test_per_pair_vectors_give_a_field_a_vector_for_each_of_its_pairs():
    pairs = [["cat_0", "cat_1", 1.0], ["cat_0", "cat_2", 2.0]]
    fields = gen.make_fields([10, 10, 10])
    planted = gen.Planted(pairs=pairs, noise=0.0, kind="regression", shared_vectors=False)
    g = gen.Generator(fields, num_dense=0, planted=planted, seed=0)
    assert sorted(g.effects["cat_0"]) == ["vector_0", "vector_1"]
    assert not np.allclose(g.effects["cat_0"]["vector_0"], g.effects["cat_0"]["vector_1"])
    rows = g.rows(0, 500)
    i = {n: rows["bags"][n][:, 0] for n in rows["bags"]}
    e = g.effects
    expected = (np.einsum("nd,nd->n", e["cat_0"]["vector_0"][i["cat_0"]],
                          e["cat_1"]["vector_0"][i["cat_1"]])
                + 2 * np.einsum("nd,nd->n", e["cat_0"]["vector_1"][i["cat_0"]],
                                e["cat_2"]["vector_1"][i["cat_2"]]))
    np.testing.assert_allclose(rows["label"], expected, rtol=1e-5, atol=1e-6)
    assert gen.Planted.parse(planted.to_dict()) == planted
    # Shared (the default): one vector per field, for all its pairs.
    shared = gen.Generator(fields, num_dense=0, planted=dict(pairs=pairs), seed=0)
    assert sorted(shared.effects["cat_0"]) == ["vector"]


def test_planted_names_checked():
    with pytest.raises(ValueError, match="no field 'cat_9'"):
        gen.Generator(gen.make_fields([10]), planted={"fields": {"cat_9": 1.0}})
    with pytest.raises(ValueError, match="unknown key"):
        gen.Planted.parse('{"field": {"cat_0": 1.0}}')


# ------------------------------------------------------------------------------- writing


def test_parquet_round_trip(tmp_path):
    fields = gen.make_fields([100, 30], k_max=5, probabilities=1.0)
    g = gen.Generator(fields, num_dense=2, planted={"fields": {"cat_0": 1.0}}, seed=3)
    result = gen.write_dataset(str(tmp_path), g, 3000, chunk_rows=700, log=lambda s: None)
    assert sorted(os.listdir(tmp_path)) == ["spec.json", "test.parquet", "train.parquet",
                                            "truth.json", "validation.parquet"]
    expected = g.rows(0, 3000)
    start = 0
    for split, n in (("train", 2400), ("validation", 300), ("test", 300)):
        path = tmp_path / f"{split}.parquet"
        table = pq.read_table(path)
        assert table.num_rows == n
        if split == "train":
            assert pq.ParquetFile(path).num_row_groups == 4      # one per chunk
        assert table.schema.field("label").type == "int64"
        assert str(table.schema.field("cat_0").type) == "list<element: int64>"
        np.testing.assert_array_equal(table["label"].to_numpy(),
                                      expected["label"][start:start + n])
        np.testing.assert_array_equal(table["dense_1"].to_numpy(),
                                      expected["dense"][start:start + n, 1])
        for name in ("cat_0", "cat_1"):
            column = table[name].combine_chunks()
            lengths = expected["lengths"][name][start:start + n]
            np.testing.assert_array_equal(column.value_lengths().to_numpy(), lengths)
            bags = expected["bags"][name][start:start + n]
            np.testing.assert_array_equal(column.flatten().to_numpy(), bags[bags >= 0])
        start += n
    raw = json.loads((tmp_path / "spec.json").read_text())
    assert raw["split"] == {"type": "files"} and raw["root"] == "."
    assert raw["tables"]["rows"]["files"]["validation"] == "validation.parquet"
    assert {"name": "cat_1", "type": "multi_hot", "vocabulary": {"identity": 30},
            "pooling": "sum"} in raw["features"]
    assert json.loads((tmp_path / "truth.json").read_text())["fields"] == {"cat_0": 1.0}
    assert result["rows"] == 3000 and result["spec"] == str(tmp_path / "spec.json")


def test_spec_validates(tmp_path):
    if "int64_list" not in spec_lib.DTYPES:
        pytest.skip("spec int64_list not landed yet")
    g = gen.Generator(gen.make_fields([100], k=2), num_dense=1)
    raw = gen.dataset_spec(g, "generated-test")
    parsed = spec_lib.parse_spec(raw, str(tmp_path / "spec.json"))
    assert parsed.task["type"] == "binary" and len(parsed.features) == 2


def test_failed_write_leaves_nothing(tmp_path):
    class Failing(gen.Generator):
        def rows(self, start, stop):
            if start >= 1000:
                raise RuntimeError("disk full")
            return super().rows(start, stop)

    g = Failing(gen.make_fields([10]), num_dense=1)
    with pytest.raises(RuntimeError, match="disk full"):
        gen.write_dataset(str(tmp_path), g, 2000, chunk_rows=500, log=lambda s: None)
    assert os.listdir(tmp_path) == []


def test_criteo_tsv(tmp_path):
    g = gen.Generator(gen.make_fields([5000] * 26, probabilities=1.05), num_dense=13,
                      planted={"fields": {"cat_0": 1.0}, "dense": {"dense_0": 1.0}}, seed=4)
    result = gen.write_dataset(str(tmp_path), g, 2000, file_format="criteo", chunk_rows=900,
                               log=lambda s: None)
    path = tmp_path / "criteo" / "train.txt"
    assert result["files"] == [str(path)] and result["data_dir"] == str(tmp_path)
    assert sorted(os.listdir(tmp_path / "criteo")) == ["train.txt", "truth.json"]
    lines = path.read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 2001
    empty = 0
    for line in lines[:-1]:
        fields = line.split("\t")
        assert len(fields) == 40 and fields[0] in ("0", "1")
        assert all(re.fullmatch(r"\d*", f) for f in fields[1:14])
        assert all(re.fullmatch(r"([0-9a-f]{8})?", f) for f in fields[14:])
        empty += fields.count("")
    assert 0 < empty < 2000 * 40 * 0.1
    table = spec_lib.load_spec("criteo").tables["clicks"]
    frame = readers.read_file(str(path), table)
    assert len(frame) == 2000
    np.testing.assert_array_equal(frame["label"].to_numpy(), g.rows(0, 2000)["label"])
    # distinct indices of a field get distinct strings, the same index the same string
    codes = gen.criteo_hex(np.arange(100000), 3).view("S8").ravel()
    assert len(np.unique(codes)) == 100000
    assert (gen.criteo_hex(np.array([7, 7]), 3).view("S8") == codes[7]).all()
    with pytest.raises(ValueError, match="criteo format"):
        gen.write_dataset(str(tmp_path / "x"), gen.Generator(gen.make_fields([10]),
                                                             num_dense=13), 10,
                          file_format="criteo")


def test_cli_writes_parquet(tmp_path):
    planted = tmp_path / "planted.json"
    planted.write_text(json.dumps({"fields": {"cat_1": 2.0}, "kind": "regression"}))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "experiments.generate_data", "--kind=synthetic", "--rows=500",
         "--num_dense=2", "--tables=50,60", "--k_max=3", f"--planted={planted}",
         f"--output_dir={out}", "--nobuild", "--chunk_rows=200"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "rows/s" in result.stdout
    assert sorted(os.listdir(out)) == ["spec.json", "test.parquet", "train.parquet",
                                       "truth.json", "validation.parquet"]
    assert pq.read_table(out / "train.parquet").schema.field("label").type == "float"
    assert json.loads((out / "spec.json").read_text())["task"]["type"] == "regression"
