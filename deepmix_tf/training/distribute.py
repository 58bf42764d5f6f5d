"""tf.distribute strategies for training: which one, who is the chief, and the input pipeline.

    strategy = make_strategy("multi_worker")   # cluster from $TF_CONFIG
    trainer.train(config, ..., strategy=strategy)

Create the strategy first thing in the program: `MultiWorkerMirroredStrategy` configures the
collective ops of the process and must exist before other TensorFlow work.
"""

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "parameter_server")


def make_strategy(name):
    """The `tf.distribute.Strategy` named `name` (one of `STRATEGIES`).

    "default" is TensorFlow's default strategy (one device, no distribution), "mirrored" one
    machine with every local device, "multi_worker" `MultiWorkerMirroredStrategy` over the
    cluster described by the `TF_CONFIG` environment variable.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and this task's role); see BUILD.md")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "parameter_server":
        raise NotImplementedError(
            "--strategy=parameter_server: Keras 3's Model.fit does not drive "
            "tf.distribute.ParameterServerStrategy (the Keras team dropped it, "
            "keras-team/keras#18624), and DeepMix trains with Keras 3. Use "
            "--strategy=multi_worker, which scales the same model over several machines.")
    raise ValueError(f"unknown strategy {name!r}; expected one of {STRATEGIES}")


def patch_keras_for_multi_worker():
    """Makes Keras 3's `fit` average scalar logs (loss, metrics) over workers correctly.

    Under `MultiWorkerMirroredStrategy`, Keras 3 (3.15 included) reduces every train/test
    step output with `strategy.reduce("MEAN", value, axis=0)`, which fails for the scalar
    losses and metrics that `fit` returns ("Invalid reduction dimension 0 for input with 0
    dimensions", tensorflow/tensorflow#72388). Scalars are averaged over workers with
    `axis=None` instead; everything else goes to Keras unchanged. Idempotent.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer
    from keras.src import tree

    original = tf_trainer.reduce_per_replica
    if getattr(original, "deepmix_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
                strategy):
            def reduce(value):
                if isinstance(value, tf.Tensor) and value.shape.rank == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica.deepmix_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def task_of(strategy):
    """(task_type, task_id) of this process in its cluster; ("chief", 0) without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "chief", 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy):
    """True for the one process that writes files: the "chief" task, or worker 0 when the
    cluster has no chief (TensorFlow's convention)."""
    if strategy is None:
        return True
    task_type, task_id = task_of(strategy)
    if task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def num_workers(strategy):
    """Processes that train in the cluster (chief and workers); 1 without a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, len(cluster.get("chief", [])) + len(cluster.get("worker", [])))


def is_default(strategy):
    """True for None and TensorFlow's default (no-op) strategy."""
    return strategy is None or strategy is tf.distribute.get_strategy()


def describe(strategy):
    """A JSON-able summary for metrics.json."""
    if is_default(strategy):
        return {"name": "default", "replicas": 1, "workers": 1}
    task_type, task_id = task_of(strategy)
    return {"name": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "workers": num_workers(strategy), "task": f"{task_type}:{task_id}"}


def tf_config(workers, index, task_type="worker"):
    """The `TF_CONFIG` value of one task of a cluster of `workers` ("host:port" strings)."""
    return json.dumps({"cluster": {"worker": list(workers)},
                       "task": {"type": task_type, "index": int(index)}})
