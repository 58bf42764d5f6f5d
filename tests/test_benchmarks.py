"""The training-speed comparison's clock (benchmarks/timing.py), which both of its sides use."""

import keras
import numpy as np
import pytest

from benchmarks import timing


def _model(steps_per_execution):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.01), "mse", steps_per_execution=steps_per_execution)
    return model


def _batches():
    rng = np.random.default_rng(0)
    return rng.normal(size=(4, 8, 3)).astype("float32"), rng.normal(size=(4, 8)).astype(
        "float32")


@pytest.mark.parametrize("steps_per_execution", [1, 5])
def test_the_clock_covers_the_timed_steps_only(steps_per_execution):
    features, labels = _batches()
    model = _model(steps_per_execution)
    seconds, loss, fit_seconds = timing.time_fit(model, features, labels, 10, 5,
                                                 keras.callbacks.Callback, steps_per_execution)
    assert 0 < seconds < fit_seconds and np.isfinite(loss)
    assert int(model.optimizer.iterations.numpy()) == 15  # warm-up and timed steps all ran
    figures = timing.result("m", seconds, 10, 8, loss)
    assert figures["examples_per_s"] == pytest.approx(80 / seconds)


def test_steps_must_fall_on_call_boundaries():
    features, labels = _batches()
    with pytest.raises(ValueError, match="multiple of steps_per_execution"):
        timing.time_fit(_model(5), features, labels, 12, 5, keras.callbacks.Callback, 5)
    # A model compiled with another steps_per_execution than the clock is told: caught.
    with pytest.raises(RuntimeError, match="step ends"):
        timing.time_fit(_model(5), features, labels, 10, 5, keras.callbacks.Callback, 1)


def test_batches_round_trip_through_the_file(tmp_path):
    features, labels = _batches()
    path = str(tmp_path / "b.npz")
    timing.save_batches(path, {"x": features.reshape(32, 3)}, labels.reshape(32))
    loaded, loaded_labels = timing.load_batches(path, ["x"], 8)
    np.testing.assert_array_equal(loaded["x"], features)
    np.testing.assert_array_equal(loaded_labels, labels)


def test_scale_floor_and_table_count():
    from benchmarks import scale

    # DLRM's MLPs: bottom 512-512-64, top (64 + 36 dots)-1024-1024-1024-1.
    macs = 512 * 512 + 512 * 64 + 100 * 1024 + 2 * 1024 * 1024 + 1024
    floor = scale.dlrm_floor({"matmul_gflops": 100.0, "gather_gbps": 10.0}, macs, 2048, 8,
                             100, 64)
    assert floor["mlp_flops_per_batch"] == 3 * 2 * 2048 * macs
    assert floor["embedding_bytes_per_batch"] == 8 * 2048 * 100 * 64 * 4 * 2
    assert floor["floor_s_per_batch"] == pytest.approx(
        3 * 2 * 2048 * macs / 100e9 + 8 * 2048 * 100 * 64 * 8 / 10e9)
    # 8 tables of 10M x 64 (20 GB) in 22 GiB: fewer tables, the same at every size.
    assert scale.tables_count(8, 10_000_000, 64, available=22 * 2 ** 30) == 5
    assert scale.tables_count(8, 100_000, 64, available=22 * 2 ** 30) == 8
