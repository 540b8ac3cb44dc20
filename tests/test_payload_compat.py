"""Payload keys for LangChain and LlamaIndex: the documented shape, each library's Qdrant store reading an
hq collection as it is (when installed), and a collection keeping its layout."""

from __future__ import annotations

import json

import pytest
from search_helpers import COLLECTION, fixture_benchmark, hq, ingest_args, tiny_model

from hybrid_qdrant.encoding.encoder import EncoderSettings, SentenceTransformerEncoder
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.evaluation.ingest import ingest, payload_of
from hybrid_qdrant.evaluation.jobs import load_job
from hybrid_qdrant.retriever import Retriever
from hybrid_qdrant.store import open_store, point_id
from hybrid_qdrant.store.payload_compat import FORMATS, check_formats, formats_of
from hybrid_qdrant.types import Passage

PASSAGE = Passage("de/0/0/1", "Er mündet in die Nordsee.", "de", "0/0", title="Rhein")
QUESTION = "Wohin mündet der Rhein?"


def test_the_documented_payload_shape():
    plain = payload_of(PASSAGE)
    assert formats_of(plain) == ()
    payload = payload_of(PASSAGE, formats=FORMATS)
    assert {k: payload[k] for k in plain} == plain  # hq's own keys are unchanged
    metadata = {"lang": "de", "doc_id": "de/0/0/1", "group_id": "0/0", "title": "Rhein"}
    # LangChain: page_content + metadata
    assert payload["page_content"] == PASSAGE.text and payload["metadata"] == metadata
    # LlamaIndex: a TextNode (id = the point id, source document = the doc id) + top-level ids
    node = json.loads(payload["_node_content"])
    assert payload["_node_type"] == node["class_name"] == "TextNode"
    assert node["id_"] == point_id(PASSAGE.doc_id) and node["text"] == PASSAGE.text
    assert node["metadata"] == metadata and node["relationships"]["1"]["node_id"] == PASSAGE.doc_id
    assert payload["doc_id"] == payload["document_id"] == payload["ref_doc_id"] == PASSAGE.doc_id
    assert formats_of(payload) == FORMATS
    assert formats_of(payload_of(PASSAGE, formats=["langchain"])) == ("langchain",)
    assert check_formats(["llamaindex", "langchain", "langchain"]) == ("langchain", "llamaindex")
    with pytest.raises(ConfigError, match="unknown payload format"):
        check_formats(["haystack"])


def test_the_config_key_is_checked_when_the_job_is_built():
    job = load_job(None, {"collection.payload_compat": "llamaindex,langchain"})  # as --payload-compat
    assert job.collection.payload_compat == ("langchain", "llamaindex")
    assert load_job().collection.payload_compat is None  # keep what the collection holds
    with pytest.raises(ConfigError, match="unknown payload format"):
        load_job(None, {"collection.payload_compat": ["haystack"]})


@pytest.fixture(scope="module")
def local_collection(tmp_path_factory):
    """The fixture's passages with both payload layouts in qdrant-client's local mode (what both
    libraries open without a server), and the encoder."""
    tmp = tmp_path_factory.mktemp("compat")
    model = tiny_model(tmp / "tiny")
    encoder = SentenceTransformerEncoder(EncoderSettings(model=model, device="cpu"))
    path = tmp / "local"
    with open_store(location=path, engine="client-local", collection="xq") as store:
        ingest(fixture_benchmark().passages, encoder, store, payload_compat=["langchain", "llamaindex"])
    with Retriever.open("xq", location=path, engine="client-local") as retriever:
        expected = retriever.search_one(QUESTION, lang="de", k=3)
    return path, encoder, expected


def test_langchain_reads_an_hq_collection(local_collection):
    pytest.importorskip("langchain_qdrant")
    from langchain_core.embeddings import Embeddings
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient, models

    path, encoder, expected = local_collection

    class HqEmbeddings(Embeddings):  # the collection's encoder, its prefixes included
        def embed_documents(self, texts):
            return encoder.encode_passages(texts).tolist()

        def embed_query(self, text):
            return encoder.encode_queries([text])[0].tolist()

    client = QdrantClient(path=str(path))
    try:
        store = QdrantVectorStore(client=client, collection_name="xq", embedding=HqEmbeddings())
        german = models.Filter(must=[models.FieldCondition(key="lang", match=models.MatchValue(value="de"))])
        found = store.similarity_search_with_score(QUESTION, k=3, filter=german)
    finally:
        client.close()
    assert [doc.metadata["doc_id"] for doc, _ in found] == [h.doc_id for h in expected]
    assert [doc.page_content for doc, _ in found] == [h.text for h in expected]
    assert [score for _, score in found] == pytest.approx([h.score for h in expected], abs=1e-5)
    assert all(
        doc.metadata["lang"] == "de" and doc.metadata["_id"] == point_id(h.doc_id)
        for (doc, _), h in zip(found, expected, strict=True)
    )


def test_llamaindex_reads_an_hq_collection(local_collection):
    pytest.importorskip("llama_index.vector_stores.qdrant")
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    path, encoder, expected = local_collection
    client = QdrantClient(path=str(path))
    try:
        store = QdrantVectorStore(client=client, collection_name="xq")
        query = VectorStoreQuery(
            query_embedding=encoder.encode_queries([QUESTION])[0].tolist(),
            similarity_top_k=3,
            filters=MetadataFilters(filters=[MetadataFilter(key="lang", value="de")]),
        )
        result = store.query(query)
    finally:
        client.close()
    assert [node.ref_doc_id for node in result.nodes] == [h.doc_id for h in expected]
    assert [node.get_content() for node in result.nodes] == [h.text for h in expected]
    assert result.ids == [point_id(h.doc_id) for h in expected] == [node.node_id for node in result.nodes]
    assert result.similarities == pytest.approx([h.score for h in expected], abs=1e-5)
    assert all(node.metadata["lang"] == "de" for node in result.nodes)


def test_a_collection_keeps_its_payload_layout(tmp_path):
    encoder = SentenceTransformerEncoder(EncoderSettings(model=tiny_model(tmp_path / "tiny"), device="cpu"))
    passages = fixture_benchmark().passages
    with open_store(location=tmp_path / "q", collection="c") as store:
        ingest(passages[:5], encoder, store, payload_compat=["langchain"])
        ingest(passages, encoder, store)  # None: the new points get the collection's layout
        assert {formats_of(r.payload) for r in store.iter_records(with_vectors=False)} == {("langchain",)}
        with pytest.raises(ConfigError, match="holds payloads for langchain, not hq only"):
            ingest(passages, encoder, store, payload_compat=[])
        with pytest.raises(ConfigError, match="not langchain, llamaindex"):
            ingest(passages, encoder, store, payload_compat=["llamaindex", "langchain"])
    with (
        open_store(location=tmp_path / "q", collection="t") as store,
        pytest.raises(ConfigError, match="text"),
    ):
        ingest(passages, encoder, store, payload_compat=["langchain"], store_text=False)


def test_recreate_builds_another_layout_beside_the_old_collection(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    args = ingest_args(model, tmp_path, "--location", tmp_path / "q")
    assert hq(*args, "--payload-compat", "langchain").exit_code == 0
    refused = hq(*args, "--payload-compat", "llamaindex")
    assert refused.exit_code == 2 and "holds payloads for langchain, not llamaindex" in refused.output
    rebuilt = hq(*args, "--payload-compat", "llamaindex", "--recreate")
    assert rebuilt.exit_code == 0, rebuilt.output
    with open_store(location=tmp_path / "q", collection=COLLECTION) as store:  # now an alias
        assert {formats_of(r.payload) for r in store.iter_records(with_vectors=False)} == {("llamaindex",)}
        assert store.resolve(COLLECTION) != COLLECTION
