"""Evaluation metrics of the two tasks, computed on whole splits."""

import keras
import numpy as np

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def rating_metrics(y_true, y_pred, low=1.0, high=5.0):
    """MAE and RMSE of predictions clipped to the rating scale."""
    error = np.clip(y_pred, low, high) - y_true
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2)))}


def f1_scores(y_true, probabilities, threshold):
    """Micro and macro F1 of multi-label predictions `probabilities >= threshold`.

    A genre with no true and no predicted member scores F1 = 0 in the macro mean, as Keras'
    `F1Score` and scikit-learn's default do.
    """
    out = {}
    for average in ("micro", "macro"):
        metric = keras.metrics.F1Score(average=average, threshold=threshold)
        metric.update_state(np.asarray(y_true, np.float32), np.asarray(probabilities, np.float32))
        out[f"{average}_f1"] = float(metric.result())
    return out


def choose_threshold(y_true, probabilities, thresholds=THRESHOLDS):
    """The single decision threshold that maximises micro-F1 (use validation data only)."""
    y_true = np.asarray(y_true, bool)
    best, best_f1 = float(thresholds[0]), -1.0
    for t in thresholds:
        predicted = probabilities >= t
        tp = np.sum(predicted & y_true)
        f1 = 2 * tp / max(predicted.sum() + y_true.sum(), 1)
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best
