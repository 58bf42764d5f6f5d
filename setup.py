"""deepmix_tf: the DeepMix recommender in TensorFlow/Keras 3."""

import re

import setuptools

with open("deepmix_tf/__init__.py") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setuptools.setup(
    name="deepmix_tf",
    version=VERSION,
    description="DeepMix (Deep Crossing + residual DNN + CrossNetMix + transformer node "
                "encoder) and its baselines on any declared tabular dataset, exported for "
                "TensorFlow Serving.",
    packages=setuptools.find_packages(include=["deepmix_tf", "deepmix_tf.*"]),
    # The shipped dataset specs and their presets.
    package_data={"deepmix_tf": ["datasets/*.json", "datasets/presets/*.json"]},
    python_requires=">=3.10,<3.13",
    # Exact pins that are known to work together live in requirements.txt.
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "tensorflow-text>=2.21.1,<2.22",
        "tf-keras>=2.21,<2.22",
        "keras>=3.15,<3.16",
        "keras-hub>=0.32,<0.33",
        "keras-rs>=0.4,<0.5",
        "tensorflow-recommenders>=0.7.7,<0.8",
        "safetensors>=0.7",
        "pandas>=2.2",
        "absl-py>=2.1",
    ],
    extras_require={"test": ["pytest>=8"], "report": ["matplotlib>=3.8"],
                    "parquet": ["pyarrow>=15"], "yaml": ["pyyaml>=6"]},
)
