"""``hq audit``: what a collection's index configuration costs against exact search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hybrid_qdrant.cli.hq import app, command, setup_logging
from hybrid_qdrant.cli.jobs import progress_bars
from hybrid_qdrant.cli.options import AUDIT, BENCHMARK, COLLECTION_NAME, ENCODER, STORE, with_flags


@command(app, "audit")
@with_flags(BENCHMARK, ENCODER, STORE, COLLECTION_NAME, AUDIT)
def audit(config: Path | None, overrides: dict[str, Any], verbose: bool) -> None:
    """Audit a collection's index: quality lost against exact search, latency and memory, per setting
    and language pair, for the collection as it is and for each variant of a grid.

    Variants that change the index (HNSW m / ef_construct, scalar / binary / product quantization) are
    scratch copies built from the vectors stored in the collection, removed afterwards; the collection
    itself is only read. The config is an evaluation job's TOML ([benchmark], [encoder], [cache],
    [store], [collection] name) plus [audit] and [[grid]] tables, each grid key a value or a list
    (every combination is a variant), e.g.

    \b
        [[grid]]
        hnsw_m = [16, 32]
        hnsw_ef = [64, 128, 256]
        [[grid]]
        quantization = ["scalar", "binary"]
        rescore = [false, true]

    Keys: quantization (none, scalar, binary, product), product_compression, hnsw_m,
    hnsw_ef_construct, full_scan_threshold (build: a scratch copy); hnsw_ef, rescore, oversampling
    (search). See eval/audit-xquad-r.toml and the README.
    """
    setup_logging(verbose)
    from hybrid_qdrant.evaluation.audit import audit_job, load_audit
    from hybrid_qdrant.evaluation.audit_report import audit_dict, markdown

    cfg = load_audit(config, overrides)
    with progress_bars() as progress:
        result = audit_job(cfg, progress)
    typer.echo(markdown(audit_dict(result)))
    if result.report:
        typer.echo("wrote " + ", ".join(str(p) for p in result.report.values()))
