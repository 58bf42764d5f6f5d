"""Collects the metrics.json of runs into results/README.md and results/summary.json.

    python -m experiments.report --runs artifacts/models --output_dir results
"""

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("runs", ["artifacts/models"], "Folders searched for metrics.json.")
flags.DEFINE_string("output_dir", "results", "Where README.md and summary.json go.")
flags.DEFINE_string("speed", None, "JSON file of the training-speed benchmark, if any.")


def main(argv):
    del argv
    from deepmix_tf.training import report

    runs = report.load_runs(FLAGS.runs)
    if not runs:
        raise SystemExit(f"no metrics.json under {FLAGS.runs}")
    summary = report.summarize(runs)
    speed = None
    if FLAGS.speed:
        with open(FLAGS.speed) as f:
            speed = json.load(f)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    text = ("# Results\n\nTest metrics, mean ± standard deviation over seeds, from "
            f"{len(runs)} runs (`python -m experiments.report`). Rows labelled reference "
            "were not measured by this project.\n\n" + report.markdown(summary))
    with open(os.path.join(FLAGS.output_dir, "README.md"), "w") as f:
        f.write(text)
    with open(os.path.join(FLAGS.output_dir, "summary.json"), "w") as f:
        json.dump(report.summary_json(summary, speed), f, indent=1)
    print(text)


if __name__ == "__main__":
    app.run(main)
