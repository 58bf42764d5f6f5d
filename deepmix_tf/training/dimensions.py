"""AutoDim's two stages around the trainer: read the widths a dimension search chose
(`Config.embedding_search="search"`: the argmax of each field's width logits), and make the
config that retrains from scratch with plain embeddings of those widths (`embedding_dims`).
"""

import os

from deepmix_tf.layers import DimensionSearchEmbedding


def searched_widths(model):
    """[{"field", "width", "probabilities": {width: p}, "rows"}] of a searched model's
    fields, in feature order. A field searched per frequency bucket
    (`Config.embedding_buckets`) has a list of each: "width" and "probabilities" per
    bucket, and "bucket_rows"."""
    out = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, DimensionSearchEmbedding):
            def probabilities(p):
                return {str(w): round(float(q), 4) for w, q in zip(layer.candidates, p)}

            p = layer.probabilities()
            entry = {"field": layer.name[:-len("_embedding")],
                     "width": layer.chosen_width(), "rows": layer.input_dim,
                     "probabilities": ([probabilities(q) for q in p] if layer.bucket_rows
                                       else probabilities(p))}
            if layer.bucket_rows:
                entry["bucket_rows"] = list(layer.bucket_rows)
            out.append(entry)
    if not out:
        raise ValueError(f"{model.name!r} has no DimensionSearchEmbedding: was it trained with "
                         "embedding_search='search'?")
    order = list(model.input) if isinstance(model.input, dict) else []
    return sorted(out, key=lambda w: order.index(w["field"]) if w["field"] in order else 0)


def retrain_config(config, widths):
    """The config that retrains from scratch with the searched widths (a field whose
    buckets all chose one width gets a plain table of it)."""
    def width(w):
        if isinstance(w, list):
            return int(w[0]) if len(set(w)) == 1 else [int(v) for v in w]
        return int(w)

    return config.replace(embedding_search="off",
                          embedding_dims={w["field"]: width(w["width"]) for w in widths})


def table_parameters(widths):
    """Table weights of the searched widths (rows x width summed over fields and their
    buckets; without the maps between widths)."""
    return int(sum(sum(r * v for r, v in zip(w["bucket_rows"], w["width"]))
                   if "bucket_rows" in w else w["rows"] * w["width"] for w in widths))


def write_search(model_dir, model, config):
    """Writes `dimensions.json` and `retrain_config.json` beside a searched run; returns
    the widths."""
    from deepmix_tf.files import write_json

    widths = searched_widths(model)
    write_json(os.path.join(model_dir, "dimensions.json"),
               {"candidates": config.embedding_candidates, "share": config.embedding_share,
                "dimension_cost": config.dimension_cost,
                "temperature": config.search_temperature,
                "holdout_every": config.holdout_every,
                "buckets": config.embedding_buckets,
                "table_parameters": table_parameters(widths),
                "table_parameters_at_embedding_dim": int(sum(
                    w["rows"] * config.embedding_dim for w in widths)),
                "fields": widths})
    retrain_config(config, widths).to_json(os.path.join(model_dir, "retrain_config.json"))
    return widths
