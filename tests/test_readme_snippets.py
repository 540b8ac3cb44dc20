"""The README's search snippets, run as written (names substituted): the Retriever, plain qdrant-client
against a server (the fake one on 127.0.0.1) and plain qdrant-edge-py on an embedded store built by
hq ingest. Each must print the hits hq's own search returns."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from fake_qdrant import serve
from search_helpers import COLLECTION, build_collection, tiny_model

from hybrid_qdrant.retriever import Retriever

README = Path(__file__).parents[1] / "README.md"
QUESTION = "Wer ist der General Manager der Broncos?"  # the snippets' question


def snippet(name: str) -> str:
    """The ```python block after ``<!-- snippet: name -->`` in the README."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- snippet: {re.escape(name)} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no snippet {name!r}"
    return match.group(1)


def run_snippet(code: str, **names: str) -> list[str]:
    """Run ``code`` with its ``NAME = ...`` / ``A, B = ...`` assignments replaced; its printed lines."""
    for line in re.findall(r"^([A-Z_, ]+) = .*$", code, re.M):
        targets = [t.strip() for t in line.split(",")]
        assert all(t in names for t in targets), f"no value for {targets}"
        values = ", ".join(repr(names[t]) for t in targets)
        code = re.sub(rf"^{re.escape(line)} = .*$", f"{line} = {values}", code, count=1, flags=re.M)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    return tiny_model(tmp_path_factory.mktemp("readme") / "tiny")


def expected_lines(**store) -> tuple[list[str], list[str]]:
    """hq's own answer to the snippets' question (German passages, 10 hits): doc ids, printed lines."""
    with Retriever.open(COLLECTION, **store) as retriever:
        hits = retriever.search_one(QUESTION, lang="de", k=10)
    assert hits
    return [h.doc_id for h in hits], [f"{round(h.score, 4)} {h.lang} {h.doc_id} {h.text}" for h in hits]


def test_the_retriever_snippet(model, tmp_path):
    build_collection(model, tmp_path, "--location", tmp_path / "q")
    printed = run_snippet(snippet("retriever"), LOCATION=str(tmp_path / "q"), COLLECTION=COLLECTION)
    doc_ids, _ = expected_lines(location=tmp_path / "q")
    assert [line.split()[3] for line in printed] == doc_ids[:5]
    assert [line.split()[0] for line in printed] == ["1", "2", "3", "4", "5"]


def test_the_plain_qdrant_edge_snippet_on_an_hq_collection(model, tmp_path):
    build_collection(model, tmp_path, "--location", tmp_path / "q")
    doc_ids, lines = expected_lines(location=tmp_path / "q")  # closed again: the snippet opens the shard
    code = snippet("qdrant-edge")
    assert "EdgeShard.load" in code and 'MatchValue("de")' in code
    printed = run_snippet(code, LOCATION=str(tmp_path / "q"), COLLECTION=COLLECTION, MODEL=model)
    assert [line.split()[2] for line in printed] == doc_ids
    assert printed == lines


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")  # the fake server's root answer
def test_the_plain_qdrant_client_snippet_against_a_server(model, tmp_path, monkeypatch):
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    code = snippet("qdrant-client")
    assert "query_points" in code and 'key="lang"' in code
    with serve() as (url, fake):
        build_collection(model, tmp_path, "--url", url)
        doc_ids, lines = expected_lines(url=url)
        fake.requests.clear()
        printed = run_snippet(code, URL=url, COLLECTION=COLLECTION, MODEL=model)
        assert ("POST", f"/collections/{COLLECTION}/points/query") in fake.requests
    assert [line.split()[2] for line in printed] == doc_ids
    assert printed == lines
