"""The sentence-transformers side of the text-encoding comparison; runs in its own process.

    python benchmarks/sentence_transformers_encode.py --texts texts.json \
        --model <all-MiniLM-L6-v2 folder> --result out.json [--embeddings out.npy]

Started by `python -m experiments.benchmark_text --compare_sentence_transformers`, with the
Python named by its `--reference_python` (a separate environment that has torch and
sentence-transformers: see benchmarks/requirements-text.txt). Imports nothing of this
project, so that environment needs neither TensorFlow nor deepmix_tf.

Times `SentenceTransformer.encode(texts)` after one warm-up batch, like our side.
Exit status 3 means sentence-transformers is not installed.
"""

import argparse
import json
import os
import sys
import time

NOT_INSTALLED = 3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", required=True, help="JSON list of the texts to encode.")
    parser.add_argument("--model", required=True, help="Local sentence-transformers folder.")
    parser.add_argument("--result", required=True, help="Where to write the result JSON.")
    parser.add_argument("--embeddings", help="Also save the embeddings here (.npy).")
    parser.add_argument("--batch_size", type=int, default=64)
    args = parser.parse_args()
    try:
        import numpy as np
        import sentence_transformers
        import torch
    except ModuleNotFoundError as e:
        print(f"{e}: pip install -r benchmarks/requirements-text.txt", file=sys.stderr)
        sys.exit(NOT_INSTALLED)

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    model = sentence_transformers.SentenceTransformer(args.model, device="cpu")
    model.encode(texts[:args.batch_size], batch_size=args.batch_size)  # warm-up
    start = time.perf_counter()
    embeddings = model.encode(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    if args.embeddings:
        np.save(args.embeddings, np.asarray(embeddings, np.float32))
    result = {"seconds": seconds, "texts": len(texts), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(),
              "sentence_transformers": sentence_transformers.__version__}
    partial = args.result + ".partial"
    with open(partial, "w") as f:
        json.dump(result, f)
    os.replace(partial, args.result)


if __name__ == "__main__":
    main()
