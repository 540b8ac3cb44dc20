"""MIRACL loader: fixtures (tests/fixtures/miracl), in-memory `datasets` rows, and the real topics/qrels."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
from itertools import islice
from pathlib import Path

import datasets
import pytest

from hybrid_qdrant.benchmarks import load_benchmark, miracl
from hybrid_qdrant.benchmarks.beir import load_beir, write_beir
from hybrid_qdrant.benchmarks.miracl import (
    iter_miracl_corpus,
    load_miracl,
    parse_qrels,
    parse_topics,
    passages_from_records,
)
from hybrid_qdrant.benchmarks.streaming import StreamedBenchmark
from hybrid_qdrant.errors import DataError
from hybrid_qdrant.types import Passage, Query

FIXTURES = Path(__file__).parent / "fixtures" / "miracl"
SHARED_DATA = Path(os.environ.get("HQ_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
REAL = SHARED_DATA / "miracl"

DE_PASSAGES = [
    Passage("de/100#0", "Berlin ist die Hauptstadt Deutschlands.", "de", title="Berlin"),
    Passage("de/100#1", "Berlin hat 3,7 Millionen Einwohner.", "de", title="Berlin"),
    Passage("de/200#0", "Faust ist ein Werk von Goethe.", "de", title="Faust"),  # docs-2 before docs-10
    Passage("de/10#0", "Ein Fluss ist ein fließendes Gewässer.", "de"),  # "title": "" -> None
]
SW_PASSAGES = [
    Passage("sw/10#0", "Nairobi ni mji mkuu wa Kenya.", "sw", title="Nairobi"),
    Passage("sw/11#0", "Mombasa ni mji wa pwani.", "sw", title="Mombasa"),
]
QUERIES = [
    Query("de/1", "Wo liegt Berlin?", "de"),
    Query("de/2", "Wer schrieb Faust?", "de"),
    Query("de/3", "Was ist ein Fluss?", "de"),  # no judgements: kept
    Query("sw/1", "Mji mkuu wa Kenya ni upi?", "sw"),
]
QRELS = {
    "de/1": {"de/100#0": 1, "de/100#1": 0},
    "de/2": {"de/200#0": 1, "de/10#0": 0},
    "sw/1": {"sw/10#0": 1, "sw/11#0": 0},
}


# -- local files -----------------------------------------------------------------------------------------


def test_topics_and_qrels_with_language_prefixed_ids():
    bench = load_miracl(FIXTURES, ["sw", "de"])  # de flat, sw in the hub layout
    assert isinstance(bench, StreamedBenchmark)
    assert (bench.name, bench.languages, bench.parallel, bench.skipped) == ("miracl", ("de", "sw"), False, {})
    assert bench.passages == []
    assert bench.queries == QUERIES
    assert bench.qrels == QRELS
    assert all(type(rel) is int for judged in bench.qrels.values() for rel in judged.values())


def test_corpus_streams_every_language_in_order():
    bench = load_miracl(FIXTURES, ["de", "sw"])
    passages = list(bench.iter_passages())
    assert passages == DE_PASSAGES + SW_PASSAGES
    assert list(bench.corpus()) == passages  # a fresh iterator each call
    judged = {doc for rels in bench.qrels.values() for doc in rels}
    assert judged <= {p.doc_id for p in passages}  # the same ids in qrels and corpus


def test_iter_corpus_of_one_language_in_either_layout():
    assert list(iter_miracl_corpus("de", FIXTURES)) == DE_PASSAGES  # corpus/de/
    assert list(iter_miracl_corpus("sw", FIXTURES)) == SW_PASSAGES  # miracl-corpus-v1.0-sw/


def test_corpus_is_read_lazily(tmp_path):
    shutil.copytree(FIXTURES / "corpus", tmp_path / "corpus")
    (tmp_path / "corpus" / "de" / "docs-10.jsonl.gz").write_bytes(
        gzip.compress(b'{"docid": "1#0", "text":\n')
    )
    stream = iter_miracl_corpus("de", tmp_path)
    assert list(islice(stream, 3)) == DE_PASSAGES[:3]  # the broken last file is not read yet
    with pytest.raises(
        DataError, match=re.escape(f"{tmp_path / 'corpus/de/docs-10.jsonl.gz'} line 1: malformed JSON")
    ):
        next(stream)


def test_topics_need_no_corpus_and_a_missing_one_fails_when_asked_for(tmp_path):
    for name in ("topics.miracl-v1.0-de-dev.tsv", "qrels.miracl-v1.0-de-dev.tsv"):
        shutil.copy(FIXTURES / name, tmp_path)
    bench = load_miracl(tmp_path, ["de"])
    assert bench.queries == QUERIES[:3]
    message = f"miracl: no docs-*.jsonl.gz corpus for de in {tmp_path / 'corpus' / 'de'} or"
    with pytest.raises(DataError, match=re.escape(message)):
        bench.corpus()
    with pytest.raises(DataError, match=re.escape(message)):
        iter_miracl_corpus("de", tmp_path)


def test_corpus_factory_checks_every_language_up_front(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / "miracl-corpus-v1.0-sw")
    bench = load_miracl(tmp_path / "m", ["de", "sw"])
    with pytest.raises(DataError, match="no docs-.* corpus for sw"):
        bench.corpus()


def test_unknown_language_lists_the_valid_ones():
    with pytest.raises(
        DataError,
        match=r"unknown language\(s\) el; valid: ar bn de en es fa fi fr hi id ja ko ru sw te th yo zh",
    ):
        load_miracl(FIXTURES, ["de", "el"])
    with pytest.raises(DataError, match="unknown language"):
        iter_miracl_corpus("xx", FIXTURES)


def test_missing_topics_name_the_path():
    with pytest.raises(
        DataError, match=re.escape(f"file not found: {FIXTURES / 'topics.miracl-v1.0-de-train.tsv'}")
    ):
        load_miracl(FIXTURES, ["de"], split="train")


def test_judgements_of_unknown_topics_are_an_error(tmp_path):
    shutil.copy(FIXTURES / "topics.miracl-v1.0-de-dev.tsv", tmp_path)
    (tmp_path / "qrels.miracl-v1.0-de-dev.tsv").write_text("1 Q0 1#0 1\n9 Q0 1#0 1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"judgements for 1 unknown topics \(e\.g\. de/9\)"):
        load_miracl(tmp_path, ["de"])


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["1\tok", "2 no tab"], "t.tsv line 2: expected 'qid<TAB>text'"),
        (["1\t"], "t.tsv line 1: expected 'qid<TAB>text'"),
        (["1\ta", "", "1\tb"], "t.tsv line 3: duplicate topic id '1'"),
    ],
)
def test_bad_topics(lines, message):
    with pytest.raises(DataError, match=re.escape(message)):
        parse_topics(lines, "de", "t.tsv")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["1 Q0 5#0"], "q.tsv line 1: expected 'qid Q0 docid rel'"),
        (["1 Q0 5#0 yes"], "q.tsv line 1: relevance must be an integer, got 'yes'"),
        (["1 Q0 5#0 1", "1 Q0 5#0 0"], "q.tsv line 2: (1, 5#0) judged twice with different values"),
    ],
)
def test_bad_qrels(lines, message):
    with pytest.raises(DataError, match=re.escape(message)):
        parse_qrels(lines, "de", "q.tsv")


def test_graded_qrels_stay_ints():
    assert parse_qrels(["7 Q0 1#0 2", "", "7 Q0 1#1 0", "7 Q0 1#0 2"], "ja", "q") == {
        "ja/7": {"ja/1#0": 2, "ja/1#1": 0}
    }


def test_bad_corpus_records():
    with pytest.raises(DataError, match=r"docs-0\.jsonl\.gz record 2: missing or invalid 'docid' / 'text'"):
        list(
            passages_from_records([{"docid": "1#0", "text": "a"}, {"docid": "1#1"}], "sw", "docs-0.jsonl.gz")
        )
    with pytest.raises(DataError, match="record 1: 'title' must be a string"):
        list(passages_from_records([{"docid": "1#0", "text": "a", "title": 3}], "sw", "x"))


def test_export_to_beir_keeps_judged_queries(tmp_path):
    bench = load_miracl(FIXTURES, ["de", "sw"])
    back = load_beir(write_beir(bench, tmp_path / "miracl", split="dev"), split="dev")
    assert back.passages == DE_PASSAGES + SW_PASSAGES
    assert back.queries == [q for q in QUERIES if q.query_id != "de/3"]
    assert back.qrels == QRELS
    assert back.skipped == {"query_not_in_qrels": 1}


def test_load_benchmark_dispatches_to_miracl():
    bench = load_benchmark("miracl", FIXTURES, ["de", "sw"])
    assert isinstance(bench, StreamedBenchmark)
    assert (bench.passages, bench.queries, bench.qrels) == ([], QUERIES, QRELS)
    assert list(bench.iter_passages()) == DE_PASSAGES + SW_PASSAGES
    with pytest.raises(DataError, match=re.escape("topics.miracl-v1.0-de-testB.tsv")):
        load_benchmark("miracl", FIXTURES, ["de"], split="testB")


# -- the Hugging Face path, on in-memory `datasets` objects ---------------------------------------------


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def read_records(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_conversion_of_dataset_rows():
    topics = datasets.Dataset.from_dict({"text": read_lines(FIXTURES / "topics.miracl-v1.0-de-dev.tsv")})
    qrels = datasets.Dataset.from_dict({"text": read_lines(FIXTURES / "qrels.miracl-v1.0-de-dev.tsv")})
    assert parse_topics(topics["text"], "de", "hub") == QUERIES[:3]
    assert parse_qrels(qrels["text"], "de", "hub") == {k: v for k, v in QRELS.items() if k.startswith("de/")}
    corpus = datasets.Dataset.from_list(read_records(FIXTURES / "miracl-corpus-v1.0-sw" / "docs-0.jsonl.gz"))
    assert list(passages_from_records(corpus, "sw", "hub")) == SW_PASSAGES
    assert list(passages_from_records(corpus.to_iterable_dataset(), "sw", "hub")) == SW_PASSAGES


SW_HUB = FIXTURES / "miracl-v1.0-sw"


class FakeHub:
    """Stands in for ``datasets.load_dataset``: serves fixture files as in-memory datasets."""

    def __init__(self):
        self.calls: list[tuple[str, str, bool]] = []
        self.files = {
            miracl.HUB_TOPICS.format(lang="sw", split="dev"): SW_HUB
            / "topics"
            / "topics.miracl-v1.0-sw-dev.tsv",
            miracl.HUB_QRELS.format(lang="sw", split="dev"): SW_HUB
            / "qrels"
            / "qrels.miracl-v1.0-sw-dev.tsv",
            miracl.HUB_CORPUS.format(lang="sw"): FIXTURES / "miracl-corpus-v1.0-sw" / "docs-0.jsonl.gz",
        }

    def __call__(self, builder, data_files, split, streaming=False):
        self.calls.append((builder, data_files, streaming))
        assert split == "train"
        path = self.files[data_files]
        if builder == "text":
            return datasets.Dataset.from_dict({"text": read_lines(path)})
        return datasets.Dataset.from_list(read_records(path)).to_iterable_dataset()


def test_hub_path_without_data_dir(monkeypatch):
    hub = FakeHub()
    monkeypatch.setattr(datasets, "load_dataset", hub)
    bench = load_miracl(None, ["sw"])
    assert (bench.queries, bench.qrels) == (QUERIES[3:], {"sw/1": QRELS["sw/1"]})
    assert list(bench.iter_passages()) == SW_PASSAGES
    assert hub.calls == [
        ("text", "hf://datasets/miracl/miracl/miracl-v1.0-sw/topics/topics.miracl-v1.0-sw-dev.tsv", False),
        ("text", "hf://datasets/miracl/miracl/miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv", False),
        ("json", "hf://datasets/miracl/miracl-corpus/miracl-corpus-v1.0-sw/docs-*.jsonl.gz", True),
    ]


def test_hub_failure_is_a_data_error(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'miracl/miracl' on the Hub\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        DataError,
        match=r"cannot load hf://.*: ConnectionError: Couldn't reach .* \(offline\? pass --data-dir\)",
    ):
        load_miracl(None, ["yo"])
    with pytest.raises(DataError, match="offline"):
        iter_miracl_corpus("yo")


# -- the real topics and qrels (skipped when /work/shared/data is absent) -------------------------------

real = pytest.mark.skipif(not REAL.is_dir(), reason=f"MIRACL data not found at {REAL}")


def source_table() -> dict[str, tuple[int, int, int]]:
    """SOURCE.md's table: lang -> (topics, judgements, relevant)."""
    rows = {}
    for line in (REAL / "SOURCE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[a-z]{2}", cells[0]):
            rows[cells[0]] = (int(cells[1]), int(cells[2]), int(cells[3]))
    return rows


def test_default_languages_are_the_papers_fifteen():
    # arXiv 2408.10536, tables 12-13: MIRACL dev without en and the surprise languages de, yo
    assert miracl.PAPER_LANGUAGES == (
        "ar", "bn", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "zh"
    )  # fmt: skip
    assert miracl.select_languages(None) == miracl.PAPER_LANGUAGES
    assert set(miracl.PAPER_LANGUAGES) < set(miracl.LANGUAGES)
    assert miracl.select_languages("en,de,yo") == ("de", "en", "yo")  # others on request


@real
def test_real_counts_match_the_source_table():
    expected = source_table()
    assert tuple(expected) == miracl.LANGUAGES
    assert load_miracl(REAL).languages == miracl.PAPER_LANGUAGES  # the default: the paper's 15
    bench = load_miracl(REAL, miracl.LANGUAGES)
    assert bench.languages == miracl.LANGUAGES
    for lang, (topics, judgements, relevant) in expected.items():
        queries = [q for q in bench.queries if q.lang == lang]
        rels = [r for q in queries for r in bench.qrels.get(q.query_id, {}).values()]
        assert (len(queries), len(rels), sum(r > 0 for r in rels)) == (topics, judgements, relevant), lang
        assert set(rels) == {0, 1}
    assert len(bench.queries) == len({q.query_id for q in bench.queries}) == 13495
    assert sum(len(judged) for judged in bench.qrels.values()) == 130408
    assert len(bench.qrels) == 13495  # every dev topic is judged
    assert bench.queries[0] == Query("ar/0", bench.queries[0].text, "ar")
    assert Query("en/0", "Is Creole a pidgin of French?", "en") in bench.queries
    assert bench.qrels["en/0"]["en/462221#4"] == 1
