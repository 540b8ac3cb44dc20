"""Command-line options, each declared once with the config key it sets.

Every command that runs a job takes the same shape: an optional TOML config, ``--set
section.key=value`` (repeatable), and flags, each of which is one ``Flag`` naming its config key
(``--batch-size`` sets ``encoder.batch_size``). ``@with_flags(...)`` adds a group of flags to a typer
command; the command receives the overrides they produced (``overrides``) and builds its config with
``hybrid_qdrant.config.load``: config file, then ``--set``, then flags. A parameter can thus be followed
from the command line to the section field where it acts.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import typer

from hybrid_qdrant.config import parse_override, split_csv


@dataclass(frozen=True)
class Flag:
    """One command-line option and the config key it sets.

    Attributes:
        key: dotted config key (``encoder.batch_size``).
        decls: the option's names (``--batch-size``), or ``--x/--no-x`` for a boolean.
        help: the help line (plain text: square brackets are shown as they are).
        type: the value's type (str, int, float, bool).
        csv: a comma-separated list (``--languages de,en``).
        metavar: the value's name in the help (default by type: TEXT, N, X).
    """

    key: str
    decls: tuple[str, ...]
    help: str
    type: type = str
    csv: bool = False
    metavar: str | None = None

    @property
    def param(self) -> str:
        """The Python parameter name: the key with dots as double underscores."""
        return self.key.replace(".", "__")

    def parameter(self) -> inspect.Parameter:
        metavar = None if self.type is bool else self.metavar or _METAVARS.get(self.type, "TEXT")
        option = typer.Option(None, *self.decls, help=self.help, show_default=False, metavar=metavar)
        return inspect.Parameter(
            self.param,
            inspect.Parameter.KEYWORD_ONLY,
            default=option,
            annotation=Optional[self.type],  # noqa: UP045
        )

    def value(self, raw: Any) -> Any:
        return split_csv(raw) if self.csv and isinstance(raw, str) else raw


_METAVARS = {str: "TEXT", int: "N", float: "X"}

CONFIG = inspect.Parameter(
    "config",
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    default=typer.Argument(
        None, help="TOML config; --set and the flags override its keys.", show_default=False, metavar="CONFIG"
    ),
    annotation=Optional[Path],  # noqa: UP045
)
#: The config as an option, for a command whose positional arguments are variadic (``hq search TEXT...``).
CONFIG_OPTION = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        None,
        "--config",
        help="TOML config; --set and the flags override its keys.",
        show_default=False,
        metavar="CONFIG",
    ),
    annotation=Optional[Path],  # noqa: UP045
)
REQUIRED_CONFIG = CONFIG.replace(
    default=typer.Argument(..., help="TOML config; --set and the flags override its keys.", metavar="CONFIG"),
    annotation=Path,
)
SET = inspect.Parameter(
    "set_",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(
        None,
        "--set",
        help="Set any config key: section.key=value (a TOML value); repeatable.",
        show_default=False,
        metavar="SECTION.KEY=VALUE",
    ),
    annotation=Optional[list[str]],  # noqa: UP045
)
VERBOSE = inspect.Parameter(
    "verbose",
    inspect.Parameter.KEYWORD_ONLY,
    default=typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    annotation=bool,
)


def with_flags(
    *groups: Sequence[Flag], config_required: bool = False, config_option: bool = False
) -> Callable:
    """Give a command the config argument, ``--set``, ``--verbose`` and the groups' flags.

    The decorated function's own parameters stay (before the config argument); it is called with
    ``config`` (a path or None), ``overrides`` (``{"section.key": value}`` from ``--set`` then the flags,
    flags last) and ``verbose``. ``config_option``: the config is ``--config PATH`` instead of an
    argument (a command whose own arguments are variadic).
    """
    flags = [flag for group in groups for flag in group]
    names = [flag.param for flag in flags]
    if len(set(names)) != len(names):
        raise ValueError("a flag is declared twice")

    def decorate(func: Callable) -> Callable:
        own = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.name not in ("config", "overrides", "verbose")
        ]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            overrides = dict(parse_override(item) for item in kwargs.pop("set_", None) or [])
            for flag in flags:
                raw = kwargs.pop(flag.param, None)
                if raw is not None:
                    overrides[flag.key] = flag.value(raw)
            return func(
                config=kwargs.pop("config"), overrides=overrides, verbose=kwargs.pop("verbose"), **kwargs
            )

        config = CONFIG_OPTION if config_option else REQUIRED_CONFIG if config_required else CONFIG
        params = [*own, config, SET, *(flag.parameter() for flag in flags), VERBOSE]
        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


BENCHMARK = (
    Flag("benchmark.name", ("--benchmark", "-b"), "xquad-r, mlqa-r, beir or miracl."),
    Flag(
        "benchmark.data_dir",
        ("--data-dir",),
        "Local benchmark folder (default: LAReQA downloads into the cache).",
        metavar="PATH",
    ),
    Flag(
        "benchmark.languages",
        ("--languages", "-l"),
        "Comma-separated language codes (default: all).",
        csv=True,
        metavar="CODES",
    ),
    Flag("benchmark.split", ("--split",), "BEIR qrels split (default test) or MIRACL split (default dev)."),
    Flag(
        "benchmark.context",
        ("--context/--no-context",),
        "LAReQA: encode each sentence with its paragraph.",
        bool,
    ),
    Flag(
        "benchmark.answer_rule",
        ("--answer-rule",),
        "LAReQA: lareqa (default, LAReQA's released code) or strict (also drop questions whose answer runs "
        "past its sentence; not the paper's protocol).",
    ),
    Flag(
        "benchmark.on_error",
        ("--on-error",),
        "stop (default) at the first bad record, or skip and report it.",
    ),
)
ENCODER = (
    Flag(
        "encoder.model", ("--model", "-m"), "sentence-transformers hub id or local folder.", metavar="MODEL"
    ),
    Flag(
        "encoder.adapter", ("--adapter",), "LoRA adapter folder loaded on top of the model.", metavar="PATH"
    ),
    Flag("encoder.query_prefix", ("--query-prefix",), 'Text put before each query (default "query: ").'),
    Flag(
        "encoder.passage_prefix", ("--passage-prefix",), 'Text put before each passage (default "passage: ").'
    ),
    Flag("encoder.batch_size", ("--batch-size",), "Texts per forward pass (default 64).", int),
    Flag("encoder.device", ("--device",), "cpu, cuda, cuda:1 or mps (default: the best available)."),
    Flag(
        "encoder.workers",
        ("--workers",),
        "Encoding processes (default 1: this one): one per GPU (cuda:0, cuda:1, ... in turn) or CPU "
        "processes sharing the cores. Not under torchrun / accelerate launch, whose processes share the "
        "passages out themselves.",
        int,
    ),
    Flag(
        "encoder.max_seq_length",
        ("--max-seq-length",),
        "Truncation length in tokens (default: the model's).",
        int,
    ),
    Flag(
        "encoder.backend",
        ("--backend",),
        "torch (default), onnx or openvino: the runtime that encodes (the last two: CPU).",
    ),
    Flag(
        "encoder.quantize",
        ("--quantize",),
        "none (default), bf16 (openvino) or int8 (onnx: dynamic; openvino: static, needs --calibration).",
    ),
    Flag(
        "encoder.calibration",
        ("--calibration",),
        "Texts for openvino int8: a SQuAD-format folder (MLQA-R for XQuAD-R) or a file, a text per line.",
        metavar="PATH",
    ),
    Flag(
        "cache.dir",
        ("--cache-dir",),
        "Embedding cache folder (default ~/.cache/hybrid-qdrant).",
        metavar="PATH",
    ),
    Flag("cache.enabled", ("--cache/--no-cache",), "Use the embedding cache (default: yes).", bool),
)
STORE = (
    Flag(
        "store.location",
        ("--location",),
        "Embedded store folder or :memory: (default .hq/qdrant).",
        metavar="PATH",
    ),
    Flag(
        "store.url",
        ("--url",),
        "Qdrant server URL; the API key comes from $QDRANT_API_KEY or --api-key-file.",
        metavar="URL",
    ),
    Flag(
        "store.api_key_env",
        ("--api-key-env",),
        "Environment variable holding the API key (an error if unset).",
        metavar="NAME",
    ),
    Flag(
        "store.api_key_file",
        ("--api-key-file",),
        "File holding the API key (its first line).",
        metavar="PATH",
    ),
    Flag("store.prefer_grpc", ("--grpc/--http",), "Talk gRPC to the server (default: HTTP).", bool),
    Flag(
        "store.timeout",
        ("--timeout",),
        "Seconds each server request may take in total (default 30); with its retries a call ends within "
        "4 x timeout.",
        float,
    ),
    Flag(
        "store.allow_insecure_key",
        ("--allow-insecure-key",),
        "Allow sending the API key over plain http:// to a host other than this machine.",
        bool,
    ),
)
COLLECTION_NAME = (
    Flag(
        "collection.name",
        ("--collection", "-c"),
        "Collection or alias (default: from benchmark and model).",
        metavar="NAME",
    ),
)
COLLECTION = (
    *COLLECTION_NAME,
    Flag(
        "collection.recreate",
        ("--recreate",),
        "Rebuild the collection from scratch; the old one is replaced only once the new one is complete.",
        bool,
    ),
    Flag(
        "collection.payload_compat",
        ("--payload-compat",),
        "New collections: also write the payload keys of langchain,llamaindex (their Qdrant stores read "
        "the collection as it is).",
        csv=True,
        metavar="FORMATS",
    ),
)
SERVER_COLLECTION = (
    Flag(
        "collection.create.quantization",
        ("--quantization",),
        "New collection: scalar (int8), binary or product (embedded: built by an optimize).",
    ),
    Flag("collection.create.hnsw_m", ("--hnsw-m",), "New collection: HNSW graph degree m.", int),
    Flag(
        "collection.create.hnsw_ef_construct",
        ("--hnsw-ef-construct",),
        "New collection: HNSW ef_construct.",
        int,
    ),
    Flag("collection.create.shard_number", ("--shards",), "Server: shard number (clusters).", int),
    Flag(
        "collection.create.replication_factor", ("--replicas",), "Server: replication factor (clusters).", int
    ),
    Flag("collection.create.on_disk", ("--on-disk/--in-memory",), "Server: keep vectors on disk.", bool),
)
ALIAS = (
    Flag(
        "collection.alias",
        ("--alias",),
        "Zero-downtime re-index: fill ALIAS_v<n>, then switch ALIAS to it (the old one is kept).",
        metavar="ALIAS",
    ),
)
EVALUATE = (
    Flag(
        "evaluate.settings",
        ("--settings",),
        "Comma-separated: mono,cross,multi (default: all).",
        csv=True,
        metavar="SETTINGS",
    ),
    Flag(
        "evaluate.engine",
        ("--engine",),
        "auto (default: exact for full-ranking metrics, qdrant for a streamed corpus), exact (numpy "
        "over the vectors stored in the collection) or qdrant (filtered queries through Qdrant).",
    ),
    Flag("evaluate.depth", ("--depth",), "Qdrant query limit (default 10 with full ranking, else 100).", int),
    Flag(
        "evaluate.full_ranking",
        ("--full-ranking/--truncated",),
        "Exact ranks beyond the depth (default: on, except for streamed corpora such as MIRACL).",
        bool,
    ),
    Flag(
        "report.output",
        ("--output", "-o"),
        "Report NAME.json; NAME.md, NAME.png (heatmap) and NAME.queries.json.gz are written beside it.",
        metavar="NAME.json",
    ),
    Flag(
        "report.heatmap_scale",
        ("--heatmap-scale",),
        "Heatmap colours: fixed 0-100 (default, comparable) or auto (the data's range).",
    ),
    Flag(
        "report.run_dir",
        ("--run-dir",),
        "Also write each slice's TREC run (top max(--depth, 100)) and qrels: DIR/{setting}/{q}-{p}.run and "
        ".qrels.",
        metavar="DIR",
    ),
)
AUDIT = (
    Flag(
        "audit.settings",
        ("--settings",),
        "Comma-separated: mono,cross,multi (default: all).",
        csv=True,
        metavar="SETTINGS",
    ),
    Flag(
        "audit.k",
        ("--k",),
        "Recall@k of the index against the exact top k (default 10); the index returns max(k, 10) hits.",
        int,
    ),
    Flag(
        "audit.latency_queries",
        ("--latency-queries",),
        "Single queries timed per setting and variant (default 200).",
        int,
    ),
    Flag(
        "audit.scratch",
        ("--scratch",),
        "Embedded: folder for the scratch copies (default: the system's temporary folder).",
        metavar="PATH",
    ),
    Flag(
        "audit.output",
        ("--output", "-o"),
        "Report NAME.json; NAME.md and NAME.png (quality lost against memory and latency) beside it.",
        metavar="NAME.json",
    ),
)
TRAIN = (
    Flag(
        "output.dir",
        ("--output-dir", "-o"),
        "Output folder: checkpoints and the final model (output.dir).",
        metavar="PATH",
    ),
    Flag("model.name", ("--model",), "Base model: hub id or local folder (model.name).", metavar="MODEL"),
    Flag("train.alpha", ("--alpha",), "Share of monolingual batches: 1 X-X mono, 0 X-Y, 0.5 hybrid.", float),
    Flag("train.batch_size", ("--batch-size",), "Examples per batch per device.", int),
    Flag("train.learning_rate", ("--lr",), "AdamW learning rate.", float),
    Flag("train.max_steps", ("--max-steps",), "Training steps (wins over --epochs).", int),
    Flag("train.epochs", ("--epochs",), "Training epochs.", float),
    Flag("train.seed", ("--seed",), "Seed of the initialisation, dropout and batch sampler.", int),
    Flag(
        "train.resume",
        ("--resume/--no-resume",),
        "Continue from the latest checkpoint in the output folder.",
        bool,
    ),
)


def _flag(group: Sequence[Flag], key: str, help_text: str | None = None) -> Flag:
    """The flag of ``group`` that sets ``key`` (with another help line for another command)."""
    flag = next(f for f in group if f.key == key)
    return replace(flag, help=help_text) if help_text else flag


#: ``hq search``: the collection, the model (only to override the one recorded), and how to run it.
SEARCH = (
    _flag(COLLECTION, "collection.name", "Collection or alias (default: the only one at the location)."),
    _flag(
        ENCODER,
        "encoder.model",
        "Model to encode with (default: the one recorded in the collection); refused unless it is the "
        "model the collection was built with.",
    ),
    _flag(ENCODER, "encoder.adapter"),
    _flag(
        ENCODER,
        "encoder.query_prefix",
        'With --model, for collections that record no encoder (default "query: ").',
    ),
    _flag(
        ENCODER,
        "encoder.passage_prefix",
        'With --model, for collections that record no encoder (default "passage: ").',
    ),
    _flag(ENCODER, "encoder.batch_size"),
    _flag(ENCODER, "encoder.device"),
)
