"""LAReQA answer-sentence retrieval sets: XQuAD-R (11 languages) and MLQA-R (7 languages).

The files are SQuAD v1.1 JSON whose paragraphs also carry ``sentence_breaks`` (``[start, end)``
character spans into ``context``). The retrieval set is built exactly as LAReQA's released evaluation
code builds it (google-research/xtreme ``third_party/utils_lareqa.py``: ``generate_examples`` and
``load_data``):

- a question's answer sentence: the FIRST sentence whose span holds ``answer_start`` of its answer.
  A question whose ``answer_start`` lies in no span is skipped and counted (``SKIP_OUTSIDE``). A
  question whose answer text runs past the end of that sentence (a sentence-splitter error such as
  "E.I. du Pont") is kept, with that sentence as gold: LAReQA keeps them.
- candidates: every sentence of every paragraph that has at least one such question, in every loaded
  language, doc id ``"{lang}/{article}/{paragraph}/{sentence}"`` (0-based positions in the file). The
  text is the slice ``context[start:end]``, as LAReQA builds it; the files' ``sentences`` field is not
  read (it differs from the slice in two XQuAD-R tr sentences). Sentences with the same text stay
  separate candidates, as in LAReQA.
- gold: LAReQA marks a candidate relevant when its text equals the answer sentence's text, so every
  sentence of the paragraph with that text is gold (none such in the released files).
- ``Passage.group_id`` = ``"{article}/{paragraph}"`` where paragraphs are parallel by position
  (XQuAD-R, checked on load); None for MLQA-R, whose paragraphs are not aligned across languages.
- queries: one per question and language, id ``"{lang}/{question id}"``, ``group_id`` = question id
  (LAReQA's ``xling_id``).
- qrels: a query's relevant set is the gold sentences of its question id in every loaded language
  (11 items per XQuAD-R query in the multilingual setting), relevance 1.

Counts on the released files (LAReQA's rule): XQuAD-R 13,090 questions / 13,014 candidates, MLQA-R
4,199 / 20,534, no question skipped. ``answer_rule="strict"`` (an opt-in, not LAReQA's protocol) also
drops the questions whose answer crosses its sentence end (XQuAD-R 112, MLQA-R 25), counted as
``SKIP_CROSSES``; the candidates stay those of LAReQA's rule.

Licences: XQuAD-R is CC BY-SA 4.0; MLQA-R is CC BY-NC 4.0, so it is never bundled, only loaded from a
user's directory or downloaded into the user's cache.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_qdrant.atomic_write import atomic_write_bytes
from hybrid_qdrant.errors import ConfigError, DataError
from hybrid_qdrant.types import Benchmark, Passage, Qrels, Query, is_valid_unicode

logger = logging.getLogger(__name__)

#: How ``context=True`` builds a candidate text: the answer sentence first (so truncation keeps it),
#: then its whole paragraph. LAReQA encodes the sentence with its paragraph as context; a one-input
#: encoder gets both in one string.
CONTEXT_TEMPLATE = "{sentence}\n{context}"

#: ``Benchmark.skipped`` reasons.
SKIP_OUTSIDE = "answer_start_outside_sentences"
SKIP_CROSSES = "answer_crosses_sentence_end"

#: Which questions are kept: ``lareqa`` (the released evaluation code's rule, the default) or
#: ``strict`` (also drop answers that run past the end of their sentence).
ANSWER_RULES = ("lareqa", "strict")

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class LareqaSpec:
    """One LAReQA set: its languages, public download URL pattern and paragraph alignment."""

    name: str
    languages: tuple[str, ...]
    url: str
    parallel_paragraphs: bool
    licence: str


XQUAD_R = LareqaSpec(
    name="xquad-r",
    languages=("ar", "de", "el", "en", "es", "hi", "ru", "th", "tr", "vi", "zh"),
    url="https://github.com/google-research-datasets/lareqa/raw/master/xquad-r/{lang}.json",
    parallel_paragraphs=True,
    licence="CC BY-SA 4.0",
)
# MLQA-R was removed from the repository's master branch: commit 354d67d still has it.
MLQA_R = LareqaSpec(
    name="mlqa-r",
    languages=("ar", "de", "en", "es", "hi", "vi", "zh"),
    url="https://github.com/google-research-datasets/lareqa/raw/354d67d/mlqa-r/{lang}.json",
    parallel_paragraphs=False,
    licence="CC BY-NC 4.0",
)
SPECS: dict[str, LareqaSpec] = {spec.name: spec for spec in (XQUAD_R, MLQA_R)}


def default_cache_dir() -> Path:
    """The download cache root: ``$HQ_CACHE_DIR`` or ``~/.cache/hybrid-qdrant``."""
    root = os.environ.get("HQ_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "hybrid-qdrant"


def get_spec(name: str) -> LareqaSpec:
    """The spec of ``xquad-r`` or ``mlqa-r``; DataError naming the valid ones otherwise."""
    spec = SPECS.get(name.lower())
    if spec is None:
        raise DataError(f"unknown LAReQA set {name!r}; valid: {', '.join(SPECS)}")
    return spec


def select_languages(spec: LareqaSpec, languages: Iterable[str] | str | None) -> tuple[str, ...]:
    """The requested languages in the set's canonical order (all when None; a str may be "en,de")."""
    if languages is None:
        return spec.languages
    if isinstance(languages, str):
        languages = languages.split(",")
    wanted = {lang.strip().lower() for lang in languages if lang.strip()}
    unknown = sorted(wanted - set(spec.languages))
    if unknown:
        raise DataError(
            f"{spec.name}: unknown language(s) {', '.join(unknown)}; valid: {' '.join(spec.languages)}"
        )
    if not wanted:
        raise DataError(f"{spec.name}: no languages selected; valid: {' '.join(spec.languages)}")
    return tuple(lang for lang in spec.languages if lang in wanted)


def check_answer_rule(rule: str) -> str:
    """``rule`` lower-cased when it is one of ``ANSWER_RULES``; ConfigError naming them otherwise."""
    key = str(rule).strip().lower()
    if key not in ANSWER_RULES:
        raise ConfigError(f"unknown answer rule {rule!r}; valid: {', '.join(ANSWER_RULES)}")
    return key


def download(url: str, dest: Path, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Download a JSON file to ``dest`` atomically: checked, written to a temp file, then renamed.

    Raises:
        DataError: the URL cannot be fetched, or what came back is not JSON. Nothing is written then.
    """
    logger.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, bad URLs
        raise DataError(
            f"cannot download {url}: {exc} (offline? pass --data-dir, or [[data.sources]] path when "
            f"training, or put the file at {dest})"
        ) from exc
    try:
        json.loads(data)
    except ValueError as exc:
        raise DataError(f"cannot download {url}: the response is not JSON ({exc})") from exc
    try:
        atomic_write_bytes(dest, data, fsync=True)
    except OSError as exc:
        raise DataError(f"cannot write {dest}: {exc}") from exc
    return dest


def lareqa_file(
    name: str,
    lang: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Path of one language file: from ``data_dir``, or the cache (downloading it once).

    ``data_dir`` may be the set's own folder (``.../xquad-r``) or its parent (``.../lareqa``).
    """
    spec = get_spec(name)
    select_languages(spec, [lang])
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        others = set(SPECS) - {spec.name}
        if root.name in others:
            raise DataError(f"{spec.name}: data dir {root} is the folder of {root.name}")
        for candidate in (root / spec.name / f"{lang}.json", root / f"{lang}.json"):
            if candidate.is_file():
                return candidate
        raise DataError(f"{spec.name}: file not found: {root / f'{lang}.json'} (nor {root / spec.name})")
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = root / "lareqa" / spec.name / f"{lang}.json"
    if not dest.is_file():
        download(spec.url.format(lang=lang), dest, timeout)
    return dest


@dataclass(frozen=True)
class _Sentence:
    article: int
    paragraph: int
    index: int
    text: str
    context: str


@dataclass(frozen=True)
class _Question:
    qid: str
    text: str
    article: int
    paragraph: int
    gold: tuple[int, ...]  # sentence positions in the paragraph whose text is the answer sentence


@dataclass
class _LanguageFile:
    """One parsed language file."""

    lang: str
    sentences: list[_Sentence] = field(default_factory=list)
    questions: list[_Question] = field(default_factory=list)
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # every question id, skipped too
    shape: tuple[int, ...] = ()  # paragraphs per article
    skipped: Counter[str] = field(default_factory=Counter)


def _preview(record: Any, limit: int = 200) -> str:
    text = json.dumps(record, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _get(record: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``record[key]`` checked for type; DataError naming the file, the place and the record."""
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        problem = "missing" if not isinstance(record, dict) or key not in record else "invalid"
        raise DataError(f"{path}: {where}: {problem} field {key!r} in record {_preview(record)}")
    if isinstance(value, str) and not is_valid_unicode(value):
        raise DataError(f"{path}: {where}: field {key!r} is not valid Unicode (an unpaired surrogate)")
    return value


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno} column {exc.colno}: malformed JSON: {exc.msg}") from None


def _spans(paragraph: dict, path: Path, where: str) -> list[tuple[int, int]]:
    breaks = _get(paragraph, "sentence_breaks", list, path, where)
    spans = []
    for span in breaks:
        ok = (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in span)
            and 0 <= span[0] <= span[1]
        )
        if not ok:
            raise DataError(
                f"{path}: {where}: invalid sentence break {span!r} in record {_preview(paragraph)}"
            )
        spans.append((span[0], span[1]))
    return spans


def _parse_file(path: Path, lang: str, answer_rule: str) -> _LanguageFile:
    """Candidate sentences, gold-tagged questions and skip counts of one language file (LAReQA's rules)."""
    doc = _read_json(path)
    parsed = _LanguageFile(lang=lang)
    articles = _get(doc, "data", list, path, "top level")
    shape = []
    for a, article in enumerate(articles):
        paragraphs = _get(article, "paragraphs", list, path, f"article {a}")
        shape.append(len(paragraphs))
        for p, paragraph in enumerate(paragraphs):
            where = f"article {a} paragraph {p}"
            context = _get(paragraph, "context", str, path, where)
            spans = _spans(paragraph, path, where)
            if any(end > len(context) for _, end in spans):
                raise DataError(f"{path}: {where}: a sentence break runs past the context's end")
            sentences = [context[start:end] for start, end in spans]  # LAReQA's candidate texts
            kept = 0
            for qa in _get(paragraph, "qas", list, path, where):
                qid = _get(qa, "id", str, path, where)
                question = _get(qa, "question", str, path, where)
                answers = _get(qa, "answers", list, path, where)
                if not answers:
                    raise DataError(f"{path}: {where}: question {qid} has no answers: {_preview(qa)}")
                start = _get(answers[0], "answer_start", int, path, f"{where} question {qid}")
                answer = _get(answers[0], "text", str, path, f"{where} question {qid}")
                if qid in parsed.positions:
                    raise DataError(f"{path}: {where}: duplicate question id {qid!r}")
                parsed.positions[qid] = (a, p)
                first = next((i for i, (s, e) in enumerate(spans) if s <= start < e), None)
                if first is None:
                    parsed.skipped[SKIP_OUTSIDE] += 1
                    continue
                if answer_rule == "strict" and start + len(answer) > spans[first][1]:
                    parsed.skipped[SKIP_CROSSES] += 1
                    kept += 1  # the paragraph's candidates are LAReQA's, whichever rule drops questions
                    continue
                gold = tuple(i for i, text in enumerate(sentences) if text == sentences[first])
                parsed.questions.append(_Question(qid, question, a, p, gold))
                kept += 1
            if kept:  # LAReQA adds a paragraph's sentences as candidates along with its questions
                for i, text in enumerate(sentences):
                    parsed.sentences.append(_Sentence(a, p, i, text, context))
    parsed.shape = tuple(shape)
    return parsed


def _paragraphs_aligned(files: list[_LanguageFile]) -> bool:
    """True when all files have the same paragraph layout and every question id sits at one position."""
    if len({f.shape for f in files}) > 1:
        return False
    seen: dict[str, tuple[int, int]] = {}
    for f in files:
        for qid, position in f.positions.items():
            if seen.setdefault(qid, position) != position:
                return False
    return True


def load_lareqa(
    name: str,
    data_dir: str | Path | None = None,
    languages: Iterable[str] | str | None = None,
    context: bool = False,
    *,
    answer_rule: str = "lareqa",
    cache_dir: str | Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Benchmark:
    """Load XQuAD-R or MLQA-R (see the module docstring for ids, gold and qrels).

    Args:
        name: ``xquad-r`` or ``mlqa-r``.
        data_dir: folder with ``{lang}.json`` (or its parent); None downloads into the cache.
        languages: subset to load; None loads all.
        context: candidate text is ``CONTEXT_TEMPLATE`` (sentence, newline, paragraph) instead of the
            sentence alone.
        answer_rule: ``lareqa`` (default: LAReQA's released code, every question whose answer starts
            inside a sentence) or ``strict`` (also drop those whose answer runs past that sentence).
        cache_dir: download cache root (default ``$HQ_CACHE_DIR`` or ``~/.cache/hybrid-qdrant``).
        timeout: seconds per download.
    """
    spec = get_spec(name)
    langs = select_languages(spec, languages)
    answer_rule = check_answer_rule(answer_rule)
    files = []
    for lang in langs:
        path = lareqa_file(spec.name, lang, data_dir, cache_dir, timeout)
        parsed = _parse_file(path, lang, answer_rule)
        if parsed.skipped:
            logger.info("%s %s: skipped %s", spec.name, lang, dict(parsed.skipped))
        files.append(parsed)

    grouped = spec.parallel_paragraphs and _paragraphs_aligned(files)
    if spec.parallel_paragraphs and not grouped:
        logger.warning(
            "%s: paragraphs are not parallel across languages; passages get no group_id", spec.name
        )

    passages: list[Passage] = []
    queries: list[Query] = []
    gold: dict[str, list[str]] = {}  # question id -> gold doc ids in every language
    skipped: Counter[str] = Counter()
    for f in files:
        for s in f.sentences:
            text = CONTEXT_TEMPLATE.format(sentence=s.text, context=s.context) if context else s.text
            passages.append(
                Passage(
                    doc_id=f"{f.lang}/{s.article}/{s.paragraph}/{s.index}",
                    text=text,
                    lang=f.lang,
                    group_id=f"{s.article}/{s.paragraph}" if grouped else None,
                )
            )
        for q in f.questions:
            queries.append(Query(query_id=f"{f.lang}/{q.qid}", text=q.text, lang=f.lang, group_id=q.qid))
            gold.setdefault(q.qid, []).extend(f"{f.lang}/{q.article}/{q.paragraph}/{i}" for i in q.gold)
        skipped.update(f.skipped)

    qrels: Qrels = {query.query_id: {doc_id: 1 for doc_id in gold[query.group_id]} for query in queries}
    return Benchmark(
        name=spec.name,
        languages=langs,
        passages=passages,
        queries=queries,
        qrels=qrels,
        parallel=True,
        skipped=dict(skipped),
        protocol={"answer_rule": answer_rule},
    )


__all__ = [
    "ANSWER_RULES",
    "CONTEXT_TEMPLATE",
    "MLQA_R",
    "SKIP_CROSSES",
    "SKIP_OUTSIDE",
    "SPECS",
    "XQUAD_R",
    "LareqaSpec",
    "check_answer_rule",
    "default_cache_dir",
    "download",
    "get_spec",
    "lareqa_file",
    "load_lareqa",
    "select_languages",
]
