"""Calls an exported SavedModel in a new interpreter that imports TensorFlow only (none of our
code, no Keras Hub), as a TF Serving client would see it."""

import json
import os
import subprocess
import sys

import numpy as np

_CLIENT = r"""
import json, sys
import numpy as np
import tensorflow as tf
export, features_file, out_file, wrong_name = sys.argv[1:]
loaded = tf.saved_model.load(export)
serve = loaded.signatures["serving_default"]
with np.load(features_file, allow_pickle=False) as data:
    features = {k: tf.constant(data[k]) for k in data.files}
errors = {}
def chain(e):
    # What the user sees: the error and the ones it was raised while handling.
    return "\n".join(str(x) for x in (e, e.__context__, e.__cause__) if x is not None)
# A wrong dtype: rejected before any of the model runs.
wrong = dict(features)
wrong[wrong_name] = tf.constant(features[wrong_name].numpy().astype("float32"))
try:
    serve(**wrong)
except Exception as e:
    errors["wrong_dtype"] = chain(e)
outputs = {k: v.numpy() for k, v in serve(**features).items()}
missing = dict(features); missing.pop(sorted(features)[0])
try:
    serve(**missing)
except Exception as e:
    errors["missing"] = chain(e)
np.savez(out_file, **{k: (v.astype(str) if v.dtype == object else v) for k, v in outputs.items()})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("deepmix_tf", "keras_hub",
                                                              "keras_nlp", "keras_rs"))
print(json.dumps({"errors": errors, "leaked": leaked}))
"""


def serve_in_clean_process(tmp_path, export, features, wrong_dtype_input):
    """Serves `features` (name -> numpy array; strings as bytes) through the export's
    `serving_default` in a fresh interpreter; also sends `wrong_dtype_input` (an integer
    input) as float32 and leaves the alphabetically first input out, to record the errors
    a client gets.

    Returns:
        (outputs {name: numpy array}, {"errors": {...}, "leaked": [our modules imported]}).
    """
    return _run_client(tmp_path, _CLIENT, export, features, [wrong_dtype_input])


def _run_client(tmp_path, source, export, inputs, extra_args=()):
    """Runs a client script `source` as `client export inputs.npz out.npz *extra_args` in a
    fresh interpreter; returns (its outputs npz as a dict, its last stdout line as JSON)."""
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = tmp_path / "client.py"
    script.write_text(source)
    result = subprocess.run([sys.executable, str(script), str(export),
                             str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz"),
                             *extra_args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(tmp_path / "out.npz") as data:
        return {k: data[k] for k in data.files}, report


_SIGNATURE_CLIENT = r"""
import json, sys
import numpy as np
import tensorflow as tf
export, inputs_file, out_file, signature = sys.argv[1:]
function = tf.saved_model.load(export).signatures[signature]
with np.load(inputs_file, allow_pickle=False) as data:
    inputs = {k: tf.constant(data[k]) for k in data.files}
errors = {}
try:
    outputs = {k: v.numpy() for k, v in function(**inputs).items()}
except Exception as e:
    outputs = {}
    errors["call"] = str(e)
np.savez(out_file, **{k: (v.astype(str) if v.dtype == object else v) for k, v in outputs.items()})
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("deepmix_tf", "keras_hub",
                                                              "keras_nlp", "keras_rs"))
print(json.dumps({"errors": errors, "leaked": leaked}))
"""


def call_in_clean_process(tmp_path, export, signature, inputs):
    """Calls one signature of an export in a fresh interpreter that imports TensorFlow only.

    Args:
        inputs: name -> numpy array (strings as bytes; a 0-d array for a scalar input).

    Returns:
        (outputs {name: numpy array}, {"errors": {"call": message} if the call failed,
        "leaked": [our modules imported]}).
    """
    return _run_client(tmp_path, _SIGNATURE_CLIENT, export, inputs, [signature])
