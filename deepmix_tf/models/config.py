"""Model and training configuration as data: one JSON file saved next to every trained model.

`default_config(dataset, model)` starts from `Config`'s defaults and applies the dataset
spec's presets (`deepmix_tf/datasets/presets/<name>.json`: `"all"`, then the model's entry;
the validation runs that chose them are in docs/presets.md).
"""

import dataclasses
import json
import os

MODELS = ("deepmix", "deep_crossing", "dcn_v2", "dlrm", "biases", "nas")
COMBINES = ("stacked", "parallel", "towers")
LOSSES = ("mse", "mae", "huber")
OPTIMIZERS = ("adam", "sgd")
STREAMING = ("auto", "on", "off")
AUTOFIS = ("off", "search", "on")
# Training splits larger than this stream under `streaming="auto"`.
STREAM_ABOVE = 5_000_000


@dataclasses.dataclass
class Config:
    """Everything that defines a training run.

    Args:
        dataset: a dataset spec: a shipped spec's name (`deepmix_tf/datasets/`) or a file.
        model: one of MODELS.
        features: feature names, or None for the spec's enabled features.
        dense_tables: the build's dense per-key tables fed as dense features, or None for
            all of them.
        node_embeddings: path of a `node_embeddings.npy` (rows follow the `.ids.npy` beside
            it), or None. They join the (one) dense table.
        node_prior: 0 to append the node embeddings to the dense table. When > 0, they
            must come from `encode_nodes --objective=graph_prior` and are not appended:
            they become the text's prior for the spectral columns of the movie graph table,
            weighted `node_prior / (node_prior + ratings)` (`data.graph.graph_prior`).
        embedding_dim: size of each categorical embedding.
        residual_blocks: DNN residual blocks (DeepMix) or Deep Crossing units (deep_crossing).
        residual_width: hidden width multiplier of a residual block (of the stacked width).
        residual_depth: hidden layers per residual block.
        normalization: "layer", "batch" or None, inside residual blocks.
        dropout: dropout rate inside residual blocks and the head MLP.
        activation: activation of the MLP layers.
        cross_layers, num_experts, low_rank, cross_activation: CrossNetMix (and dcn_v2's
            FeatureCross, which uses `cross_layers` and `low_rank`).
        combine: how DeepMix joins its parts (see `networks.deepmix`): "stacked"
            (residual blocks, CrossNetMix, scoring MLP: the paper's order), "parallel"
            (residual blocks and CrossNetMix side by side, the scoring MLP over both) or
            "towers" (CrossNetMix beside residual blocks -> scoring MLP, the output layer
            over both: DCN-V2's parallel form).
        head_units: hidden units of the MLP before the output (DCN-V2's deep part, DLRM's
            top MLP, DeepMix's scoring layer).
        bottom_units: DLRM's bottom MLP over dense features.
        bias_features: the `biases` model's per-value bias features, or None for every
            categorical feature.
        l2: L2 penalty on embeddings and kernels.
        loss: regression loss, "mse", "mae" or "huber".
        learning_rate, batch_size, epochs, patience, seed: training.
        jit_compile: XLA-compile the training step. Off by default: on the 2-core CPUs we
            measured, XLA made our steps slower (see BUILD.md).
        steps_per_execution: training steps per call into TensorFlow (Keras'
            `steps_per_execution`): fewer returns to Python between steps, and callbacks
            see one batch end per call. 1 by default; the speed comparison uses 10.
        optimizer: "adam", or "sgd": plain SGD whose embedding updates touch only the rows
            of the batch (`layers.embedding`; no L2 on the tables), for tables of millions
            of rows (the DLRM paper's optimizer).
        autofis: AutoFIS's gated pairwise interactions of the field embeddings
            (`layers.GatedInteraction`): "off"; "search" (every pair, or `autofis_pairs`,
            gates trained by GRDA, the rest by Adam: `optimizers.GatedAdam`); "on" (the
            pairs of `autofis_pairs`, or every pair, gates starting at `autofis_gates` or 1,
            all trained by the configured optimizer). DeepMix, DCN-V2 and Deep Crossing get
            the gated products beside their stacked features; DLRM gets them in place of
            its dot interactions. `experiments.search_interactions` runs the search and
            writes the retraining config.
        autofis_pairs: list of [field, field] (feature names; with `autofis_order=3` also
            [field, field, field]) or None (every pair, then every triple, of embedded
            features).
        autofis_order: 2, or 3 to gate third-order products as well as pairs.
        autofis_gates: list of floats, one per pair, or None.
        grda_c, grda_mu, grda_learning_rate: the gates' GRDA in the search (learning rate
            None: `learning_rate`).
        autogroup: AutoGroup's feature sets and their explicit interactions of each order
            (`layers.AutoGroup`): "off"; "search" (every field may join every set; the
            sets' Gumbel-softmax logits train on a held-out slice of the training split,
            alternating with the training steps: `training.architecture`); "on" (the fixed
            sets of `autogroup_groups`). Placed like `autofis` (beside the stacked
            features; in place of DLRM's dot interactions); not together with it.
            `experiments.search_interactions --method autogroup` runs the search.
        autogroup_orders: the interaction orders searched.
        autogroup_sets: feature sets per order in the search.
        autogroup_groups: {order (str): [[feature name, ...] per set]} for "on".
        embedding_search: "off", or "search": AutoDim's search of each categorical
            field's embedding width among `embedding_candidates`
            (`layers.DimensionSearchEmbedding`, every candidate mapped to `embedding_dim`;
            the width logits train on a held-out slice of the training split, like
            AutoGroup's). `experiments.search_embeddings` runs it and writes the retrain
            config (`embedding_dims`).
        embedding_candidates: the candidate widths of the search.
        nas_space: `model="nas"`: the `nas.SearchSpace` arguments (blocks, operator
            choices, head and embedding widths; its fields are the embedded features).
        architecture: `model="nas"`: None trains the weight-sharing supernet over
            `nas_space` (`layers.SuperNet`; a random architecture each step,
            `nas.SupernetSampler`); an architecture of the space (`nas.space`) trains its
            stand-alone network (`layers.supernet.child_network`), with the
            architecture's `embedding_dims` as `embedding_dims`.
        embedding_buckets: 1, or NIS's frequency buckets: each single-id categorical
            field's values split by their training frequency into this many buckets of an
            equal share of the occurrences (`layers.frequency_buckets`; head values first).
            The search then picks a width per bucket, and `embedding_dims` gives a list
            of widths per field (`layers.FrequencyBucketEmbedding`).
        embedding_share: the search's candidates are slices of one widest table.
        dimension_cost: weight of the expected table size (a fraction of the widest
            candidate's, averaged over fields) added to the search's held-out loss: without
            it a field that carries no signal may keep any width (BUILD.md, "AutoDim").
        embedding_dims: {feature name: width} for embeddings whose width is not
            `embedding_dim` (a searched retrain); with `embedding_buckets`, a width or a
            list of one width per bucket (the embedding's width is then the largest). DLRM and the interaction layers, which
            need one width, get those embeddings mapped to `embedding_dim` by a linear map.
        numeric_embedding: how numeric features enter: "raw" (their transformed values,
            side by side in the dense vector), "autodis" (an AutoDis embedding each,
            `layers.AutoDis`, joining the field embeddings) or "buckets" (equal-frequency
            buckets of the training split, `numeric_buckets` of them, and an embedding
            of the bucket).
        numeric_fields: what "autodis" or "buckets" apply to: numeric features, and (for
            "autodis") dense-table columns as "<table>/<column>", e.g.
            "movie_graph/log_count" (None: every numeric feature).
        numeric_buckets: AutoDis's meta-embeddings per field, or the equal-frequency
            buckets.
        autodis_temperature, autodis_skip: AutoDis's softmax temperature and skip factor.
        search_temperature: [start, end] of the Gumbel-softmax temperature (AutoGroup's
            sets, the dimension search's widths), annealed geometrically over the epochs.
        architecture_learning_rate: Adam's learning rate for architecture weights.
        architecture_warmup_epochs: epochs of ordinary training before a search moves the
            architecture weights.
        holdout_every: a search's (or a supernet's) held-out slice of the training split is every
            `holdout_every`-th example of each file; the ordinary weights train on the rest.
        streaming: how training reads the TFRecords: "off" (parse each split once into
            memory, then gather batches), "on" (stream the files every epoch, in bounded
            memory), "auto" (stream splits of more than 5,000,000 examples).
    """

    dataset: str = "movielens1m-rating"
    model: str = "deepmix"
    features: list = None
    dense_tables: list = None
    node_embeddings: str = None
    node_prior: float = 0.0
    embedding_dim: int = 16
    residual_blocks: int = 1
    residual_width: float = 2.0
    residual_depth: int = 1
    normalization: str = "layer"
    dropout: float = 0.1
    activation: str = "relu"
    cross_layers: int = 2
    num_experts: int = 4
    low_rank: int = 32
    cross_activation: str = "tanh"
    combine: str = "stacked"
    head_units: list = dataclasses.field(default_factory=lambda: [128])
    bottom_units: list = dataclasses.field(default_factory=lambda: [64, 16])
    bias_features: list = None
    l2: float = 1e-6
    loss: str = "huber"
    learning_rate: float = 1e-3
    batch_size: int = 1024
    epochs: int = 16
    patience: int = 2
    seed: int = 42
    jit_compile: bool = False
    steps_per_execution: int = 1
    optimizer: str = "adam"
    streaming: str = "auto"
    autofis: str = "off"
    autofis_pairs: list = None
    autofis_gates: list = None
    autofis_order: int = 2
    grda_c: float = 0.005
    grda_mu: float = 0.7
    grda_learning_rate: float = None
    autogroup: str = "off"
    autogroup_orders: list = dataclasses.field(default_factory=lambda: [2, 3])
    autogroup_sets: int = 4
    autogroup_groups: dict = None
    embedding_search: str = "off"
    embedding_candidates: list = dataclasses.field(default_factory=lambda: [2, 4, 8, 16, 32, 64])
    embedding_share: bool = False
    nas_space: dict = dataclasses.field(default_factory=dict)
    architecture: dict = None
    embedding_buckets: int = 1
    dimension_cost: float = 0.005
    embedding_dims: dict = None
    numeric_embedding: str = "raw"
    numeric_fields: list = None
    numeric_buckets: int = 16
    autodis_temperature: float = 0.1
    autodis_skip: float = 0.1
    search_temperature: list = dataclasses.field(default_factory=lambda: [1.0, 0.05])
    architecture_learning_rate: float = 0.01
    architecture_warmup_epochs: int = 1
    holdout_every: int = 10

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {MODELS}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(f"dataset must name a spec, got {self.dataset!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        if not self.node_prior >= 0:
            raise ValueError(f"node_prior must be >= 0, got {self.node_prior!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.streaming not in STREAMING:
            raise ValueError(f"streaming must be one of {STREAMING}, got {self.streaming!r}")
        if self.autofis not in AUTOFIS:
            raise ValueError(f"autofis must be one of {AUTOFIS}, got {self.autofis!r}")
        if self.autofis != "off" and self.model == "biases":
            raise ValueError("autofis needs a model with field embeddings, not 'biases'")
        if self.autofis_gates is not None and (
                self.autofis_pairs is None or len(self.autofis_gates) != len(self.autofis_pairs)):
            raise ValueError("autofis_gates needs autofis_pairs, one gate per pair")
        if self.autofis_order not in (2, 3):
            raise ValueError(f"autofis_order must be 2 or 3, got {self.autofis_order!r}")
        if self.autogroup not in AUTOFIS:
            raise ValueError(f"autogroup must be one of {AUTOFIS}, got {self.autogroup!r}")
        if self.autogroup != "off" and self.model == "biases":
            raise ValueError("autogroup needs a model with field embeddings, not 'biases'")
        if self.autogroup != "off" and self.autofis != "off":
            raise ValueError("autogroup and autofis are two interaction layers for the same "
                             "place: turn one off")
        if self.autogroup == "on" and not self.autogroup_groups:
            raise ValueError("autogroup='on' needs autogroup_groups (the sets a search wrote "
                             "to retrain_config.json)")
        if (len(self.search_temperature) != 2
                or not 0 < self.search_temperature[1] <= self.search_temperature[0]):
            raise ValueError("search_temperature must be [start, end] with "
                             f"start >= end > 0, got {self.search_temperature!r}")
        if self.embedding_search not in ("off", "search"):
            raise ValueError("embedding_search must be 'off' or 'search', got "
                             f"{self.embedding_search!r}")
        if self.embedding_search == "search" and self.model == "biases":
            raise ValueError("embedding_search needs a model with field embeddings, not "
                             "'biases'")
        if self.embedding_search == "search" and self.embedding_dims:
            raise ValueError("embedding_search='search' searches the widths that "
                             "embedding_dims would fix: give one or the other")
        if self.model == "nas" and (self.autofis != "off" or self.autogroup != "off"
                                    or self.embedding_search != "off"):
            raise ValueError("model 'nas' searches its own design: autofis, autogroup and "
                             "embedding_search must be 'off'")
        if self.architecture is not None and self.model != "nas":
            raise ValueError(f"architecture is the searched design of model 'nas', got "
                             f"model={self.model!r}")
        if (self.model == "nas" and self.architecture is not None
                and self.embedding_dims != self.architecture.get("embedding_dims")):
            raise ValueError("model 'nas' with an architecture embeds at its widths: "
                             "embedding_dims must be architecture['embedding_dims']")
        if not isinstance(self.embedding_buckets, int) or self.embedding_buckets < 1:
            raise ValueError(f"embedding_buckets must be an int >= 1, got "
                             f"{self.embedding_buckets!r}")

        def one(w):
            return isinstance(w, int) and not isinstance(w, bool) and w >= 1

        def width(w):
            if isinstance(w, list) and self.embedding_buckets > 1:
                return len(w) == self.embedding_buckets and all(map(one, w))
            return one(w)

        if not all(map(width, (self.embedding_dims or {}).values())):
            raise ValueError(f"embedding_dims must map features to positive ints (or, with "
                             f"embedding_buckets={self.embedding_buckets} > 1, lists of one "
                             f"per bucket), got {self.embedding_dims!r}")
        if self.numeric_embedding not in ("raw", "autodis", "buckets"):
            raise ValueError("numeric_embedding must be 'raw', 'autodis' or 'buckets', got "
                             f"{self.numeric_embedding!r}")
        if not isinstance(self.numeric_buckets, int) or self.numeric_buckets < 2:
            raise ValueError(f"numeric_buckets must be an int >= 2, got {self.numeric_buckets!r}")
        if not self.dimension_cost >= 0:
            raise ValueError(f"dimension_cost must be >= 0, got {self.dimension_cost!r}")
        if self.searches_architecture() and not 0 <= self.architecture_warmup_epochs < self.epochs:
            raise ValueError(f"architecture_warmup_epochs must be in [0, epochs={self.epochs}) "
                             f"for a search to take steps, got {self.architecture_warmup_epochs!r}")
        if not self.architecture_learning_rate > 0:
            raise ValueError("architecture_learning_rate must be > 0, got "
                             f"{self.architecture_learning_rate!r}")
        if self.autogroup_groups and self.autogroup != "on":
            raise ValueError("autogroup_groups are the fixed sets of autogroup='on'; got "
                             f"autogroup={self.autogroup!r}")
        if self.numeric_fields is not None and self.numeric_embedding == "raw":
            raise ValueError("numeric_fields picks the inputs of numeric_embedding 'autodis' "
                             "or 'buckets'; numeric_embedding is 'raw'")
        if (not self.autogroup_orders or any(not isinstance(p, int) or p < 1
                                             for p in self.autogroup_orders)
                or not isinstance(self.autogroup_sets, int) or self.autogroup_sets < 1):
            raise ValueError("autogroup_orders must be ints >= 1 and autogroup_sets an int "
                             f">= 1, got {self.autogroup_orders!r} and {self.autogroup_sets!r}")
        candidates = self.embedding_candidates
        if not candidates or any(not isinstance(w, int) or w < 1 for w in candidates) or \
                sorted(set(candidates)) != list(candidates):
            raise ValueError("embedding_candidates must be increasing positive ints, got "
                             f"{candidates!r}")
        if not isinstance(self.holdout_every, int) or self.holdout_every < 2:
            raise ValueError(f"holdout_every must be an int >= 2, got {self.holdout_every!r}")
        if not isinstance(self.steps_per_execution, int) or self.steps_per_execution < 1:
            raise ValueError("steps_per_execution must be a positive int, got "
                             f"{self.steps_per_execution!r}")

    def to_json(self, path):
        from deepmix_tf.files import write_json

        write_json(path, dataclasses.asdict(self))

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            values = json.load(f)
        check_fields(values, path)
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def uses_frequency_buckets(self):
        """Whether the model needs its fields' frequency buckets: a search per bucket, or a
        width per bucket in `embedding_dims`."""
        return self.embedding_buckets > 1 and (self.embedding_search == "search" or any(
            isinstance(w, list) for w in (self.embedding_dims or {}).values()))

    def searches_architecture(self):
        """Whether training also trains architecture weights on a held-out slice."""
        return self.autogroup == "search" or self.embedding_search == "search"

    def trains_supernet(self):
        """Whether this is `model="nas"`'s weight-sharing supernet (no architecture)."""
        return self.model == "nas" and self.architecture is None

    def holds_out(self):
        """Whether training holds out every `holdout_every`-th training example: for
        architecture weights, or for the architecture search that scores a supernet's
        children on them (`nas.search`), so that validation stays clean for the end."""
        return self.searches_architecture() or self.trains_supernet()


def check_fields(values, where):
    """Refuses names that are not `Config` fields, naming `where` they came from."""
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown configuration field(s) {unknown}")


def presets(spec):
    """The preset of a dataset spec (a `DatasetSpec`): {"all": {...}, "<model>": {...}}."""
    if not spec.presets:
        return {}
    path = spec.presets if os.path.isfile(spec.presets) else os.path.join(
        os.path.dirname(os.path.abspath(spec.path)), "presets", f"{spec.presets}.json")
    if not os.path.isfile(path):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "datasets", "presets", f"{spec.presets}.json")
    with open(path) as f:
        values = json.load(f)
    for key, entry in values.items():
        check_fields(entry, f"{path}: {key}")
    return values


def default_config(dataset="movielens1m-rating", model="deepmix", **overrides):
    """The default configuration of a dataset spec and model: `Config`'s defaults, then the
    spec's presets ("all", then the model's), then `overrides`."""
    from deepmix_tf.data.spec import load_spec

    preset = presets(load_spec(dataset))
    values = {**preset.get("all", {}), **preset.get(model, {}), **overrides}
    return Config(dataset=dataset, model=model, **values)
