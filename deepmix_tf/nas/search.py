"""Architecture search over a trained supernet (issue: "Automated DeepMix design").

- `SupernetRun` loads a supernet run (`trainer.train` of `Config(model="nas")` without an
  architecture) and scores architectures of its space with the supernet's weights: a short
  fine-tune of the architecture alone on the training split less its held-out slice, then
  the task's monitored metric (lower is better) on the held-out slice, so that validation
  stays clean for choosing among the finally trained models. The weights are restored
  after each score. `latency_ms` times the architecture's whole model at batch 1, as the
  exported signature computes it (`export.saved_model.serving_function`), on this CPU.
- `evolve`: regularised (aging) evolution (Real et al., 2019): a population of the most
  recent `population` children; each cycle, a tournament of `tournament` members drawn at
  random, one mutation (`SearchSpace.mutate`) of its fittest. Every child is kept, with
  its score and latency, in a JSON state that a later call resumes.
- `pareto_front`, `kendall_tau`: the front of (score, latency) and the rank agreement of
  inherited and stand-alone scores.
"""

import json
import os
import time

import numpy as np

from deepmix_tf.files import write_json

STATE = "search.json"


def pareto_front(points):
    """Indices of the (score, latency) `points`, both lower-is-better, that no other point
    dominates (no worse in both and better in one), by increasing latency."""
    points = [tuple(map(float, p)) for p in points]
    front = [i for i, (s, t) in enumerate(points)
             if not any(s2 <= s and t2 <= t and (s2 < s or t2 < t) for s2, t2 in points)]
    return sorted(front, key=lambda i: (points[i][1], points[i][0]))


def kendall_tau(x, y):
    """Kendall's tau-b of two equally long sequences (ties in either count as neither
    concordant nor discordant; tau-b corrects the denominator for them)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"kendall_tau needs two sequences of one length >= 2, got "
                         f"{len(x)} and {len(y)}")
    i, j = np.triu_indices(len(x), 1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    denominator = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float(np.sum(dx * dy) / denominator) if denominator else float("nan")


class SupernetRun:
    """A trained supernet run, ready to score architectures of its space.

    Args:
        model_dir: the run's folder (`config.json`, `metrics.json`, `model.keras`).
        finetune_steps: training steps of each architecture alone before it is scored.
    """

    def __init__(self, model_dir, finetune_steps=100):
        import tensorflow as tf

        from deepmix_tf import tasks
        from deepmix_tf.data import tfrecords
        from deepmix_tf.export.saved_model import split_model
        from deepmix_tf.models import Config, load_model
        from deepmix_tf.nas.network import SUPERNET
        from deepmix_tf.training.trainer import make_optimizer

        self.model_dir = model_dir
        self.config = Config.from_json(os.path.join(model_dir, "config.json"))
        if not self.config.trains_supernet():
            raise ValueError(f"{model_dir} is not a supernet run (model 'nas' without an "
                             f"architecture): model {self.config.model!r}")
        with open(os.path.join(model_dir, "metrics.json")) as f:
            self.metrics = json.load(f)
        self.dataset_dir = self.metrics["build"]["dir"]
        self.meta = tfrecords.read_metadata(self.dataset_dir)
        self.task = tasks.make_task(self.meta["task"])
        self.metric = self.task.monitor.removeprefix("val_")
        self.full = load_model(os.path.join(model_dir, "model.keras"))
        self.preprocessor, self.network = split_model(self.full, "scoring a supernet's children")
        self.supernet = self.network.get_layer(SUPERNET)
        self.space = self.supernet.space
        self.finetune_steps = int(finetune_steps)
        self.network.compile(optimizer=make_optimizer(self.config),
                             loss=self.task.loss(self.config),
                             metrics=self.task.train_metrics())
        self.network.optimizer.build(self.network.trainable_variables)
        self._weights = [v.numpy() for v in self.network.weights]
        self._optimizer = [v.numpy() for v in self.network.optimizer.variables]

        def preprocess(features):
            return self.preprocessor({n: features[n] for n in self.preprocessor.input})

        def dataset(split, **options):
            return tfrecords.make_dataset(self.dataset_dir, split, self.config.batch_size,
                                          seed=self.config.seed, in_memory=True,
                                          transform=preprocess,
                                          holdout_every=self.config.holdout_every, **options)

        # Every child fine-tunes on the same batches (the first of the shuffled split less
        # its held-out slice), so that scores differ by architecture only.
        steps = max(self.finetune_steps, 1)
        self.datasets = {"finetune": dataset("train", shuffle=True, repeat=True, part="rest")
                         .take(steps).cache()
                         .apply(tf.data.experimental.assert_cardinality(steps)),
                         "held": dataset("train", part="held"),
                         "validation": dataset("validation")}
        self._child_meta = self._requests = None

    def score(self, architecture, splits=("held",)):
        """{split: the task's monitored metric} of `architecture` with the supernet's
        weights after `finetune_steps` steps of it alone (splits: "held", the held-out
        slice of the training split; "validation"). The network's weights (the active
        architecture among them) and the optimizer's state are restored afterwards."""
        self.supernet.set_architecture(architecture)
        try:
            if self.finetune_steps:
                self.network.fit(self.datasets["finetune"], epochs=1, verbose=0)
            return {s: float(self.network.evaluate(self.datasets[s], verbose=0,
                                                   return_dict=True)[self.metric])
                    for s in splits}
        finally:
            for v, value in zip(self.network.weights, self._weights):
                v.assign(value)
            for v, value in zip(self.network.optimizer.variables, self._optimizer):
                v.assign(value)

    def child_config(self, architecture, base=None):
        """The plain config that trains `architecture` from scratch (`experiments.train
        --config`): `base` (default: the supernet run's config) with the architecture and
        its embedding widths."""
        self.space.check(architecture)
        return (base or self.config).replace(
            architecture=architecture, embedding_dims=dict(architecture["embedding_dims"]))

    def latency_ms(self, architecture, calls=300):
        """Batch-1 p50 (ms) of the architecture's whole model, raw features in and the
        task's serving outputs out, as the exported signature computes it, on this CPU
        (a new model of its sizes: its weights do not matter)."""
        from deepmix_tf.data import tfrecords
        from deepmix_tf.export.latency import latency_ms, single_requests
        from deepmix_tf.export.saved_model import serving_function
        from deepmix_tf.models import build_model, load_tables
        from deepmix_tf.training.trainer import model_meta

        config = self.child_config(architecture)
        if self._child_meta is None:
            meta = model_meta(config, self.dataset_dir, self.meta)
            self._child_meta = (meta, load_tables(self.dataset_dir, config, meta))
        model = build_model(config, *self._child_meta)[2]
        if self._requests is None:
            features, _ = next(iter(tfrecords.make_dataset(self.dataset_dir, "validation",
                                                           64)))
            self._requests = single_requests(features)
        serve = serving_function(model, self.meta)
        names = list(model.input)
        requests = [{n: r[n] for n in names} for r in self._requests]
        return latency_ms(serve, requests, calls=calls, warmup=30)[0]


def evolve(run, out_dir, population=20, tournament=5, budget_s=3600, max_children=None,
           seed=0, latency_weight=0.0, log=print, progress=True):
    """Regularised evolution over `run`'s space (a `SupernetRun`), resuming the state in
    `<out_dir>/search.json`. Stops when this call has spent `budget_s` seconds (counting
    from its start), or the state holds `max_children` children.

    Each child is {"id", "architecture", "score" (the held-out metric with inherited
    weights), "latency_ms", "parent" (id, or None for the random first population),
    "seconds"}; the state's "seconds" is the evolution's wall time over all calls. The
    tournament's fitness is `score * (latency_ms / t) ** latency_weight`,
    t the median latency of the first population: with 0 (the default) accuracy alone, a
    soft latency target as in MnasNet otherwise. The front is that of every child.

    Returns:
        The state: {"settings", "children", "seconds"}.
    """
    import keras
    import tensorflow as tf

    if latency_weight < 0:
        raise ValueError(f"latency_weight must be >= 0 (the score is lower-is-better: a "
                         f"positive weight penalises latency), got {latency_weight}")
    settings = {"population": population, "tournament": tournament, "seed": seed,
                "latency_weight": latency_weight, "finetune_steps": run.finetune_steps,
                "supernet": os.path.abspath(run.model_dir),
                "supernet_weights": run.metrics["weights_sha256"]}
    if not 2 <= tournament <= population:
        raise ValueError(f"tournament must be in [2, population={population}], got "
                         f"{tournament}")
    path = os.path.join(out_dir, STATE)
    state = {"settings": settings, "children": [], "seconds": 0.0}
    if os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
        if state["settings"] != settings:
            changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
            raise ValueError(f"{path} is a search with other settings ({changed}): use "
                             "another output folder, or the same settings to resume it")
        log(f"resuming {path}: {len(state['children'])} children")
    os.makedirs(out_dir, exist_ok=True)
    children = state["children"]
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "logs", "evolution"))
    bar = keras.utils.Progbar(max(1, int(budget_s)), unit_name="s") if progress else None
    start, past = time.perf_counter(), state["seconds"]

    def fitness(child):
        if not latency_weight:
            return child["score"]
        target = float(np.median([c["latency_ms"] for c in children[:population]]))
        return child["score"] * (child["latency_ms"] / target) ** latency_weight

    while time.perf_counter() - start < budget_s and (max_children is None
                                                      or len(children) < max_children):
        rng = np.random.default_rng([seed, len(children)])
        if len(children) < population:
            parent, architecture = None, run.space.sample(rng)
        else:
            alive = children[-population:]
            drawn = rng.choice(len(alive), size=tournament, replace=False)
            parent = min((alive[i] for i in drawn), key=fitness)
            architecture = run.space.mutate(parent["architecture"], rng)
            parent = parent["id"]
        began = time.perf_counter()
        score = run.score(architecture)["held"]
        if not np.isfinite(score):  # a diverged fine-tune: last in every comparison
            score = float("inf")
        latency = run.latency_ms(architecture)
        child = {"id": len(children), "architecture": architecture, "score": score,
                 "latency_ms": round(latency, 4), "parent": parent,
                 "seconds": round(time.perf_counter() - began, 2)}
        children.append(child)
        state["seconds"] = round(past + time.perf_counter() - start, 1)
        write_json(path, state)
        best = min(c["score"] for c in children)  # inf while every child diverged
        with writer.as_default(step=child["id"]):
            tf.summary.scalar(f"child/{run.metric}", score)
            tf.summary.scalar("child/latency_ms", latency)
            tf.summary.scalar(f"best/{run.metric}", best)
        if bar is not None:
            bar.update(min(int(time.perf_counter() - start), int(budget_s)),
                       [("children", len(children)), (f"best_{run.metric}", best)],
                       finalize=False)
    writer.flush()
    if bar is not None:
        bar.update(max(1, int(budget_s)), finalize=True)
    return state


def front(children):
    """The children on the Pareto front of (score, latency_ms), by increasing latency
    (children whose score is not finite left out)."""
    finite = [c for c in children if np.isfinite(c["score"])]
    return [finite[i] for i in pareto_front([(c["score"], c["latency_ms"]) for c in finite])]


def chosen(children, top=3):
    """The `top` children of best score (accuracy alone, whatever the tournament's
    latency weight), distinct architectures, best first; non-finite scores left out."""
    seen, out = set(), []
    for child in sorted((c for c in children if np.isfinite(c["score"])),
                        key=lambda c: c["score"]):
        key = json.dumps(child["architecture"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(child)
        if len(out) == top:
            break
    return out


def plot(path, children, metric, trained=(), title=""):
    """A PNG of the search (every child's held-out score with inherited weights against
    its latency, the front joined) and, beside it, of trained models: `trained` is
    [{"name", "metric_name", "metric", "latency_ms", "searched": bool}] (their own
    validation metric and exported batch-1 p50)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from deepmix_tf.files import staged_file

    panels = 2 if trained else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    ax.scatter([c["latency_ms"] for c in children], [c["score"] for c in children], s=10,
               color="0.7", label="children (inherited weights)")
    edge = front(children)
    ax.plot([c["latency_ms"] for c in edge], [c["score"] for c in edge], "o-", color="C3",
            label="Pareto front")
    ax.set_xlabel("batch-1 latency, ms (this CPU)")
    ax.set_ylabel(f"held-out {metric}")
    ax.set_title("search")
    ax.legend()
    if trained:
        ax = axes[0][1]
        for i, m in enumerate(trained):
            ax.scatter(m["latency_ms"], m["metric"], marker="*" if m["searched"] else "o",
                       s=120 if m["searched"] else 50, color=f"C{i}", label=m["name"])
        ax.set_xlabel("batch-1 p50 of the exported signature, ms (this CPU)")
        ax.set_ylabel(f"validation {trained[0]['metric_name']} (trained from scratch)")
        ax.set_title("trained models")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with staged_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
