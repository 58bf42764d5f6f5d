"""The search space of automated DeepMix design and its weight-sharing supernet."""

import json

import keras
import numpy as np
import pytest

from conftest import assert_reloads_equal
from deepmix_tf.layers.supernet import SuperNet, child_network, inherit
from deepmix_tf.nas import OPERATORS, SearchSpace

SPACE = SearchSpace(blocks=4, fields=("a", "b"))
SEGMENTS = [("a", 0, 16), ("b", 16, 16)]  # then 8 columns of dense features: D = 40


def _x(rows=6, seed=1):
    return np.random.default_rng(seed).normal(size=(rows, 40)).astype("float32")


def _net(architecture=None):
    keras.utils.set_random_seed(0)  # fixed weights: the checks below do not hang on a draw
    net = SuperNet(SPACE, segments=SEGMENTS)
    net(_x())
    if architecture is not None:
        net.set_architecture(architecture)
    return net


def _arch(blocks, head=256, a=16, b=16):
    return {"blocks": blocks, "head": head, "embedding_dims": {"a": a, "b": b}}


IDENTITY = {"op": "identity", "inputs": [0]}


def test_sampling_covers_every_operator_connection_and_width():
    rng = np.random.default_rng(0)
    samples = [SPACE.sample(rng) for _ in range(400)]
    for arch in samples:
        SPACE.check(arch)
    ops = {(b, blk["op"]) for a in samples for b, blk in enumerate(a["blocks"])}
    assert ops == {(b, op) for b in range(4) for op in OPERATORS}
    links = {(b, j) for a in samples for b, blk in enumerate(a["blocks"]) for j in blk["inputs"]}
    assert links == {(b, j) for b in range(4) for j in range(b + 1)}
    assert {a["head"] for a in samples} == set(SPACE.head_widths)
    assert {a["embedding_dims"]["b"] for a in samples} == set(SPACE.embedding_widths)
    assert {blk["rank"] for a in samples for blk in a["blocks"] if blk["op"] == "cross"} \
        == set(SPACE.ranks)
    assert {blk["width"] for a in samples for blk in a["blocks"] if blk["op"] == "mlp"} \
        == set(SPACE.mlp_widths)
    json.dumps(samples)  # plain JSON


def test_a_mutation_changes_one_choice():
    rng = np.random.default_rng(1)
    parent = SPACE.sample(rng)
    for _ in range(200):
        child = SPACE.mutate(parent, rng)
        changed = [b for b in range(4) if child["blocks"][b] != parent["blocks"][b]]
        changed += [k for k in ("head",) if child[k] != parent[k]]
        changed += [f for f in "ab" if child["embedding_dims"][f] != parent["embedding_dims"][f]]
        assert len(changed) == 1, (parent, child)
        parent = child


def test_mutation_skips_choices_a_space_fixes():
    fixed = SearchSpace(blocks=1, head_widths=(128,), experts=(2,), ranks=(8,),
                        mlp_widths=(1.0,), embedding_widths=(16,), fields=("a",))
    rng = np.random.default_rng(2)
    parent = fixed.sample(rng)
    for _ in range(50):  # only the operator can change
        child = fixed.mutate(parent, rng)
        assert child["blocks"][0]["op"] != parent["blocks"][0]["op"]
        parent = child


def test_check_names_the_choice_out_of_the_space():
    good = _arch([IDENTITY] * 4)
    SPACE.check(good)
    bad = json.loads(json.dumps(good))
    bad["blocks"][2] = {"op": "cross", "inputs": [0, 3], "experts": 2, "rank": 8}
    with pytest.raises(ValueError, match="block 3: inputs"):
        SPACE.check(bad)
    bad["blocks"][2] = {"op": "cross", "inputs": [0], "experts": 3, "rank": 8}
    with pytest.raises(ValueError, match="block 3: experts must be one of"):
        SPACE.check(bad)
    with pytest.raises(ValueError, match="head must be one of"):
        SPACE.check({**good, "head": 100})


def test_the_mlp_operator_is_a_residual_block_of_the_active_width():
    arch = _arch([{"op": "mlp", "inputs": [0], "width": 0.5}] + [
        {"op": "identity", "inputs": [b]} for b in range(1, 4)], head=64)
    net = _net(arch)
    x = _x()
    w = net.blocks[0]
    h = np.maximum(x @ w["w1"].numpy()[:, :20] + w["b1"].numpy()[:20], 0)
    y = x + h @ w["w2"].numpy()[:20] + w["b2"].numpy()
    head = np.maximum(y @ net.head_kernel.numpy() + net.head_bias.numpy(), 0)
    head[:, 64:] = 0
    np.testing.assert_allclose(np.asarray(net(x)), head, rtol=1e-4, atol=1e-5)


def _changes_output(net, variable, index, x):
    before = np.asarray(net(x))
    value = variable.numpy()
    bumped = value.copy()
    bumped[index] += 1.0
    variable.assign(bumped)
    after = np.asarray(net(x))
    variable.assign(value)
    return not np.allclose(before, after)


def test_children_share_the_supernets_sliced_weights():
    x = _x(64)  # enough rows that a bumped unit is active for some of them
    rest = [{"op": "identity", "inputs": [b]} for b in range(1, 4)]
    narrow = _net(_arch([{"op": "mlp", "inputs": [0], "width": 0.5}] + rest))
    w1 = narrow.blocks[0]["w1"]
    # A hidden unit within the active 20 (0.5 x 40) is the child's; one beyond is not...
    assert _changes_output(narrow, w1, (slice(None), 5), x)
    assert not _changes_output(narrow, w1, (slice(None), 30), x)
    # ... until a wider child uses it: the same weights, sliced further.
    narrow.set_architecture(_arch([{"op": "mlp", "inputs": [0], "width": 1.0}] + rest))
    assert _changes_output(narrow, w1, (slice(None), 30), x)
    # CrossNetMix: an expert beyond the active number, and rank beyond the active rank.
    cross = _net(_arch([{"op": "cross", "inputs": [0], "experts": 2, "rank": 8}] + rest))
    u = cross.blocks[0]["u"]  # rows: expert k's rank r at k * 32 + r
    assert _changes_output(cross, u, (1 * 32 + 3, slice(None)), x)
    assert not _changes_output(cross, u, (3 * 32 + 3, slice(None)), x)
    assert not _changes_output(cross, u, (1 * 32 + 20, slice(None)), x)
    # A field's embedding columns beyond its width, and the head's units beyond its width.
    small = _net(_arch([IDENTITY] + rest, head=64, a=4))
    assert not _changes_output(small, small.head_kernel, (6, slice(None)), x)  # a's 7th column
    assert _changes_output(small, small.head_kernel, (18, slice(None)), x)   # b's 3rd
    assert not np.asarray(small(x))[:, 64:].any()


def test_only_the_active_operators_weights_train(tmp_path):
    arch = _arch([{"op": "dot", "inputs": [0]}, {"op": "mlp", "inputs": [0, 1], "width": 1.0},
                  {"op": "cross", "inputs": [2], "experts": 4, "rank": 32},
                  {"op": "identity", "inputs": [1, 3]}])
    net = SuperNet(SPACE, segments=SEGMENTS)
    inputs = keras.Input((40,))
    model = keras.Model(inputs, keras.layers.Dense(1)(net(inputs)))
    net.set_architecture(arch)
    before = {v.path: v.numpy() for v in net.trainable_weights}
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(_x(64), np.ones((64, 1)), batch_size=64, epochs=1, verbose=0)
    moved = {v.path.split("/")[-1].rsplit("_", 1)[0] for v in net.trainable_weights
             if not np.array_equal(v.numpy(), before[v.path])}
    assert moved == {"dot_0", "mlp_1", "cross_2", "head"}, moved
    # Saved and loaded, the supernet keeps its weights and the active architecture.
    loaded = assert_reloads_equal(model, _x(8), tmp_path / "supernet.keras")
    assert loaded.layers[1].op.numpy().tolist() == [OPERATORS.index(o) for o in
                                                   ("dot", "mlp", "cross", "identity")]


def test_a_child_with_inherited_weights_computes_what_the_supernet_does():
    rng = np.random.default_rng(3)
    net = _net()
    x = _x(16)
    # Random architectures, and one that uses every operator.
    archs = [SPACE.sample(rng) for _ in range(6)] + [_arch(
        [{"op": "mlp", "inputs": [0], "width": 2.0},
         {"op": "cross", "inputs": [0, 1], "experts": 2, "rank": 16},
         {"op": "dot", "inputs": [2]}, {"op": "identity", "inputs": [1, 3]}], head=128, a=8)]
    for arch in archs:
        net.set_architecture(arch)
        keep = net.active_columns(arch)
        assert len(keep) == 8 + arch["embedding_dims"]["a"] + arch["embedding_dims"]["b"]
        inputs = keras.Input((len(keep),))
        child = keras.Model(inputs, child_network(inputs, arch))
        inherit(net, child, arch)
        expected = np.asarray(net(x))
        assert not expected[:, arch["head"]:].any()
        np.testing.assert_allclose(np.asarray(child(x[:, keep])), expected[:, :arch["head"]],
                                   rtol=2e-4, atol=2e-5, err_msg=json.dumps(arch))
        # The child has only its own sizes: fewer weights than the supernet.
        assert child.count_params() < net.count_params()


def test_the_sampler_trains_a_new_architecture_every_step():
    from deepmix_tf.nas.network import SupernetSampler

    net = SuperNet(SPACE, segments=SEGMENTS)
    inputs = keras.Input((40,))
    model = keras.Model(inputs, keras.layers.Dense(1)(net(inputs)))
    sampler = SupernetSampler(net, seed=0)
    before = {v.path: v.numpy() for v in net.trainable_weights}
    model.compile(keras.optimizers.SGD(0.01), "mse")
    model.fit(_x(640), np.ones((640, 1)), batch_size=32, epochs=1, verbose=0,
              callbacks=[sampler])
    assert sampler.sampled == 20
    moved = {v.path.split("/")[-1].rsplit("_", 1)[0] for v in net.trainable_weights
             if not np.array_equal(v.numpy(), before[v.path])}
    # Every operator of every block has trained in some step.
    assert moved == {f"{op}_{b}" for op in ("mlp", "cross", "dot") for b in range(4)} | {
        "head"}, moved


def _small_space_config(**overrides):
    from deepmix_tf.training import trainer

    return trainer.default_config(
        "movielens1m-rating", "nas", embedding_dim=16, batch_size=64, epochs=1,
        nas_space={"blocks": 2, "head_widths": [8, 16], "ranks": [4, 8]}, **overrides)


@pytest.mark.slow
def test_the_supernet_trains_with_an_architecture_per_step(small_data, tmp_path):
    from deepmix_tf.nas.network import SUPERNET, SupernetSampler, search_space
    from deepmix_tf.training import trainer

    config = _small_space_config()
    metrics = trainer.train(config, data_dir=small_data["root"],
                            tfrecord_dir=str(tmp_path / "tf"), model_dir=str(tmp_path / "s"),
                            log=lambda _: None, verbose=0)
    assert np.isfinite(metrics["val"]["mae"])
    model = keras.saving.load_model(tmp_path / "s" / "model.keras")
    supernet = model.get_layer("nas").get_layer(SUPERNET)
    fields = [f for f, _, _ in supernet.segments]
    assert fields[:2] == ["user_id", "gender"] and "genres" in fields
    assert search_space(config, fields) == supernet.space
    # Trained and saved with the reference architecture active (what validation scored).
    reference = SupernetSampler(supernet, seed=config.seed).reference
    probe = SuperNet(supernet.space, supernet.segments)
    probe(np.zeros((1, supernet.width), "float32"))
    probe.set_architecture(reference)
    for name in ("op", "inputs_mask", "hidden", "experts", "rank", "head", "field_width"):
        np.testing.assert_array_equal(getattr(supernet, name).numpy(),
                                      getattr(probe, name).numpy(), err_msg=name)
    with pytest.raises(ValueError, match="widest width 16"):
        trainer.train(config.replace(embedding_dim=8, nas_space={
            **config.nas_space, "embedding_widths": [4, 8, 16]}), data_dir=small_data["root"],
                      tfrecord_dir=str(tmp_path / "tf"), model_dir=str(tmp_path / "x"),
                      log=lambda _: None, verbose=0)


@pytest.mark.slow
def test_a_searched_architecture_trains_and_exports_like_any_other_config(small_data,
                                                                          tmp_path):
    import tensorflow as tf

    from deepmix_tf.data import tfrecords
    from deepmix_tf.export import export_run
    from deepmix_tf.models import Config
    from deepmix_tf.nas.network import search_space
    from deepmix_tf.training import trainer

    names = ["user_id", "gender", "age", "occupation", "zip_code", "movie_id", "year",
             "certificate", "genres"]
    base = _small_space_config()
    arch = search_space(base, names).sample(np.random.default_rng(5))
    arch["blocks"] = [{"op": "cross", "inputs": [0], "experts": 2, "rank": 4},
                      {"op": "mlp", "inputs": [0, 1], "width": 0.5}]
    config = base.replace(architecture=arch, embedding_dims=arch["embedding_dims"])
    path = tmp_path / "searched.json"
    config.to_json(str(path))  # a plain config a user can keep
    config = Config.from_json(str(path))
    trainer.train(config, data_dir=small_data["root"], tfrecord_dir=str(tmp_path / "tf"),
                  model_dir=str(tmp_path / "run"), log=lambda _: None, verbose=0)
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    network = model.get_layer("nas")
    assert network.get_layer("nas_block_0").num_experts == 2
    assert network.get_layer("nas_head").units == arch["head"]
    assert network.get_layer("user_id_embedding").output.shape[-1] == \
        arch["embedding_dims"]["user_id"]
    export = export_run(str(tmp_path / "run"), str(tmp_path / "serving"), "nas_rating")
    build = str(tmp_path / "tf" / "movielens1m-rating")
    features, _ = next(iter(tfrecords.make_dataset(build, "test", 16)))
    features = {k: v for k, v in features.items() if k in model.input}
    served = tf.saved_model.load(export).signatures["serving_default"](**features)
    np.testing.assert_allclose(np.asarray(served["rating"]).ravel(),
                               np.asarray(model(features)).ravel(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="embedding_dims must be"):
        base.replace(architecture=arch)
    with pytest.raises(ValueError, match="searches its own design"):
        base.replace(autofis="search")


@pytest.mark.slow
def test_the_supernet_searches_field_widths_not_those_of_embedded_numeric_inputs(small_data,
                                                                                 tmp_path):
    from deepmix_tf.data import tfrecords
    from deepmix_tf.models import build_model, load_tables
    from deepmix_tf.nas.network import SUPERNET, search_space
    from deepmix_tf.training import trainer

    build = tfrecords.build_tfrecords("movielens1m-rating", small_data["root"],
                                      str(tmp_path / "tf"), svd_dim=4, log=lambda _: None)
    meta = tfrecords.read_metadata(build)
    meta = {**meta, "table_columns": trainer.table_columns(build, meta)}
    config = _small_space_config(numeric_embedding="autodis",
                                 numeric_fields=["movie_graph/log_count"])
    tables = load_tables(build, config, meta)
    _, network, _ = build_model(config, meta, tables)
    supernet = network.get_layer(SUPERNET)
    fields = [f for f, _, _ in supernet.segments]
    assert "movie_graph/log_count" not in fields and fields[-1] == "genres"
    # A sampled architecture of that space trains as its own network.
    arch = search_space(config, fields).sample(np.random.default_rng(0))
    child = config.replace(architecture=arch, embedding_dims=arch["embedding_dims"])
    _, network, full = build_model(child, meta, tables)
    assert network.get_layer("autodis").output.shape[-1] == config.embedding_dim


def test_crosses_and_dots_are_with_the_stacked_features():
    from deepmix_tf.layers import CrossNetMix
    from deepmix_tf.layers.supernet import DotBlock

    x = _x(8)
    for layer in (CrossNetMix(num_layers=1, num_experts=2, low_rank=4), DotBlock(4, 4)):
        layer(x)
        # A zero x0 leaves nothing to cross with: y = x (+ the dot's bias, zero at init).
        np.testing.assert_allclose(np.asarray(layer(x, x0=np.zeros_like(x))), x, atol=1e-6)
        assert not np.allclose(np.asarray(layer(x, x0=x)), x)
    # So a stack of crosses is a polynomial of one degree more a block, as in DCN: scaling
    # x0 by s scales the all-cross stack's output by at most s^(blocks + 1), not s^(2^4).
    net = _net(_arch([{"op": "cross", "inputs": [b], "experts": 1, "rank": 8}
                      for b in range(4)]))
    small = np.abs(np.asarray(net(x))).max()
    large = np.abs(np.asarray(net(10 * x))).max()
    assert large / small < 2 * 10 ** 5  # crossing its own input: about 10^16
