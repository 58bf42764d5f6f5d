"""SavedModel export for TensorFlow Serving."""

from deepmix_tf.export.saved_model import (SIGNATURE, export, export_run, input_specs,
                                           signature_table)

__all__ = ["SIGNATURE", "export", "export_run", "input_specs", "signature_table"]
