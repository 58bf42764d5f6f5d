"""Tasks: what a model predicts, and everything that follows from it.

A task owns its label encoding, its output layer, loss, training metrics, the metric early
stopping watches, the evaluation of whole splits, the decision rule chosen on validation and
the serving outputs. The build, the trainer, the export and the report ask the task; none of
them branches on a task's name.

- `Regression`: a number (MAE, RMSE; predictions clipped to the task's `range`).
- `Binary`: a 0/1 label, one logit (AUC and log loss, what CTR papers report).
- `MultiLabel`: several 0/1 labels from a separator-joined column (micro/macro F1, each
  label's threshold chosen on validation).

`make_task(info)` builds one from the `task` entry of a build's metadata.
"""

import keras
import numpy as np
import tensorflow as tf

from deepmix_tf.training import metrics as metrics_lib


@keras.saving.register_keras_serializable(package="deepmix_tf")
class RatingHead(keras.layers.Layer):
    """`y = mean + w^T x + b`; at inference clipped to [low, high] (when given).

    Training sees the unclipped value so that its gradient never vanishes.

    Args:
        mean: float. Training mean of the label, the starting point of the prediction.
        low, high: floats or None. The label's range.
    """

    def __init__(self, mean=0.0, low=None, high=None, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.low, self.high = mean, low, high
        self.dense = keras.layers.Dense(1, name="score", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x, training=False):
        y = self.mean + keras.ops.squeeze(self.dense(x), -1)
        if training or (self.low is None and self.high is None):
            return y
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        return keras.ops.clip(y, low, high)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "low": self.low, "high": self.high}


class Task:
    """The interface every task implements (see the module docstring).

    Attributes:
        name: str. The task's name in the spec ("rating", "genre", "click").
        label: str. The label column.
        outputs: int. Output units of the network (1 for a scalar prediction).
        monitor: str. The validation metric early stopping watches (lower is better).
        metric_names: tuple of str. The metrics `evaluate` returns, in report order.
        lower_is_better: set of str. Those of `metric_names` where lower is better.
    """

    type = None
    lower_is_better = set()

    def __init__(self, info):
        self.info = dict(info)
        self.name = info["name"]
        self.label = info["label"]
        self.stats = info.get("stats", {})

    # -- the build
    def encode_labels(self, values):
        """The label column's values -> float32 array (n,) or (n, outputs)."""
        return np.asarray(values, np.float32)

    def label_shape(self):
        return []

    def label_stats(self, labels):
        """What the task keeps of the training labels (mean, priors): JSON-able."""
        return {"mean": np.asarray(labels, np.float64).mean(0).tolist()}

    # -- the model
    def head(self, x):
        raise NotImplementedError

    def loss(self, config):
        raise NotImplementedError

    def train_metrics(self):
        return []

    # -- evaluation
    def evaluate(self, outputs):
        """Metrics of each split from `{split: (labels, network outputs)}`; the decision rule
        is chosen on "val". Returns (metrics per split, decision dict or None)."""
        raise NotImplementedError

    def validation_logs(self, y, p):
        """`val_*` entries for epoch logs (multi-worker validation), besides the loss."""
        return {}

    # -- serving
    def serving_outputs(self, prediction, decision):
        raise NotImplementedError

    def signature_outputs(self):
        """Rows (name, dtype, shape, meaning) of the serving outputs, for docs and tests."""
        raise NotImplementedError

    def ranking_score(self, prediction):
        """The score items are ranked by in recommendations (higher is better), from the
        network's output; tasks without one (multi-label) cannot recommend."""
        raise ValueError(f"a {self.type} task has no score to rank items by")

    def score_serving(self, labels, outputs, decision):
        """The task's metrics of a split from the serving outputs (numpy arrays by name)."""
        raise NotImplementedError

    def describe(self):
        return {k: v for k, v in self.info.items() if k != "stats"}


class Regression(Task):
    type = "regression"
    metric_names = ("mae", "rmse")
    lower_is_better = {"mae", "rmse"}
    monitor = "val_mae"
    outputs = 1

    @property
    def range(self):
        low, high = self.info.get("range") or (None, None)
        return low, high

    def head(self, x):
        low, high = self.range
        return RatingHead(mean=float(self.stats.get("mean", 0.0)), low=low, high=high,
                          name=self.name)(x)

    def loss(self, config):
        losses = {"mse": "mse", "mae": "mae", "huber": keras.losses.Huber(delta=1.0)}
        return losses[config.loss]

    def train_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae"),
                keras.metrics.RootMeanSquaredError(name="rmse")]

    def evaluate(self, outputs):
        return {name: self.validation_metrics(y, p) for name, (y, p) in outputs.items()}, None

    def validation_metrics(self, y, p):
        return metrics_lib.regression_metrics(y, p, *self.range)

    def validation_logs(self, y, p):
        return {f"val_{k}": v for k, v in self.validation_metrics(y, p).items()}

    def serving_outputs(self, prediction, decision):
        return {self.name: prediction}

    def score_serving(self, labels, outputs, decision):
        return self.validation_metrics(labels, outputs[self.name])

    def ranking_score(self, prediction):
        return prediction  # the predicted value

    def signature_outputs(self):
        low, high = self.range
        where = f", clipped to [{low}, {high}]" if low is not None or high is not None else ""
        return [(self.name, "float32", "(batch,)", f"predicted {self.label}{where}")]


class Binary(Task):
    type = "binary"
    metric_names = ("auc", "log_loss")
    lower_is_better = {"log_loss"}
    monitor = "val_loss"
    outputs = 1

    def head(self, x):
        # Starts at the training click rate: the first steps need not learn the bias.
        rate = float(np.clip(self.stats.get("mean", 0.5), 1e-4, 1 - 1e-4))
        logit = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(
            np.log(rate / (1 - rate))), name=f"{self.name}_logit")(x)
        return keras.ops.squeeze(logit, -1)

    def loss(self, config):
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def train_metrics(self):
        return [keras.metrics.AUC(from_logits=True, name="auc")]

    def evaluate(self, outputs):
        results = {}
        for name, (y, logits) in outputs.items():
            results[name] = metrics_lib.binary_metrics(y, logits)
            results[name]["accuracy"] = float(np.mean((logits >= 0) == (y >= 0.5)))
        return results, {"threshold": 0.5}

    def validation_logs(self, y, p):
        return {"val_auc": metrics_lib.binary_metrics(y, p)["auc"]}

    def score_serving(self, labels, outputs, decision):
        p = np.clip(np.asarray(outputs["probability"], np.float64), 1e-7, 1 - 1e-7)
        return metrics_lib.binary_metrics(labels, np.log(p / (1 - p)))

    def ranking_score(self, prediction):
        return tf.sigmoid(prediction)  # the probability

    def serving_outputs(self, prediction, decision):
        probability = tf.sigmoid(prediction)
        return {"probability": probability,
                "predicted": probability >= decision.get("threshold", 0.5)}

    def signature_outputs(self):
        return [("probability", "float32", "(batch,)", f"probability that {self.label} is 1"),
                ("predicted", "bool", "(batch,)", "probability >= 0.5")]


class MultiLabel(Task):
    type = "multi_label"
    metric_names = ("micro_f1", "macro_f1")
    monitor = "val_loss"

    @property
    def classes(self):
        return list(self.info["classes"])

    @property
    def outputs(self):
        return len(self.classes)

    def encode_labels(self, values):
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.zeros((len(values), len(index)), np.float32)
        for row, value in enumerate(values):
            for item in value.split(self.info["separator"]) if value else []:
                out[row, index[item]] = 1.0
        return out

    def label_shape(self):
        return [self.outputs]

    def head(self, x):
        return keras.layers.Dense(self.outputs, name=f"{self.name}_logits")(x)

    def loss(self, config):
        return keras.losses.BinaryCrossentropy(from_logits=True)

    def train_metrics(self):
        return [keras.metrics.AUC(multi_label=True, from_logits=True, num_labels=self.outputs,
                                  name="auc")]

    def evaluate(self, outputs):
        """Predictions are `probability >= threshold` per label, the thresholds chosen on
        "val" from the training split's label shares (`metrics.choose_label_thresholds`)."""
        decision = metrics_lib.choose_label_thresholds(*outputs["val"], self.stats["mean"])
        results = {name: metrics_lib.f1_scores(y, 1 / (1 + np.exp(-logits)),
                                               decision["thresholds"])
                   for name, (y, logits) in outputs.items()}
        return results, decision

    def score_serving(self, labels, outputs, decision):
        return metrics_lib.f1_scores(labels, outputs["probabilities"], decision["thresholds"])

    def serving_outputs(self, prediction, decision):
        thresholds = tf.constant(np.broadcast_to(
            np.asarray(decision.get("thresholds", 0.5), np.float32), (self.outputs,)))
        probabilities = tf.sigmoid(prediction)
        batch = tf.shape(probabilities)[0]
        return {
            "probabilities": probabilities,
            "predicted": probabilities >= thresholds,
            f"{self.name}_names": tf.tile(tf.constant([self.classes]), [batch, 1]),
            "threshold": tf.tile(thresholds[None], [batch, 1]),
        }

    def signature_outputs(self):
        n = self.outputs
        return [("probabilities", "float32", f"(batch, {n})", "per-label probability"),
                ("predicted", "bool", f"(batch, {n})", "probability >= its threshold"),
                (f"{self.name}_names", "string", f"(batch, {n})", "the label of each column"),
                ("threshold", "float32", f"(batch, {n})",
                 "per-label threshold chosen on validation")]


TASK_TYPES = {t.type: t for t in (Regression, Binary, MultiLabel)}


def make_task(info):
    """The task object of a build's `task` metadata (or a spec's `task` entry)."""
    try:
        return TASK_TYPES[info["type"]](info)
    except KeyError:
        raise ValueError(f"unknown task type {info.get('type')!r}; expected one of "
                         f"{sorted(TASK_TYPES)}") from None
