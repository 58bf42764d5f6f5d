"""DeepCTR's DCNMix side of the training-speed comparison; runs in its own process.

    TF_USE_LEGACY_KERAS=1 python -m benchmarks.deepctr_dcnmix --spec spec.json --result out.json

Started by `python -m experiments.benchmark_training --compare_deepctr`, which writes the
spec (features, vocabulary sizes, model settings, the batch file) and reads the result.
DeepCTR 0.9.4 is Keras 2 code: TF_USE_LEGACY_KERAS=1 must be set before TensorFlow is
imported (this module sets it when absent), and nothing that imports Keras 3 is imported
here (of deepmix_tf only `deepmix_tf.files`).

Exit status 3 means DeepCTR is not installed (see benchmarks/requirements.txt).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

NOT_INSTALLED = 3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON written by benchmark_training.")
    parser.add_argument("--result", required=True, help="Where to write the result JSON.")
    args = parser.parse_args()
    if os.environ["TF_USE_LEGACY_KERAS"] != "1":
        sys.exit("TF_USE_LEGACY_KERAS must be 1 for DeepCTR (Keras 2 through tf-keras)")
    if "tensorflow" in sys.modules:
        sys.exit("TensorFlow was imported before TF_USE_LEGACY_KERAS was set")

    from benchmarks import timing
    from deepmix_tf.files import write_json  # plain Python: imports no Keras

    spec = timing.read_json(args.spec)
    try:
        import deepctr
        from deepctr.feature_column import DenseFeat, SparseFeat
        from deepctr.models import DCNMix
    except ModuleNotFoundError as e:
        print(f"deepctr not importable ({e}): pip install --no-deps -r "
              "benchmarks/requirements.txt", file=sys.stderr)
        sys.exit(NOT_INSTALLED)
    import tensorflow as tf
    import tf_keras

    tf.keras.utils.set_random_seed(spec["seed"])
    # One SparseFeat per categorical feature (indices from our preprocessing, 0 = unknown),
    # one DenseFeat per dense input (multi-hot genres, the per-movie table row).
    columns = ([SparseFeat(name, vocabulary_size=size, embedding_dim=spec["embedding_dim"])
                for name, size in spec["sparse"]]
               + [DenseFeat(name, dimension=dim) for name, dim in spec["dense"]])
    model = DCNMix(columns, columns, cross_num=spec["cross_layers"],
                   dnn_hidden_units=tuple(spec["dnn_hidden_units"]), low_rank=spec["low_rank"],
                   num_experts=spec["num_experts"], seed=spec["seed"], task="regression")
    steps_per_execution = spec["steps_per_execution"]
    model.compile(tf.keras.optimizers.Adam(spec["learning_rate"]), spec["loss"],
                  steps_per_execution=steps_per_execution)

    names = [name for name, _ in spec["sparse"]] + [name for name, _ in spec["dense"]]
    features, labels = timing.load_batches(spec["batches"], names, spec["batch_size"])
    for name, _ in spec["sparse"]:
        # DeepCTR's sparse inputs are (batch, 1).
        features[name] = features[name][..., None]
    seconds, loss, fit_seconds = timing.time_fit(
        model, features, labels[..., None], spec["steps"], spec["warmup_steps"],
        tf.keras.callbacks.Callback, steps_per_execution)
    write_json(args.result, timing.result(
        "deepctr_dcnmix", seconds, spec["steps"], spec["batch_size"], loss,
        fit_seconds=fit_seconds,
        jit_compile=False, steps_per_execution=steps_per_execution,
        parameters=int(model.count_params()),
        versions={"deepctr": deepctr.__version__, "tensorflow": tf.__version__,
                  "tf_keras": tf_keras.__version__}))


if __name__ == "__main__":
    main()
