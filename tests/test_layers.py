"""CrossNetMix, ResidualBlock and DeepCrossingResidualUnit: shapes, maths, gradients,
serialisation, and parity with TensorFlow Recommenders' DCN cross layer."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deepmix_tf.layers import CrossNetMix, DeepCrossingResidualUnit, Dropout, ResidualBlock

LAYERS = [
    lambda: CrossNetMix(num_layers=2, num_experts=3, low_rank=4),
    lambda: ResidualBlock(width_multiplier=1.5, depth=2, normalization="layer", dropout=0.1),
    lambda: ResidualBlock(width_multiplier=2.0, depth=1, normalization="batch"),
    lambda: DeepCrossingResidualUnit(hidden_units=12),
]


def _x(batch=5, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, d)).astype("float32")


@pytest.mark.parametrize("make", LAYERS)
def test_output_keeps_the_input_shape(make):
    assert tuple(make()(_x()).shape) == (5, 6)


@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16"])
@pytest.mark.parametrize("make", LAYERS)
def test_sublayers_follow_the_layers_dtype_policy(make, policy):
    layer = make().__class__.from_config({**make().get_config(), "dtype": policy})
    y = layer(_x())
    assert y.dtype == "bfloat16"
    variable_dtype = "bfloat16" if policy == "bfloat16" else "float32"
    assert layer.weights and {w.dtype for w in layer.weights} == {variable_dtype}


def _reference_cross_net_mix(layer, x0):
    """CrossNetMix written out expert by expert in NumPy, straight from the paper."""
    x = x0
    for w in layer.layer_weights:
        V, C, U = (np.asarray(w[k]) for k in ("V", "C", "U"))
        b = np.asarray(w["b"])
        logits = x @ np.asarray(w["gate"])
        gates = np.exp(logits - logits.max(1, keepdims=True))
        gates /= gates.sum(1, keepdims=True)
        out = np.zeros_like(x)
        for i in range(V.shape[0]):
            expert = x0 * (np.tanh(np.tanh(x @ V[i]) @ C[i]) @ U[i] + b)
            out += gates[:, i:i + 1] * expert
        x = out + x
    return x


def test_cross_net_mix_matches_the_paper_formula():
    layer = CrossNetMix(num_layers=2, num_experts=3, low_rank=4, bias_initializer="random_normal")
    x0 = _x()
    got = np.asarray(layer(x0))
    np.testing.assert_allclose(got, _reference_cross_net_mix(layer, x0), rtol=1e-5, atol=1e-5)


def test_gate_weights_are_a_distribution_over_experts():
    layer = CrossNetMix(num_layers=2, num_experts=5, low_rank=3)
    x = _x(batch=7)
    layer(x)
    for l in range(2):
        gates = np.asarray(layer.gate_weights(x, l))
        assert gates.shape == (7, 5)
        assert (gates > 0).all()
        np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-6)


def test_experts_are_initialised_each_with_its_own_fans():
    d, r, k = 64, 8, 16
    layer = CrossNetMix(num_layers=1, num_experts=k, low_rank=r,
                        kernel_initializer=keras.initializers.GlorotUniform(seed=3))
    layer.build((None, d))
    V = np.asarray(layer.layer_weights[0]["V"])
    limit = np.sqrt(6.0 / (d + r))  # Glorot of one (d, r) matrix; not of (k * d, k * r)
    assert np.abs(V).max() <= limit
    assert np.abs(V).max() > 0.8 * limit
    # Experts differ from each other, yet the seed makes them reproducible.
    assert not np.allclose(V[0], V[1])
    again = CrossNetMix(num_layers=1, num_experts=k, low_rank=r,
                        kernel_initializer=keras.initializers.GlorotUniform(seed=3))
    again.build((None, d))
    np.testing.assert_array_equal(V, np.asarray(again.layer_weights[0]["V"]))


def test_unseeded_experts_differ():
    layer = CrossNetMix(num_layers=1, num_experts=2, low_rank=4)
    layer.build((None, 6))
    V = np.asarray(layer.layer_weights[0]["V"])
    assert not np.allclose(V[0], V[1])


@pytest.mark.parametrize("make", LAYERS)
def test_gradients_reach_every_weight(make):
    layer = make()
    x = tf.constant(_x())
    layer(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(x, training=True) - 1.0))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert layer.trainable_weights
    for w, g in zip(layer.trainable_weights, grads):
        assert g is not None, w.path
        assert float(tf.reduce_max(tf.abs(g))) > 0, w.path


@pytest.mark.parametrize("make", LAYERS)
def test_keras_file_round_trip_gives_identical_outputs(make, tmp_path):
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(1)(make()(inputs)))
    x = _x()
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    assert (model.layers[1].get_config() == loaded.layers[1].get_config())


@pytest.mark.slow
def test_a_tiny_model_overfits_a_tiny_dataset():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] * x[:, 1] - x[:, 2] * x[:, 3]).astype("float32")  # needs feature crosses
    inputs = keras.Input((8,))
    h = ResidualBlock(width_multiplier=2.0, depth=1, normalization=None)(inputs)
    h = CrossNetMix(num_layers=2, num_experts=2, low_rank=8)(h)
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    history = model.fit(x, y, epochs=300, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < 0.01 * history.history["loss"][0]


@pytest.mark.parametrize("kwargs", [dict(num_layers=0), dict(num_experts=-1),
                                    dict(low_rank=2.5)])
def test_cross_net_mix_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="CrossNetMix"):
        CrossNetMix(**kwargs)


def test_residual_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        ResidualBlock(normalization="group")
    with pytest.raises(ValueError, match="depth"):
        ResidualBlock(depth=0)


def test_deep_crossing_unit_is_the_papers_formula():
    unit = DeepCrossingResidualUnit(hidden_units=4)
    x = _x()
    got = np.asarray(unit(x))
    w0, b0 = (np.asarray(v) for v in unit.inner.weights)
    w1, b1 = (np.asarray(v) for v in unit.outer.weights)
    want = np.maximum(np.maximum(x @ w0 + b0, 0) @ w1 + b1 + x, 0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


_TFRS_SIDE = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
w = np.load(sys.argv[1])
x = x0 = tf.constant(w["x0"])
for l in range(int(w["layers"])):
    cross = tfrs.layers.dcn.Cross(projection_dim=int(w["rank"]))
    cross(x0, x)  # builds
    cross._dense_u.kernel.assign(w[f"V_{l}"])
    cross._dense_v.kernel.assign(w[f"U_{l}"])
    cross._dense_v.bias.assign(w[f"b_{l}"])
    x = cross(x0, x)
np.save(sys.argv[2], x.numpy())
"""


@pytest.mark.slow
def test_one_linear_expert_equals_tfrs_dcn_cross(tmp_path):
    """One expert, identity g and C = I: CrossNetMix is DCN-V2's low-rank cross layer, which
    TFRS implements as `x0 * dense_v(dense_u(x)) + x`. TFRS needs Keras 2, so its side runs
    in its own process."""
    d, r, layers = 10, 4, 2
    layer = CrossNetMix(num_layers=layers, num_experts=1, low_rank=r, activation=None,
                        bias_initializer="random_normal")
    x0 = _x(batch=6, d=d)
    layer.build((None, d))
    arrays = {"x0": x0, "layers": layers, "rank": r}
    for l, w in enumerate(layer.layer_weights):
        w["C"].assign(np.eye(r, dtype="float32")[None])
        arrays[f"V_{l}"] = np.asarray(w["V"])[0]
        arrays[f"U_{l}"] = np.asarray(w["U"])[0]
        arrays[f"b_{l}"] = np.asarray(w["b"])
    ours = np.asarray(layer(x0))
    np.savez(tmp_path / "w.npz", **arrays)
    script = tmp_path / "tfrs_side.py"
    script.write_text(_TFRS_SIDE)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "w.npz"),
                             str(tmp_path / "tfrs.npy")], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = np.load(tmp_path / "tfrs.npy")
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def _dropout_model(layer, jit_compile):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8), layer(0.3),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse", jit_compile=jit_compile)
    return model


def test_dropout_draws_the_same_masks_with_and_without_xla():
    x = np.random.RandomState(0).randn(64, 16).astype("float32")
    y = x.sum(1)
    weights = []
    for jit_compile in (False, True):
        model = _dropout_model(Dropout, jit_compile=jit_compile)
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for eager, xla in zip(*weights):
        np.testing.assert_allclose(eager, xla, rtol=1e-5, atol=1e-6)
    # The masks follow the seed: another seed trains to other weights.
    keras.utils.set_random_seed(2)
    other = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8), Dropout(0.3),
                              keras.layers.Dense(1)])
    other.set_weights(_dropout_model(Dropout, jit_compile=False).get_weights())
    other.compile("adam", "mse")
    other.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert not np.allclose(other.get_weights()[0], weights[0][0])


@pytest.mark.parametrize("jit_compile", [False, True])
def test_dropout_drops_at_its_rate_and_rescales(jit_compile):
    layer = Dropout(0.3, seed=3)
    apply = tf.function(lambda t: layer(t, training=True), jit_compile=jit_compile)
    out = apply(tf.ones([512, 256])).numpy()
    assert abs((out == 0).mean() - 0.3) < 0.01
    applied = round(0.3 * 65536) / 65536  # the rate in steps of 1/65536
    np.testing.assert_allclose(out[out != 0], 1 / (1 - applied), rtol=1e-6)
    odd = apply(tf.ones([3, 7])).numpy()  # an odd number of elements: half a 32-bit draw
    assert odd.shape == (3, 7) and set(np.unique(odd)) <= {0.0, np.float32(1 / (1 - applied))}
    assert not np.array_equal(out, apply(tf.ones([512, 256])).numpy())  # new mask per call
    np.testing.assert_array_equal(layer(tf.ones([4, 4]), training=False), np.ones([4, 4]))


def test_dropout_round_trips_through_a_keras_file(tmp_path):
    model = _dropout_model(Dropout, jit_compile=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[1], Dropout) and loaded.layers[1].rate == 0.3
