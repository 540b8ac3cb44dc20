"""LAReQA loader: hand-written fixtures (tests/fixtures/lareqa) and, when present, the real files."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from hybrid_qdrant.benchmarks import lareqa, load_benchmark
from hybrid_qdrant.benchmarks.lareqa import download, load_lareqa
from hybrid_qdrant.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "lareqa"
SHARED_DATA = Path(os.environ.get("HQ_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = SHARED_DATA / "lareqa"

XQUAD_LANGS = ["en", "de", "es"]


def load_xquad(**kwargs):
    return load_lareqa("xquad-r", FIXTURES, XQUAD_LANGS, **kwargs)


# -- candidates, queries, gold, qrels ------------------------------------------------------------------


def test_candidates_are_every_sentence_with_positional_ids_and_paragraph_groups():
    bench = load_xquad()
    assert bench.name == "xquad-r"
    assert bench.languages == ("de", "en", "es")  # canonical order, not request order
    assert [(p.doc_id, p.group_id) for p in bench.passages] == [
        ("de/0/0/0", "0/0"), ("de/0/0/1", "0/0"),
        ("de/0/1/0", "0/1"), ("de/0/1/1", "0/1"), ("de/0/1/2", "0/1"), ("de/0/1/3", "0/1"),
        ("de/1/0/0", "1/0"),
        ("en/0/0/0", "0/0"), ("en/0/0/1", "0/0"), ("en/0/0/2", "0/0"),
        ("en/0/1/0", "0/1"), ("en/0/1/1", "0/1"), ("en/0/1/2", "0/1"),
        ("en/1/0/0", "1/0"),
        ("es/0/0/0", "0/0"), ("es/0/0/1", "0/0"),
        ("es/0/1/0", "0/1"), ("es/0/1/1", "0/1"),
        ("es/1/0/0", "1/0"),
    ]  # fmt: skip
    by_id = {p.doc_id: p for p in bench.passages}
    assert by_id["de/0/1/1"].text == "Sie passiert Wien bzw."
    assert by_id["de/0/1/1"].lang == "de"
    assert by_id["de/0/1/1"].title is None
    assert bench.parallel is True


def test_duplicate_sentences_stay_separate_candidates():
    by_id = {p.doc_id: p.text for p in load_xquad().passages}
    assert by_id["en/0/0/2"] == by_id["en/0/1/2"] == "It is very long."


def test_queries_skip_only_answers_starting_outside_every_sentence():
    bench = load_xquad()
    assert [q.query_id for q in bench.queries] == [
        "de/q1", "de/q2", "de/q3", "de/q4", "de/q5",  # de/q3: its answer crosses a sentence end: kept
        "en/q1", "en/q2", "en/q3", "en/q4", "en/q5",
        "es/q1", "es/q2", "es/q3", "es/q5",  # es/q4: answer_start past the context, in no sentence
    ]  # fmt: skip
    assert bench.skipped == {"answer_start_outside_sentences": 1}
    assert bench.protocol == {"answer_rule": "lareqa"}
    query = bench.queries[0]
    assert (query.text, query.lang, query.group_id) == ("Wohin mündet der Rhein?", "de", "q1")


def test_qrels_join_parallel_questions_across_every_loaded_language():
    qrels = load_xquad().qrels
    q3 = {"de/0/1/1": 1, "en/0/1/1": 1, "es/0/1/1": 1}  # de: the sentence holding the answer start
    assert qrels == {
        "de/q1": {"de/0/0/1": 1, "en/0/0/1": 1, "es/0/0/1": 1},
        "de/q2": {"de/0/0/0": 1, "en/0/0/0": 1, "es/0/0/0": 1},
        "de/q3": q3,
        "de/q4": {"de/0/1/0": 1, "en/0/1/0": 1},
        "de/q5": {"de/1/0/0": 1, "en/1/0/0": 1, "es/1/0/0": 1},
        "en/q1": {"de/0/0/1": 1, "en/0/0/1": 1, "es/0/0/1": 1},
        "en/q2": {"de/0/0/0": 1, "en/0/0/0": 1, "es/0/0/0": 1},
        "en/q3": q3,
        "en/q4": {"de/0/1/0": 1, "en/0/1/0": 1},
        "en/q5": {"de/1/0/0": 1, "en/1/0/0": 1, "es/1/0/0": 1},
        "es/q1": {"de/0/0/1": 1, "en/0/0/1": 1, "es/0/0/1": 1},
        "es/q2": {"de/0/0/0": 1, "en/0/0/0": 1, "es/0/0/0": 1},
        "es/q3": q3,
        "es/q5": {"de/1/0/0": 1, "en/1/0/0": 1, "es/1/0/0": 1},
    }


def test_strict_rule_also_drops_answers_crossing_their_sentence_end():
    bench = load_xquad(answer_rule="strict")
    assert bench.skipped == {"answer_crosses_sentence_end": 1, "answer_start_outside_sentences": 1}
    assert bench.protocol == {"answer_rule": "strict"}
    assert "de/q3" not in bench.qrels
    assert bench.qrels["en/q3"] == {"en/0/1/1": 1, "es/0/1/1": 1}
    assert bench.passages == load_xquad().passages  # the candidates stay LAReQA's
    with pytest.raises(ConfigError, match="unknown answer rule 'loose'; valid: lareqa, strict"):
        load_xquad(answer_rule="loose")


def write_set(folder: Path, paragraphs: list[dict], lang: str = "en") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"data": [{"title": "T", "paragraphs": paragraphs}]}
    (folder / f"{lang}.json").write_text(json.dumps(doc), encoding="utf-8")


def qa(qid: str, start: int, text: str = "x") -> dict:
    return {"id": qid, "question": f"{qid}?", "answers": [{"answer_start": start, "text": text}]}


def test_candidate_text_is_the_context_slice_not_the_sentences_field(tmp_path):
    context = "One. Two three."
    write_set(tmp_path, [{
        "context": context,
        "sentences": ["One.", "Something else."],  # a stale field: LAReQA never reads it
        "sentence_breaks": [[0, 4], [5, 15]],
        "qas": [qa("a", 5)],
    }])  # fmt: skip
    bench = load_lareqa("xquad-r", tmp_path, ["en"])
    assert [p.text for p in bench.passages] == ["One.", "Two three."]
    without = [{"context": context, "sentence_breaks": [[0, 4], [5, 15]], "qas": [qa("a", 5)]}]
    write_set(tmp_path, without)  # the field is not needed at all
    assert load_lareqa("xquad-r", tmp_path, ["en"]).passages == bench.passages


def test_paragraphs_without_a_kept_question_give_no_candidates(tmp_path):
    write_set(tmp_path, [
        {"context": "No questions here.", "sentence_breaks": [[0, 18]], "qas": []},
        {"context": "Only a bad one.", "sentence_breaks": [[0, 15]], "qas": [qa("b", 99)]},
        {"context": "A good one.", "sentence_breaks": [[0, 11]], "qas": [qa("a", 2)]},
    ])  # fmt: skip
    bench = load_lareqa("xquad-r", tmp_path, ["en"])
    assert [(p.doc_id, p.text) for p in bench.passages] == [("en/0/2/0", "A good one.")]
    assert bench.qrels == {"en/a": {"en/0/2/0": 1}}
    assert bench.skipped == {"answer_start_outside_sentences": 1}


def test_every_sentence_with_the_answer_sentences_text_is_gold(tmp_path):
    # LAReQA marks candidates relevant by text equality with the answer sentence (first span wins).
    write_set(tmp_path, [{
        "context": "Yes. No. Yes.",
        "sentence_breaks": [[0, 4], [5, 8], [9, 13]],
        "qas": [qa("a", 10)],
    }])  # fmt: skip
    bench = load_lareqa("xquad-r", tmp_path, ["en"])
    assert bench.qrels == {"en/a": {"en/0/0/0": 1, "en/0/0/2": 1}}
    assert len(bench.passages) == 3


def test_the_first_span_holding_the_answer_start_wins(tmp_path):
    write_set(tmp_path, [{
        "context": "Overlapping spans.",
        "sentence_breaks": [[0, 11], [5, 18]],
        "qas": [qa("a", 6)],
    }])  # fmt: skip
    assert load_lareqa("xquad-r", tmp_path, ["en"]).qrels == {"en/a": {"en/0/0/0": 1}}


def test_language_subset_restricts_candidates_queries_and_qrels():
    bench = load_lareqa("xquad-r", FIXTURES, ["es", "en"])
    assert bench.languages == ("en", "es")
    assert {p.lang for p in bench.passages} == {"en", "es"}
    assert bench.qrels["en/q1"] == {"en/0/0/1": 1, "es/0/0/1": 1}
    assert bench.qrels["en/q4"] == {"en/0/1/0": 1}
    assert load_lareqa("xquad-r", FIXTURES, "en,es").qrels == bench.qrels


def test_context_option_appends_the_paragraph():
    by_id = {p.doc_id: p.text for p in load_xquad(context=True).passages}
    assert by_id["en/0/0/1"] == (
        "It flows into the North Sea.\n"
        "The Rhine is a river in Europe. It flows into the North Sea. It is very long."
    )
    assert lareqa.CONTEXT_TEMPLATE == "{sentence}\n{context}"


def test_mlqa_paragraphs_are_not_grouped_and_questions_join_by_id():
    bench = load_lareqa("mlqa-r", FIXTURES, ["en", "de"])
    assert bench.languages == ("de", "en")
    assert [(p.doc_id, p.group_id) for p in bench.passages] == [
        ("de/0/0/0", None), ("de/0/0/1", None),
        ("en/0/0/0", None), ("en/0/0/1", None), ("en/0/1/0", None), ("en/0/1/1", None),
    ]  # fmt: skip
    assert [(q.query_id, q.group_id) for q in bench.queries] == [
        ("de/m1", "m1"), ("en/m2", "m2"), ("en/m1", "m1"),
    ]  # fmt: skip
    assert bench.qrels == {
        "de/m1": {"de/0/0/0": 1, "en/0/1/0": 1},
        "en/m2": {"en/0/0/1": 1},
        "en/m1": {"de/0/0/0": 1, "en/0/1/0": 1},
    }
    assert bench.skipped == {}


def test_misaligned_xquad_paragraphs_lose_group_ids(tmp_path, caplog):
    for lang in ("en", "de"):
        shutil.copy(FIXTURES / "xquad-r" / f"{lang}.json", tmp_path / f"{lang}.json")
    doc = json.loads((tmp_path / "de.json").read_text(encoding="utf-8"))
    doc["data"].reverse()  # articles in another order: question ids at other positions
    (tmp_path / "de.json").write_text(json.dumps(doc), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="hybrid_qdrant.benchmarks.lareqa"):
        bench = load_lareqa("xquad-r", tmp_path, ["en", "de"])
    assert {p.group_id for p in bench.passages} == {None}
    assert "not parallel" in caplog.text
    assert bench.qrels["en/q5"] == {"de/0/0/0": 1, "en/1/0/0": 1}


# -- bad input -------------------------------------------------------------------------------------------


def test_unknown_set_and_language_name_the_valid_ones():
    with pytest.raises(DataError, match=r"unknown LAReQA set 'squad'; valid: xquad-r, mlqa-r"):
        load_lareqa("squad", FIXTURES)
    with pytest.raises(DataError, match=r"unknown language\(s\) el, fr; valid: ar de en es hi vi zh"):
        load_lareqa("mlqa-r", FIXTURES, ["en", "fr", "el"])


def test_missing_file_names_the_path():
    with pytest.raises(DataError, match=re.escape(str(FIXTURES / "ar.json"))):
        load_lareqa("xquad-r", FIXTURES)  # all 11 languages; the fixture has 3


def test_data_dir_of_the_other_set_is_refused():
    with pytest.raises(DataError, match="is the folder of xquad-r"):
        load_lareqa("mlqa-r", FIXTURES / "xquad-r", ["en"])


def test_malformed_json_names_file_line_and_column(tmp_path):
    (tmp_path / "en.json").write_text('{"data": [\n  {"paragraphs": [,]}\n]}\n', encoding="utf-8")
    expected = f"{tmp_path / 'en.json'} line 2 column 19: malformed JSON"
    with pytest.raises(DataError, match=re.escape(expected)):
        load_lareqa("xquad-r", tmp_path, ["en"])


A_PARAGRAPH = {"context": "A.", "sentences": ["A."], "sentence_breaks": [[0, 2]], "qas": []}


def question(**fields):
    return {**A_PARAGRAPH, "qas": [{"id": "x", "question": "?", **fields}]}


@pytest.mark.parametrize(
    ("paragraph", "message"),
    [
        ({k: v for k, v in A_PARAGRAPH.items() if k != "sentence_breaks"}, "missing field 'sentence_breaks'"),
        ({**A_PARAGRAPH, "sentence_breaks": [[0]]}, "invalid sentence break"),
        ({**A_PARAGRAPH, "sentence_breaks": [[0, 3]]}, "runs past the context's end"),
        ({**A_PARAGRAPH, "qas": [{"id": "x", "answers": []}]}, "missing field 'question'"),
        (question(answers=[]), "question x has no answers"),
        (question(answers=[{"answer_start": "0", "text": "A"}]), "invalid field 'answer_start'"),
        ({**A_PARAGRAPH, "context": "A\ud800"}, "field 'context' is not valid Unicode"),
    ],
)
def test_missing_or_invalid_fields_name_the_file_and_the_record(tmp_path, paragraph, message):
    path = tmp_path / "en.json"
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [paragraph]}]}), encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)) as info:
        load_lareqa("xquad-r", tmp_path, ["en"])
    assert str(path) in str(info.value)
    assert "article 0 paragraph 0" in str(info.value)


# -- downloads (no network: a fake opener or file:// URLs) ------------------------------------------------


class FakeOpener:
    """Serves fixture files for the public URLs and records what was asked."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.urls: list[str] = []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        assert timeout == lareqa.DEFAULT_TIMEOUT
        return io.BytesIO((self.folder / url.rsplit("/", 1)[1]).read_bytes())


def test_download_into_the_cache_once(tmp_path, monkeypatch):
    opener = FakeOpener(FIXTURES / "xquad-r")
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    monkeypatch.setenv("HQ_CACHE_DIR", str(tmp_path))
    bench = load_lareqa("xquad-r", None, ["en", "de"])
    assert opener.urls == [
        "https://github.com/google-research-datasets/lareqa/raw/master/xquad-r/de.json",
        "https://github.com/google-research-datasets/lareqa/raw/master/xquad-r/en.json",
    ]
    assert sorted(p.name for p in (tmp_path / "lareqa" / "xquad-r").iterdir()) == ["de.json", "en.json"]
    assert bench.qrels == load_lareqa("xquad-r", FIXTURES, ["en", "de"]).qrels
    load_lareqa("xquad-r", None, ["en", "de"])
    assert len(opener.urls) == 2  # served from the cache the second time


def test_mlqa_downloads_from_the_pinned_commit(tmp_path, monkeypatch):
    opener = FakeOpener(FIXTURES / "mlqa-r")
    monkeypatch.setattr(urllib.request, "urlopen", opener)
    load_lareqa("mlqa-r", None, ["en"], cache_dir=tmp_path)
    assert opener.urls == ["https://github.com/google-research-datasets/lareqa/raw/354d67d/mlqa-r/en.json"]
    assert (tmp_path / "lareqa" / "mlqa-r" / "en.json").is_file()


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("HQ_CACHE_DIR", raising=False)
    assert lareqa.default_cache_dir() == Path.home() / ".cache" / "hybrid-qdrant"
    monkeypatch.setenv("HQ_CACHE_DIR", str(tmp_path))
    assert lareqa.default_cache_dir() == tmp_path


def test_download_from_a_file_url_is_atomic(tmp_path):
    source = FIXTURES / "xquad-r" / "es.json"
    dest = tmp_path / "cache" / "es.json"
    assert download(source.as_uri(), dest) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["es.json"]  # no temp file left


def test_offline_download_fails_clearly_and_writes_nothing(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    where = str(tmp_path / "lareqa" / "xquad-r" / "en.json")
    expected = (
        r"cannot download https://.*/xquad-r/en\.json: .*\(offline\? pass --data-dir, .* put the file at "
    )
    expected += re.escape(where) + r"\)$"
    with pytest.raises(DataError, match=expected):
        load_lareqa("xquad-r", None, ["en"], cache_dir=tmp_path)
    assert list(tmp_path.rglob("*.json*")) == []


def test_truncated_download_is_not_kept(tmp_path):
    source = tmp_path / "half.json"
    source.write_bytes((FIXTURES / "xquad-r" / "en.json").read_bytes()[:300])
    dest = tmp_path / "cache" / "en.json"
    with pytest.raises(DataError, match="the response is not JSON"):
        download(source.as_uri(), dest)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


# -- the real files (skipped when /work/shared/data is absent) --------------------------------------------

real = pytest.mark.skipif(not REAL.is_dir(), reason=f"LAReQA data not found at {REAL}")

# Questions whose answer text runs past the end of its sentence, measured on the real files.
CROSSING = {
    "xquad-r": {
        "ar": 10, "de": 8, "el": 13, "en": 3, "es": 12, "hi": 11,
        "ru": 2, "th": 9, "tr": 20, "vi": 13, "zh": 11,
    },
    "mlqa-r": {"ar": 3, "de": 8, "en": 2, "es": 5, "hi": 3, "vi": 1, "zh": 3},
}  # fmt: skip


# LAReQA's totals (questions, candidates) over all languages.
LAREQA_TOTALS = {"xquad-r": (13090, 13014), "mlqa-r": (4199, 20534)}


def source_table() -> dict[str, dict[str, tuple[int, int]]]:
    """SOURCE.md's counts table: set -> lang -> (questions, candidates)."""
    table: dict[str, dict[str, tuple[int, int]]] = {"xquad-r": {}, "mlqa-r": {}}
    for line in (REAL / "SOURCE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[a-z]{2}", cells[0]):
            table["xquad-r"][cells[0]] = (int(cells[1]), int(cells[2]))
            if cells[3] != "-":
                table["mlqa-r"][cells[0]] = (int(cells[3]), int(cells[4]))
    return table


@real
@pytest.mark.parametrize("name", ["xquad-r", "mlqa-r"])
def test_real_counts_match_the_source_table_and_lareqa(name):
    expected = source_table()[name]
    assert tuple(expected) == lareqa.SPECS[name].languages
    bench = load_lareqa(name, REAL)
    assert bench.skipped == {}
    assert Counter(p.lang for p in bench.passages) == {lang: c for lang, (_, c) in expected.items()}
    assert Counter(q.lang for q in bench.queries) == {lang: q for lang, (q, _) in expected.items()}
    assert (len(bench.queries), len(bench.passages)) == LAREQA_TOTALS[name]
    assert len(bench.passages) == len({p.doc_id for p in bench.passages})
    assert len(bench.queries) == len({q.query_id for q in bench.queries})
    langs_of = {}
    for q in bench.queries:
        langs_of.setdefault(q.group_id, set()).add(q.lang)
    for q in bench.queries:  # relevant: the question's gold sentence in every language that has it
        assert {d.split("/")[0] for d in bench.qrels[q.query_id]} == langs_of[q.group_id]
        assert set(bench.qrels[q.query_id].values()) == {1}

    strict = load_lareqa(name, REAL, answer_rule="strict")
    assert strict.skipped == {"answer_crosses_sentence_end": sum(CROSSING[name].values())}
    kept_per_lang = {lang: q - CROSSING[name][lang] for lang, (q, _) in expected.items()}
    assert Counter(q.lang for q in strict.queries) == kept_per_lang
    assert strict.passages == bench.passages


def lareqa_reference(name: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Candidates and relevant sets as LAReQA's released code builds them (utils_lareqa.py), re-stated.

    Returns ``{candidate uid: text}`` and ``{question uid: relevant candidate uids}`` with LAReQA's uids
    (``{lang}_{paragraph number}_{sentence}``, ``{xling id}_{lang}``).
    """
    candidates: dict[str, str] = {}
    by_xling: dict[str, list[str]] = {}
    questions: list[tuple[str, str]] = []
    for lang in lareqa.SPECS[name].languages:
        data = json.loads((REAL / name / f"{lang}.json").read_text(encoding="utf-8"))
        number = 0
        for passage in data["data"]:
            for paragraph in passage["paragraphs"]:
                number += 1
                context, breaks = paragraph["context"], paragraph["sentence_breaks"]
                sentences = [context[start:end] for start, end in breaks]
                for item in paragraph["qas"]:
                    start = item["answers"][0]["answer_start"]
                    answer = next((context[s:e] for s, e in breaks if s <= start < e), None)
                    if not answer:
                        continue
                    questions.append((item["id"], lang))
                    for position, sentence in enumerate(sentences):
                        uid = f"{lang}_{number}_{position}"
                        candidates.setdefault(uid, sentence)
                        if sentence == answer:
                            by_xling.setdefault(item["id"], []).append(uid)
    return candidates, {f"{x}_{lang}": set(by_xling[x]) for x, lang in questions}


@real
@pytest.mark.parametrize("name", ["xquad-r", "mlqa-r"])
def test_real_candidates_and_relevant_sets_equal_lareqas_code(name):
    candidates, relevant = lareqa_reference(name)
    bench = load_lareqa(name, REAL)
    # map our positional ids onto LAReQA's (paragraph counter per language file)
    numbers: dict[tuple[str, int, int], int] = {}
    for lang in lareqa.SPECS[name].languages:
        data = json.loads((REAL / name / f"{lang}.json").read_text(encoding="utf-8"))
        n = 0
        for a, passage in enumerate(data["data"]):
            for p, _ in enumerate(passage["paragraphs"]):
                n += 1
                numbers[(lang, a, p)] = n

    def uid(doc_id: str) -> str:
        lang, a, p, s = doc_id.split("/")
        return f"{lang}_{numbers[(lang, int(a), int(p))]}_{s}"

    assert {uid(p.doc_id): p.text for p in bench.passages} == candidates
    ours = {f"{q.group_id}_{q.lang}": {uid(d) for d in bench.qrels[q.query_id]} for q in bench.queries}
    assert ours == relevant


@real
def test_real_xquad_is_11_way_parallel():
    bench = load_lareqa("xquad-r", REAL)
    assert {p.group_id for p in bench.passages} == {f"{a}/{p}" for a in range(48) for p in range(5)}
    assert Counter(len(rel) for rel in bench.qrels.values()) == {11: 13090}  # every question, 11 languages
    en = {p.doc_id: p.text for p in bench.passages if p.lang == "en"}
    assert bench.qrels["en/56beb4343aeaaa14008c925b"]["en/0/0/0"] == 1
    assert en["en/0/0/0"].startswith("The Panthers defense gave up just 308 points")
    tr = {p.doc_id: p.text for p in bench.passages if p.lang == "tr"}
    raw = json.loads((REAL / "xquad-r" / "tr.json").read_text(encoding="utf-8"))
    differs = [
        (a, p, i)
        for a, article in enumerate(raw["data"])
        for p, paragraph in enumerate(article["paragraphs"])
        for i, (start, end) in enumerate(paragraph["sentence_breaks"])
        if paragraph["sentences"][i] != paragraph["context"][start:end]
    ]
    assert len(differs) == 2  # where the files' sentences field and the context slice disagree
    for a, p, i in differs:
        paragraph = raw["data"][a]["paragraphs"][p]
        start, end = paragraph["sentence_breaks"][i]
        assert tr[f"tr/{a}/{p}/{i}"] == paragraph["context"][start:end]


@real
def test_real_mlqa_paragraphs_have_no_group_ids():
    bench = load_lareqa("mlqa-r", REAL, ["en", "de"])
    assert {p.group_id for p in bench.passages} == {None}
    assert Counter(len(rel) for rel in bench.qrels.values()).keys() <= {1, 2}
    full = load_lareqa("mlqa-r", REAL)
    assert Counter(len(rel) for rel in full.qrels.values()) == {2: 130, 3: 789, 4: 3280}


# -- load_benchmark ----------------------------------------------------------------------------------------


def test_load_benchmark_dispatches_to_lareqa():
    bench = load_benchmark("XQuAD-R", FIXTURES, XQUAD_LANGS, context=True)
    expected = load_xquad(context=True)
    assert (bench.name, bench.passages, bench.queries, bench.qrels) == (
        "xquad-r",
        expected.passages,
        expected.queries,
        expected.qrels,
    )
    assert (
        load_benchmark("mlqa-r", FIXTURES, "en,de").qrels
        == load_lareqa("mlqa-r", FIXTURES, ["en", "de"]).qrels
    )


def test_load_benchmark_refuses_unknown_names_and_a_lareqa_split():
    with pytest.raises(DataError, match=r"unknown benchmark 'lareqa'; valid: xquad-r, mlqa-r, beir, miracl"):
        load_benchmark("lareqa", FIXTURES)
    with pytest.raises(ConfigError, match="xquad-r has a single split"):
        load_benchmark("xquad-r", FIXTURES, XQUAD_LANGS, split="dev")
