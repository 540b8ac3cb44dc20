"""BEIR-format loader and writer: tests/fixtures/beir/parallel plus folders written per test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.benchmarks.beir import load_beir, write_beir
from hybrid_qdrant.benchmarks.lareqa import load_lareqa
from hybrid_qdrant.benchmarks.streaming import StreamedBenchmark
from hybrid_qdrant.errors import ConfigError, DataError
from hybrid_qdrant.types import Benchmark, Passage, Query

FIXTURES = Path(__file__).parent / "fixtures"
PARALLEL = FIXTURES / "beir" / "parallel"
HEADER = "query-id\tcorpus-id\tscore\n"


def make_folder(root: Path, corpus: list, queries: list, qrels: str, split: str = "test") -> Path:
    """A BEIR folder from records (dicts are dumped, strings written as they are) and a qrels body."""

    def lines(records):
        return "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records
        )

    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(lines(corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text(lines(queries), encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text(qrels, encoding="utf-8")
    return root


DOC = {"_id": "d1", "text": "Paris is in France.", "lang": "en"}
QUERY = {"_id": "q1", "text": "Where is Paris?", "lang": "en"}


# -- loading ---------------------------------------------------------------------------------------------


def test_load_parallel_fixture():
    bench = load_beir(PARALLEL)
    assert bench.name == "parallel"
    assert bench.languages == ("de", "en")
    assert bench.passages == [
        Passage("d1", "The Rhine flows into the North Sea.", "en", group_id="g1", title="Rhine"),
        Passage("d2", "Der Rhein mündet in die Nordsee.", "de", group_id="g1"),
        Passage("d3", "The Danube passes Vienna.", "en", group_id="g2", title="Danube"),
        Passage("d4", "Die Donau passiert Wien.", "de", group_id="g2"),
    ]
    assert bench.queries == [
        Query("q1", "Where does the Rhine flow?", "en", group_id="g1"),
        Query("q2", "Wohin fließt der Rhein?", "de", group_id="g1"),
        Query("q3", "Which city does the Danube pass?", "en", group_id="g2"),
    ]
    assert bench.qrels == {
        "q1": {"d1": 1, "d2": 1},
        "q2": {"d1": 1, "d2": 1},
        "q3": {"d3": 2, "d4": 0},  # graded and zero judgements kept as they are
    }
    assert bench.parallel is True
    assert bench.skipped == {"duplicate_passage": 1, "query_not_in_qrels": 1}


def test_split_selects_the_qrels_file_and_its_queries():
    bench = load_beir(PARALLEL, split="train")
    assert [q.query_id for q in bench.queries] == ["q9"]
    assert bench.qrels == {"q9": {"d3": 1}}
    assert bench.skipped == {"duplicate_passage": 1, "query_not_in_qrels": 3}


def test_language_subset():
    en = load_beir(PARALLEL, languages=["en"])
    assert en.languages == ("en",)
    assert [p.doc_id for p in en.passages] == ["d1", "d3"]
    assert [q.query_id for q in en.queries] == ["q1", "q3"]
    assert en.qrels == {"q1": {"d1": 1}, "q3": {"d3": 2}}
    de = load_beir(PARALLEL, languages="de")
    assert (de.languages, [p.doc_id for p in de.passages], de.qrels) == (
        ("de",),
        ["d2", "d4"],
        {"q2": {"d2": 1}},
    )


def test_language_subset_drops_queries_judged_only_elsewhere(tmp_path):
    folder = make_folder(
        tmp_path / "x",
        [DOC, {"_id": "d2", "text": "Paris liegt in Frankreich.", "lang": "de"}],
        [QUERY, {"_id": "q2", "text": "Wo liegt Paris?", "lang": "de"}],
        HEADER + "q1\td1\t1\nq2\td1\t1\n",
    )
    bench = load_beir(folder, languages=["de"])
    assert (bench.queries, bench.qrels) == ([], {})
    assert bench.skipped == {"query_judged_only_in_other_languages": 1}


def test_unknown_language_lists_the_present_ones():
    with pytest.raises(DataError, match=r"unknown language\(s\) fr; present: de en"):
        load_beir(PARALLEL, languages=["fr", "en"])


def test_without_group_ids_the_set_is_not_parallel(tmp_path):
    folder = make_folder(tmp_path / "mono", [DOC], [QUERY], HEADER + "q1\td1\t1\n")
    bench = load_beir(folder, name="mono-set")
    assert (bench.name, bench.parallel, bench.languages) == ("mono-set", False, ("en",))
    assert bench.passages == [Passage("d1", "Paris is in France.", "en")]


def test_integer_ids_are_read_as_strings(tmp_path):
    folder = make_folder(tmp_path / "x", [{**DOC, "_id": 7}], [{**QUERY, "_id": 3}], HEADER + "3\t7\t1\n")
    assert load_beir(folder).qrels == {"3": {"7": 1}}


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("corpus", "queries", "message"),
    [
        ([DOC, '{"_id": "d2", "text": "x", "lang": "en"'], [QUERY], "corpus.jsonl line 2: malformed JSON"),
        ([DOC, "[1, 2]"], [QUERY], "corpus.jsonl line 2: expected a JSON object"),
        ([DOC], [{"_id": "q1", "text": "Where?"}], "queries.jsonl line 1: missing or empty 'lang'"),
        ([{**DOC, "text": "  "}], [QUERY], "corpus.jsonl line 1: missing or empty 'text'"),
        ([{**DOC, "text": 3}], [QUERY], "corpus.jsonl line 1: 'text' must be a string, got int"),
        ([{"text": "x", "lang": "en"}], [QUERY], "corpus.jsonl line 1: missing or empty '_id'"),
        (
            [DOC, "", {**DOC, "text": "Paris is in Texas."}],
            [QUERY],
            "corpus.jsonl line 3: duplicate passage id 'd1' with different content (line 1)",
        ),
        ([DOC], [QUERY, {**QUERY, "lang": "fr"}], "queries.jsonl line 2: duplicate query id 'q1'"),
        (
            [DOC, '{"_id": "d2", "text": "bad \\ud800 escape", "lang": "en"}'],
            [QUERY],
            "corpus.jsonl line 2: 'text' is not valid Unicode (an unpaired surrogate",
        ),
        (
            [DOC],
            ['{"_id": "q1", "text": "\\udfff?", "lang": "en"}'],
            "queries.jsonl line 1: 'text' is not valid",
        ),
    ],
)
def test_bad_records_name_the_file_and_line(tmp_path, corpus, queries, message):
    folder = make_folder(tmp_path / "x", corpus, queries, HEADER + "q1\td1\t1\n")
    with pytest.raises(DataError, match=re.escape(message)):
        load_beir(folder)


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("q1\td1\t1\n", "test.tsv line 1: expected the header"),
        (HEADER + "q1 d1 1\n", "test.tsv line 2: expected 3 tab-separated columns"),
        (HEADER + "q1\td1\tyes\n", "test.tsv line 2: score must be an integer, got 'yes'"),
        (HEADER + "q1\td1\t1\nq1\td1\t0\n", "test.tsv line 3: (q1, d1) judged twice with different scores"),
    ],
)
def test_bad_qrels_name_the_line(tmp_path, qrels, message):
    folder = make_folder(tmp_path / "x", [DOC], [QUERY], qrels)
    with pytest.raises(DataError, match=re.escape(message)):
        load_beir(folder)


def test_qrels_on_unknown_ids_fail_by_default_and_are_counted_otherwise(tmp_path):
    qrels = HEADER + "q1\td1\t1\nq1\td8\t1\nq7\td1\t1\nq7\td9\t0\nq1\td9\t1\n"
    folder = make_folder(tmp_path / "x", [DOC], [QUERY], qrels)
    with pytest.raises(
        DataError, match=r"2 judgements name 1 unknown queries \(e\.g\. q7\) and 2 name 2 unknown"
    ):
        load_beir(folder)
    bench = load_beir(folder, strict=False)
    assert bench.qrels == {"q1": {"d1": 1}}
    assert bench.skipped == {"qrels_unknown_query": 2, "qrels_unknown_doc": 2}


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="BEIR folder not found"):
        load_beir(tmp_path / "nowhere")
    folder = make_folder(tmp_path / "x", [DOC], [QUERY], HEADER)
    with pytest.raises(DataError, match=re.escape(f"file not found: {folder / 'qrels' / 'dev.tsv'}")):
        load_beir(folder, split="dev")
    (folder / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match=re.escape(f"file not found: {folder / 'corpus.jsonl'}")):
        load_beir(folder)
    (folder / "corpus.jsonl").mkdir()  # a folder where a file belongs: a data error, exit 2
    with pytest.raises(DataError, match=re.escape(f"{folder / 'corpus.jsonl'} is a folder, not a file")):
        load_beir(folder)


# -- writing ---------------------------------------------------------------------------------------------


def same_content(a: Benchmark, b: Benchmark) -> None:
    assert (a.passages, a.queries, a.qrels, a.languages, a.parallel) == (
        b.passages,
        b.queries,
        b.qrels,
        b.languages,
        b.parallel,
    )


def test_round_trip_of_a_beir_folder(tmp_path):
    bench = load_beir(PARALLEL)
    out = write_beir(bench, tmp_path / "copy")
    assert out == tmp_path / "copy"
    same_content(load_beir(out), bench)
    assert (out / "qrels" / "test.tsv").read_text(encoding="utf-8").startswith(HEADER + "q1\td1\t1\n")
    first = (out / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert json.loads(first) == {
        "_id": "d1",
        "title": "Rhine",
        "text": "The Rhine flows into the North Sea.",
        "lang": "en",
        "group_id": "g1",
    }
    assert "ü" in (out / "corpus.jsonl").read_text(encoding="utf-8")  # UTF-8, not \u escapes


@pytest.mark.parametrize(("name", "langs"), [("xquad-r", ["en", "de", "es"]), ("mlqa-r", ["en", "de"])])
def test_round_trip_of_lareqa(tmp_path, name, langs):
    bench = load_lareqa(name, FIXTURES / "lareqa", langs)
    back = load_beir(write_beir(bench, tmp_path / name, split="dev"), split="dev")
    same_content(back, bench)
    assert back.name == name


def test_streamed_passages_are_written(tmp_path):
    streamed = [Passage("sw/1#0", "Habari.", "sw", title="Salamu"), Passage("sw/2#0", "Dunia.", "sw")]
    bench = StreamedBenchmark(
        name="s",
        languages=("sw",),
        passages=[],
        queries=[Query("sw/5", "salamu?", "sw")],
        qrels={"sw/5": {"sw/1#0": 1, "sw/2#0": 0}},
        parallel=False,
        corpus=lambda: iter(streamed),
    )
    back = load_beir(write_beir(bench, tmp_path / "s"))
    assert back.passages == streamed
    assert back.qrels == {"sw/5": {"sw/1#0": 1, "sw/2#0": 0}}


def test_existing_folder_needs_overwrite(tmp_path):
    bench = load_beir(PARALLEL)
    out = write_beir(bench, tmp_path / "copy")
    with pytest.raises(DataError, match="exists"):
        write_beir(bench, out)
    small = load_beir(PARALLEL, languages=["de"])
    write_beir(small, out, overwrite=True)
    same_content(load_beir(out), small)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temp or old folder left


def test_failed_write_leaves_nothing(tmp_path):
    bench = Benchmark(
        "bad", ("en",), [Passage("d\t1", "x", "en")], [Query("q1", "y", "en")], {"q1": {"d\t1": 1}}
    )
    with pytest.raises(DataError, match="cannot write doc id"):
        write_beir(bench, tmp_path / "bad")
    assert list(tmp_path.iterdir()) == []


# -- load_benchmark ----------------------------------------------------------------------------------------


def test_load_benchmark_dispatches_to_beir():
    same_content(load_benchmark("beir", PARALLEL), load_beir(PARALLEL))
    assert load_benchmark("beir", PARALLEL, ["en"], split="train").qrels == {"q9": {"d3": 1}}
    with pytest.raises(DataError, match="beir needs a data_dir"):
        load_benchmark("beir", None)
    with pytest.raises(ConfigError, match="context applies to xquad-r and mlqa-r only"):
        load_benchmark("beir", PARALLEL, context=True)


def _broken_folder(tmp_path):
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(Path(__file__).parent / "fixtures" / "beir" / "parallel", folder)
    lines = (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    lines[1] = '{"_id": "d2", "text": "Der Rhein'  # malformed JSON on line 2
    lines.append('{"_id": "dx", "text": "   ", "lang": "de"}')  # empty text
    lines.append('{"_id": "dy", "text": "Hallo", "lang": "German"}')  # not a language code
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, len(lines)


def test_bad_records_stop_with_file_and_line_by_default(tmp_path):
    folder, _ = _broken_folder(tmp_path)
    with pytest.raises(DataError, match=r"corpus.jsonl line 2: malformed JSON"):
        load_beir(folder)


def test_skip_mode_counts_and_names_bad_records(tmp_path):
    folder, _ = _broken_folder(tmp_path)
    bench = load_beir(folder, on_error="skip")
    assert bench.skipped["malformed_line"] == 1
    assert bench.skipped["bad_passage"] == 2
    assert any("corpus.jsonl line 2" in e for e in bench.skipped_examples)
    assert any("'German' is not a language code" in e for e in bench.skipped_examples)
    assert "d2" not in {p.doc_id for p in bench.passages}
    assert all(p.lang in ("en", "de") for p in bench.passages)
