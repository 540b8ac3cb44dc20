"""``hq``: the command-line shell over the library (thin: parse options, call one function, print)."""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer

from hybrid_qdrant.errors import ConfigError, HQError

app = typer.Typer(
    name="hq",
    help="Hybrid-batch training and mono/cross/multilingual retrieval evaluation on Qdrant.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold an API key
    add_completion=False,
)


#: API keys read by this process, scrubbed from any unexpected error text.
_SECRETS: list[str] = []


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(func):
    """Turn library errors into one line on stderr and the error's exit code (HQ_DEBUG=1 re-raises)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = os.environ.get("HQ_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except HQError as exc:
            if debug:
                raise
            _fail(_one_scrubbed_line(str(exc) or type(exc).__name__), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        except Exception as exc:  # unexpected: one scrubbed line, never a traceback with locals
            if debug:
                raise
            message = _one_scrubbed_line(f"{type(exc).__name__}: {exc}")
            _fail(message + " (HQ_DEBUG=1 for a traceback)", 1)

    return wrapper


def _one_scrubbed_line(text: str) -> str:
    """The first line of ``text`` with every API key read by this process masked (scrubbed first, so
    neither a line break nor a cut can leave part of a key behind)."""
    from hybrid_qdrant.store.connection import one_line, scrub

    text = scrub(text, *_SECRETS)
    return one_line(text.splitlines()[0] if text.strip() else text, 500)


class _ScrubSecrets(logging.Filter):
    """Masks the API keys this process read in every log record its handlers write."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            from hybrid_qdrant.store.connection import scrub

            try:
                message = record.getMessage()
            except Exception:  # a malformed record: the handler reports it
                return True
            scrubbed = scrub(message, *_SECRETS)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ScrubSecrets) for f in handler.filters):
            handler.addFilter(_ScrubSecrets())


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


ConfigArg = typer.Argument(
    None,
    help="TOML config (keys at top level or under an evaluate table); flags override it.",
    show_default=False,
)
BenchmarkOpt = typer.Option(None, "--benchmark", "-b", help="xquad-r | mlqa-r | beir | miracl")
DataDirOpt = typer.Option(
    None, "--data-dir", help="Local benchmark directory (default: download to the cache)."
)
LanguagesOpt = typer.Option(None, "--languages", "-l", help="Comma-separated language codes (default: all).")
ContextOpt = typer.Option(
    None, "--context/--no-context", help="LAReQA: encode each sentence with its paragraph."
)
ModelOpt = typer.Option(None, "--model", "-m", help="sentence-transformers hub id or local directory.")
AdapterOpt = typer.Option(None, "--adapter", help="LoRA adapter directory loaded on top of the model.")
QueryPrefixOpt = typer.Option(None, "--query-prefix", help='Prefix of queries (default "query: ").')
PassagePrefixOpt = typer.Option(None, "--passage-prefix", help='Prefix of passages (default "passage: ").')
BatchOpt = typer.Option(None, "--batch-size", help="Texts per forward pass.")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available).")
LocationOpt = typer.Option(
    None, "--location", help="Embedded store directory or :memory: (default .hq/qdrant)."
)
UrlOpt = typer.Option(
    None, "--url", help="Qdrant server URL; the API key comes from $QDRANT_API_KEY or --api-key-file."
)
KeyEnvOpt = typer.Option(
    None, "--api-key-env", help="Environment variable holding the API key (an error if it is not set)."
)
KeyFileOpt = typer.Option(None, "--api-key-file", help="File holding the API key (its first line).")
InsecureKeyOpt = typer.Option(
    None,
    "--allow-insecure-key",
    help="Allow sending the API key over plain http:// to a host other than this machine "
    "(refused by default; config key allow_insecure_key).",
)
GrpcOpt = typer.Option(None, "--grpc/--http", help="Talk gRPC to the server.")
TimeoutOpt = typer.Option(
    None,
    "--timeout",
    help="Seconds each server request may take in total (default 30); with its retries a call ends "
    "within 4 x timeout.",
)
CollectionOpt = typer.Option(
    None, "--collection", "-c", help="Collection or alias (default: from benchmark and model)."
)
RecreateOpt = typer.Option(None, "--recreate", help="Drop and re-create the collection if it exists.")
AnswerRuleOpt = typer.Option(
    None,
    "--answer-rule",
    help="LAReQA sets: lareqa (default; LAReQA's released code) or strict (also drop questions whose "
    "answer runs past its sentence; not the paper's protocol).",
)
OnErrorOpt = typer.Option(
    None, "--on-error", help="stop (default) at the first bad record, or skip and report."
)
CacheDirOpt = typer.Option(None, "--cache-dir", help="Embedding cache directory.")
NoCacheOpt = typer.Option(None, "--cache/--no-cache", help="Use the embedding cache.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr.")


#: Command parameters whose config key has another name; ``verbose`` and ``config`` are not config keys.
_RENAMED = {
    "grpc": "prefer_grpc",
    "cache": "use_cache",
    "shards": "shard_number",
    "replicas": "replication_factor",
}
_CSV = ("languages", "settings")


def _from_params(params: dict[str, Any]):
    """The command's config: the TOML file (if any) with the command-line flags laid over it."""
    overrides = {
        _RENAMED.get(name, name): _csv(value) if name in _CSV else value
        for name, value in params.items()
        if name not in ("config", "verbose")
    }
    return _config(params.get("config"), **overrides)


def _config(config: Path | None, **overrides: Any):
    from hybrid_qdrant.config import EvaluateConfig, load_section

    return load_section(config, EvaluateConfig, "evaluate", overrides)


def _encoder(cfg):
    from hybrid_qdrant.encoder import EncoderSettings
    from hybrid_qdrant.pipeline import build_encoder

    settings = EncoderSettings(
        model=cfg.model,
        query_prefix=cfg.query_prefix,
        passage_prefix=cfg.passage_prefix,
        query_prompt_name=cfg.query_prompt_name,
        passage_prompt_name=cfg.passage_prompt_name,
        batch_size=cfg.batch_size,
        device=cfg.device,
        max_seq_length=cfg.max_seq_length,
        adapter=cfg.adapter,
    )
    return build_encoder(settings, cache_dir=cfg.cache_dir, use_cache=cfg.use_cache)


def _store_options(cfg):
    """The store options of ``cfg``, every server setting checked (ConfigError) before anything connects."""
    from hybrid_qdrant.pipeline import StoreOptions
    from hybrid_qdrant.store.collection_options import CREATE_OPTIONS
    from hybrid_qdrant.store.connection import (
        API_KEY_ENV,
        check_server_settings,
        check_timeout,
        resolve_api_key,
    )

    check_timeout(cfg.timeout)
    api_key = None
    create = {key: getattr(cfg, key) for key in CREATE_OPTIONS if getattr(cfg, key, None) is not None}
    if cfg.url:
        env_name = cfg.api_key_env
        if not isinstance(env_name, str) or not env_name.strip() or "=" in env_name:
            raise ConfigError(f"--api-key-env must name an environment variable, got {env_name!r}")
        raw = os.environ.get(env_name)
        if raw and not cfg.api_key_file:
            _SECRETS.append(raw)  # masked even if the key is refused below
        api_key = resolve_api_key(
            None,
            cfg.api_key_file,
            environ=os.environ,
            env_name=env_name,
            required=env_name != API_KEY_ENV,  # named explicitly: it must be set
        )
        if api_key:
            _SECRETS.append(api_key)
        check_server_settings(cfg.url, api_key, cfg.timeout, bool(cfg.allow_insecure_key))
        create.update(allow_insecure_key=bool(cfg.allow_insecure_key), api_key_env=env_name)
    return StoreOptions(
        location=cfg.location,
        url=cfg.url,
        api_key=api_key,
        collection=cfg.collection,
        recreate=cfg.recreate,
        timeout=cfg.timeout,
        prefer_grpc=cfg.prefer_grpc,
        extra=create,
    )


def _check_store(cfg) -> None:
    """Reach the store before the model loads, so a wrong URL or key fails within the timeout."""
    from dataclasses import replace

    from hybrid_qdrant.pipeline import open_collection

    with open_collection(replace(_store_options(cfg), recreate=False), cfg.collection or "hq-check"):
        pass


def _load(cfg):
    from hybrid_qdrant.benchmarks import load_benchmark

    bench = load_benchmark(
        cfg.benchmark,
        cfg.data_dir,
        languages=cfg.languages,
        context=cfg.context,
        split=cfg.split,
        on_error=cfg.on_error,
        answer_rule=cfg.answer_rule,
    )
    return bench


def _echo_loader_skips(bench) -> None:
    """After a successful run: what the loader left out, and the first bad records in skip mode."""
    for reason, count in bench.skipped.items():
        typer.echo(f"loader skipped {count}: {reason.replace('_', ' ')}")
    for line in bench.skipped_examples:
        typer.echo(f"  {line}")


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="", disable=not sys.stderr.isatty(), leave=False)


@app.command()
@handle_errors
def ingest(
    config: Path | None = ConfigArg,
    benchmark: str | None = BenchmarkOpt,
    data_dir: str | None = DataDirOpt,
    languages: str | None = LanguagesOpt,
    context: bool | None = ContextOpt,
    answer_rule: str | None = AnswerRuleOpt,
    model: str | None = ModelOpt,
    adapter: str | None = AdapterOpt,
    query_prefix: str | None = QueryPrefixOpt,
    passage_prefix: str | None = PassagePrefixOpt,
    batch_size: int | None = BatchOpt,
    device: str | None = DeviceOpt,
    location: str | None = LocationOpt,
    url: str | None = UrlOpt,
    api_key_env: str | None = KeyEnvOpt,
    api_key_file: str | None = KeyFileOpt,
    allow_insecure_key: bool | None = InsecureKeyOpt,
    grpc: bool | None = GrpcOpt,
    timeout: float | None = TimeoutOpt,
    collection: str | None = CollectionOpt,
    recreate: bool | None = RecreateOpt,
    on_error: str | None = OnErrorOpt,
    cache_dir: str | None = CacheDirOpt,
    cache: bool | None = NoCacheOpt,
    alias: str | None = typer.Option(
        None,
        "--alias",
        help="Zero-downtime re-index: fill ALIAS_v<n>, then switch ALIAS to it (old one kept).",
    ),
    quantization: str | None = typer.Option(None, "--quantization", help="Server: scalar (int8) or binary."),
    hnsw_m: int | None = typer.Option(None, "--hnsw-m", help="Server: HNSW graph degree m."),
    hnsw_ef_construct: int | None = typer.Option(
        None, "--hnsw-ef-construct", help="Server: HNSW ef_construct."
    ),
    shards: int | None = typer.Option(None, "--shards", help="Server: shard number (clusters)."),
    replicas: int | None = typer.Option(None, "--replicas", help="Server: replication factor (clusters)."),
    on_disk: bool | None = typer.Option(None, "--on-disk/--in-memory", help="Server: keep vectors on disk."),
    verbose: bool = VerboseOpt,
) -> None:
    """Encode a benchmark's passages into a Qdrant collection (idempotent; resumes where it stopped)."""
    _setup_logging(verbose)
    cfg = _from_params(locals())
    from hybrid_qdrant.pipeline import (
        default_collection,
        ingest_benchmark,
        open_collection,
        reindex_with_alias,
    )

    if cfg.alias and (cfg.collection or cfg.recreate):
        raise HQError(
            "--alias writes a new versioned collection; it takes neither --collection nor --recreate"
        )
    _store_options(cfg)  # every server setting checked before anything loads or connects
    bench = _load(cfg)
    _check_store(cfg)
    encoder = _encoder(cfg)
    name = (
        cfg.alias
        or cfg.collection
        or default_collection(bench.name, cfg.model, encoder.fingerprint, cfg.context)
    )
    with (
        open_collection(_store_options(cfg), name) as store,
        _progress(len(bench.passages) or None, "passages") as bar,
    ):

        def write(target):
            return ingest_benchmark(bench, encoder, target, on_error=cfg.on_error, progress=bar.update)

        if cfg.alias:
            done = reindex_with_alias(store, cfg.alias, write)
            stats, name = done.stats, done.collection
        else:
            stats = write(store)
        total = store.count()
    typer.echo(
        f"collection {name}: {total} points ({stats.encoded} written, {stats.already_stored} already stored, "
        f"{sum(stats.skipped.values())} skipped) in {stats.seconds:.1f} s"
    )
    if cfg.alias:
        kept = f"; {done.previous} kept (hq collections delete {done.previous})" if done.previous else ""
        typer.echo(f"alias {cfg.alias} -> {name}{kept}")
    for line in stats.skipped_examples:
        typer.echo(f"  skipped {line}")
    _echo_loader_skips(bench)


@app.command()
@handle_errors
def evaluate(
    config: Path | None = ConfigArg,
    benchmark: str | None = BenchmarkOpt,
    data_dir: str | None = DataDirOpt,
    languages: str | None = LanguagesOpt,
    context: bool | None = ContextOpt,
    answer_rule: str | None = AnswerRuleOpt,
    model: str | None = ModelOpt,
    adapter: str | None = AdapterOpt,
    query_prefix: str | None = QueryPrefixOpt,
    passage_prefix: str | None = PassagePrefixOpt,
    batch_size: int | None = BatchOpt,
    device: str | None = DeviceOpt,
    location: str | None = LocationOpt,
    url: str | None = UrlOpt,
    api_key_env: str | None = KeyEnvOpt,
    api_key_file: str | None = KeyFileOpt,
    allow_insecure_key: bool | None = InsecureKeyOpt,
    grpc: bool | None = GrpcOpt,
    timeout: float | None = TimeoutOpt,
    collection: str | None = CollectionOpt,
    recreate: bool | None = RecreateOpt,
    on_error: str | None = OnErrorOpt,
    cache_dir: str | None = CacheDirOpt,
    cache: bool | None = NoCacheOpt,
    settings: str | None = typer.Option(
        None, "--settings", help="Comma-separated: mono,cross,multi (default all)."
    ),
    engine: str | None = typer.Option(None, "--engine", help="qdrant (default) or exact (numpy reference)."),
    depth: int | None = typer.Option(
        None, "--depth", help="Qdrant query limit (default 10 with full ranking, else 100)."
    ),
    full_ranking: bool | None = typer.Option(
        None, "--full-ranking/--truncated", help="Exact ranks beyond the depth (default on for LAReQA sets)."
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Report NAME.json; NAME.md, NAME.png (heatmap) and NAME.queries.json.gz are written beside it.",
    ),
    heatmap_scale: str | None = typer.Option(
        None,
        "--heatmap-scale",
        help="Heatmap colours: fixed 0-100 (default, comparable) or auto (data range).",
    ),
    verbose: bool = VerboseOpt,
) -> None:
    """Evaluate an encoder: mono, cross and multilingual retrieval through Qdrant (ingests when needed)."""
    _setup_logging(verbose)
    cfg = _from_params(locals())
    from hybrid_qdrant.pipeline import default_collection, open_collection, run_evaluation
    from hybrid_qdrant.report import check_output, markdown, report_dict, write_report

    options = cfg.eval_options()
    if cfg.output:
        check_output(cfg.output)  # a bad name or an unwritable folder fails now, not after the run
    _store_options(cfg)  # every server setting checked before anything loads or connects
    bench = _load(cfg)
    _check_store(cfg)
    encoder = _encoder(cfg)
    name = cfg.collection or default_collection(bench.name, cfg.model, encoder.fingerprint, cfg.context)
    with (
        open_collection(_store_options(cfg), name) as store,
        _progress(len(bench.passages) or None, "passages") as bar,
        _progress(None, "settings") as slices,
    ):
        run = run_evaluation(
            bench,
            encoder,
            store,
            name,
            options,
            ingest_progress=bar.update,
            slice_progress=lambda _: slices.update(1),
            on_error=cfg.on_error,
        )
    extra = {
        "collection": name,
        "timings": {k: round(v, 3) for k, v in run.timings.items()},
        "model_fingerprint": encoder.fingerprint,
    }
    if cfg.output:
        paths = write_report(run.result, cfg.output, cfg.model, extra, cfg.heatmap_scale)
        typer.echo(markdown(report_dict(run.result, cfg.model, extra)))
        typer.echo("wrote " + ", ".join(str(p) for p in paths.values()))
    else:
        typer.echo(markdown(report_dict(run.result, cfg.model, extra)))
    _echo_loader_skips(bench)


@app.command()
@handle_errors
def compare(
    reports_a: str = typer.Argument(
        ...,
        help="Report JSON of system A (its .queries.json.gz beside it), or several comma-separated, one "
        "per training seed: a1.json,a2.json,a3.json.",
    ),
    reports_b: str = typer.Argument(..., help="Report JSON(s) of system B, likewise."),
    metrics: str = typer.Option(
        "map", "--metrics", help="Comma-separated metrics, e.g. map,recall@1,rank_distance."
    ),
    settings: str = typer.Option("mono,cross,multi", "--settings", help="Comma-separated settings."),
    resamples: int = typer.Option(10000, "--resamples", help="Bootstrap and randomisation resamples."),
    seed: int = typer.Option(0, "--seed"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the comparison as JSON."),
) -> None:
    """Paired significance of A - B per setting, resampling clusters of parallel queries (and seeds).

    A query's cluster is its parallel group (the question in every language); with several runs per
    side the interval also covers the spread over seeds (a two-level bootstrap).
    """
    import json

    from hybrid_qdrant.compare import compare_reports, markdown_table
    from hybrid_qdrant.report import atomic_write_bytes

    paths_a = [Path(p) for p in _csv(reports_a) or []]
    paths_b = [Path(p) for p in _csv(reports_b) or []]
    rows = compare_reports(
        paths_a,
        paths_b,
        tuple(_csv(metrics) or ["map"]),
        tuple(_csv(settings) or []),
        n_resamples=resamples,
        seed=seed,
    )
    typer.echo(markdown_table(rows, _side_name(paths_a), _side_name(paths_b)))
    if output:
        payload = {
            "a": [str(p) for p in paths_a],
            "b": [str(p) for p in paths_b],
            "resamples": resamples,
            "seed": seed,
            "method": "bootstrap over clusters of parallel queries (and runs); cluster sign-flip test",
            "rows": [r.as_dict() for r in rows],
        }
        atomic_write_bytes(output, (json.dumps(payload, indent=1) + "\n").encode())
        typer.echo(f"wrote {output}")


def _side_name(paths: list[Path]) -> str:
    """A short column name for one side of ``hq compare``."""
    return paths[0].stem if len(paths) == 1 else f"{paths[0].stem} (+{len(paths) - 1})"


def _register_train() -> None:
    from hybrid_qdrant.training.command import train_command

    app.command("train")(handle_errors(train_command))


_register_train()


def _register_research() -> None:
    from hybrid_qdrant.research_commands import fit_command, sweep_command

    app.command("fit")(handle_errors(fit_command))
    app.command("sweep")(handle_errors(sweep_command))


_register_research()

collections_app = typer.Typer(
    help="List, delete and alias collections (never implicit).", no_args_is_help=True
)
app.add_typer(collections_app, name="collections")


def _open_location(location: str | None, url: str | None, **server: Any):
    from hybrid_qdrant.pipeline import open_collection

    cfg = _config(None, location=location, url=url, **server)
    return open_collection(_store_options(cfg), "hq-admin")


@collections_app.command("list")
@handle_errors
def collections_list(
    location: str | None = LocationOpt,
    url: str | None = UrlOpt,
    api_key_env: str | None = KeyEnvOpt,
    api_key_file: str | None = KeyFileOpt,
    allow_insecure_key: bool | None = InsecureKeyOpt,
    timeout: float | None = TimeoutOpt,
) -> None:
    """Collections with their point counts, dimension and aliases (embedded: read-only, opens none)."""
    from hybrid_qdrant.store import collections_info

    with _open_location(
        location,
        url,
        api_key_env=api_key_env,
        api_key_file=api_key_file,
        allow_insecure_key=allow_insecure_key,
        timeout=timeout,
    ) as store:
        for info in collections_info(store):
            typer.echo(
                f"{info.name}\t{'?' if info.points is None else info.points} points\tdim {info.dim or '?'}"
                + (f"\taliases: {', '.join(info.aliases)}" if info.aliases else "")
                + (f"\t({info.note})" if info.note else "")
            )


@collections_app.command("delete")
@handle_errors
def collections_delete(
    name: str = typer.Argument(..., help="Collection to drop."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: the collection and its points are dropped."),
    location: str | None = LocationOpt,
    url: str | None = UrlOpt,
    api_key_env: str | None = KeyEnvOpt,
    api_key_file: str | None = KeyFileOpt,
    allow_insecure_key: bool | None = InsecureKeyOpt,
    timeout: float | None = TimeoutOpt,
) -> None:
    """Drop a collection (refused while an alias points to it; needs --yes)."""
    if not yes:
        raise HQError(f"refusing to delete collection {name!r} without --yes")
    with _open_location(
        location,
        url,
        api_key_env=api_key_env,
        api_key_file=api_key_file,
        allow_insecure_key=allow_insecure_key,
        timeout=timeout,
    ) as store:
        if not store.delete_collection(name):
            raise HQError(f"no collection {name!r}")
    typer.echo(f"deleted {name}")


@collections_app.command("alias")
@handle_errors
def collections_alias(
    alias: str = typer.Argument(..., help="Alias name."),
    collection: str = typer.Argument(..., help="Collection it should point to."),
    location: str | None = LocationOpt,
    url: str | None = UrlOpt,
    api_key_env: str | None = KeyEnvOpt,
    api_key_file: str | None = KeyFileOpt,
    allow_insecure_key: bool | None = InsecureKeyOpt,
    timeout: float | None = TimeoutOpt,
) -> None:
    """Point an alias at a collection atomically (e.g. to roll back a re-index)."""
    with _open_location(
        location,
        url,
        api_key_env=api_key_env,
        api_key_file=api_key_file,
        allow_insecure_key=allow_insecure_key,
        timeout=timeout,
    ) as store:
        store.set_alias(alias, collection)
    typer.echo(f"alias {alias} -> {collection}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
