"""hq search and the collection admin commands (info, alias set / delete, list while another process
holds a collection) through typer's CliRunner, on collections built by hq ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fake_qdrant import serve
from search_helpers import COLLECTION, LANGS, brute_force, build_collection, fixture_benchmark, hq, tiny_model


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search-cli")
    model = tiny_model(tmp / "models" / "tiny")
    location = tmp / "qdrant"
    build_collection(model, tmp, "--location", location, "--payload-compat", "langchain")
    return model, location


def test_search_returns_the_gold_sentence_of_an_answered_question_without_model(built):
    model, location = built
    bench = fixture_benchmark()
    german = [q for q in bench.queries if q.lang == "de"]
    top = brute_force(model, [q.text for q in german], 1, {"de"})
    answered = [
        (q, hits[0][0]) for q, hits in zip(german, top, strict=True) if hits[0][0] in bench.qrels[q.query_id]
    ]
    assert answered, "the tiny model answers some German questions (seed 0)"
    for question, gold in answered:
        result = hq("search", question.text, "--lang", "de", "-c", COLLECTION, "--location", location)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0] == f"query 1: {question.text}"
        assert lines[1].split() == ["rank", "score", "lang", "doc_id", "text"]
        rank, _, lang, doc_id, *text = lines[2].split()
        assert (rank, lang, doc_id) == ("1", "de", gold)
        assert " ".join(text) == next(p.text for p in bench.passages if p.doc_id == gold)


def test_search_json_lines_several_questions_and_languages(built):
    model, location = built
    questions = ["Wohin mündet der Rhein?", "Was ist die Hauptstadt Frankreichs?"]
    result = hq("search", *questions, "--langs", "de,es", "--k", "3", "--json", "--location", location)
    assert result.exit_code == 0, result.output  # the only collection at the location: no -c needed
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["query_index"], r["rank"]) for r in rows] == [(i, k) for i in (0, 1) for k in (1, 2, 3)]
    expected = brute_force(model, questions, 3, {"de", "es"})
    assert [r["doc_id"] for r in rows] == [d for hits in expected for d, _ in hits]
    assert all(r["lang"] in ("de", "es") and r["text"] and r["group_id"] for r in rows)
    assert rows[0]["query"] == questions[0]


def test_search_refuses_another_model_and_bad_options_with_one_line(built, tmp_path):
    _, location = built
    other = tiny_model(tmp_path / "other", seed=1)
    refused = hq("search", "Rhein", "--model", other, "--location", location)
    assert refused.exit_code == 3
    assert (
        refused.output.count("\n") == 1 and "does not match" in refused.output and "--model" in refused.output
    )
    both = hq("search", "Rhein", "--lang", "de", "--langs", "de,en", "--location", location)
    assert both.exit_code == 2 and "not both" in both.output
    missing = hq("search", "Rhein", "-c", "nope", "--location", location)
    assert missing.exit_code == 4 and "no collection 'nope'" in missing.output
    none = hq("search", "Rhein", "--lang", "fr", "--location", location)
    assert none.exit_code == 0 and "(no hits)" in none.output and "no passages in fr" in none.output


def test_search_takes_an_evaluation_config_and_set(built, tmp_path):
    _, location = built
    config = tmp_path / "job.toml"
    config.write_text(
        f'[store]\nlocation = "{location}"\n\n[collection]\nname = "{COLLECTION}"\n\n'
        "[encoder]\nbatch_size = 8  # no model: the recorded one\n",
        encoding="utf-8",
    )
    from_config = hq("search", "Rhein", "--config", config, "--k", "2", "--json")
    assert from_config.exit_code == 0, from_config.output
    from_set = hq("search", "Rhein", "--set", f"store.location={location}", "--k", "2", "--json")
    assert from_set.exit_code == 0 and from_set.output == from_config.output
    assert [json.loads(line)["rank"] for line in from_config.output.splitlines()] == [1, 2]


def test_search_asks_which_collection_when_there_are_several(built, tmp_path):
    model, _ = built
    build_collection(model, tmp_path, "--location", tmp_path / "q", collection="a")
    build_collection(model, tmp_path, "--location", tmp_path / "q", collection="b")
    result = hq("search", "Rhein", "--location", tmp_path / "q")
    assert result.exit_code == 2 and "pass --collection (it holds a, b)" in result.output


def test_collections_info_shows_languages_encoder_payload_and_index(built):
    model, location = built
    result = hq("collections", "info", COLLECTION, "--location", location)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines())
    counts = {lang: sum(p.lang == lang for p in fixture_benchmark().passages) for lang in LANGS}
    assert (
        lines["points"] == f"{sum(counts.values())} ({', '.join(f'{k} {counts[k]}' for k in sorted(counts))})"
    )
    assert lines["vectors"] == "32-d, cosine, unnamed vector"
    assert json.loads(lines["encoder"])["model"] == model
    assert json.loads(lines["encoder"])["query_prefix"] == "query: "
    assert lines["payload"].startswith("hq + langchain (keys: ")
    assert "engine default" in lines["hnsw"] and lines["payload_indexes"] == '["lang"]'

    as_json = json.loads(hq("collections", "info", COLLECTION, "--json", "--location", location).output)
    assert as_json["collection"] == COLLECTION and as_json["aliases"] == "none"
    assert as_json["encoder"]["max_seq_length"] == 64 and as_json["fingerprint"].startswith("{")


def test_alias_set_delete_and_the_old_form(built, tmp_path):
    model, _ = built
    location = ["--location", tmp_path / "q"]
    build_collection(model, tmp_path, *location)
    assert hq("collections", "alias", "prod", COLLECTION, *location).exit_code == 0  # the old form
    assert hq("collections", "alias", "set", "live", COLLECTION, *location).exit_code == 0
    info = hq("collections", "info", "prod", *location)  # an alias resolves to its collection
    fields = dict(line.split(None, 1) for line in info.output.splitlines())
    assert info.exit_code == 0 and fields["collection"] == COLLECTION and fields["aliases"] == "live, prod"
    assert hq("search", "Rhein", "-c", "prod", "--k", "1", *location).exit_code == 0

    deleted = hq("collections", "alias", "delete", "prod", *location)
    assert deleted.exit_code == 0 and f"collection {COLLECTION} kept" in deleted.output
    listing = hq("collections", "list", *location).output
    assert COLLECTION in listing and "aliases: live" in listing and "prod" not in listing
    again = hq("collections", "alias", "delete", "prod", *location)
    assert again.exit_code == 1 and "no alias 'prod'" in again.output


HOLDER = textwrap.dedent(
    """
    import sys
    from hybrid_qdrant.retriever import Retriever
    retriever = Retriever.open(sys.argv[2], location=sys.argv[1])
    print(retriever.search_one("Rhein", k=1)[0].doc_id, flush=True)
    sys.stdin.read()  # hold the collection open until the test closes stdin
    retriever.close()
    """
)


def test_list_and_info_work_while_another_process_holds_the_collection(built, tmp_path):
    model, _ = built
    location = tmp_path / "q"
    build_collection(model, tmp_path, "--location", location)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), *sys.path])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(location), COLLECTION],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout.readline().strip()  # it searched: the collection is open there
        listing = hq("collections", "list", "--location", location)
        assert listing.exit_code == 0 and "open in another process" in listing.output
        info = hq("collections", "info", COLLECTION, "--location", location)
        assert info.exit_code == 0, info.output
        assert "per language: unavailable" in info.output and "open in another process" in info.output
        assert "query_prefix" in info.output  # the metadata is still read
        busy = hq("search", "Rhein", "--location", location)
        assert busy.exit_code == 4 and "open in another process" in busy.output
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert "open in another process" not in hq("collections", "list", "--location", location).output


def test_search_a_server_collection(built, tmp_path, monkeypatch):
    model, location = built
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    with serve() as (url, _):
        build_collection(model, tmp_path, "--url", url)
        server = hq("search", "Wohin mündet der Rhein?", "--lang", "de", "-c", COLLECTION, "--url", url)
        info = hq("collections", "info", COLLECTION, "--url", url)
    embedded = hq(
        "search", "Wohin mündet der Rhein?", "--lang", "de", "-c", COLLECTION, "--location", location
    )
    assert server.exit_code == 0, server.output
    strip = [line.split()[3] for line in server.output.splitlines()[2:]]
    assert strip == [line.split()[3] for line in embedded.output.splitlines()[2:]]
    assert info.exit_code == 0 and "points" in info.output and "de " in info.output
