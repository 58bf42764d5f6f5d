"""Result tables from metrics.json files."""

import json
import os

import pytest

from deepmix_tf.training import report


TASK_TYPES = {"rating": "regression", "genre": "multi_label", "click": "binary"}


def _run(root, name, task, model, seed, test, tables=None, node_prior=0.0,
         node_embeddings=None, protocol="rel-movielens1m", task_type=True):
    """A metrics.json as training writes it (`task_type=False`: as older runs did, without
    the task's type)."""
    path = root / name
    path.mkdir(parents=True)
    run = {"dataset": f"movielens1m-{task}", "task": task, "model": model,
           "protocol": protocol, "seed": seed, "examples_per_s": 1000.0 * seed, "test": test,
           "val": test, "config": {"dense_tables": None if tables is None else list(tables),
                                   "node_embeddings": node_embeddings,
                                   "node_prior": node_prior}}
    if task_type:
        run["task_type"] = TASK_TYPES[task]
    (path / "metrics.json").write_text(json.dumps(run))
    stamp = 1_700_000_000 + len(list(root.iterdir()))  # later runs are newer
    os.utime(path / "metrics.json", (stamp, stamp))


def test_summary_groups_seeds_and_keeps_node_runs_apart(tmp_path):
    _run(tmp_path, "a", "rating", "deepmix", 1, {"mae": 0.70, "rmse": 0.9})
    _run(tmp_path, "b", "rating", "deepmix", 2, {"mae": 0.68, "rmse": 0.9})
    _run(tmp_path, "b-again", "rating", "deepmix", 2, {"mae": 0.68, "rmse": 0.8})
    _run(tmp_path, "c", "genre", "deepmix", 1, {"micro_f1": 0.7, "macro_f1": 0.5})
    _run(tmp_path, "d", "genre", "deepmix", 1, {"micro_f1": 0.6, "macro_f1": 0.4},
         node_embeddings="nodes/node_embeddings.npy")
    _run(tmp_path, "e", "genre", "deepmix", 1, {"micro_f1": 0.8, "macro_f1": 0.6},
         node_embeddings="nodes/node_embeddings.npy", node_prior=5.0)
    # A run of before dataset specs: its node table named in dense_tables, no task type.
    _run(tmp_path, "old", "genre", "deepmix", 3, {"micro_f1": 0.5, "macro_f1": 0.3},
         tables=("movie_graph", "node"), task_type=False)
    summary = report.summarize(report.load_runs([str(tmp_path)]))
    row = summary[("rating", "deepmix", "rel-movielens1m")]
    assert row["seeds"] == 2
    assert row["test_mae_mean"] == pytest.approx(0.69)
    assert row["test_mae_std"] == pytest.approx(0.01)
    assert row["examples_per_s"] == pytest.approx(1500.0)
    assert row["test_rmse_mean"] == pytest.approx(0.85)  # the newer run of seed 2 counts
    assert row["metrics"] == ("mae", "rmse")
    assert summary[("genre", "deepmix + node embeddings", "rel-movielens1m")]["seeds"] == 2
    out = report.summary_json(summary, {"ratio": 2.0})
    # Per task: the seeds, every test mean, and the first metric's standard deviation.
    assert out["rating"]["deepmix"] == {"seeds": 2, "test_mae_mean": pytest.approx(0.69),
                                        "test_mae_std": pytest.approx(0.01),
                                        "test_rmse_mean": pytest.approx(0.85)}
    assert out["genre"]["deepmix"] == {"seeds": 1, "test_micro_f1_mean": 0.7,
                                       "test_micro_f1_std": 0.0, "test_macro_f1_mean": 0.5}
    assert out["genre"]["deepmix + node embeddings"]["test_micro_f1_mean"] == \
        pytest.approx(0.55)
    assert out["genre"]["deepmix + node prior"]["test_micro_f1_mean"] == 0.8
    assert out["speed"] == {"ratio": 2.0}
    text = report.markdown(summary)
    assert "| deepmix | rel-movielens1m | 2 | 0.6900 ± 0.0100 |" in text
    assert "reference: paper (DeepMix)" in text
    assert "- rating (rel-movielens1m): no baseline runs to compare with." in text


def test_report_says_where_deepmix_does_not_beat_a_baseline(tmp_path):
    _run(tmp_path, "a", "rating", "deepmix", 1, {"mae": 0.68, "rmse": 0.90})
    _run(tmp_path, "b", "rating", "dcn_v2", 1, {"mae": 0.69, "rmse": 0.88})
    _run(tmp_path, "c", "rating", "biases", 1, {"mae": 0.73, "rmse": 0.95})
    _run(tmp_path, "d", "genre", "deepmix", 1, {"micro_f1": 0.75, "macro_f1": 0.66})
    _run(tmp_path, "e", "genre", "dcn_v2", 1, {"micro_f1": 0.74, "macro_f1": 0.67})
    _run(tmp_path, "g", "genre", "dlrm", 1, {"micro_f1": 0.76, "macro_f1": 0.68})
    _run(tmp_path, "f", "genre", "deepmix", 1, {"micro_f1": 0.80, "macro_f1": 0.70},
         node_embeddings="n.npy")  # a DeepMix variant, not a baseline
    summary = report.summarize(report.load_runs([str(tmp_path)]))
    # One line per task, in the summary's order (sorted by task name).
    assert report.against_baselines({k: v for k, v in summary.items()
                                     if k[1] in ("deepmix", "biases")}) == [
        "- genre (rel-movielens1m): no baseline runs to compare with.",
        "- rating (rel-movielens1m): DeepMix beats every baseline on every metric."]
    lines = report.against_baselines(summary)
    # Lower MAE/RMSE is better, higher F1 is better; only the losses are named.
    assert lines == [
        "- genre (rel-movielens1m): DeepMix does not beat dcn_v2 on test macro_f1 "
        "(0.6600 against 0.6700); dlrm on test micro_f1 (0.7500 against 0.7600) or test "
        "macro_f1 (0.6600 against 0.6800).",
        "- rating (rel-movielens1m): DeepMix does not beat dcn_v2 on test rmse "
        "(0.9000 against 0.8800).",
    ]


def test_binary_runs_report_auc_and_log_loss_where_lower_log_loss_is_better(tmp_path):
    _run(tmp_path, "a", "click", "deepmix", 1, {"auc": 0.80, "log_loss": 0.45},
         protocol="ordered")
    _run(tmp_path, "b", "click", "dlrm", 1, {"auc": 0.79, "log_loss": 0.44}, protocol="ordered")
    _run(tmp_path, "c", "click", "biases", 1, {"auc": 0.70, "log_loss": 0.50},
         protocol="ordered")
    summary = report.summarize(report.load_runs([str(tmp_path)]))
    assert summary[("click", "deepmix", "ordered")]["metrics"] == ("auc", "log_loss")
    assert report.against_baselines(summary, protocol="ordered") == [
        "- click (ordered): DeepMix does not beat dlrm on test log_loss "
        "(0.4500 against 0.4400)."]
    assert report.against_baselines(summary) == []  # no rel-movielens1m runs
    out = report.summary_json(summary, protocol="ordered")
    assert out["click"]["dlrm"] == {"seeds": 1, "test_auc_mean": 0.79, "test_auc_std": 0.0,
                                    "test_log_loss_mean": 0.44}
    assert "| deepmix | ordered | 1 | 0.8000 ± 0.0000 | 0.4500 ± 0.0000 |" in \
        report.markdown(summary)
    # A run without the task type is recognised by its metrics; unknown metrics are refused.
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "metrics.json").write_text(json.dumps({
        "task": "clicks", "model": "m", "protocol": "p", "seed": 1, "examples_per_s": 1.0,
        "test": {"ndcg": 0.3}, "val": {"ndcg": 0.3}, "config": {}}))
    with pytest.raises(ValueError, match="no task type's metrics"):
        report.summarize(report.load_runs([str(tmp_path / "x")]))


@pytest.mark.slow
def test_report_command_writes_table_summary_and_chart(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    runs = tmp_path / "runs"
    runs.mkdir()
    _run(runs, "a", "rating", "deepmix", 1, {"mae": 0.70, "rmse": 0.9})
    _run(runs, "b", "rating", "dcn_v2", 1, {"mae": 0.69, "rmse": 0.9})
    _run(runs, "c", "genre", "deepmix", 1, {"micro_f1": 0.7, "macro_f1": 0.5})
    speed = {"deepmix_examples_per_s": 26000.0, "deepctr_dcnmix_examples_per_s": 10000.0,
             "ratio": 2.6}
    (tmp_path / "speed.json").write_text(json.dumps(speed))
    out = tmp_path / "results"
    result = subprocess.run([sys.executable, "-m", "experiments.report", f"--runs={runs}",
                             f"--output_dir={out}", f"--speed={tmp_path / 'speed.json'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["README.md", "chart.png", "summary.json"]
    assert (out / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| dcn_v2 | rel-movielens1m | 1 | 0.6900 ± 0.0000 |" in (out / "README.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["speed"] == speed and summary["rating"]["deepmix"]["seeds"] == 1
    assert "ratio 2.60" in (out / "README.md").read_text()
