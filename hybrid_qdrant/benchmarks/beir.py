"""BEIR-format folders with a ``lang`` field: the loader and a writer that exports any benchmark.

Layout (BEIR's, plus ``lang`` and an optional ``group_id``)::

    corpus.jsonl        {"_id", "text", "lang", "title"?, "group_id"?}  one JSON object a line
    queries.jsonl       {"_id", "text", "lang", "group_id"?}
    qrels/{split}.tsv   header "query-id<TAB>corpus-id<TAB>score", then one judgement a line (int score)

As in BEIR, ``queries.jsonl`` may hold the queries of every split: only those judged in the split's
qrels are loaded (the others are counted in ``skipped["query_not_in_qrels"]``). ``Benchmark.parallel``
is True only when every query has a ``group_id``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_directory
from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Benchmark, Passage, Qrels, Query, is_valid_unicode

logger = logging.getLogger(__name__)

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
QRELS_HEADER = ("query-id", "corpus-id", "score")
DEFAULT_SPLIT = "test"
#: ISO 639-1/-3 codes, optionally with a region or script (``de``, ``yue``, ``zh-Hant``, ``pt-BR``).
LANG_CODE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")


def _open_text(path: Path):
    """``path`` opened as UTF-8 text; DataError naming it when it is missing, a folder or unreadable."""
    try:
        return path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_jsonl(path: Path, errors: _Errors | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; DataError with the line on bad JSON.

    With ``errors`` (skip mode), a malformed line is recorded there and skipped instead.
    """
    fh = _open_text(path)
    with fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(
                            f"{path.name} line {lineno}: malformed JSON: {exc.msg} ({path})"
                        ) from None
                    if not isinstance(record, dict):
                        raise DataError(f"{path.name} line {lineno}: expected a JSON object ({path})")
                except DataError as exc:
                    if errors is None:
                        raise
                    errors.add("malformed_line", exc)
                    continue
                yield lineno, record
        except UnicodeDecodeError as exc:
            raise DataError(f"{path.name} line {lineno + 1}: not UTF-8: {exc} ({path})") from None


class _Errors:
    """Bad records skipped in ``on_error="skip"`` mode: counts by reason and the first messages."""

    def __init__(self, skipped: Counter[str]) -> None:
        self.skipped = skipped
        self.examples: list[str] = []

    def add(self, reason: str, exc: DataError) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(str(exc))


def _text_field(record: dict[str, Any], key: str, where: str) -> str | None:
    """A string field, None when absent or empty; ints accepted for ids."""
    value = record.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and key in ("_id", "group_id"):
        value = str(value)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if not is_valid_unicode(value):
        raise DataError(
            f"{where}: {key!r} is not valid Unicode (an unpaired surrogate, e.g. a \\ud800 escape)"
        )
    return value


def _required_field(record: dict[str, Any], key: str, where: str) -> str:
    """A string field that must be present and not blank."""
    value = _text_field(record, key, where)
    if value is None or not value.strip():
        raise DataError(f"{where}: missing or empty {key!r}")
    return value


def _read_records(
    path: Path, kind: str, skipped: Counter[str], errors: _Errors | None = None
) -> Iterator[tuple[str, dict[str, str | None]]]:
    """Validated records of corpus.jsonl or queries.jsonl, duplicates of identical records dropped.

    With ``errors`` (skip mode) a bad record (missing field, empty text, a language code that is not
    one, an id repeated with other content) is recorded and skipped; otherwise it raises DataError.
    """
    seen: dict[str, tuple[int, dict[str, str | None]]] = {}
    keys = ("text", "lang", "title", "group_id") if kind == "passage" else ("text", "lang", "group_id")
    for lineno, record in _read_jsonl(path, errors):
        where = f"{path.name} line {lineno}"
        try:
            rid = _required_field(record, "_id", where)
            fields = {
                key: _required_field(record, key, where)
                if key in ("text", "lang")
                else _text_field(record, key, where)
                for key in keys
            }
            if not LANG_CODE.match(fields["lang"] or ""):
                raise DataError(f"{where}: {fields['lang']!r} is not a language code (ISO 639, e.g. 'de')")
            if rid in seen:
                first_line, first = seen[rid]
                if first != fields:
                    raise DataError(
                        f"{where}: duplicate {kind} id {rid!r} with different content (line {first_line})"
                    )
                skipped[f"duplicate_{kind}"] += 1
                continue
        except DataError as exc:
            if errors is None:
                raise
            errors.add(f"bad_{kind}", exc)
            continue
        seen[rid] = (lineno, fields)
        yield rid, fields


def _read_qrels(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """(line number, query id, doc id, score) of a qrels TSV, header checked."""
    fh = _open_text(path)
    with fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if lineno == 1 and tuple(c.strip() for c in cols) == QRELS_HEADER:
                continue
            where = f"{path.name} line {lineno}"
            if lineno == 1:
                raise DataError(f"{where}: expected the header {'<TAB>'.join(QRELS_HEADER)!r}, got {line!r}")
            if len(cols) != 3 or not cols[0] or not cols[1]:
                raise DataError(f"{where}: expected 3 tab-separated columns, got {line!r}")
            try:
                score = int(cols[2])
            except ValueError:
                raise DataError(f"{where}: score must be an integer, got {cols[2]!r}") from None
            yield lineno, cols[0], cols[1], score


def _languages_subset(present: set[str], languages: Iterable[str] | str | None, folder: Path) -> set[str]:
    if languages is None:
        return present
    if isinstance(languages, str):
        languages = languages.split(",")
    wanted = {lang.strip() for lang in languages if lang.strip()}
    unknown = sorted(wanted - present)
    if unknown or not wanted:
        raise DataError(
            f"{folder}: unknown language(s) {', '.join(unknown) or '(none given)'}; "
            f"present: {' '.join(sorted(present))}"
        )
    return wanted


def load_beir(
    folder: str | Path,
    split: str = DEFAULT_SPLIT,
    languages: Iterable[str] | str | None = None,
    *,
    strict: bool = True,
    name: str | None = None,
    on_error: str = "stop",
) -> Benchmark:
    """Load a BEIR-format folder with a ``lang`` field.

    Args:
        folder: holds corpus.jsonl, queries.jsonl and qrels/{split}.tsv.
        split: which qrels file.
        languages: keep only these languages (passages, queries and judgements); None keeps all.
        strict: judgements naming an unknown query or document raise DataError; with False they are
            dropped and counted in ``skipped`` (``qrels_unknown_query`` / ``qrels_unknown_doc``).
        name: benchmark name; default the folder's name.
        on_error: ``"stop"`` raises DataError at the first bad record (file and line); ``"skip"`` skips
            bad corpus/query records and judgements on unknown ids, counts them in ``skipped`` by
            reason and keeps the first messages in ``skipped_examples``.

    Raises:
        DataError: malformed JSONL (file and line), a missing ``lang``, empty text, an id repeated
            with different content, a bad qrels line, or (strict) judgements on unknown ids.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"BEIR folder not found: {root}")
    if on_error not in ("stop", "skip"):
        raise DataError(f"on_error must be 'stop' or 'skip', got {on_error!r}")
    skipped: Counter[str] = Counter()
    errors = _Errors(skipped) if on_error == "skip" else None
    strict = strict and errors is None
    passages = [
        Passage(doc_id=rid, text=f["text"], lang=f["lang"], group_id=f["group_id"], title=f["title"])
        for rid, f in _read_records(root / CORPUS_FILE, "passage", skipped, errors)
    ]
    all_queries = [
        Query(query_id=rid, text=f["text"], lang=f["lang"], group_id=f["group_id"])
        for rid, f in _read_records(root / QUERIES_FILE, "query", skipped, errors)
    ]
    doc_ids = {p.doc_id for p in passages}
    query_ids = {q.query_id for q in all_queries}

    qrels_path = root / QRELS_DIR / f"{split}.tsv"
    qrels: Qrels = {}
    unknown_queries: Counter[str] = Counter()
    unknown_docs: Counter[str] = Counter()
    for lineno, qid, doc_id, score in _read_qrels(qrels_path):
        if qid not in query_ids:
            unknown_queries[qid] += 1
            continue
        if doc_id not in doc_ids:
            unknown_docs[doc_id] += 1
            continue
        judged = qrels.setdefault(qid, {})
        if judged.get(doc_id, score) != score:
            raise DataError(
                f"{qrels_path.name} line {lineno}: ({qid}, {doc_id}) judged twice with different scores"
            )
        judged[doc_id] = score
    if unknown_queries or unknown_docs:
        message = (
            f"{qrels_path}: {sum(unknown_queries.values())} judgements name {len(unknown_queries)} unknown "
            f"queries (e.g. {', '.join(list(unknown_queries)[:3]) or '-'}) and "
            f"{sum(unknown_docs.values())} name {len(unknown_docs)} unknown documents "
            f"(e.g. {', '.join(list(unknown_docs)[:3]) or '-'})"
        )
        if strict:
            raise DataError(message + "; pass strict=False to drop them")
        logger.warning("%s; dropped", message)
        if unknown_queries:
            skipped["qrels_unknown_query"] += sum(unknown_queries.values())
        if unknown_docs:
            skipped["qrels_unknown_doc"] += sum(unknown_docs.values())

    queries = [q for q in all_queries if q.query_id in qrels]
    if len(queries) < len(all_queries):
        skipped["query_not_in_qrels"] += len(all_queries) - len(queries)

    present = {p.lang for p in passages} | {q.lang for q in queries}
    keep = _languages_subset(present, languages, root)
    if keep != present:
        passages = [p for p in passages if p.lang in keep]
        queries = [q for q in queries if q.lang in keep]
        kept_docs = {p.doc_id for p in passages}
        qrels = {q.query_id: {d: s for d, s in qrels[q.query_id].items() if d in kept_docs} for q in queries}
        judged_elsewhere = [qid for qid, judged in qrels.items() if not judged]
        if judged_elsewhere:
            skipped["query_judged_only_in_other_languages"] += len(judged_elsewhere)
            queries = [q for q in queries if qrels[q.query_id]]
            qrels = {qid: judged for qid, judged in qrels.items() if judged}
    return Benchmark(
        name=name or root.resolve().name,
        languages=tuple(sorted(keep)),
        passages=passages,
        queries=queries,
        qrels=qrels,
        parallel=bool(queries) and all(q.group_id is not None for q in queries),
        skipped=dict(skipped),
        skipped_examples=errors.examples if errors else [],
    )


def _check_id(value: str, kind: str) -> str:
    if not value or any(c in value for c in "\t\r\n"):
        raise DataError(f"cannot write {kind} id {value!r} to a TSV file (empty, or a tab or newline in it)")
    return value


def _jsonl_line(record: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in record.items() if v is not None}, ensure_ascii=False) + "\n"


def write_beir(
    benchmark: Benchmark, folder: str | Path, split: str = DEFAULT_SPLIT, *, overwrite: bool = False
) -> Path:
    """Export a benchmark as a BEIR folder, atomically (written in a temp folder, then renamed).

    Streamed passages (``benchmark.iter_passages()``) are written as they come, never held in memory.
    ``skipped`` is not exported. Returns the folder.

    Raises:
        DataError: the folder exists and ``overwrite`` is False, or an id cannot go into a TSV.
    """
    dest = Path(folder).expanduser()
    if dest.exists() and not overwrite:
        raise DataError(f"{dest} exists (pass overwrite=True to replace it)")
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest} exists and is not a folder")
    with atomic_directory(dest) as tmp:  # umask-honouring mode; a failed write names dest
        with (tmp / CORPUS_FILE).open("w", encoding="utf-8") as fh:
            for p in benchmark.iter_passages():
                fh.write(
                    _jsonl_line(
                        {
                            "_id": _check_id(p.doc_id, "doc"),
                            "title": p.title,
                            "text": p.text,
                            "lang": p.lang,
                            "group_id": p.group_id,
                        }
                    )
                )
        with (tmp / QUERIES_FILE).open("w", encoding="utf-8") as fh:
            for q in benchmark.queries:
                fh.write(
                    _jsonl_line(
                        {
                            "_id": _check_id(q.query_id, "query"),
                            "text": q.text,
                            "lang": q.lang,
                            "group_id": q.group_id,
                        }
                    )
                )
        (tmp / QRELS_DIR).mkdir()
        with (tmp / QRELS_DIR / f"{split}.tsv").open("w", encoding="utf-8") as fh:
            fh.write("\t".join(QRELS_HEADER) + "\n")
            for qid, judged in benchmark.qrels.items():
                for doc_id, score in judged.items():
                    fh.write(f"{_check_id(qid, 'query')}\t{_check_id(doc_id, 'doc')}\t{int(score)}\n")
    logger.info("wrote %s (%d queries)", dest, len(benchmark.queries))
    return dest


__all__ = [
    "CORPUS_FILE",
    "DEFAULT_SPLIT",
    "QRELS_DIR",
    "QRELS_HEADER",
    "QUERIES_FILE",
    "load_beir",
    "write_beir",
]
