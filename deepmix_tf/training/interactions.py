"""The two stages of an interaction search around the trainer.

AutoFIS (`Config.autofis="search"`): read the gates the search trained, keep the pairs whose
gate GRDA left non-zero, and make the config that retrains with only those (`autofis="on"`,
their gates as starting weights).

AutoGroup (`Config.autogroup="search"`): read the feature sets the search chose (the argmax
of each field's in/out logits per set), and make the config that retrains with those fixed
sets (`autogroup="on"`).
"""

import os

import numpy as np

from deepmix_tf.layers import AutoGroup, GatedInteraction

LAYER = "autofis"
GROUP_LAYER = "autogroup"


def find_layer(model, name=LAYER, kind=GatedInteraction):
    """The layer `name` (of class `kind`) anywhere in `model` (its sub-models included)."""
    for layer in model._flatten_layers(include_self=False):
        if layer.name == name and isinstance(layer, kind):
            return layer
    method = "autofis" if kind is GatedInteraction else "autogroup"
    raise ValueError(f"{model.name!r} has no {name!r} {kind.__name__} layer: was it trained "
                     f"with {method}='search' or 'on'?")


def searched_pairs(model):
    """[{"fields": [a, b] (or [a, b, c]), "gate": float, "kept": bool}] of a searched
    model's interactions."""
    layer = find_layer(model)
    names = layer.field_names or [str(i) for i in range(layer.num_fields)]
    gates = np.asarray(layer.gates.numpy(), np.float64)
    return [{"fields": [names[i] for i in fields], "gate": float(g), "kept": bool(g != 0.0)}
            for fields, g in zip(layer.pairs, gates)]


def retrain_config(config, pairs):
    """The config that retrains with the kept pairs, their gates as starting values."""
    kept = [p for p in pairs if p["kept"]]
    if not kept:
        raise ValueError("GRDA zeroed every gate: no pair to retrain with (lower grda_c)")
    return config.replace(autofis="on", autofis_pairs=[p["fields"] for p in kept],
                          autofis_gates=[p["gate"] for p in kept])


def _save_png(fig, path):
    """Writes a matplotlib figure to `path` through a temporary file, and closes it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def searched_groups(model):
    """[{"order", "set", "fields": [names], "weights": [w per field], "probabilities":
    {name: P(in) for every field}}] of a model's AutoGroup sets, in order then set order."""
    layer = find_layer(model, GROUP_LAYER, AutoGroup)
    names = layer.field_names or [str(i) for i in range(layer.num_fields)]
    out = []
    for p, logits, weights in zip(layer.orders, layer.structure, layer.field_weights):
        logits, weights = np.asarray(logits.numpy(), np.float64), weights.numpy()
        inside = 1.0 / (1.0 + np.exp(logits[..., 0] - logits[..., 1]))  # softmax's "in"
        for j in range(logits.shape[1]):
            members = [i for i in range(layer.num_fields) if logits[i, j, 1] > logits[i, j, 0]]
            out.append({"order": int(p), "set": j, "fields": [names[i] for i in members],
                        "weights": [float(weights[i, j]) for i in members],
                        "probabilities": {names[i]: round(float(inside[i, j]), 4)
                                          for i in range(layer.num_fields)}})
    return out


def group_retrain_config(config, groups):
    """The config that retrains with the searched sets that interact, fixed: an order-p set
    needs p fields or more (p >= 2), or its interaction is 0."""
    kept = {}
    for g in groups:
        if len(g["fields"]) >= max(1, g["order"]):
            kept.setdefault(str(g["order"]), []).append(list(g["fields"]))
    if not kept:
        raise ValueError("the search left no set with enough fields to interact (p fields "
                         "for order p): no set to retrain with")
    return config.replace(autogroup="on", autogroup_groups=kept)


def group_map(groups, path, title=""):
    """A fields-by-sets PNG of each field's probability of being in each set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups[0]["probabilities"])
    grid = np.array([[g["probabilities"][n] for g in groups] for n in names])
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(groups) + 2),
                                    max(3.0, 0.4 * len(names) + 1.5)))
    image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(groups)), [f"order {g['order']}\nset {g['set']}" for g in groups],
                  fontsize=7)
    ax.set_yticks(range(len(names)), names)
    ax.set_title(title or "AutoGroup: P(field in set)")
    fig.colorbar(image, ax=ax, label="P(in)", shrink=0.8)
    _save_png(fig, path)


def write_group_search(model_dir, model, config):
    """Writes `feature_sets.json`, `feature_sets.png` and `retrain_config.json` beside an
    AutoGroup search; returns the sets."""
    from deepmix_tf.files import write_json

    groups = searched_groups(model)
    write_json(os.path.join(model_dir, "feature_sets.json"),
               {"orders": config.autogroup_orders, "sets_per_order": config.autogroup_sets,
                "temperature": config.search_temperature,
                "holdout_every": config.holdout_every, "sets": groups})
    group_map(groups, os.path.join(model_dir, "feature_sets.png"))
    if any(len(g["fields"]) >= g["order"] for g in groups):
        group_retrain_config(config, groups).to_json(
            os.path.join(model_dir, "retrain_config.json"))
    return groups


def heat_map(pairs, path, title=""):
    """A field-by-field PNG of the pair gates (|gate|; blank: a gate GRDA set to exactly 0);
    the title counts the kept triples, which a grid cannot show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    triples = [p for p in pairs if len(p["fields"]) == 3]
    pairs = [p for p in pairs if len(p["fields"]) == 2]
    names = list(dict.fromkeys(n for p in pairs for n in p["fields"]))
    index = {n: i for i, n in enumerate(names)}
    grid = np.full((len(names), len(names)), np.nan)
    for p in pairs:
        i, j = index[p["fields"][0]], index[p["fields"][1]]
        grid[i, j] = grid[j, i] = abs(p["gate"]) if p["kept"] else np.nan
    size = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    kept = sum(p["kept"] for p in pairs)
    more = (f", {sum(p['kept'] for p in triples)} of {len(triples)} triples" if triples
            else "")
    ax.set_title(title or f"AutoFIS gates: {kept} of {len(pairs)} pairs{more} kept (blank: 0)")
    fig.colorbar(image, ax=ax, label="|gate|", shrink=0.8)
    _save_png(fig, path)


def write_search(model_dir, model, config):
    """Writes `interactions.json`, `interactions.png` and `retrain_config.json` beside a
    searched run; returns the pairs."""
    from deepmix_tf.files import write_json

    pairs = searched_pairs(model)
    write_json(os.path.join(model_dir, "interactions.json"),
               {"kept": sum(p["kept"] for p in pairs), "pairs": len(pairs),
                "grda": {"c": config.grda_c, "mu": config.grda_mu,
                         "learning_rate": config.grda_learning_rate or config.learning_rate},
                "interactions": pairs})
    heat_map(pairs, os.path.join(model_dir, "interactions.png"))
    kept = [p for p in pairs if p["kept"]]
    if kept:
        retrain_config(config, pairs).to_json(os.path.join(model_dir, "retrain_config.json"))
    return pairs

