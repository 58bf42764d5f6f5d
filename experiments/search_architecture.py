"""Automated DeepMix design: trains the weight-sharing supernet over the search space, runs
regularised evolution over it (children scored on the held-out slice of the training split
with the supernet's weights after a short fine-tune, and timed at batch 1), and writes the
Pareto front and the chosen architectures as plain configs.

    python -m experiments.search_architecture --task rating --budget_minutes 120 \
        --data_dir ../shared/data --model_dir artifacts/search/rating

Writes to --model_dir:
- `supernet/`: the supernet run (`experiments.train`'s files);
- `search.json`: every child (architecture, held-out score, latency, parent), resumed by
  the same command; TensorBoard scalars in `logs/evolution`;
- `front.json`, `front.png`: the Pareto front of held-out metric against batch-1 latency,
  the chosen architectures, and the trained models of --trained beside them;
- `configs/arch-<k>.json`: the k-th best architecture as a config for
  `python -m experiments.train --config configs/arch-<k>.json --seed <seed>`.

`--rank_check N` also trains N sampled architectures from scratch and reports the Kendall
tau of their inherited-weight scores against their stand-alone validation scores
(`rank_check.json`). `--trained name=run_dir[:run_dir...]` marks trained runs in the plot
(their mean validation metric, the first run's exported batch-1 p50). The time budget
covers the supernet's training and the evolution; the rank check and the plot are outside
it. Takes every flag of experiments.train (`--epochs` is that of the chosen configs).
"""

import json
import os
import time

from absl import app, flags

from experiments import train as train_cli

FLAGS = flags.FLAGS
flags.DEFINE_float("budget_minutes", 120, "Wall time of the supernet's training and the "
                   "evolution together.")
flags.DEFINE_integer("supernet_epochs", 10, "Epochs of supernet training (a fixed budget: "
                     "no early stopping).")
flags.DEFINE_integer("population", 20, "Regularised evolution's population.")
flags.DEFINE_integer("tournament", 5, "Members drawn per tournament.")
flags.DEFINE_integer("finetune_steps", 100, "Steps of each child alone before it is scored.")
flags.DEFINE_integer("max_children", None, "Stop after this many children.")
flags.DEFINE_float("latency_weight", 0.0, "Tournament fitness = score * (latency / median "
                   "latency of the first population) ** weight, weight >= 0 (the score is "
                   "lower-is-better); 0: accuracy alone.")
flags.DEFINE_integer("top", 3, "Chosen architectures written as configs: the best held-out "
                     "scores (accuracy alone).")
flags.DEFINE_integer("search_seed", 0, "Seed of the evolution's draws.")
flags.DEFINE_integer("rank_check", 0, "Architectures sampled and trained from scratch for "
                     "the rank agreement (0: none).")
flags.DEFINE_integer("rank_check_epochs", None, "Epochs of each rank-check training "
                     "(default: the config's).")
flags.DEFINE_list("trained", [], "name=run_dir[:run_dir...] of trained runs to mark in the "
                  "plot.")


def main(argv):
    del argv
    from deepmix_tf.data.spec import load_spec
    from deepmix_tf.nas import search
    from deepmix_tf.training import trainer

    if FLAGS["model"].present and FLAGS.model != "nas":
        raise app.UsageError(f"the search designs model 'nas'; got --model={FLAGS.model}")
    FLAGS.model = "nas"
    base = train_cli.config_from_flags()
    if base.model != "nas":
        raise app.UsageError(f"the search designs model 'nas'; --config has model "
                             f"{base.model!r}")
    if FLAGS.rank_check == 1 or FLAGS.rank_check < 0:
        raise app.UsageError(f"--rank_check takes 0 or at least 2 architectures, got "
                             f"{FLAGS.rank_check}")
    if base.architecture is not None:
        raise app.UsageError("the config already has an architecture: nothing to search")
    name = load_spec(base.dataset).name
    out = FLAGS.model_dir or f"artifacts/search/{name}"
    os.makedirs(out, exist_ok=True)
    budget = FLAGS.budget_minutes * 60

    # 1. The supernet: a fixed number of epochs; a finished run is kept.
    supernet_dir = os.path.join(out, "supernet")
    config = base.replace(epochs=FLAGS.supernet_epochs, patience=FLAGS.supernet_epochs)
    if not _finished(supernet_dir, config):
        trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                      model_dir=supernet_dir, verbose=FLAGS.verbose,
                      dataset_dir=FLAGS.dataset_dir)
    run = search.SupernetRun(supernet_dir, finetune_steps=FLAGS.finetune_steps)
    supernet_s = run.metrics["wall_time_s"]

    # 2. Evolution, in what is left of the budget (a resumed search counts its past).
    past = 0.0
    if os.path.exists(os.path.join(out, search.STATE)):
        with open(os.path.join(out, search.STATE)) as f:
            past = json.load(f)["seconds"]
    left = budget - supernet_s - past
    print(f"supernet: {supernet_s:.0f} s; evolution: {past:.0f} s so far, {max(left, 0):.0f} s "
          f"left of the {budget:.0f} s budget")
    if left > 0:
        state = search.evolve(run, out, FLAGS.population, FLAGS.tournament, left,
                              FLAGS.max_children, FLAGS.search_seed, FLAGS.latency_weight)
    elif os.path.exists(os.path.join(out, search.STATE)):
        # Nothing left to spend: the state as it is (evolve checks its settings).
        state = search.evolve(run, out, FLAGS.population, FLAGS.tournament, 0,
                              FLAGS.max_children, FLAGS.search_seed, FLAGS.latency_weight,
                              progress=False)
    else:
        state = {"children": [], "seconds": 0.0}
    children = state["children"]
    if not children:
        raise SystemExit(f"no child was scored: the supernet took {supernet_s:.0f} s of the "
                         f"{budget:.0f} s budget")

    # 3. The chosen architectures as plain configs.
    os.makedirs(os.path.join(out, "configs"), exist_ok=True)
    chosen = []
    for k, child in enumerate(search.chosen(children, FLAGS.top), 1):
        path = os.path.join(out, "configs", f"arch-{k}.json")
        child_config = base.replace(architecture=child["architecture"],
                                    embedding_dims=dict(child["architecture"]["embedding_dims"]))
        child_config.to_json(path)
        chosen.append({"config": path, **child})

    # 4. The rank check (outside the budget).
    rank = _rank_check(run, base, out) if FLAGS.rank_check else None

    # 5. The front, the trained models beside it, the plot.
    trained = [_trained(entry, run.task) for entry in FLAGS.trained]
    result = {"dataset": name, "metric": run.metric, "lower_is_better": True,
              "supernet_s": supernet_s, "evolution_s": state["seconds"],
              "children": len(children), "front": search.front(children), "chosen": chosen,
              "trained": trained, "rank_check": rank and {k: rank[k] for k in
                                                          ("kendall_tau_validation",
                                                           "kendall_tau_held")}}
    from deepmix_tf.files import write_json

    write_json(os.path.join(out, "front.json"), result)
    search.plot(os.path.join(out, "front.png"), children, run.metric, trained,
                title=f"{name}: {len(children)} children, "
                      f"{(supernet_s + state['seconds']) / 60:.0f} min")
    print(f"{len(children)} children; front:")
    for child in result["front"]:
        print(f"  #{child['id']}: held-out {run.metric} {child['score']:.4f}, "
              f"{child['latency_ms']:.3f} ms")
    for c in chosen:
        print(f"chosen: {c['config']} (#{c['id']}, held-out {run.metric} {c['score']:.4f})")
    print(f"wrote {out}/front.json, front.png")


def _finished(run_dir, config):
    """Whether `run_dir` holds a finished training of `config`."""
    from deepmix_tf.models import Config

    try:
        return (os.path.exists(os.path.join(run_dir, "metrics.json"))
                and Config.from_json(os.path.join(run_dir, "config.json")) == config)
    except (OSError, ValueError):
        return False


def _rank_check(run, base, out):
    """Samples `--rank_check` architectures (draws apart from the evolution's), scores each
    with the supernet's weights (held-out slice and validation) and trains each from
    scratch; the Kendall tau of both inherited scores against the stand-alone validation
    metric. Resumes: a finished training is kept."""
    import numpy as np

    from deepmix_tf.files import write_json
    from deepmix_tf.nas.search import kendall_tau
    from deepmix_tf.training import trainer

    folder = os.path.join(out, "rank_check")
    rows = []
    for i in range(FLAGS.rank_check):
        architecture = run.space.sample(np.random.default_rng([FLAGS.search_seed, 1, i]))
        inherited = run.score(architecture, splits=("held", "validation"))
        config = run.child_config(architecture, base)
        if FLAGS.rank_check_epochs:
            config = config.replace(epochs=FLAGS.rank_check_epochs)
        run_dir = os.path.join(folder, f"arch-{i}")
        if not _finished(run_dir, config):
            trainer.train(config, data_dir=FLAGS.data_dir, tfrecord_dir=FLAGS.tfrecord_dir,
                          model_dir=run_dir, verbose=0, dataset_dir=FLAGS.dataset_dir)
        alone = _validation_metric(run_dir, run.metric)
        rows.append({"architecture": architecture, "inherited_held": inherited["held"],
                     "inherited_validation": inherited["validation"],
                     "standalone_validation": alone, "run": run_dir})
        print(f"rank check {i + 1}/{FLAGS.rank_check}: inherited {inherited['validation']:.4f}"
              f" (held {inherited['held']:.4f}), trained alone {alone:.4f}")
    alone = [r["standalone_validation"] for r in rows]
    result = {"architectures": rows,
              "kendall_tau_validation": kendall_tau([r["inherited_validation"] for r in rows],
                                                    alone),
              "kendall_tau_held": kendall_tau([r["inherited_held"] for r in rows], alone),
              "epochs": FLAGS.rank_check_epochs or base.epochs,
              "finetune_steps": run.finetune_steps}
    write_json(os.path.join(out, "rank_check.json"), result)
    print(f"Kendall tau over {len(rows)} architectures: inherited validation "
          f"{result['kendall_tau_validation']:.3f}, held-out {result['kendall_tau_held']:.3f}")
    return result


def _validation_metric(run_dir, metric):
    """A trained run's validation `metric`: from metrics.json, or for the loss (not kept
    there) the best epoch's `val_loss` of history.csv (early stopping restores that one)."""
    import csv

    with open(os.path.join(run_dir, "metrics.json")) as f:
        val = json.load(f)["val"]
    if metric in val:
        return val[metric]
    with open(os.path.join(run_dir, "history.csv")) as f:
        return min(float(row[f"val_{metric}"]) for row in csv.DictReader(f))


def _trained(entry, task):
    """{"name", "metric" (mean validation of the runs), "latency_ms", "searched"} of a
    --trained entry name=run_dir[:run_dir...]."""
    import numpy as np

    from deepmix_tf.export.latency import exported_latency_ms

    name, _, dirs = entry.partition("=")
    dirs = [d for d in dirs.split(":") if d]
    if not name or not dirs:
        raise app.UsageError(f"--trained takes name=run_dir[:run_dir...], got {entry!r}")
    metrics = []
    for d in dirs:
        with open(os.path.join(d, "metrics.json")) as f:
            metrics.append(json.load(f))
    metric = task.monitor.removeprefix("val_")
    if metric not in metrics[0]["val"]:  # the loss of genres: not in metrics.json
        metric = task.metric_names[0]
    start = time.perf_counter()
    latency = exported_latency_ms(dirs[0])
    print(f"{name}: exported batch-1 p50 {latency:.3f} ms ({time.perf_counter() - start:.0f} s)")
    return {"name": name, "runs": dirs, "seeds": len(dirs), "metric_name": metric,
            "metric": float(np.mean([m["val"][metric] for m in metrics])),
            "test": float(np.mean([m["test"][metric] for m in metrics])),
            "latency_ms": round(latency, 4),
            "searched": metrics[0].get("model") == "nas"}


if __name__ == "__main__":
    app.run(main)
