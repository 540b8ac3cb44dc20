"""TREC run and qrels files of an evaluation, one pair per slice, for ranx / trec_eval / pyserini users.

``hq evaluate --run-dir DIR`` writes, for every slice of every setting::

    DIR/{setting}/{q}-{p}.run      qid Q0 doc_id rank score tag   (top ``depth`` hits, at least 100)
    DIR/{setting}/{q}-{p}.qrels    qid 0 doc_id grade             (the slice's relevant passages)

with the report's query and doc ids and slice keys (``mono/de-de``, ``cross/de-en``, ``multi/de-all``),
so the report's metrics can be recomputed and runs fused. Lines are in hq's ranking order (score
descending, ties by doc id); tools re-sort by score and may break exact ties their own way (trec_eval
by doc id descending). Each file is written atomically. A slice's run holds the queries that have a
relevant passage in it, as the report does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Qrels, Run

logger = logging.getLogger(__name__)

#: The shallowest run written: R@100 must be computable from it.
RUN_MIN_DEPTH = 100
RUN_SUFFIX = ".run"
QRELS_SUFFIX = ".qrels"


def check_trec_ids(ids: Iterable[str], what: str) -> None:
    """DataError for an id that a whitespace-separated TREC file cannot hold."""
    for value in ids:
        if not value or any(c.isspace() for c in value):
            raise DataError(f"{what} {value!r} contains whitespace: it cannot be written to a TREC file")


def format_run(run: Run, tag: str = "hq") -> str:
    """TREC run lines, queries in the run's order, hits by score descending then doc id."""
    check_trec_ids([tag], "run tag")
    lines = []
    for qid, hits in run.items():
        ordered = sorted(hits.items(), key=lambda item: (-item[1], item[0]))
        lines.extend(f"{qid} Q0 {doc} {rank} {score!r} {tag}" for rank, (doc, score) in enumerate(ordered, 1))
    return "\n".join(lines) + ("\n" if lines else "")


def format_qrels(qrels: Qrels) -> str:
    """TREC qrels lines (``qid 0 doc_id grade``)."""
    lines = [f"{qid} 0 {doc} {grade}" for qid, judged in qrels.items() for doc, grade in judged.items()]
    return "\n".join(lines) + ("\n" if lines else "")


def read_run(path: str | Path) -> Run:
    """A TREC run file as ``{qid: {doc_id: score}}``."""
    run: Run = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, _, score, *_ = line.split()
            run.setdefault(qid, {})[doc] = float(score)
    return run


def read_qrels(path: str | Path) -> Qrels:
    """A TREC qrels file as ``{qid: {doc_id: grade}}``."""
    qrels: Qrels = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, doc, grade = line.split()[:4]
            qrels.setdefault(qid, {})[doc] = int(grade)
    return qrels


class RunWriter:
    """Receives each evaluated slice's top hits and relevant passages and writes its two files.

    Args:
        directory: the run folder (created now, so a bad path fails before the evaluation).
        depth: hits per query written; the evaluation asks Qdrant for max(its depth, this) hits.
        tag: the run tag (last column).
    """

    def __init__(self, directory: str | Path, depth: int = RUN_MIN_DEPTH, tag: str = "hq") -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be a positive integer, got {depth!r}")
        check_trec_ids([tag], "run tag")
        self.directory = Path(directory)
        self.depth = depth
        self.tag = tag
        self.written: list[Path] = []
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from hybrid_qdrant.atomic_write import disk_error

            raise disk_error(self.directory, exc) from exc

    def paths(self, setting: str, key: str) -> tuple[Path, Path]:
        """The run and qrels files of a slice (``mono``, ``de-de``)."""
        folder = self.directory / setting
        return folder / f"{key}{RUN_SUFFIX}", folder / f"{key}{QRELS_SUFFIX}"

    def write(self, setting: str, key: str, run: Run, qrels: Qrels) -> None:
        """Write one slice's files (atomically)."""
        check_trec_ids(qrels, "query id")
        check_trec_ids(
            {d for hits in run.values() for d in hits} | {d for j in qrels.values() for d in j}, "doc id"
        )
        run_path, qrels_path = self.paths(setting, key)
        atomic_write_bytes(qrels_path, format_qrels(qrels).encode("utf-8"))
        atomic_write_bytes(run_path, format_run(run, self.tag).encode("utf-8"))
        self.written += [run_path, qrels_path]
        logger.debug("wrote %s and %s", run_path, qrels_path)
