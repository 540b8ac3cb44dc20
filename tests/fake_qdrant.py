"""A minimal Qdrant REST server on 127.0.0.1 for tests: the endpoints hybrid-qdrant uses, in memory,
with injectable faults (503 before or after applying a request, a dropped connection, a trickled or
withheld answer). Not a test module (no ``test_`` prefix).

Only what ``hybrid_qdrant.store.server`` (and ``query_points``) sends is understood: collections with
one dense vector (named or not), cosine / dot / euclid, a ``must`` filter of ``match`` conditions (value
or any), UUID point ids, aliases and collection metadata. Every request is recorded as
``(method, path)`` in ``requests``.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import numpy as np

#: A fault: called with (method, path, body, seen) -> None (answer normally) or one of
#: "503" (refuse before applying), "503-after" (apply, then answer 503), "drop-after" (apply, then close
#: the connection without an answer), "hang" (accept, never answer), "trickle" (answer one byte at a time),
#: "trickle-body" (the headers at once, then the body one byte at a time).
Fault = Callable[[str, str, dict, int], "str | None"]

_COLLECTION = re.compile(r"^/collections/([^/]+)$")
_POINTS = re.compile(r"^/collections/([^/]+)/points(/scroll|/count|/query/batch|/query)?$")
_INDEX = re.compile(r"^/collections/([^/]+)/index$")


class FakeQdrant:
    """In-memory collections, points and aliases behind Qdrant's REST shapes."""

    def __init__(self, version: str = "1.20.0", api_key: str | None = None, trickle_delay: float = 0.2):
        self.version = version
        self.api_key = api_key
        self.trickle_delay = trickle_delay
        self.collections: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.fault: Fault | None = None
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, dict]] = []  # (path, JSON body) of every request
        self.faults_applied: list[tuple[str, str, str]] = []
        self.stop = threading.Event()
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ dispatch

    def handle(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        with self._lock:
            return self._route(method, path, body)

    def _route(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        if path == "/" and method == "GET":
            return 200, {"title": "qdrant - vector search engine", "version": self.version}
        if path == "/collections" and method == "GET":
            return _ok({"collections": [{"name": n} for n in sorted(self.collections)]})
        if path == "/aliases" and method == "GET":
            return _ok(
                {"aliases": [{"alias_name": a, "collection_name": c} for a, c in self.aliases.items()]}
            )
        if path == "/collections/aliases" and method == "POST":
            return self._change_aliases(body["actions"])
        if m := _COLLECTION.match(path):
            return self._collection(method, m.group(1), body)
        if m := _INDEX.match(path):
            if m.group(1) not in self.collections:
                return _missing(m.group(1))
            self.collections[m.group(1)]["indexes"].add(body["field_name"])
            return _ok({"operation_id": 0, "status": "completed"})
        if m := _POINTS.match(path):
            name = self.aliases.get(m.group(1), m.group(1))
            if name not in self.collections:
                return _missing(m.group(1))
            return self._points(method, m.group(2) or "", self.collections[name], body)
        return 404, {"status": {"error": f"fake Qdrant: no route {method} {path}"}}

    def _collection(self, method: str, name: str, body: dict) -> tuple[int, Any]:
        if method == "PUT":
            if name in self.collections:
                return 409, {"status": {"error": f"Wrong input: Collection `{name}` already exists!"}}
            vectors = body["vectors"]
            if "size" in vectors:
                vector_name, params = "", vectors
            else:
                ((vector_name, params),) = vectors.items()
            self.collections[name] = {
                "vector_name": vector_name,
                "size": int(params["size"]),
                "distance": params["distance"],
                "metadata": body.get("metadata"),
                "hnsw": {k: v for k, v in (body.get("hnsw_config") or {}).items() if v is not None},
                "quantization": body.get("quantization_config"),
                "indexes": set(),
                "points": {},
            }
            return _ok(True)
        if method == "DELETE":
            return _ok(self.collections.pop(name, None) is not None)
        if method == "PATCH":  # update_collection: the fake keeps only the metadata
            if name not in self.collections:
                return _missing(name)
            if "metadata" in body:
                self.collections[name]["metadata"] = body["metadata"]
            return _ok(True)
        target = self.aliases.get(name, name)
        if target not in self.collections:
            return _missing(name)
        return _ok(self._info(self.collections[target]))

    def _info(self, c: dict) -> dict:
        params = {"size": c["size"], "distance": c["distance"]}
        config: dict[str, Any] = {
            "params": {"vectors": {c["vector_name"]: params} if c["vector_name"] else params},
            "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, **c.get("hnsw", {})},
            "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
        }
        if c["metadata"] is not None:
            config["metadata"] = c["metadata"]
        if c.get("quantization") is not None:  # collections a test made by hand have neither key
            config["quantization_config"] = c["quantization"]
        return {
            "status": "green",
            "optimizer_status": "ok",
            "indexed_vectors_count": 0,  # the fake searches exhaustively: no HNSW graph
            "segments_count": 1,
            "points_count": len(c["points"]),
            "config": config,
            "payload_schema": {k: {"data_type": "keyword", "points": len(c["points"])} for k in c["indexes"]},
        }

    def _change_aliases(self, actions: list[dict]) -> tuple[int, Any]:
        aliases = dict(self.aliases)
        for action in actions:
            if "delete_alias" in action:
                if aliases.pop(action["delete_alias"]["alias_name"], None) is None:
                    return 404, {"status": {"error": "Not found: alias does not exist"}}
            elif "create_alias" in action:
                create = action["create_alias"]
                if create["alias_name"] in aliases:
                    return 409, {"status": {"error": "Wrong input: alias already exists"}}
                if create["collection_name"] not in self.collections:
                    return _missing(create["collection_name"])
                aliases[create["alias_name"]] = create["collection_name"]
        self.aliases = aliases  # all or nothing, as on a server
        return _ok(True)

    # ------------------------------------------------------------------ points

    def _points(self, method: str, op: str, c: dict, body: dict) -> tuple[int, Any]:
        points: dict[str, tuple[np.ndarray, dict]] = c["points"]
        if method == "PUT" and op == "":
            batch = body.get("batch")
            rows = (
                zip(batch["ids"], _vectors(batch["vectors"], c), batch["payloads"], strict=True)
                if batch
                else ((p["id"], _one_vector(p["vector"], c), p.get("payload") or {}) for p in body["points"])
            )
            for pid, vector, payload in rows:
                vector = np.asarray(vector, dtype=np.float32)
                if c["distance"] == "Cosine":
                    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
                points[str(pid)] = (vector, dict(payload or {}))
            return _ok({"operation_id": 0, "status": "completed"})
        if method == "POST" and op == "":  # retrieve
            found = [pid for pid in map(str, body["ids"]) if pid in points]
            return _ok([self._record(pid, points[pid], c, body) for pid in found])
        if op == "/count":
            return _ok({"count": len(self._filtered(points, body.get("filter")))})
        if op == "/scroll":
            ids = sorted(self._filtered(points, body.get("filter")))
            offset = body.get("offset")
            if offset is not None:
                ids = [pid for pid in ids if pid >= str(offset)]
            limit = int(body.get("limit") or 10)
            page, rest = ids[:limit], ids[limit:]
            return _ok(
                {
                    "points": [self._record(pid, points[pid], c, body) for pid in page],
                    "next_page_offset": rest[0] if rest else None,
                }
            )
        if op == "/query/batch":
            return _ok([self._query(points, c, search) for search in body["searches"]])
        if op == "/query":  # what qdrant-client's query_points sends (README snippet, LangChain)
            return _ok(self._query(points, c, body))
        return 404, {"status": {"error": f"fake Qdrant: no points route {method} {op}"}}

    def _record(self, pid: str, point: tuple[np.ndarray, dict], c: dict, body: dict) -> dict:
        vector, payload = point
        record: dict[str, Any] = {"id": pid, "payload": _select(payload, body.get("with_payload", True))}
        if body.get("with_vector") or body.get("with_vectors"):
            values = [float(x) for x in vector]
            record["vector"] = {c["vector_name"]: values} if c["vector_name"] else values
        return record

    def _filtered(self, points: dict, flt: dict | None) -> list[str]:
        conditions = (flt or {}).get("must") or []

        def matches(payload: dict, cond: dict) -> bool:
            match = cond["match"]
            value = payload.get(cond["key"])
            return value in match["any"] if "any" in match else value == match["value"]

        return [pid for pid, (_, payload) in points.items() if all(matches(payload, c) for c in conditions)]

    def _query(self, points: dict, c: dict, search: dict) -> dict:
        query = search["query"]
        if isinstance(query, dict):
            query = query.get("nearest", query)
        q = np.asarray(query, dtype=np.float32)
        if c["distance"] == "Cosine":
            q = q / max(float(np.linalg.norm(q)), 1e-12)
        ids = self._filtered(points, search.get("filter"))
        if not ids:
            return {"points": []}
        matrix = np.stack([points[pid][0] for pid in ids])  # (n, dim)
        if c["distance"] == "Euclid":
            scores = np.linalg.norm(matrix - q, axis=1)
            order = np.argsort(scores, kind="stable")
        else:
            scores = matrix @ q
            order = np.argsort(-scores, kind="stable")
        limit = int(search.get("limit") or 10)
        hits = [
            {
                "id": ids[i],
                "version": 0,
                "score": float(scores[i]),
                "payload": _select(points[ids[i]][1], search.get("with_payload")),
            }
            for i in order[:limit]
        ]
        return {"points": hits}

    # ------------------------------------------------------------------ faults

    def fault_for(self, method: str, path: str, body: dict) -> str | None:
        if self.fault is None:
            return None
        key = f"{method} {path} {json.dumps(body, sort_keys=True)}"
        with self._lock:
            seen = self._seen.get(key, 0)
            self._seen[key] = seen + 1
        action = self.fault(method, path, body, seen)
        if action:
            self.faults_applied.append((method, path, action))
        return action


def _ok(result: Any) -> tuple[int, Any]:
    return 200, {"result": result, "status": "ok", "time": 0.0}


def _missing(name: str) -> tuple[int, Any]:
    return 404, {"status": {"error": f"Not found: Collection `{name}` doesn't exist!"}}


def _vectors(vectors: Any, c: dict) -> list:
    return vectors[c["vector_name"]] if isinstance(vectors, dict) else vectors


def _one_vector(vector: Any, c: dict) -> list:
    return vector[c["vector_name"]] if isinstance(vector, dict) else vector


def _select(payload: dict, selector: Any) -> dict | None:
    if selector is True or selector is None:
        return payload
    if selector is False:
        return None
    keys = selector.get("include", []) if isinstance(selector, dict) else selector
    return {k: v for k, v in payload.items() if k in keys}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeQdrant

    def _serve(self) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        fake.requests.append((self.command, parts.path))
        fake.bodies.append((parts.path, body))
        action = fake.fault_for(self.command, parts.path, body)
        if action == "hang":
            fake.stop.wait()
            self.close_connection = True
            return
        if action == "503":
            return self._reply(503, {"status": {"error": "Service Unavailable"}})
        if fake.api_key is not None and self.headers.get("api-key") != fake.api_key:
            return self._reply(
                401, {"status": {"error": "Must provide an API key or an Authorization bearer"}}
            )
        status, payload = fake.handle(self.command, parts.path, body)
        if action == "503-after":
            return self._reply(503, {"status": {"error": "Service Unavailable"}})
        if action == "drop-after":
            self.close_connection = True
            return
        self._reply(status, payload, trickle=action if action in ("trickle", "trickle-body") else None)

    def _reply(self, status: int, payload: Any, trickle: str | None = None) -> None:
        data = json.dumps(payload).encode()
        close = "Connection: close\r\n" if trickle is not None else ""  # a trickled answer ends it
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{close}\r\n"
        ).encode()
        if trickle is None:
            self.wfile.write(head + data)
            return
        self.close_connection = True
        if trickle == "trickle-body":
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        for i in range(len(head) + len(data)):
            if self.fake.stop.wait(self.fake.trickle_delay):
                return
            try:
                self.wfile.write((head + data)[i : i + 1])
                self.wfile.flush()
            except OSError:
                return

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve(fake: FakeQdrant | None = None) -> Iterator[tuple[str, FakeQdrant]]:
    """Run ``fake`` (a new one by default) on an ephemeral 127.0.0.1 port; yields (url, fake)."""
    fake = fake or FakeQdrant()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", fake
    finally:
        fake.stop.set()
        server.shutdown()
        server.server_close()
        time.sleep(0)  # let handler threads see the stop event


def fail_first(action: str = "503", methods: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE")) -> Fault:
    """A fault: the first occurrence of every distinct request (method, path, body) meets ``action``."""

    def fault(method: str, path: str, body: dict, seen: int) -> str | None:
        return action if seen == 0 and method in methods else None

    return fault
