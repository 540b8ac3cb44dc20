"""The typed training config: one frozen dataclass per TOML section, checked before training starts.

A config file looks like ``training/xlmr-hybrid.toml``::

    [model]
    name = "FacebookAI/xlm-roberta-large"

    [[data.sources]]
    kind = "lareqa"
    path = "data/xquad-r"

    [train]
    alpha = 0.5

Unknown keys are rejected with a suggestion, values are type-checked and range-checked, and a local
model path that does not exist is rejected, all when the config is built. Relative paths are relative
to the working directory (run ``hq train`` from the repository root).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qdrant import config as typed
from hybrid_qdrant.benchmarks.lareqa import SPECS as LAREQA_SETS
from hybrid_qdrant.config import at_least as _at_least
from hybrid_qdrant.config import choice as _choice
from hybrid_qdrant.config import parse_override
from hybrid_qdrant.encoding.encoder import DEFAULT_PASSAGE_PREFIX, DEFAULT_QUERY_PREFIX, looks_local
from hybrid_qdrant.errors import ConfigError, ModelError

SOURCE_KINDS = ("jsonl", "parquet", "hf", "lareqa", "mmarco")
#: The keys each kind of source accepts (besides ``kind`` and ``path``).
#: ``[[data.sources]] hard_negatives`` of a lareqa source.
LAREQA_NEGATIVES = ("none", "paragraph")
SOURCE_KEYS = {
    "jsonl": ("lang",),
    "parquet": ("lang",),
    "hf": ("lang", "split", "subset", "columns"),
    "lareqa": ("name", "languages", "context", "hard_negatives"),
    "mmarco": ("languages", "queries", "collection", "triples", "max_queries", "names"),
}
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
NEGATIVES = ("auto", "require", "ignore")
LANGUAGE_SAMPLING = ("uniform", "proportional")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
MODEL_KINDS = ("encoder", "decoder")
POOLINGS = ("auto", "lasttoken", "mean", "cls")
DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class DataSource:
    """One source of training pairs (``[[data.sources]]``).

    Attributes:
        kind: ``jsonl`` / ``parquet`` (records with query, passage, lang, group_id, negative), ``hf``
            (a Hugging Face dataset: hub id, data folder or ``save_to_disk`` folder), ``lareqa``
            (XQuAD-R / MLQA-R ``{lang}.json`` files) or ``mmarco`` (per-language TSVs and id triples).
        path: file, folder or hub id (lareqa: empty downloads the set to the cache).
        name: lareqa: ``xquad-r`` or ``mlqa-r``.
        lang: language of every record that has no ``lang`` field (jsonl, parquet, hf).
        languages: languages to read (lareqa: default all of the set's; mmarco: required).
        split / subset / columns: hf split, configuration, and pair field -> column mapping.
        context: lareqa: append the paragraph to the gold sentence.
        hard_negatives: lareqa: ``none`` (default) or ``paragraph``: each pair gets a non-gold sentence
            of its own paragraph as hard negative, in the passage's language (see ``read_lareqa``).
        queries / collection / triples / max_queries / names: mmarco file patterns (``{lang}``,
            ``{name}``), the triples file, a cap on query ids (0 = all), and code -> file-name language.
    """

    kind: str
    path: str = ""
    name: str = ""
    lang: str | None = None
    languages: tuple[str, ...] = ()
    split: str = "train"
    subset: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    context: bool = False
    hard_negatives: str = "none"
    queries: str = "{lang}/queries.tsv"
    collection: str = "{lang}/collection.tsv"
    triples: str = "triples.tsv"
    max_queries: int = 0
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice(self.kind, SOURCE_KINDS, "[[data.sources]] kind")
        if self.kind == "lareqa":
            _choice(self.name, tuple(LAREQA_SETS), "[[data.sources]] name")
            _choice(self.hard_negatives, LAREQA_NEGATIVES, "[[data.sources]] hard_negatives")
        elif not self.path:
            raise ConfigError(f"[[data.sources]] of kind {self.kind!r} needs a path")
        if self.kind == "mmarco" and not self.languages:
            raise ConfigError("[[data.sources]] of kind 'mmarco' needs languages = [...]")
        _at_least(self.max_queries, 0, "[[data.sources]] max_queries")

    @classmethod
    def config_keys(cls, table: Mapping[str, Any]) -> tuple[set[str] | None, str]:
        """The keys a table of this kind accepts (None before the kind is known), and what it is."""
        kind = table.get("kind")
        if kind not in SOURCE_KEYS:
            return None, "a source"
        return {"kind", "path", *SOURCE_KEYS[kind]}, f"a {kind!r} source"

    def to_dict(self) -> dict[str, Any]:
        """The keys that apply to this kind of source."""
        keys = ("kind", "path", *SOURCE_KEYS[self.kind])
        return typed.to_plain({key: getattr(self, key) for key in keys})


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: the base model and how texts are presented to it.

    Attributes:
        name: hub id or local directory (start local paths with ``./`` or ``/``).
        max_seq_length: truncation length in tokens; 0 keeps the model's.
        query_prefix / passage_prefix: prepended to queries / passages and negatives; saved as the
            model's ``query`` / ``passage`` prompts.
        kind: ``encoder`` (a sentence-transformers or Hugging Face encoder, loaded as it is) or
            ``decoder`` (a decoder-only LM made an embedder: left padding, EOS appended, pooled; see
            ``hybrid_qdrant.training.decoder``).
        pooling: decoder only: ``lasttoken`` (the EOS position), ``mean`` or ``cls``; ``auto`` keeps a
            sentence-transformers model's own pooling and uses ``lasttoken`` for a plain LM.
        query_instruction: when set, the query prompt instead of ``query_prefix``, e.g.
            ``"Instruct: Given a question, retrieve passages that answer it\\nQuery: "``.
        dtype: dtype the weights are loaded in: ``auto`` is bf16 for LoRA on a GPU with bf16 (the
            frozen base) and fp32 otherwise (full fine-tuning keeps fp32 weights under mixed precision).
    """

    name: str
    max_seq_length: int = 0
    query_prefix: str = DEFAULT_QUERY_PREFIX
    passage_prefix: str = DEFAULT_PASSAGE_PREFIX
    kind: str = "encoder"
    pooling: str = "auto"
    query_instruction: str = ""
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("[model] name is empty")
        if looks_local(self.name) and not Path(self.name).expanduser().exists():
            raise ModelError(f"model path does not exist: {self.name}")
        _at_least(self.max_seq_length, 0, "[model] max_seq_length")
        _choice(self.kind, MODEL_KINDS, "[model] kind")
        _choice(self.pooling, POOLINGS, "[model] pooling")
        _choice(self.dtype, DTYPES, "[model] dtype")
        if self.kind == "encoder" and self.pooling != "auto":
            raise ConfigError(
                f"[model] pooling = {self.pooling!r} applies to kind = 'decoder'; "
                "an encoder keeps its own pooling"
            )

    @property
    def query_prompt(self) -> str:
        """The text put before every query: the instruction when one is set, else the query prefix."""
        return self.query_instruction or self.query_prefix


@dataclass(frozen=True)
class DataSection:
    """``[data]``: where the training pairs come from.

    Attributes:
        sources: one or more ``[[data.sources]]``; their pairs are concatenated.
        languages: keep only pairs in these languages (empty: all).
        negatives: ``auto`` uses hard negatives when every pair has one, ``require`` fails when one is
            missing, ``ignore`` trains on (query, passage) only.
    """

    sources: tuple[DataSource, ...] = ()
    languages: tuple[str, ...] = ()
    negatives: str = "auto"

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("[data] needs at least one [[data.sources]] table")
        _choice(self.negatives, NEGATIVES, "[data] negatives")


@dataclass(frozen=True)
class TrainSection:
    """``[train]``: batches and optimisation (AdamW).

    Attributes:
        alpha: probability of a monolingual batch; 1 = X-X mono, 0 = X-Y cross, 0.5 = hybrid.
        language_sampling: language of a mono batch, ``uniform`` or ``proportional`` to its pairs.
        batch_size: examples per batch per device (in-batch negatives: batch_size - 1, times the number
            of devices with ``gather_across_devices``).
        learning_rate / weight_decay / warmup_ratio / lr_scheduler / max_grad_norm: AdamW and schedule.
        epochs / max_steps: training length; max_steps > 0 wins over epochs. An epoch is as many examples
            as there are training pairs.
        seed: seeds the model init, the dropout and the batch sampler (epoch e uses seed + e).
        precision: ``auto`` (bf16 or fp16 on a CUDA GPU, else fp32), ``fp32``, ``fp16``, ``bf16``;
            fp16 / bf16 without a CUDA GPU are refused.
        gradient_checkpointing: trade compute for activation memory.
        freeze_embeddings: keep the token-embedding matrix fixed; with a large multilingual vocabulary
            (250k x 384 in multilingual-e5-small) that makes CPU steps about 3x faster.
        resume: continue from the latest ``checkpoint-*`` in the output directory.
        dataloader_workers: worker processes for batch collation (0: in the main process).
    """

    alpha: float = 0.5
    language_sampling: str = "uniform"
    batch_size: int = 100
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    max_grad_norm: float = 1.0
    epochs: float = 1.0
    max_steps: int = 0
    seed: int = 42
    precision: str = "auto"
    gradient_checkpointing: bool = False
    freeze_embeddings: bool = False
    resume: bool = False
    dataloader_workers: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"[train] alpha = {self.alpha} is outside [0, 1]")
        _choice(self.language_sampling, LANGUAGE_SAMPLING, "[train] language_sampling")
        _choice(self.precision, PRECISIONS, "[train] precision")
        _choice(self.lr_scheduler, SCHEDULERS, "[train] lr_scheduler")
        _at_least(self.batch_size, 2, "[train] batch_size")
        if self.learning_rate <= 0:
            raise ConfigError(f"[train] learning_rate = {self.learning_rate} must be > 0")
        _at_least(self.weight_decay, 0, "[train] weight_decay")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"[train] warmup_ratio = {self.warmup_ratio} is outside [0, 1)")
        _at_least(self.max_steps, 0, "[train] max_steps")
        if self.max_steps == 0 and self.epochs <= 0:
            raise ConfigError("[train] needs epochs > 0 or max_steps > 0")
        _at_least(self.seed, 0, "[train] seed")
        _at_least(self.dataloader_workers, 0, "[train] dataloader_workers")


@dataclass(frozen=True)
class LossSection:
    """``[loss]``: InfoNCE with in-batch negatives (and the hard negative when the data has one).

    Attributes:
        cached: GradCache (CachedMultipleNegativesRankingLoss): a large batch in the memory of
            ``mini_batch_size``, same gradients.
        mini_batch_size: examples per forward pass of the cached loss.
        temperature: softmax temperature (the loss' scale is 1 / temperature).
        symmetric: add the passage-to-query term (one softmax per direction, averaged).
        gather_across_devices: use the other devices' examples as negatives too (DDP); no effect on one.
    """

    cached: bool = False
    mini_batch_size: int = 32
    temperature: float = 0.05
    symmetric: bool = False
    gather_across_devices: bool = True

    def __post_init__(self) -> None:
        _at_least(self.mini_batch_size, 1, "[loss] mini_batch_size")
        if self.temperature <= 0:
            raise ConfigError(f"[loss] temperature = {self.temperature} must be > 0")


@dataclass(frozen=True)
class LoraSection:
    """``[lora]``: train low-rank adapters (peft) instead of every weight; on when the table is present.

    Attributes:
        r: adapter rank.
        alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapters' input.
        target_modules: module names to adapt (``q_proj``, ``v_proj``, ...), or ``all-linear``.
        qlora: load the frozen base in 4-bit NF4 (bitsandbytes, CUDA only) under the adapters.
    """

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("all-linear",)
    qlora: bool = False

    def __post_init__(self) -> None:
        _at_least(self.r, 1, "[lora] r")
        if self.alpha <= 0:
            raise ConfigError(f"[lora] alpha = {self.alpha} must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"[lora] dropout = {self.dropout} is outside [0, 1)")
        if not self.target_modules or not all(self.target_modules):
            raise ConfigError("[lora] target_modules is empty; name modules (q_proj, ...) or 'all-linear'")
        if "all-linear" in self.target_modules and len(self.target_modules) > 1:
            raise ConfigError("[lora] target_modules: 'all-linear' stands alone")


@dataclass(frozen=True)
class ValidationSection:
    """``[validation]``: held-out validation loss, early stopping and an optional retrieval check.

    Attributes:
        fraction: share of parallel groups held out of training (0: none); translations stay together.
        sources: explicit validation pairs (``[[validation.sources]]``) instead of a held-out fraction.
        eval_steps: evaluate every this many steps (0: at every checkpoint).
        early_stopping_patience: stop after this many evaluations without a lower validation loss
            (0: off); the best checkpoint is the one saved.
        ir_evaluation: also run sentence-transformers' InformationRetrievalEvaluator on the validation
            pairs: mono (per language), cross (per query language, other languages' passages), multi.
    """

    fraction: float = 0.0
    sources: tuple[DataSource, ...] = ()
    eval_steps: int = 0
    early_stopping_patience: int = 0
    ir_evaluation: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ConfigError(f"[validation] fraction = {self.fraction} is outside [0, 1)")
        if self.fraction and self.sources:
            raise ConfigError("[validation] give either fraction or [[validation.sources]], not both")
        _at_least(self.eval_steps, 0, "[validation] eval_steps")
        _at_least(self.early_stopping_patience, 0, "[validation] early_stopping_patience")

    @property
    def enabled(self) -> bool:
        return bool(self.fraction or self.sources)


@dataclass(frozen=True)
class OutputSection:
    """``[output]``: where checkpoints and the final model go.

    Attributes:
        dir: output directory: ``checkpoint-N`` folders and the final model in ``final/``.
        save_steps / save_total_limit: checkpoint every N steps, keep the newest few (0: all).
        keep_checkpoints: keep the ``checkpoint-N`` folders after a run that finished; by default they
            are removed then (they only serve ``resume``, and each holds the model again plus the
            optimizer state: 1.1 GB of a 50-step multilingual-e5-small run was checkpoint and final).
        logging_steps: log loss, learning rate and the realised mono / cross batch share every N steps.
        report_to: trainer integrations (``none``, ``tensorboard``, ``wandb``, ...).
    """

    dir: str = "runs/train"
    save_steps: int = 500
    save_total_limit: int = 2
    keep_checkpoints: bool = False
    logging_steps: int = 10
    report_to: tuple[str, ...] = ("none",)

    def __post_init__(self) -> None:
        if not self.dir:
            raise ConfigError("[output] dir is empty")
        _at_least(self.save_steps, 1, "[output] save_steps")
        _at_least(self.save_total_limit, 0, "[output] save_total_limit")
        _at_least(self.logging_steps, 1, "[output] logging_steps")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run; see the section classes for each key."""

    model: ModelSection
    data: DataSection
    train: TrainSection = field(default_factory=TrainSection)
    loss: LossSection = field(default_factory=LossSection)
    validation: ValidationSection = field(default_factory=ValidationSection)
    output: OutputSection = field(default_factory=OutputSection)
    lora: LoraSection | None = None

    def __post_init__(self) -> None:
        if self.lora is not None and self.lora.qlora and self.model.kind != "decoder":
            raise ConfigError("[lora] qlora = true applies to [model] kind = 'decoder'")
        v = self.validation
        if v.early_stopping_patience and not v.enabled:
            raise ConfigError(
                "[validation] early_stopping_patience needs validation data: "
                "set fraction or [[validation.sources]]"
            )
        if v.early_stopping_patience and v.eval_steps and self.output.save_steps % v.eval_steps:
            raise ConfigError(
                f"[output] save_steps = {self.output.save_steps} must be a multiple of "
                f"[validation] eval_steps = {v.eval_steps} for early stopping (the best checkpoint is kept)"
            )
        if self.loss.cached and self.loss.mini_batch_size > self.train.batch_size:
            raise ConfigError(
                f"[loss] mini_batch_size = {self.loss.mini_batch_size} exceeds [train] batch_size = "
                f"{self.train.batch_size}"
            )

    @property
    def output_dir(self) -> Path:
        return Path(self.output.dir).expanduser()

    #: What a missing required section should hold (for the error message).
    config_missing = {
        "model": "with name = hub id or local path",
        "data": "with at least one [[data.sources]] table",
    }

    def to_dict(self) -> dict[str, Any]:
        """The config as plain TOML-ready data (what :func:`config_from_dict` reads back)."""
        return typed.to_plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a TOML config, apply ``{"section.key": value}`` overrides, and check everything.

    Raises:
        ConfigError: unreadable TOML, an unknown key, a bad type or value. ModelError: a missing model path.
    """
    return typed.load(path, TrainConfig, overrides)


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of raw config data with ``{"section.key": value}`` set (sections are created as needed)."""
    return typed.apply_overrides(data, overrides, TrainConfig)


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Build and check a TrainConfig from parsed TOML."""
    return typed.build_root(data, TrainConfig)


__all__ = [
    "DataSource",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
]
