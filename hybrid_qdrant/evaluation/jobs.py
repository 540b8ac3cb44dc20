"""The jobs, assembled here and only here: ingest a benchmark into a collection, evaluate an encoder on it.

One typed, nested config per job (``JobConfig``, TOML tables ``[benchmark]``, ``[encoder]``, ``[cache]``,
``[store]``, ``[collection]``, ``[evaluate]``, ``[report]``), loaded by ``hybrid_qdrant.config``. The CLI,
``hq sweep`` and the benchmark scripts call ``ingest_job`` / ``evaluate_job``; they log, never print,
never exit, and check everything they can before loading data or a model:

1. the config (types, ranges, choices: when it is built);
2. the report path (a writable ``.json`` name) and the server settings (URL, key, timeout);
3. the store, reached before the model loads (a wrong URL or key fails within the timeout);
4. the benchmark and the languages asked for;
5. then the model, the ingestion (every passage checked by id and content hash) and the evaluation.

Encoding scales out two ways: ``[encoder] workers`` (worker processes of this one, ``encoding.pool``),
or a ``torchrun`` / ``accelerate launch`` whose every process runs the job (a ``Launch``): the processes
share the ingestion out by block (``evaluation.launch``), process 0 reports and evaluates.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from hybrid_qdrant import config as typed
from hybrid_qdrant.benchmarks import BENCHMARKS, load_benchmark
from hybrid_qdrant.benchmarks.lareqa import ANSWER_RULES
from hybrid_qdrant.encoding.cache import CachedEncoder, EncodeProgress
from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder, model_label
from hybrid_qdrant.encoding.pool import PoolEncoder, close_encoder
from hybrid_qdrant.errors import ConfigError, StoreError
from hybrid_qdrant.evaluation.evaluate import EvalOptions, EvaluationResult, evaluate
from hybrid_qdrant.evaluation.ingest import IngestStats, collection_spec, ingest, merge_stats
from hybrid_qdrant.evaluation.launch import Launch
from hybrid_qdrant.evaluation.report import HEATMAP_SCALES, check_output, write_report
from hybrid_qdrant.evaluation.runfiles import RunWriter
from hybrid_qdrant.evaluation.slices import slices_for
from hybrid_qdrant.store.collection_options import CollectionOptions
from hybrid_qdrant.store.naming import next_version, versions
from hybrid_qdrant.store.payload_compat import check_formats
from hybrid_qdrant.types import Benchmark

logger = logging.getLogger(__name__)

ON_ERROR = ("stop", "skip")


@dataclass(frozen=True)
class BenchmarkSection:
    """``[benchmark]``: which set, which languages, and how it is read.

    Attributes:
        name: ``xquad-r``, ``mlqa-r``, ``beir`` or ``miracl``.
        data_dir: local files (default: LAReQA downloads into the cache, MIRACL reads the hub).
        languages: the languages to load and evaluate (default: the set's; MIRACL: the paper's 15).
        split: BEIR qrels split (default ``test``) or MIRACL split (default ``dev``).
        context: LAReQA: encode each sentence with its paragraph.
        answer_rule: LAReQA: ``lareqa`` (the released code's rule) or ``strict``.
        on_error: ``stop`` at the first bad record, or ``skip`` it and count it.
    """

    name: str = "xquad-r"
    data_dir: str | None = None
    languages: tuple[str, ...] = ()
    split: str | None = None
    context: bool = False
    answer_rule: str = "lareqa"
    on_error: str = "stop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.strip().lower())
        object.__setattr__(self, "languages", tuple(lang.strip().lower() for lang in self.languages))
        typed.choice(self.name, BENCHMARKS, "[benchmark] name")
        typed.choice(self.answer_rule, ANSWER_RULES, "[benchmark] answer_rule")
        typed.choice(self.on_error, ON_ERROR, "[benchmark] on_error")

    def load(self) -> Benchmark:
        """The benchmark (DataError for bad files or languages)."""
        return load_benchmark(
            self.name,
            self.data_dir,
            languages=list(self.languages) or None,
            context=self.context,
            split=self.split,
            on_error=self.on_error,
            answer_rule=self.answer_rule,
        )


@dataclass(frozen=True)
class CacheSection:
    """``[cache]``: the embedding cache (every text encoded once per model).

    Attributes:
        dir: cache root (default ``$HQ_CACHE_DIR`` or ``~/.cache/hybrid-qdrant``).
        enabled: use it.
    """

    dir: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class StoreSection:
    """``[store]``: where collections live.

    Attributes:
        location: embedded store directory, or ``:memory:`` (ignored with ``url``).
        url: a Qdrant server (``http(s)://host:6333``).
        api_key_env: environment variable holding the server's API key (an error if named and unset).
        api_key_file: file whose first line is the API key.
        prefer_grpc: talk gRPC to the server.
        timeout: seconds one server request may take in total; a call with its retries ends within
            4 x timeout.
        allow_insecure_key: send the key over plain http to a host other than this machine.
    """

    location: str = ".hq/qdrant"
    url: str | None = None
    api_key_env: str = "QDRANT_API_KEY"
    api_key_file: str | None = None
    prefer_grpc: bool = False
    timeout: float = 30.0
    allow_insecure_key: bool = False


@dataclass(frozen=True)
class CollectionSection:
    """``[collection]``: which collection, and how a new one is built.

    Attributes:
        name: collection or alias (default ``{benchmark}[-context]-{model}-{hash}``).
        alias: zero-downtime re-index: fill ``{alias}_v{n}``, then switch the alias to it.
        recreate: rebuild the collection from scratch; the old one stays until the new one is complete.
        create: server collections: quantization, HNSW, shards, replicas, on-disk storage
            (``[collection.create]``).
        payload_compat: new collections also get the payload keys of these libraries (``langchain``,
            ``llamaindex``: their Qdrant stores read the collection as it is); None keeps what an
            existing collection holds, and another layout than its own is refused.
    """

    name: str | None = None
    alias: str | None = None
    recreate: bool = False
    create: CollectionOptions = field(default_factory=CollectionOptions)
    payload_compat: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.payload_compat is not None:
            object.__setattr__(self, "payload_compat", check_formats(self.payload_compat))
        if self.alias and (self.name or self.recreate):
            raise ConfigError(
                "--alias writes a new versioned collection; it takes neither --collection nor --recreate"
            )


@dataclass(frozen=True)
class ReportSection:
    """``[report]``: where the report goes.

    Attributes:
        output: ``NAME.json``; ``NAME.md``, ``NAME.png`` and ``NAME.queries.json.gz`` go beside it.
        heatmap_scale: ``fixed`` (0-100, comparable across reports) or ``auto`` (the data's range).
        model_name: how the report names the model (default: ``[encoder] model``).
        run_dir: also write each slice's TREC run (each query's top max(depth, 100) hits) and qrels
            there, as ``{setting}/{q}-{p}.run`` and ``.qrels`` (see ``evaluation.runfiles``).
    """

    output: str | None = None
    heatmap_scale: str = "fixed"
    model_name: str | None = None
    run_dir: str | None = None

    def __post_init__(self) -> None:
        typed.choice(self.heatmap_scale, HEATMAP_SCALES, "[report] heatmap_scale")


@dataclass(frozen=True)
class JobConfig:
    """An ingest or evaluate job; each section's class documents its keys."""

    benchmark: BenchmarkSection = field(default_factory=BenchmarkSection)
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    cache: CacheSection = field(default_factory=CacheSection)
    store: StoreSection = field(default_factory=StoreSection)
    collection: CollectionSection = field(default_factory=CollectionSection)
    evaluate: EvalOptions = field(default_factory=EvalOptions)
    report: ReportSection = field(default_factory=ReportSection)


def load_job(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> JobConfig:
    """A job config from a TOML file (or defaults) with ``{"section.key": value}`` overrides laid over it."""
    return typed.load(path, JobConfig, overrides)


# ----------------------------------------------------------------------------------------- progress


CHECK = "check passages"
SCORE = "score settings"


class JobProgress:
    """What a job reports as it goes: phases with totals, advanced per batch (the CLI draws a bar per
    phase; this base class ignores everything). Phases: ``check passages`` (each passage checked in the
    collection, written when missing), ``encode passages`` / ``encode queries`` (per encoded chunk, after
    a note of how many the cache reused), ``score settings`` (per slice)."""

    def start(self, phase: str, total: int | None) -> None:
        """A phase begins (total: its units, or None when unknown)."""

    def advance(self, phase: str, n: int = 1) -> None:
        """``n`` more units of ``phase`` are done."""

    def note(self, message: str) -> None:
        """Something a person watching should know (e.g. what the cache reused)."""

    def grow(self, phase: str, n: int) -> None:
        """``phase`` (already started) has ``n`` more units than its total said."""

    def encoded(self, event: EncodeProgress) -> None:
        """The embedding cache's report of one encoding call (passages come in several, one per block):
        one ``encode passages`` / ``encode queries`` phase whose total grows with each call, and a tally
        of what the cache reused, noted by ``settle``."""
        phase = f"encode {PLURAL[event.role]}"
        state = self.__dict__.setdefault("_encoding", {})
        if event.encoded == 0:
            seen = state.setdefault(event.role, {"reused": 0, "total": 0, "done": 0})
            first = seen["total"] == 0
            seen["reused"] += event.reused
            seen["total"] += event.total
            seen["done"] = 0
            if first:
                self.start(phase, event.to_encode)
            elif event.to_encode:
                self.grow(phase, event.to_encode)
        else:
            seen = state[event.role]
            self.advance(phase, event.encoded - seen["done"])
            seen["done"] = event.encoded

    def settle(self, role: str) -> None:
        """Note what the cache reused of ``role`` texts since the last ``settle`` (one line per phase,
        however many encoding calls it took)."""
        seen = self.__dict__.get("_encoding", {}).pop(role, None)
        if seen and seen["reused"]:
            self.note(
                f"{seen['reused']} of {seen['total']} {PLURAL[role]} reused from the embedding cache"
                f" ({seen['total'] - seen['reused']} encoded)"
            )


PLURAL = {"query": "queries", "passage": "passages"}


# ----------------------------------------------------------------------------------------- assembly


def store_kwargs(store: StoreSection, collection: CollectionSection) -> dict[str, Any]:
    """``open_store`` keyword arguments of a job, every server setting checked (ConfigError) and the API
    key resolved (from ``api_key_env`` or ``api_key_file``; remembered for scrubbing) before anything
    connects."""
    from hybrid_qdrant.store.connection import (
        API_KEY_ENV,
        check_server_settings,
        check_timeout,
        remember_secret,
        resolve_api_key,
    )

    timeout = check_timeout(store.timeout)
    kwargs: dict[str, Any] = {
        "location": store.location,
        "timeout": timeout,
        "prefer_grpc": store.prefer_grpc,
    }
    create = {k: v for k, v in vars(collection.create).items() if v is not None}
    if store.url:
        env_name = store.api_key_env
        if not isinstance(env_name, str) or not env_name.strip() or "=" in env_name:
            raise ConfigError(f"--api-key-env must name an environment variable, got {env_name!r}")
        raw = os.environ.get(env_name)
        if raw and not store.api_key_file:
            remember_secret(raw)  # masked even if the key is refused below
        api_key = resolve_api_key(
            None,
            store.api_key_file,
            environ=os.environ,
            env_name=env_name,
            required=env_name != API_KEY_ENV,  # named explicitly: it must be set
        )
        if api_key:
            remember_secret(api_key)
        check_server_settings(store.url, api_key, timeout, store.allow_insecure_key)
        kwargs.update(url=store.url, api_key=api_key, allow_insecure_key=store.allow_insecure_key)
        kwargs.update(api_key_env=env_name)
    return {**kwargs, **create}


def open_collection(cfg: JobConfig, name: str, **extra: Any):
    """The store for collection (or alias) ``name`` at the job's location or server."""
    from hybrid_qdrant.store import open_store

    return open_store(collection=name, **{**store_kwargs(cfg.store, cfg.collection), **extra})


def build_encoder(cfg: JobConfig, progress: JobProgress | None = None, launch: Launch | None = None):
    """The job's sentence-transformers encoder: fixed batches, in this process or in ``[encoder]
    workers`` worker processes (``PoolEncoder``; ``close_encoder`` stops them), in the embedding cache
    unless ``[cache] enabled`` is off (the cache reports per chunk to ``progress``, and how many texts
    it reused). With the cache, a model loaded before with the same settings and files is loaded only
    when a text has to be encoded. Under a launch, on this process's GPU."""
    settings = cfg.encoder
    if launch is not None:
        settings = replace(settings, device=launch.device(settings.device))
    workers = settings.workers
    # with workers, this process needs the model's dim and fingerprint only (read on the CPU, or from
    # the record of an earlier load); each worker loads its own copy on its device
    here = settings if workers == 1 else replace(settings, device="cpu")
    if not cfg.cache.enabled:
        return PoolEncoder(SentenceTransformerEncoder(here), workers, settings)
    from hybrid_qdrant.encoding.cache import default_cache_dir
    from hybrid_qdrant.encoding.lazy import recorded_encoder

    # with the cache, the model loads only when something is to be encoded (see encoding.lazy)
    encoder = PoolEncoder(recorded_encoder(here, cfg.cache.dir or default_cache_dir()), workers, settings)
    cached = CachedEncoder(encoder, root=cfg.cache.dir, progress=progress.encoded if progress else None)
    cached.batch_size = settings.batch_size * workers  # chunks grow from one batch per worker
    return cached


def default_collection(benchmark: str, model: str, fingerprint: str, context: bool = False) -> str:
    """``{benchmark}[-context]-{model label}-{hash8}``: another model, encoding or passage text (LAReQA's
    sentence-with-paragraph ``context``) gets its own collection; language subsets share one (each
    evaluation filters its own languages' pools). The label names the model meaningfully
    (``runs/x/final`` -> ``x``; see ``model_label``)."""
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", model_label(model)).strip("-").lower()[:40]
    source = f"{benchmark}-context" if context else benchmark
    return f"{source}-{slug}-{hashlib.sha1(fingerprint.encode()).hexdigest()[:8]}"


def model_name(cfg: JobConfig) -> str:
    """How a job's report names its model."""
    return cfg.report.model_name or cfg.encoder.model


def collection_name(cfg: JobConfig, benchmark: Benchmark, encoder) -> str:
    """The collection a job writes and reads: ``[collection] alias`` or ``name``, or the default one."""
    c = cfg.collection
    return (
        c.alias
        or c.name
        or default_collection(benchmark.name, cfg.encoder.model, encoder.fingerprint, cfg.benchmark.context)
    )


def start(cfg: JobConfig, progress: JobProgress, launch: Launch | None = None) -> tuple[Benchmark, Any, str]:
    """A job's beginning: everything checked (``prepare``), then the model loaded and the collection
    named. Returns (benchmark, encoder, collection name); close the encoder with ``close_encoder``."""
    launch = launch or Launch()
    # an embedded store is opened by process 0 alone (one process per directory)
    benchmark = prepare(cfg, check_store=launch.main or bool(cfg.store.url))
    encoder = build_encoder(cfg, progress, launch)
    return benchmark, encoder, collection_name(cfg, benchmark, encoder)


def check_processes(cfg: JobConfig, launch: Launch) -> None:
    """ConfigError for ``[encoder] workers`` this machine or a launch cannot take (checked before the
    model loads, anything is written, or a launch's processes meet)."""
    workers = cfg.encoder.workers
    if launch.distributed and workers > 1:
        raise ConfigError(
            f"--workers {workers} starts worker processes, but under torchrun / accelerate "
            "launch every process of the launch is one worker already: drop --workers"
        )
    cores = os.cpu_count() or 1
    if workers > cores:  # each worker is a process that needs a core to feed its device
        raise ConfigError(
            f"--workers {workers} is more than this machine's {cores} CPU cores (one process per GPU, "
            "or at most one per core)"
        )


def prepare(cfg: JobConfig, check_store: bool = True) -> Benchmark:
    """Everything a job checks before the model loads: the report path, the server settings, the
    benchmark and its languages, and the store (reached, so a wrong URL or key fails within the
    timeout; unless ``check_store`` is off). Returns the loaded benchmark."""
    if cfg.report.output:
        check_output(cfg.report.output)
    store_kwargs(cfg.store, cfg.collection)
    benchmark = cfg.benchmark.load()
    slices_for(benchmark, cfg.evaluate.settings, cfg.evaluate.languages)  # unknown languages fail now
    if check_store:
        with open_collection(cfg, cfg.collection.name or cfg.collection.alias or "hq-check"):
            pass
    return benchmark


def ingest_benchmark(
    benchmark: Benchmark,
    encoder,
    store,
    on_error: str = "stop",
    progress: Callable[[int], None] | None = None,
    **kwargs: Any,
) -> IngestStats:
    """Write the benchmark's passages, streamed ones included (resuming a partial collection)."""
    kwargs.setdefault("check_duplicates", not benchmark.streamed)  # a streamed corpus keeps memory flat
    passages = benchmark.passages if not benchmark.streamed else benchmark.iter_passages()
    return ingest(
        passages,
        encoder,
        store,
        on_error=on_error,
        languages=benchmark.languages,
        progress=progress,
        **kwargs,
    )


@dataclass
class IngestOutcome:
    """What ``ingest_job`` did: the collection written, its points, the ingestion, a re-index."""

    benchmark: Benchmark
    collection: str
    points: int
    stats: IngestStats
    reindex: ReindexResult | None = None


def ingest_job(
    cfg: JobConfig, progress: JobProgress | None = None, launch: Launch | None = None
) -> IngestOutcome | None:
    """Encode a benchmark's passages into the job's collection (idempotent, resumable); with ``[collection]
    alias``, into a new ``{alias}_v{n}`` that the alias is then switched to.

    Args:
        cfg: the job.
        progress: told of each phase as it goes.
        launch: this process's place in a ``torchrun`` / ``accelerate launch`` (``Launch.from_env()``;
            default: one process): the processes share the blocks out (``evaluation.launch``); process 0
            reports, the others return None.

    Raises:
        ConfigError / DataError / ModelError / StoreError: before any work where they can be checked.
    """
    progress = progress or JobProgress()
    launch = launch or Launch()
    check_processes(cfg, launch)
    with launch.opened():
        benchmark, encoder, name = start(cfg, progress, launch)
        try:
            if not launch.main:
                follow(cfg, benchmark, encoder, launch)
                return None
            with open_collection(cfg, name) as store:
                write = writer(
                    benchmark,
                    encoder,
                    cfg.benchmark.on_error,
                    progress,
                    cfg.collection.payload_compat,
                    launch,
                    relayed(cfg),
                )
                spec = collection_spec(encoder)
                if cfg.collection.alias or (cfg.collection.recreate and store.exists()):
                    done = reindex_with_alias(
                        store, name, write, spec, replace_collection=cfg.collection.recreate
                    )
                    points = _count(store, done.collection)
                    return IngestOutcome(benchmark, done.collection, points, done.stats, done)
                stats = write(store)
                return IngestOutcome(benchmark, name, store.count(), stats)
        finally:
            close_encoder(encoder)


def relayed(cfg: JobConfig) -> bool:
    """Whether a launch writes through process 0: the embedded store (one process per directory)."""
    return not cfg.store.url


def writer(
    benchmark: Benchmark,
    encoder,
    on_error: str,
    progress: JobProgress,
    payload_compat: Sequence[str] | None = None,
    launch: Launch | None = None,
    relay: bool = False,
) -> Callable[[Any], IngestStats]:
    """The function that checks every passage of ``benchmark`` in a store and writes what is missing
    (see ``ingest``; ``payload_compat``: the payload keys of other libraries, ``[collection]
    payload_compat``), reporting the ``check passages`` phase. Under a launch it is process 0's: it
    tells the others which collection to write (``follow``), shares the blocks out with them and returns
    the launch's stats."""
    launch = launch or Launch()

    def write(store) -> IngestStats:
        progress.start(CHECK, None if benchmark.streamed else len(benchmark.passages))
        try:
            if launch.distributed and not relay:
                launch.broadcast(store.collection)  # the collection (or re-index version) to write
            stats = ingest_benchmark(
                benchmark,
                encoder,
                store,
                on_error=on_error,
                progress=partial(progress.advance, CHECK),
                payload_compat=payload_compat,
                launch=launch,
                relay=relay,
            )
            if launch.distributed and not relay:
                stats = merge_stats(launch.gather(stats))  # every process has written its blocks
            return stats
        finally:
            progress.settle("passage")

    return write


def follow(cfg: JobConfig, benchmark: Benchmark, encoder, launch: Launch) -> IngestStats:
    """A process of a launch other than 0: encode its blocks of the one ingestion process 0 runs
    (``writer``), writing them into the collection process 0 names (a server) or sending their vectors
    to process 0 (the embedded store, which it never opens)."""
    on_error = cfg.benchmark.on_error
    if relayed(cfg):
        return ingest_benchmark(benchmark, encoder, None, on_error, launch=launch, relay=True)
    target = launch.broadcast()
    with open_collection(cfg, target) as store:
        stats = ingest_benchmark(
            benchmark, encoder, store, on_error, payload_compat=cfg.collection.payload_compat, launch=launch
        )
        launch.gather(stats)
    return stats


def rebuild(
    cfg: JobConfig,
    benchmark: Benchmark,
    encoder,
    name: str,
    progress: JobProgress,
    launch: Launch | None = None,
) -> IngestStats | None:
    """``--recreate``: write the benchmark into a new collection beside ``name`` and replace ``name`` with
    it only once it is complete (``reindex_with_alias(..., replace_collection=True)``); a name with no
    collection yet is simply filled (None is returned: nothing was written). An interruption leaves the
    old collection as it was."""
    with open_collection(cfg, name) as store:
        if not store.exists():
            return None
        spec = collection_spec(encoder)
        compat = cfg.collection.payload_compat
        write = writer(benchmark, encoder, cfg.benchmark.on_error, progress, compat, launch, relayed(cfg))

        done = reindex_with_alias(store, name, write, spec, replace_collection=True)
    progress.note(
        f"rebuilt {name} as {done.collection}" + (f"; dropped {done.dropped}" if done.dropped else "")
    )
    return done.stats


def _already(stats: IngestStats, store) -> IngestStats:
    """A ``writer`` for a collection just filled: what filling it did."""
    return stats


def _count(store, name: str) -> int:
    with store.for_collection(name) as one:
        return one.count()


@dataclass
class EvaluationRun:
    """What ``run_evaluation`` produced."""

    result: EvaluationResult
    collection: str
    ingest: IngestStats | None
    timings: dict[str, float]
    benchmark: Benchmark | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the report's run details (collection, timings)
    report: dict[str, Path] = field(default_factory=dict)  # the files written, by kind
    runs: RunWriter | None = None  # the TREC run files written (``[report] run_dir``)


def evaluate_job(
    cfg: JobConfig,
    progress: JobProgress | None = None,
    extra: dict[str, Any] | None = None,
    launch: Launch | None = None,
) -> EvaluationRun | None:
    """Evaluate the job's encoder on its benchmark through its collection (ingesting what is missing);
    with ``[report] output``, write the report (JSON, Markdown, heatmap, per-query values).

    Args:
        cfg: the job.
        progress: told of each phase as it goes (passages checked, texts encoded, settings scored).
        extra: more keys for the report's JSON.
        launch: as in ``ingest_job``: the processes share the ingestion; process 0 alone evaluates, the
            others return None.

    With ``[report] run_dir``, each slice's TREC run and qrels are written there too (``run.runs``).

    Raises:
        ConfigError / DataError / ModelError / StoreError: before any work where they can be checked.
    """
    progress = progress or JobProgress()
    launch = launch or Launch()
    check_processes(cfg, launch)
    # created now, so that an unwritable folder fails before the run
    runs = RunWriter(cfg.report.run_dir) if cfg.report.run_dir and launch.main else None
    with launch.opened():
        benchmark, encoder, name = start(cfg, progress, launch)
        try:
            if not launch.main:
                follow(cfg, benchmark, encoder, launch)  # the one ingestion process 0 runs below
                return None
            compat = cfg.collection.payload_compat
            on_error = cfg.benchmark.on_error
            write = writer(benchmark, encoder, on_error, progress, compat, launch, relayed(cfg))
            if cfg.collection.recreate:
                rebuilt = rebuild(cfg, benchmark, encoder, name, progress, launch)
                if rebuilt is not None and launch.distributed:  # the launch ingests together once only
                    write = partial(_already, rebuilt)
            with open_collection(cfg, name) as store:
                run = run_evaluation(
                    benchmark,
                    encoder,
                    store,
                    name,
                    cfg.evaluate,
                    progress,
                    on_error=on_error,
                    payload_compat=compat,
                    runs=runs,
                    write=write,
                )
        finally:
            close_encoder(encoder)
    run.benchmark = benchmark
    details = {
        "collection": name,
        "timings": {k: round(v, 3) for k, v in run.timings.items()},
        "model_fingerprint": encoder.fingerprint,
        **(extra or {}),
    }
    if runs is not None:
        details.update(run_dir=str(runs.directory), run_depth=max(run.result.options.depth, runs.depth))
    run.details = details
    if cfg.report.output:
        run.report = write_report(
            run.result, cfg.report.output, model_name(cfg), details, cfg.report.heatmap_scale
        )
    return run


def run_evaluation(
    benchmark: Benchmark,
    encoder,
    store,
    collection: str,
    options: EvalOptions | None = None,
    progress: JobProgress | None = None,
    on_error: str = "stop",
    payload_compat: Sequence[str] | None = None,
    runs: RunWriter | None = None,
    write: Callable[[Any], IngestStats] | None = None,
) -> EvaluationRun:
    """Make the collection hold exactly the benchmark's passages, encode the queries, evaluate.

    Every passage is checked before scoring (its id stored with the same content hash, in batches, no
    encoding): missing or changed ones are encoded and written (see ``ingest``); then each evaluated
    language must hold exactly the benchmark's passages of that language, so the pools searched are
    the benchmark's and nothing else. A collection with points the benchmark does not have (another
    version of the data) is refused rather than scored.

    Args:
        benchmark: the loaded benchmark.
        encoder: an ``Encoder`` (cached or not).
        store: the opened store for ``collection``.
        collection: its name (for the report).
        options: EvalOptions.
        on_error: bad passages stop the ingestion (``"stop"``) or are skipped and counted (``"skip"``).
        payload_compat: the payload keys of other libraries written to a new collection (see ``ingest``).
        runs: receives each slice's TREC run and qrels (see ``evaluate``).
        write: what checks and writes the passages (default: ``writer``, in this process).

    Raises:
        StoreError: the collection holds passages the benchmark does not have.
    """
    options = options or EvalOptions()
    progress = progress or JobProgress()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    stats = (write or writer(benchmark, encoder, on_error, progress, payload_compat))(store)
    langs = tuple(options.languages or benchmark.languages)
    expected = {lang: stats.per_language.get(lang, 0) for lang in langs}
    check_pools(store, collection, expected)
    pool_is_collection = store.count() == sum(expected.values())
    timings["ingest"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    query_vectors = encoder.encode_queries([q.text for q in benchmark.queries])  # (n_queries, dim)
    progress.settle("query")
    timings["encode_queries"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    progress.start(SCORE, len(slices_for(benchmark, options.settings, options.languages)))
    result = evaluate(
        benchmark,
        query_vectors,
        store,
        options,
        progress=lambda _: progress.advance(SCORE),
        pool_is_collection=pool_is_collection,
        runs=runs,
    )
    timings["retrieve_and_score"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    written = stats if stats.encoded else None
    return EvaluationRun(result, collection, written, timings, runs=runs)


def check_pools(store, collection: str, expected: dict[str, int]) -> None:
    """Each language's point count must be the benchmark's passage count of that language.

    Raises:
        StoreError: a language holds more points (passages the benchmark does not have: another
            version of the data) or fewer (a write that did not land).
    """
    for lang, want in expected.items():
        have = store.count(lang)
        if have > want:
            raise StoreError(
                f"collection '{collection}' holds {have} {lang} passages but the benchmark has {want}: it "
                "holds passages this benchmark does not have (another version of the data?); evaluate into "
                "another --collection or rebuild it with --recreate"
            )
        if have < want:
            raise StoreError(
                f"collection '{collection}' holds {have} of the benchmark's {want} {lang} passages after "
                "ingestion; run again to write the missing ones"
            )


@dataclass
class ReindexResult:
    """What ``reindex_with_alias`` did: the collection written, the alias switch, the ingestion."""

    alias: str
    collection: str
    previous: str | None
    stats: IngestStats
    dropped: str | None = None


#: The label that records a re-index on the collection being filled: ``filling`` until the alias has
#: been switched to it, ``complete`` after. A re-index is resumed only from a collection labelled
#: ``filling`` (recorded state, never inferred from names), so a rollback by hand sticks.
REINDEX_LABEL = "hq_reindex"


def reindex_with_alias(
    store, alias: str, write: Callable[[Any], IngestStats], spec: Any, *, replace_collection: bool = False
) -> ReindexResult:
    """Zero-downtime re-index: fill a new versioned collection, then switch ``alias`` to it atomically.

    Queries through the alias keep hitting the old collection until the switch. The collection being
    filled is labelled ``filling`` before any point is written and ``complete`` once the alias points to
    it; an interrupted re-index (the newest ``filling`` version the alias does not point to) is filled
    up, not started again; a version labelled ``complete`` (or without a label: an older hq's) is never
    switched to again by a later run, so pointing the alias back by hand (a rollback) sticks.

    Args:
        store: a store opened at the location or server (any collection name).
        alias: the alias queries use.
        write: fills the store it is given (e.g. ``lambda s: ingest_benchmark(bench, enc, s)``).
        spec: the new collection's ``CollectionSpec`` (created before the first point, to be labelled).
        replace_collection: ``alias`` may be a plain collection (``--recreate``): it is dropped once its
            replacement is complete, and the name becomes an alias of the replacement; when the alias
            already pointed to a collection, that one is dropped after the switch.
    """
    names = store.collections()
    plain = alias in names
    if plain and not replace_collection:
        raise StoreError(
            f"'{alias}' is a collection, not an alias: re-index it with --recreate, or pick another alias"
        )
    previous = alias if plain else store.aliases().get(alias)
    unfinished = [
        v for v in versions(alias, names) if v != previous and store.labels(v).get(REINDEX_LABEL) == "filling"
    ]
    target = unfinished[-1] if unfinished else next_version(alias, names)
    if unfinished:
        logger.info("resuming the unfinished re-index into %s", target)
    with store.for_collection(target) as new_store:
        new_store.ensure_collection(spec)
        store.set_labels(target, {REINDEX_LABEL: "filling", "hq_alias": alias})
        stats = write(new_store)
    dropped = None
    if plain:  # a collection cannot be renamed: it goes, its name becomes an alias of the complete one
        store.delete_collection(alias)
        dropped = alias
    store.set_alias(alias, target)
    store.set_labels(target, {REINDEX_LABEL: "complete"})
    if replace_collection and previous is not None and not plain:
        store.delete_collection(previous)
        dropped = previous
    logger.info("alias %s -> %s (was %s)", alias, target, previous)
    return ReindexResult(alias, target, previous if not dropped else None, stats, dropped)
