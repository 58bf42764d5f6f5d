"""Collects the metrics.json of runs into results/README.md, results/summary.json and
results/chart.png.

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
    from deepmix_tf.files import write_json, write_text
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
    if speed and {"deepmix_examples_per_s", "deepctr_dcnmix_examples_per_s"} <= set(speed):
        text += (
            "### training speed\n\n"
            f"DeepMix {speed['deepmix_examples_per_s']:,.0f} examples/s, DeepCTR DCNMix "
            f"{speed['deepctr_dcnmix_examples_per_s']:,.0f} examples/s: ratio "
            f"{speed['ratio']:.2f} (medians over alternating rounds, equal settings"
            f"{_loop_settings(speed)}; "
            f"`{speed.get('command', 'python -m experiments.benchmark_training --compare_deepctr')}`)."
            "\n")
    ranking_file = os.path.join(FLAGS.output_dir, "ranking.json")
    if os.path.exists(ranking_file):  # experiments.evaluate_ranking's table
        from deepmix_tf.training.ranking import SECTION, markdown

        with open(ranking_file) as f:
            text += f"\n{SECTION[0]}\n{markdown(json.load(f))}{SECTION[1]}\n"
    text += "\n![test metrics](chart.png)\n"
    report.chart(summary, os.path.join(FLAGS.output_dir, "chart.png"))
    write_text(os.path.join(FLAGS.output_dir, "README.md"), text)
    write_json(os.path.join(FLAGS.output_dir, "summary.json"),
               report.summary_json(summary, speed))
    print(text)


def _loop_settings(speed):
    """How each side ran its steps (XLA, steps per call), when the speed file says."""
    settings = speed.get("settings", {})
    ours = settings.get("deepmix_config", {}).get("steps_per_execution")
    theirs = settings.get("deepctr_dcnmix", {}).get("steps_per_execution")
    if ours is None or theirs is None:
        return ""
    return (f"; DeepMix with jit_compile={speed.get('deepmix_jit_compile')} and {ours} steps "
            f"per execution, DCNMix without XLA and {theirs}")


if __name__ == "__main__":
    app.run(main)
