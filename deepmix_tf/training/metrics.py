"""Evaluation metrics of the tasks (`deepmix_tf.tasks`), computed on whole splits."""

import keras
import numpy as np

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)
ADJUSTMENTS = np.round(np.arange(0.0, 1.001, 0.125), 3)


def regression_metrics(y_true, y_pred, low=None, high=None):
    """MAE and RMSE of predictions clipped to [low, high] (None: unbounded)."""
    y_pred = np.clip(y_pred, -np.inf if low is None else low, np.inf if high is None else high)
    error = y_pred - y_true
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2)))}


def binary_metrics(y_true, logits):
    """Exact ROC AUC (ties share their average rank) and log loss of logits."""
    y = np.asarray(y_true, np.float64).reshape(-1) >= 0.5
    z = np.asarray(logits, np.float64).reshape(-1)
    # log(1 + e^z) - y z, written to stay finite for large |z|.
    log_loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return {"auc": float("nan"), "log_loss": log_loss}
    order = np.argsort(z, kind="mergesort")
    ranks = np.empty(len(z))
    sorted_z = z[order]
    starts = np.flatnonzero(np.r_[True, sorted_z[1:] != sorted_z[:-1]])
    ends = np.r_[starts[1:], len(z)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    auc = (ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return {"auc": float(auc), "log_loss": log_loss}


def f1_scores(y_true, probabilities, threshold):
    """Micro and macro F1 of multi-label predictions `probabilities >= threshold`, where
    `threshold` is one number or one per label.

    A genre with no true and no predicted member scores F1 = 0 in the macro mean, as Keras'
    `F1Score` and scikit-learn's default do.
    """
    predicted = (np.asarray(probabilities) >= np.asarray(threshold)).astype(np.float32)
    out = {}
    for average in ("micro", "macro"):
        metric = keras.metrics.F1Score(average=average, threshold=0.5)
        metric.update_state(np.asarray(y_true, np.float32), predicted)
        out[f"{average}_f1"] = float(metric.result())
    return out


def choose_label_thresholds(y_true, logits, prior, adjustments=ADJUSTMENTS,
                          thresholds=THRESHOLDS):
    """Per-label probability thresholds from two numbers chosen on validation data.

    Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment",
    ICLR 2021): a label is predicted when `sigmoid(logit - tau * log(prior)) >= t`, which
    favours rare labels for `tau > 0`. `tau` and `t` are the pair of the grids that
    maximises micro-F1 + macro-F1 (the first such pair). Equivalently, label `g` is
    predicted when its probability reaches `sigmoid(logit(t) + tau * log(prior_g))`: per-label
    thresholds tied by two parameters, far fewer than one free threshold per label when the
    validation split is small (388 movies in MovieLens' genre task).

    Args:
        y_true: (n, labels) 0/1 array of the validation split.
        logits: (n, labels) float array, the model's logits on it.
        prior: (labels,) share of each label in the training split.

    Returns:
        dict: `logit_adjustment` (tau), `threshold` (t), `thresholds` (list of per-label
        probability thresholds), `val_micro_f1` and `val_macro_f1` at that choice.
    """
    y_true = np.asarray(y_true, bool)
    log_prior = np.log(np.clip(np.asarray(prior, np.float64), 1e-3, 1.0))
    best = None
    for tau in adjustments:
        adjusted = np.asarray(logits, np.float64) - tau * log_prior
        for t in thresholds:
            predicted = adjusted >= np.log(t / (1 - t))
            micro, macro = _micro_macro_f1(y_true, predicted)
            if best is None or micro + macro > best[0]:
                best = (micro + macro, float(tau), float(t), micro, macro)
    _, tau, t, micro, macro = best
    per_label = 1 / (1 + np.exp(-(np.log(t / (1 - t)) + tau * log_prior)))
    return {"logit_adjustment": tau, "threshold": t,
            "thresholds": [float(x) for x in per_label],
            "val_micro_f1": float(micro), "val_macro_f1": float(macro)}


def _micro_macro_f1(y_true, predicted):
    """`f1_scores`' micro and macro F1 of boolean predictions, in NumPy: the grid search
    scores some 800 pairs, too many to build Keras metrics for (a test checks that both
    agree)."""
    tp = np.sum(predicted & y_true, axis=0)
    wrong = np.sum(predicted ^ y_true, axis=0)  # false positives + false negatives
    micro = 2 * tp.sum() / max(2 * tp.sum() + wrong.sum(), 1)
    per_label = np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
    return float(micro), float(per_label.mean())
