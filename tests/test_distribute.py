"""tf.distribute training: two local workers, a killed and restarted run, mirrored vs default."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO
from deepmix_tf.training import distribute

TINY = dict(embedding_dim=4, low_rank=4, num_experts=2, head_units=[8], bottom_units=[8, 4],
            batch_size=64, patience=100)
WORKER_TIMEOUT_S = 300


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _train_command(small_data, tmp_path, config, *flags):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return [sys.executable, "-m", "experiments.train", "--task=rating", "--model=deepmix",
            f"--data_dir={small_data['root']}", f"--tfrecord_dir={tmp_path / 'tfrecords'}",
            f"--model_dir={tmp_path / 'run'}", f"--config={path}", "--verbose=2", *flags]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _last_json_line(text):
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def _start_workers(command):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    return [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=_env(TF_CONFIG=distribute.tf_config(workers, i)))
            for i in range(2)]


def _finish(processes):
    outputs = []
    try:
        for p in processes:
            outputs.append(p.communicate(timeout=WORKER_TIMEOUT_S))
    finally:
        for p in processes:  # never leave a worker waiting for its peer
            p.kill()
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return outputs


def _backup_epoch(run_dir):
    try:
        with open(run_dir / "backup" / "training_metadata.json") as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError):
        return 0


def _kill_when_backed_up(processes, run_dir, epoch):
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    try:
        while _backup_epoch(run_dir) < epoch:
            assert all(p.poll() is None for p in processes), "training ended before the kill"
            assert time.monotonic() < deadline, "no backup appeared"
            time.sleep(0.05)
    finally:
        for p in processes:
            p.send_signal(signal.SIGKILL)
            p.communicate()
    return _backup_epoch(run_dir)


@pytest.mark.slow
def test_two_local_workers_end_with_the_same_weights_and_one_export(small_data, tmp_path):
    command = _train_command(small_data, tmp_path, {**TINY, "epochs": 3}, "--strategy=multi_worker",
                             f"--export_dir={tmp_path / 'export'}")
    outputs = _finish(_start_workers(command))
    chief, other = (_last_json_line(out) for out, _ in outputs)
    assert chief["strategy"]["workers"] == 2 and chief["strategy"]["replicas"] == 2
    assert (chief["strategy"]["task"], other["strategy"]["task"]) == ("worker:0", "worker:1")
    # Synchronous training: both workers hold the very same weights at the end.
    assert chief["weights_sha256"] == other["weights_sha256"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["weights_sha256"] == chief["weights_sha256"]
    assert metrics["epochs_run"] == 3 and np.isfinite(metrics["val"]["mae"])
    # --task=rating is the shortcut of the rel-movielens1m rating spec.
    assert (metrics["dataset"], metrics["task"], metrics["protocol"]) == (
        "movielens1m-rating", "rating", "rel-movielens1m")
    assert metrics["build"]["dir"] == str(tmp_path / "tfrecords" / "movielens1m-rating")
    # Exactly one export, one model file, one history: the chief's.
    assert os.listdir(tmp_path / "export") == ["deepmix_rating"]
    assert os.listdir(tmp_path / "export" / "deepmix_rating") == ["1"]
    assert sorted(os.listdir(tmp_path / "run")) == ["config.json", "history.csv", "logs",
                                                    "metrics.json", "model.keras"]
    assert sum("exported" in out for out, _ in outputs) == 1


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_backup(small_data, tmp_path):
    epochs = 12
    # Small batches: epochs of many steps, so that the kill lands inside one.
    command = _train_command(small_data, tmp_path, {**TINY, "epochs": epochs, "batch_size": 4})
    run_dir = tmp_path / "run"
    first = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=_env())
    killed_at = _kill_when_backed_up([first], run_dir, 2)
    assert 2 <= killed_at < epochs and not (run_dir / "metrics.json").exists()

    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            timeout=WORKER_TIMEOUT_S, env=_env())
    assert second.returncode == 0, second.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The restarted run continued the epoch count instead of starting again.
    assert metrics["resumed_at_epoch"] == killed_at
    assert metrics["epochs_run"] == epochs
    assert f"Epoch {killed_at + 1}/{epochs}" in second.stdout
    assert "Epoch 1/" not in second.stdout
    assert np.isfinite(metrics["val"]["mae"]) and np.isfinite(metrics["test"]["rmse"])
    with open(run_dir / "history.csv") as f:
        logged = [int(row["epoch"]) for row in csv.DictReader(f)]
    # One row per epoch across both processes (an epoch killed between its row and its
    # backup may appear twice, never go missing).
    assert sorted(set(logged)) == list(range(epochs)) and logged == sorted(logged)
    assert not (run_dir / "backup").exists()


@pytest.mark.slow
def test_two_workers_killed_together_resume_from_the_chiefs_backup(small_data, tmp_path):
    epochs = 8
    command = _train_command(small_data, tmp_path, {**TINY, "epochs": epochs, "batch_size": 8},
                             "--strategy=multi_worker")
    run_dir = tmp_path / "run"
    killed_at = _kill_when_backed_up(_start_workers(command), run_dir, 2)
    assert killed_at < epochs and not (run_dir / "metrics.json").exists()
    outputs = _finish(_start_workers(command))
    chief, other = (_last_json_line(out) for out, _ in outputs)
    assert chief["weights_sha256"] == other["weights_sha256"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_at_epoch"] == killed_at and metrics["epochs_run"] == epochs
    assert all("Epoch 1/" not in out for out, _ in outputs)


@pytest.mark.slow
def test_mirrored_strategy_on_one_cpu_matches_the_default_strategy(small_data, tmp_path):
    runs = {}
    for name in ("default", "mirrored"):
        command = _train_command(small_data, tmp_path, {**TINY, "epochs": 3},
                                 f"--strategy={name}", f"--model_dir={tmp_path / name}")
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                                timeout=WORKER_TIMEOUT_S, env=_env())
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert runs["mirrored"]["strategy"]["name"] == "MirroredStrategy"
    assert runs["mirrored"]["strategy"]["replicas"] == 1
    # One replica sees the same batches in the same order: the validation MAE agrees to
    # 1e-5 (float32 rounding; on this machine it is bit for bit the same).
    for split in ("val", "test"):
        assert runs["mirrored"][split]["mae"] == pytest.approx(runs["default"][split]["mae"],
                                                               abs=1e-5)


def test_parameter_server_fails_with_the_reason():
    with pytest.raises(NotImplementedError, match="keras-team/keras#18624"):
        distribute.make_strategy("parameter_server")


def test_multi_worker_without_tf_config_says_so(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
