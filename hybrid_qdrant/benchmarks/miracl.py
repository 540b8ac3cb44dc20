"""MIRACL: monolingual passage retrieval in 18 languages over Wikipedia (topics, qrels, streamed corpus).

Sources, in the layout MIRACL publishes:

- topics ``topics.miracl-v1.0-{lang}-{split}.tsv`` (``qid<TAB>text``) and qrels
  ``qrels.miracl-v1.0-{lang}-{split}.tsv`` (TREC ``qid Q0 docid rel``), either flat in ``data_dir``
  or in the hub layout ``data_dir/miracl-v1.0-{lang}/{topics,qrels}/``;
- corpus ``docs-*.jsonl.gz`` (lines ``{"docid", "title", "text"}``) in ``data_dir/corpus/{lang}/``,
  ``data_dir/corpus/miracl-corpus-v1.0-{lang}/`` or ``data_dir/miracl-corpus-v1.0-{lang}/``;
- without a ``data_dir``, the same files from the Hugging Face hub (``miracl/miracl`` and
  ``miracl/miracl-corpus``) through ``datasets``' generic ``text`` / ``json`` builders (the repos'
  loading scripts do not run under datasets >= 4); the corpus is streamed.

Ids are made unique across languages: query ``"{lang}/{qid}"``, doc ``"{lang}/{docid}"``, the same in
qrels and corpus. Qrels keep every judgement, rel 0 included, as ints. Corpora reach 32.9M passages
(en), so they are only ever streamed: ``load_miracl`` returns queries and qrels with an empty
``passages`` list and a ``corpus`` factory (see ``StreamedBenchmark``).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any

from hybrid_qdrant.benchmarks.streaming import StreamedBenchmark
from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Passage, Qrels, Query

logger = logging.getLogger(__name__)

LANGUAGES = (
    "ar",
    "bn",
    "de",
    "en",
    "es",
    "fa",
    "fi",
    "fr",
    "hi",
    "id",
    "ja",
    "ko",
    "ru",
    "sw",
    "te",
    "th",
    "yo",
    "zh",
)
#: The languages the paper (arXiv 2408.10536, appendix tables 12-13) evaluates and averages over on
#: MIRACL dev: the 16 known languages less English (it lists en's queries in its dataset table but
#: reports no en results), without the surprise languages de and yo. The default of ``load_miracl``,
#: so a report's macro average is the paper's "Mean"; any of ``LANGUAGES`` can be asked for.
PAPER_LANGUAGES = ("ar", "bn", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "zh")
DEFAULT_SPLIT = "dev"
TOPICS_FILE = "topics.miracl-v1.0-{lang}-{split}.tsv"
QRELS_FILE = "qrels.miracl-v1.0-{lang}-{split}.tsv"
HUB_TOPICS = "hf://datasets/miracl/miracl/miracl-v1.0-{lang}/topics/" + TOPICS_FILE
HUB_QRELS = "hf://datasets/miracl/miracl/miracl-v1.0-{lang}/qrels/" + QRELS_FILE
HUB_CORPUS = "hf://datasets/miracl/miracl-corpus/miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz"

_DOCS_FILE = re.compile(r"^docs-(\d+)\.jsonl(\.gz)?$")


def query_id(lang: str, qid: str) -> str:
    """Benchmark-wide query id of a MIRACL topic."""
    return f"{lang}/{qid}"


def doc_id(lang: str, docid: str) -> str:
    """Benchmark-wide doc id of a MIRACL passage (``"39#0"`` in sw -> ``"sw/39#0"``)."""
    return f"{lang}/{docid}"


def doc_language(languages: tuple[str, ...], doc: str) -> str | None:
    """The language of a doc id made by ``doc_id`` (None when its prefix is not one of ``languages``)."""
    prefix = doc.split("/", 1)[0]
    return prefix if prefix in languages else None


def select_languages(languages: Iterable[str] | str | None) -> tuple[str, ...]:
    """The requested languages in canonical order (the paper's 15 when None; a str may be "de,sw")."""
    if languages is None:
        return PAPER_LANGUAGES
    if isinstance(languages, str):
        languages = languages.split(",")
    wanted = {lang.strip().lower() for lang in languages if lang.strip()}
    unknown = sorted(wanted - set(LANGUAGES))
    if unknown or not wanted:
        raise DataError(
            f"miracl: unknown language(s) {', '.join(unknown) or '(none given)'}; "
            f"valid: {' '.join(LANGUAGES)}"
        )
    return tuple(lang for lang in LANGUAGES if lang in wanted)


# -- conversion: lines and records (from files or `datasets` rows) to the data contracts --------------


def parse_topics(lines: Iterable[str], lang: str, source: str) -> list[Query]:
    """Queries from ``qid<TAB>text`` lines (blank lines ignored)."""
    queries: list[Query] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        qid, sep, text = line.partition("\t")
        if not sep or not qid.strip() or not text.strip():
            raise DataError(f"{source} line {lineno}: expected 'qid<TAB>text', got {line!r}")
        qid = qid.strip()
        if qid in seen:
            raise DataError(f"{source} line {lineno}: duplicate topic id {qid!r}")
        seen.add(qid)
        queries.append(Query(query_id=query_id(lang, qid), text=text.strip(), lang=lang))
    return queries


def parse_qrels(lines: Iterable[str], lang: str, source: str) -> Qrels:
    """Qrels from TREC ``qid Q0 docid rel`` lines; every judgement kept, rel as int."""
    qrels: Qrels = {}
    for lineno, raw in enumerate(lines, start=1):
        cols = raw.split()
        if not cols:
            continue
        if len(cols) != 4:
            raise DataError(f"{source} line {lineno}: expected 'qid Q0 docid rel', got {raw.strip()!r}")
        qid, _, docid, rel = cols
        try:
            value = int(rel)
        except ValueError:
            raise DataError(f"{source} line {lineno}: relevance must be an integer, got {rel!r}") from None
        judged = qrels.setdefault(query_id(lang, qid), {})
        key = doc_id(lang, docid)
        if judged.get(key, value) != value:
            raise DataError(f"{source} line {lineno}: ({qid}, {docid}) judged twice with different values")
        judged[key] = value
    return qrels


def passages_from_records(records: Iterable[Mapping[str, Any]], lang: str, source: str) -> Iterator[Passage]:
    """Passages from ``{"docid", "title", "text"}`` records (corpus lines or `datasets` rows), lazily."""
    for n, record in enumerate(records, start=1):
        docid = record.get("docid") if isinstance(record, Mapping) else None
        text = record.get("text") if isinstance(record, Mapping) else None
        title = record.get("title") if isinstance(record, Mapping) else None
        if not isinstance(docid, str) or not docid or not isinstance(text, str):
            raise DataError(
                f"{source} record {n}: missing or invalid 'docid' / 'text' in {str(record)[:200]}"
            )
        if title is not None and not isinstance(title, str):
            raise DataError(f"{source} record {n}: 'title' must be a string in {str(record)[:200]}")
        yield Passage(doc_id=doc_id(lang, docid), text=text, lang=lang, title=title or None)


# -- local files ----------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _find_file(root: Path, lang: str, subdir: str, name: str) -> Path:
    """``root/name`` or the hub layout ``root/miracl-v1.0-{lang}/{subdir}/name``."""
    candidates = (root / name, root / f"miracl-v1.0-{lang}" / subdir / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"miracl: file not found: {candidates[0]} (nor {candidates[1]})")


def corpus_files(lang: str, data_dir: str | Path) -> list[Path]:
    """The ``docs-N.jsonl[.gz]`` files of one language, in numeric order of N."""
    root = Path(data_dir).expanduser()
    dirs = (
        root / "corpus" / lang,
        root / "corpus" / f"miracl-corpus-v1.0-{lang}",
        root / f"miracl-corpus-v1.0-{lang}",
    )
    for folder in dirs:
        if folder.is_dir():
            matches = [(m, p) for p in folder.iterdir() if (m := _DOCS_FILE.match(p.name))]
            if matches:
                return [p for _, p in sorted(matches, key=lambda mp: (int(mp[0].group(1)), mp[1].name))]
    raise DataError(f"miracl: no docs-*.jsonl.gz corpus for {lang} in {' or '.join(str(d) for d in dirs)}")


def _read_corpus_file(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path} line {lineno}: malformed JSON: {exc.msg}") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {exc}") from exc


def _local_corpus(files: list[Path], lang: str) -> Iterator[Passage]:
    for path in files:
        yield from passages_from_records(_read_corpus_file(path), lang, str(path))


# -- the Hugging Face hub (thin: everything past load_dataset is the conversion above) -----------------


def _hub_dataset(builder: str, data_files: str, *, streaming: bool) -> Any:
    """``datasets.load_dataset(builder, data_files=...)``'s train split, errors as DataError."""
    try:
        import datasets

        return datasets.load_dataset(builder, data_files=data_files, split="train", streaming=streaming)
    except Exception as exc:  # network, auth, missing file: one clear line
        first = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise DataError(
            f"cannot load {data_files} from the Hugging Face hub: {first} (offline? pass --data-dir)"
        ) from exc


def _hub_lines(url: str) -> list[str]:
    return [row["text"] for row in _hub_dataset("text", url, streaming=False)]


# -- public API -----------------------------------------------------------------------------------------


def iter_miracl_corpus(lang: str, data_dir: str | Path | None = None) -> Iterator[Passage]:
    """Stream one language's corpus as passages, never holding it in memory.

    Files are located (or the hub dataset opened) when called, so a missing corpus raises DataError
    here; passages are read as the iterator is consumed.
    """
    (lang,) = select_languages([lang])
    if data_dir is None:
        url = HUB_CORPUS.format(lang=lang)
        return passages_from_records(_hub_dataset("json", url, streaming=True), lang, url)
    return _local_corpus(corpus_files(lang, data_dir), lang)


def _corpus(languages: tuple[str, ...], data_dir: str | Path | None) -> Iterator[Passage]:
    return chain.from_iterable([iter_miracl_corpus(lang, data_dir) for lang in languages])


def load_miracl(
    data_dir: str | Path | None = None,
    languages: Iterable[str] | str | None = None,
    split: str = DEFAULT_SPLIT,
) -> StreamedBenchmark:
    """Topics and qrels of MIRACL; the corpus streams from ``benchmark.corpus()``.

    ``languages`` None loads ``PAPER_LANGUAGES`` (the 15 the paper averages over); name others (``de``,
    ``en``, ``yo``) explicitly.

    Returns a ``StreamedBenchmark`` with ``passages == []``, every topic in ``queries`` (unjudged ones
    too), all judgements in ``qrels``, ``parallel=False`` (MIRACL is monolingual), and ``corpus``
    streaming every loaded language's passages in language order.

    Raises:
        DataError: an unknown language, a missing or malformed file, judgements of unknown topics.
    """
    langs = select_languages(languages)
    queries: list[Query] = []
    qrels: Qrels = {}
    for lang in langs:
        topics_name = TOPICS_FILE.format(lang=lang, split=split)
        qrels_name = QRELS_FILE.format(lang=lang, split=split)
        if data_dir is None:
            topics_source, qrels_source = (
                HUB_TOPICS.format(lang=lang, split=split),
                HUB_QRELS.format(lang=lang, split=split),
            )
            topic_lines, qrel_lines = _hub_lines(topics_source), _hub_lines(qrels_source)
        else:
            root = Path(data_dir).expanduser()
            topics_path, qrels_path = (
                _find_file(root, lang, "topics", topics_name),
                _find_file(root, lang, "qrels", qrels_name),
            )
            topics_source, qrels_source = str(topics_path), str(qrels_path)
            topic_lines, qrel_lines = _read_lines(topics_path), _read_lines(qrels_path)
        lang_queries = parse_topics(topic_lines, lang, topics_source)
        lang_qrels = parse_qrels(qrel_lines, lang, qrels_source)
        known = {q.query_id for q in lang_queries}
        unknown = sorted(set(lang_qrels) - known)
        if unknown:
            raise DataError(
                f"{qrels_source}: judgements for {len(unknown)} unknown topics "
                f"(e.g. {', '.join(unknown[:3])})"
            )
        unjudged = len(known) - len(lang_qrels)
        if unjudged:
            logger.info("miracl %s %s: %d topics have no judgements", lang, split, unjudged)
        queries.extend(lang_queries)
        qrels.update(lang_qrels)
    return StreamedBenchmark(
        name="miracl",
        languages=langs,
        passages=[],
        queries=queries,
        qrels=qrels,
        parallel=False,
        corpus=partial(_corpus, langs, data_dir),
        doc_language=partial(doc_language, langs),
    )


__all__ = [
    "DEFAULT_SPLIT",
    "HUB_CORPUS",
    "HUB_QRELS",
    "HUB_TOPICS",
    "LANGUAGES",
    "PAPER_LANGUAGES",
    "QRELS_FILE",
    "TOPICS_FILE",
    "corpus_files",
    "doc_id",
    "iter_miracl_corpus",
    "load_miracl",
    "parse_qrels",
    "parse_topics",
    "passages_from_records",
    "query_id",
    "select_languages",
]
