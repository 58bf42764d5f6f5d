"""Tables of results from the `metrics.json` files of training runs."""

import glob
import json
import os

import numpy as np

from deepmix_tf.tasks import TASK_TYPES

LOWER_IS_BETTER = set().union(*(t.lower_is_better for t in TASK_TYPES.values()))

# Numbers not measured by this project, shown as labelled reference rows.
REFERENCES = [
    ("reference: paper (DeepMix)", "rating", {"mae": 0.912}),
    ("reference: paper (DeepMix)", "genre", {"micro_f1": 0.350, "macro_f1": 0.311}),
    ("reference: user + movie bias", "rating", {"mae": 0.730}),
    ("reference: tuned matrix factorisation", "rating", {"mae": 0.712}),
    ("reference: constant {Drama, Comedy}", "genre", {"micro_f1": 0.393, "macro_f1": 0.059}),
    ("reference: logistic regression, text + graph SVD", "genre",
     {"micro_f1": 0.740, "macro_f1": 0.648}),
]


def load_runs(patterns):
    """Every `metrics.json` under the given folders or glob patterns."""
    runs = []
    for pattern in patterns:
        paths = sorted(glob.glob(os.path.join(pattern, "**", "metrics.json"), recursive=True)
                       + glob.glob(pattern if pattern.endswith(".json") else ""))
        for path in paths:
            with open(path) as f:
                run = json.load(f)
            run["path"] = path
            runs.append(run)
    return runs


def run_metrics(run):
    """The metrics of a run's task type, in report order (from `task_type`, or for older
    runs the type whose metrics its test results hold)."""
    if run.get("task_type") in TASK_TYPES:
        return TASK_TYPES[run["task_type"]].metric_names
    for task in TASK_TYPES.values():
        if set(task.metric_names) <= set(run["test"]):
            return task.metric_names
    raise ValueError(f"{run.get('path')}: no task type's metrics in {sorted(run['test'])}")


def _tasks(summary):
    """{task: its metric names}, in the order the summary first names them."""
    out = {}
    for (task, _, _), row in summary.items():
        out.setdefault(task, row["metrics"])
    return out


def _label(run):
    config = run.get("config", {})
    uses_nodes = config.get("node_embeddings") or "node" in (config.get("dense_tables") or [])
    if not uses_nodes:
        return run["model"]
    # Node embeddings as the graph table's prior (Config.node_prior) or as extra columns.
    return run["model"] + (" + node prior" if config.get("node_prior") else " + node embeddings")


def summarize(runs):
    """{(task, label, protocol): {"seeds": n, "<metric>_mean": x, "<metric>_std": x,
    "examples_per_s": x}} over runs grouped by task, model (+ node embeddings or prior),
    protocol."""
    groups = {}
    for run in runs:
        groups.setdefault((run["task"], _label(run), run["protocol"]), []).append(run)
    out = {}
    for key, members in sorted(groups.items()):
        # One run per seed: a rerun with the same seed replaces the older one.
        by_seed = {}
        for run in sorted(members, key=lambda r: os.path.getmtime(r["path"])):
            by_seed[run["seed"]] = run
        members = list(by_seed.values())
        metrics = run_metrics(members[0])
        row = {"seeds": len(members), "metrics": metrics}
        for metric in metrics:
            values = np.array([r["test"][metric] for r in members])
            row[f"test_{metric}_mean"] = float(values.mean())
            row[f"test_{metric}_std"] = float(values.std())
        row["examples_per_s"] = float(np.mean([r["examples_per_s"] for r in members]))
        out[key] = row
    return out


def markdown(summary):
    lines = []
    for task, metrics in _tasks(summary).items():
        lines += [f"### {task}", "",
                  "| model | protocol | seeds | " + " | ".join(f"test {m}" for m in metrics)
                  + " | examples/s |", "|" + " --- |" * (len(metrics) + 4)]
        for (t, label, protocol), row in summary.items():
            if t != task:
                continue
            cells = [f"{row[f'test_{m}_mean']:.4f} ± {row[f'test_{m}_std']:.4f}"
                     for m in metrics]
            lines.append(f"| {label} | {protocol} | {row['seeds']} | " + " | ".join(cells)
                         + f" | {row['examples_per_s']:,.0f} |")
        for label, t, values in REFERENCES:
            if t == task:
                cells = [f"{values[m]:.3f}" if m in values else "" for m in metrics]
                lines.append(f"| {label} | rel-movielens1m | | " + " | ".join(cells) + " | |")
        lines.append("")
    lines += ["### DeepMix against its baselines", ""] + against_baselines(summary) + [""]
    return "\n".join(lines)


def against_baselines(summary, protocol="rel-movielens1m"):
    """One line per task: where DeepMix's mean test metric is not better than a measured
    baseline's (rows with node embeddings and reference rows are not baselines)."""
    lines = []
    for task, metrics in _tasks(summary).items():
        ours = summary.get((task, "deepmix", protocol))
        if ours is None:
            continue
        behind, baselines = [], 0
        for (t, label, p), row in summary.items():
            if t != task or p != protocol or label.startswith("deepmix"):
                continue
            baselines += 1
            lost = []
            for m in metrics:
                a, b = ours[f"test_{m}_mean"], row[f"test_{m}_mean"]
                if not (a < b if m in LOWER_IS_BETTER else a > b):
                    lost.append(f"test {m} ({a:.4f} against {b:.4f})")
            if lost:
                behind.append(f"{label} on " + " or ".join(lost))
        if not baselines:
            verdict = "no baseline runs to compare with."
        elif behind:
            verdict = "DeepMix does not beat " + "; ".join(behind) + "."
        else:
            verdict = "DeepMix beats every baseline on every metric."
        lines.append(f"- {task} ({protocol}): {verdict}")
    return lines


def summary_json(summary, speed=None, protocol="rel-movielens1m"):
    """The `results/summary.json` shape: per task and model, test means (and the first
    metric's standard deviation) and seed counts."""
    out = {"speed": speed or {}}
    for (task, label, p), row in summary.items():
        if p != protocol:
            continue
        entry = {"seeds": row["seeds"]}
        first = row["metrics"][0]
        entry[f"test_{first}_mean"] = row[f"test_{first}_mean"]
        entry[f"test_{first}_std"] = row[f"test_{first}_std"]
        for m in row["metrics"][1:]:
            entry[f"test_{m}_mean"] = row[f"test_{m}_mean"]
        out.setdefault(task, {})[label] = entry
    return out


def chart(summary, path, protocol="rel-movielens1m"):
    """A PNG of the test metrics of `summary`: one panel per metric, one bar per model
    (mean, with the standard deviation over seeds as an error bar), reference numbers as
    dashed lines."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("the chart needs matplotlib: pip install 'deepmix_tf[report]'") \
            from error
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from deepmix_tf.files import staged_file

    # Each task's metrics but RMSE, which tells little beside MAE.
    panels = [(task, metric) for task, metrics in _tasks(summary).items() for metric in metrics
              if metric != "rmse"]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2),
                                squeeze=False)
    for axis, (task, metric) in zip(axes[0], panels):
        rows = [(label, row) for (t, label, p), row in summary.items()
                if t == task and p == protocol]
        labels = [f"{label}\n({row['seeds']} seed{'s' * (row['seeds'] != 1)})"
                  for label, row in rows]
        means = [row[f"test_{metric}_mean"] for _, row in rows]
        axis.bar(range(len(rows)), means, yerr=[row[f"test_{metric}_std"] for _, row in rows],
                 color="#4c72b0", capsize=3)
        axis.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=7)
        for i, (label, t, values) in enumerate(r for r in REFERENCES if metric in r[2]
                                               and r[1] == task):
            axis.axhline(values[metric], linestyle="--", linewidth=1, color=f"C{i + 1}",
                         label=label.replace("reference: ", ""))
        if means:
            low = min(means + [v[metric] for _, t, v in REFERENCES
                               if t == task and metric in v])
            axis.set_ylim(bottom=0 if metric not in LOWER_IS_BETTER else 0.6 * low)
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        axis.set_title(f"{task}: test {metric} ({better} is better)", fontsize=9)
        axis.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    with staged_file(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)
    return path
