"""Training pair sources and converters, the group hold-out, and the index of mono / cross rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hybrid_qdrant.benchmarks import load_benchmark
from hybrid_qdrant.errors import ConfigError, DataError
from hybrid_qdrant.training.config import DataSource
from hybrid_qdrant.training.lareqa import read_lareqa
from hybrid_qdrant.training.mmarco import read_mmarco
from hybrid_qdrant.training.pair_index import PairIndex
from hybrid_qdrant.training.pairs import read_hf, read_jsonl, read_parquet, read_records
from hybrid_qdrant.training.sources import holdout, load_pairs
from hybrid_qdrant.types import Pair

FIXTURES = Path(__file__).parent / "fixtures" / "training"
LAREQA = Path(__file__).parent / "fixtures" / "lareqa"
MLQA_R = Path("/work/shared/data/lareqa/mlqa-r")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = json.dumps({"query": "q", "passage": "p", "lang": "en", "group_id": 7})


# --- JSONL / Parquet ------------------------------------------------------------------------------------


def test_jsonl_fixture_reads_every_field():
    pairs = read_jsonl(FIXTURES / "pairs.jsonl")
    assert len(pairs) == 36
    assert pairs[1] == Pair(
        "wo ist Fluss",
        "Fluss liegt östlich der Altstadt",
        "de",
        "g00",
        "Berg liegt westlich der Altstadt",
    )
    assert {p.lang for p in pairs} == {"en", "de", "fr"}


def test_jsonl_integer_group_becomes_string_and_default_lang_applies(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [GOOD, "", json.dumps({"query": "q2", "passage": "p2"})])
    pairs = read_jsonl(path, lang="sw")
    assert pairs == [Pair("q", "p", "en", "7"), Pair("q2", "p2", "sw", None)]


def test_jsonl_gzip(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(GOOD + "\n")
    assert read_records(path) == [Pair("q", "p", "en", "7")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "q", "passage": ', "a.jsonl:2: malformed JSON"),
        ('{"passage": "p", "lang": "en"}', "a.jsonl:2: missing field 'query'"),
        ('{"query": "q", "lang": "en"}', "a.jsonl:2: missing field 'passage'"),
        ('{"query": "q", "passage": "p"}', "a.jsonl:2: missing field 'lang'"),
        ('{"query": "  ", "passage": "p", "lang": "en"}', "a.jsonl:2: empty 'query'"),
        ('{"query": "q", "passage": "", "lang": "en"}', "a.jsonl:2: empty 'passage'"),
        ('{"query": "q", "passage": "p", "lang": "en", "negative": ""}', "a.jsonl:2: empty 'negative'"),
        ('{"query": 3, "passage": "p", "lang": "en"}', "a.jsonl:2: field 'query' must be a string"),
        ("[1, 2]", "a.jsonl:2: expected an object"),
    ],
)
def test_jsonl_bad_record_names_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "a.jsonl", [GOOD, line])
    with pytest.raises(DataError, match=message):
        read_jsonl(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unknown file type"):
        read_records(tmp_path / "pairs.csv")


def test_parquet_reads_and_reports_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"query": ["q1", "q2"], "passage": ["p1", "p2"], "lang": ["de", "de"], "group_id": ["a", None]}
    pq.write_table(pa.table(rows), tmp_path / "a.parquet")
    assert read_parquet(tmp_path / "a.parquet") == [Pair("q1", "p1", "de", "a"), Pair("q2", "p2", "de", None)]
    rows["passage"][1] = ""
    pq.write_table(pa.table(rows), tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"b.parquet: row 2: empty 'passage'"):
        read_parquet(tmp_path / "b.parquet")


# --- Hugging Face datasets -------------------------------------------------------------------------------


def test_hf_saved_dataset_with_column_mapping(tmp_path):
    import datasets

    data = {"question": ["q1", "q2"], "answer": ["p1", "p2"], "qid": ["1", "2"], "extra": [1, 2]}
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "ds"))
    columns = {"query": "question", "passage": "answer", "group_id": "qid"}
    pairs = read_hf(str(tmp_path / "ds"), columns=columns, lang="fi")
    assert pairs == [Pair("q1", "p1", "fi", "1"), Pair("q2", "p2", "fi", "2")]
    with pytest.raises(DataError, match=r"missing column\(s\) \['passage'\]"):
        read_hf(str(tmp_path / "ds"), columns={"query": "question"}, lang="fi")
    with pytest.raises(DataError, match="unknown pair field"):
        read_hf(str(tmp_path / "ds"), columns={"question": "query"})


def test_hf_saved_dataset_dict_split_and_bad_row(tmp_path):
    import datasets

    good = datasets.Dataset.from_dict({"query": ["q"], "passage": ["p"], "lang": ["en"]})
    bad = datasets.Dataset.from_dict({"query": ["q", ""], "passage": ["p", "p"], "lang": ["en", "en"]})
    datasets.DatasetDict({"train": good, "dev": bad}).save_to_disk(str(tmp_path / "dd"))
    assert read_hf(str(tmp_path / "dd")) == [Pair("q", "p", "en")]
    with pytest.raises(DataError, match=r"\[dev\] row 2: empty 'query'"):
        read_hf(str(tmp_path / "dd"), split="dev")


# --- LAReQA (through the evaluation loader) -------------------------------------------------------------


def test_lareqa_gold_sentence_in_the_query_language_and_question_id_groups():
    pairs = read_lareqa("mlqa-r", LAREQA, ["en", "de"])
    assert sorted((p.lang, p.group_id) for p in pairs) == [("de", "m1"), ("en", "m1"), ("en", "m2")]
    by_key = {(p.lang, p.group_id): p for p in pairs}
    assert by_key["de", "m1"] == Pair("Woher stammt grüner Tee?", "Grüner Tee stammt aus China.", "de", "m1")
    assert by_key["en", "m1"].passage == "Green tea comes from China."


def test_lareqa_context_appends_the_paragraph():
    (pair,) = read_lareqa("mlqa-r", LAREQA / "mlqa-r", ["de"], context=True)
    assert (
        pair.passage
        == "Grüner Tee stammt aus China.\nGrüner Tee stammt aus China. Er wird nicht fermentiert."
    )


def test_lareqa_errors_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_lareqa("mlqa-r", tmp_path, ["de"])
    (tmp_path / "de.json").write_text('{"data": [\n {oops}', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 .*malformed JSON"):
        read_lareqa("mlqa-r", tmp_path, ["de"])
    with pytest.raises(DataError, match="unknown LAReQA set"):
        read_lareqa("squad", tmp_path)


@pytest.mark.skipif(not MLQA_R.is_dir(), reason="MLQA-R files not present")
def test_lareqa_real_mlqa_r():
    pairs = read_lareqa("mlqa-r", MLQA_R, ["de", "en"])
    de = [p for p in pairs if p.lang == "de"]
    assert len(de) == 512  # every question: LAReQA's rule keeps answers crossing a sentence end
    assert {p.group_id for p in de} <= {p.group_id for p in pairs if p.lang == "en"}
    triplets = read_lareqa("mlqa-r", MLQA_R, hard_negatives=True)
    assert len(triplets) == 4199 and all(p.negative and p.negative != p.passage for p in triplets)


def test_lareqa_hard_negatives_are_other_sentences_of_the_gold_paragraph():
    bench = load_benchmark("xquad-r", LAREQA / "xquad-r", ["en", "de", "es"])
    texts = {p.doc_id: p.text for p in bench.passages}
    pairs = read_lareqa("xquad-r", LAREQA / "xquad-r", ["en", "de", "es"], hard_negatives=True)
    assert pairs == read_lareqa("xquad-r", LAREQA / "xquad-r", ["en", "de", "es"], hard_negatives=True)
    by_query = {(q.lang, q.text): q for q in bench.queries}
    for pair in pairs:
        query = by_query[(pair.lang, pair.query)]
        gold = sorted(d for d in bench.qrels[query.query_id] if d.startswith(pair.lang + "/"))
        paragraph = gold[0].rsplit("/", 1)[0]
        others = [d for d in texts if d.rsplit("/", 1)[0] == paragraph and d not in gold]
        # the doc ids with the negative's text (a text may repeat, e.g. "It is very long.")
        negative = [d for d, t in texts.items() if t == pair.negative and d.startswith(pair.lang + "/")]
        assert negative and not set(negative) & set(gold)
        lang, article, _, _ = gold[0].split("/")
        same_article = [d for d in texts if d.split("/")[:2] == [lang, article] and d not in gold]
        if others:  # a sentence of the same paragraph, in the pair's language
            assert set(negative) & set(others)
        elif same_article:  # a one-sentence paragraph: the same article next
            assert set(negative) & set(same_article)
        else:  # alone in its article (the fixtures' article 1): the next paragraph of its language
            assert any(d.startswith(f"{lang}/0/0/") for d in negative)
    assert all(p.negative is None for p in read_lareqa("xquad-r", LAREQA / "xquad-r", ["en"]))


def test_lareqa_hard_negatives_in_the_config():
    source = DataSource(kind="lareqa", name="mlqa-r", hard_negatives="paragraph")
    assert source.to_dict()["hard_negatives"] == "paragraph"
    with pytest.raises(ConfigError, match="hard_negatives"):
        DataSource(kind="lareqa", name="mlqa-r", hard_negatives="bm25")


# --- mMARCO style ---------------------------------------------------------------------------------------


def test_mmarco_first_triple_per_query_with_bm25_negative():
    pairs = read_mmarco(FIXTURES / "mmarco", ["en", "de"])
    assert [(p.lang, p.group_id) for p in pairs] == [
        ("en", "1"),
        ("en", "2"),
        ("en", "3"),
        ("de", "1"),
        ("de", "2"),
    ]
    assert pairs[3] == Pair(
        "was ist ein Fluss",
        "ein Fluss ist fließendes Wasser",
        "de",
        "1",
        negative="ein See ist stehendes Wasser",
    )


def test_mmarco_max_queries_and_name_patterns(tmp_path):
    assert len(read_mmarco(FIXTURES / "mmarco", ["en"], max_queries=2)) == 2
    root = tmp_path / "mm"
    (root / "queries").mkdir(parents=True)
    (root / "collections").mkdir()
    write_lines(root / "queries" / "german_queries.train.tsv", ["5\tfrage"])
    write_lines(root / "collections" / "german_collection.tsv", ["8\tantwort", "9\tanderes"])
    write_lines(root / "triples.train.ids.small.tsv", ["5\t8\t9"])
    pairs = read_mmarco(
        root,
        ["de"],
        queries="queries/{name}_queries.train.tsv",
        collection="collections/{name}_collection.tsv",
        triples="triples.train.ids.small.tsv",
        names={"de": "german"},
    )
    assert pairs == [Pair("frage", "antwort", "de", "5", "anderes")]


def test_mmarco_bad_lines(tmp_path):
    root = tmp_path / "mm"
    (root / "en").mkdir(parents=True)
    write_lines(root / "triples.tsv", ["1\t2\t3", "1\t2"])
    write_lines(root / "en" / "queries.tsv", ["1\tq"])
    write_lines(root / "en" / "collection.tsv", ["2\tp", "3 no tab"])
    with pytest.raises(DataError, match=r"triples.tsv:2: expected 3 tab-separated ids"):
        read_mmarco(root, ["en"])
    write_lines(root / "triples.tsv", ["1\t2\t3"])
    with pytest.raises(DataError, match=r"collection.tsv:2: expected an id, a tab and a text"):
        read_mmarco(root, ["en"])
    with pytest.raises(DataError, match="does not exist"):
        read_mmarco(root, ["fr"])


# --- loading, hold-out, index ---------------------------------------------------------------------------


def test_load_pairs_concatenates_sources_and_filters_languages():
    sources = [
        DataSource(kind="jsonl", path=str(FIXTURES / "pairs.jsonl")),
        DataSource(kind="lareqa", name="mlqa-r", path=str(LAREQA), languages=("en", "de")),
    ]
    assert len(load_pairs(sources)) == 36 + 3
    assert {p.lang for p in load_pairs(sources, ["fr"])} == {"fr"}
    with pytest.raises(DataError, match="no training pairs"):
        load_pairs(sources, ["xx"])


def test_holdout_keeps_translations_together_and_is_stable():
    pairs = read_jsonl(FIXTURES / "pairs.jsonl")
    train, held = holdout(pairs, 0.3, seed=1)
    assert len(train) + len(held) == len(pairs)
    assert {p.group_id for p in train}.isdisjoint({p.group_id for p in held})
    assert held and train
    assert holdout(list(reversed(pairs)), 0.3, seed=1)[1] == list(reversed(held))


def test_pair_index_rows_resolve_to_text_columns_only():
    pairs = read_jsonl(FIXTURES / "pairs.jsonl") + [Pair("solo q", "solo p", "en")]
    index = PairIndex(pairs, negatives=False)
    # 12 groups in 3 languages: 3 * 2 ordered cross combinations each; the groupless pair has none
    assert (index.n_pairs, index.n_cross_groups, index.n_rows) == (37, 12, 37 + 72)
    dataset = index.dataset
    assert list(dataset[0]) == ["query", "passage"]
    queries, passages = index.languages_of(range(index.n_pairs, index.n_rows))
    assert all(q != p for q, p in zip(queries, passages, strict=True))
    # the first cross row of group g00: its English query with its German passage
    assert dataset[index.n_pairs] == {
        "query": "where is the river",
        "passage": "Fluss liegt östlich der Altstadt",
    }


def test_pair_index_negatives_policy():
    pairs = read_jsonl(FIXTURES / "pairs.jsonl")
    assert PairIndex(pairs).has_negatives
    assert list(PairIndex(pairs).dataset[0]) == ["query", "passage", "negative"]
    mixed = [*pairs, Pair("q", "p", "en")]
    assert not PairIndex(mixed).has_negatives
    with pytest.raises(DataError, match="1 of 37 pairs have none"):
        PairIndex(mixed, negatives=True)
    with pytest.raises(DataError, match="no training pairs"):
        PairIndex([])


def test_pair_index_group_with_two_pairs_in_one_language():
    pairs = [Pair("q1", "p1", "en", "g"), Pair("q2", "p2", "en", "g"), Pair("q3", "p3", "de", "g")]
    index = PairIndex(pairs)
    # en->de twice, de->en twice; never en->en across the two English pairs
    assert index.n_rows == 3 + 4
    q, p = index.pair_ids(range(3, 7))
    assert sorted(zip(q.tolist(), p.tolist(), strict=True)) == [(0, 2), (1, 2), (2, 0), (2, 1)]
