"""API-key hygiene and connection settings, checked before anything connects: keys cleaned or refused
without being quoted, every representation scrubbed, no key over plain http to another machine, no
nonsensical timeout (default tier; servers are fakes on 127.0.0.1)."""

from __future__ import annotations

import base64
import json
import logging
import re
from urllib.parse import quote, quote_plus

import pytest
from fake_qdrant import FakeQdrant, serve

import hybrid_qdrant.store.server as server_module
from hybrid_qdrant.errors import ConfigError, StoreError
from hybrid_qdrant.store import open_store, resolve_api_key
from hybrid_qdrant.store.connection import (
    check_api_key,
    check_key_transport,
    check_server_settings,
    check_timeout,
    is_loopback,
    one_line,
    scrub,
    validate_url,
)

#: Printable ASCII with the characters that escape differently in repr, JSON, URLs and base64.
KEY = "hq-K3y/with+sp=cial&'quote\"back\\slash%41~"


def _pieces(key: str, width: int = 6) -> list[str]:
    """Every ``width``-character piece of ``key``: none may survive in a message."""
    return [key[i : i + width] for i in range(len(key) - width + 1)]


def _assert_no_key(text: str, key: str = KEY) -> None:
    leaked = [piece for piece in _pieces(key) if piece in text]
    assert not leaked, f"key pieces {leaked} in {text!r}"


@pytest.fixture
def no_connection(monkeypatch):
    """Fail the test if a client is built: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a client was created before the settings were checked")

    monkeypatch.setattr(server_module, "QdrantClient", refuse)


# ------------------------------------------------------------------------- the key itself


@pytest.mark.parametrize("raw", [f"{KEY}\r", f"{KEY}\r\n", f"  {KEY}\t", f"\ufeff{KEY}\n"])
def test_surrounding_whitespace_and_bom_are_stripped(raw):
    assert check_api_key(raw, "$QDRANT_API_KEY") == KEY
    assert resolve_api_key(None, None, {"QDRANT_API_KEY": raw}) == KEY


@pytest.mark.parametrize(
    "bad", [f"{KEY[:10]}\r{KEY[10:]}", f"{KEY}\x00x", f"{KEY}\x1b[0m", f"{KEY}é", f"{KEY}\x7f"]
)
def test_a_key_with_control_or_non_ascii_characters_is_refused_without_quoting_it(bad):
    with pytest.raises(ConfigError) as err:
        resolve_api_key(None, None, {"MY_KEY": bad}, env_name="MY_KEY")
    message = str(err.value)
    assert message.startswith("the API key from $MY_KEY contains a") and err.value.exit_code == 2
    _assert_no_key(message)
    _assert_no_key(repr(err.value))


def test_key_file_with_windows_line_endings_and_bom(tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")
    assert resolve_api_key(None, key_file) == KEY
    key_file.write_bytes(b"\r\n  \r\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_api_key(None, key_file)
    key_file.write_bytes(b"\xff\xfe" + KEY.encode("utf-16-le"))
    with pytest.raises(ConfigError, match="not UTF-8") as err:
        resolve_api_key(None, key_file)
    _assert_no_key(str(err.value))


def test_an_explicitly_named_variable_must_be_set():
    with pytest.raises(ConfigError, match="the API key variable MY_KEY is not set"):
        resolve_api_key(None, None, {}, env_name="MY_KEY", required=True)
    with pytest.raises(ConfigError, match="the API key variable MY_KEY is empty"):
        resolve_api_key(None, None, {"MY_KEY": " \r\n"}, env_name="MY_KEY", required=True)
    assert resolve_api_key(None, None, {}, env_name="QDRANT_API_KEY") is None


def test_open_store_checks_the_key_before_connecting(no_connection):
    with pytest.raises(ConfigError) as err:
        open_store(url="http://127.0.0.1:9", api_key=f"{KEY}\r\n{KEY}", collection="c")
    _assert_no_key(str(err.value))


# ------------------------------------------------------------------------- scrubbing


def test_scrub_masks_every_representation():
    raw = KEY.encode()
    forms = [
        KEY,
        repr(KEY)[1:-1],
        repr(raw)[2:-1],
        json.dumps(KEY)[1:-1],
        quote(KEY, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(KEY, safe="")),
        quote_plus(KEY),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(b":" + raw).decode(),
        raw.hex(),
    ]
    for form in forms:
        text = scrub(f"error: header value {form!s} rejected", KEY)
        assert "***" in text, form
        _assert_no_key(text)
        assert form not in text


def test_scrub_happens_before_a_long_message_is_cut():
    message = "x" * 290 + KEY + " tail"
    cut = one_line(scrub(message, KEY), 300)
    _assert_no_key(cut)
    assert "\n" not in one_line("a\r\nb\x1b[31mc") and one_line("a\r\nb") == "a b"


class _Echo(FakeQdrant):
    """A server that quotes the key it received, in several encodings, in its errors and its version."""

    def __init__(self, mode: str):
        super().__init__(api_key=KEY)
        self.mode = mode
        if mode == "version":
            self.version = f"1.25.0+{KEY}\n{KEY}"  # minors far apart: the version is logged
        elif mode == "old-version":
            self.version = f"1.9.0-{quote(KEY, safe='')}"
        elif mode == "bad-version":
            self.version = base64.b64encode(KEY.encode()).decode()

    def handle(self, method, path, body):
        if self.mode == "error" and path == "/collections":
            encoded = [KEY, repr(KEY), quote(KEY), base64.b64encode(KEY.encode()).decode()]
            return 400, {"status": {"error": "x" * 250 + " bad request from " + " ".join(encoded)}}
        return super().handle(method, path, body)


@pytest.mark.parametrize("mode", ["version", "old-version", "bad-version", "error"])
def test_text_the_server_sends_back_is_scrubbed(mode, caplog):
    caplog.set_level(logging.DEBUG)
    with serve(_Echo(mode)) as (url, _):
        try:
            with open_store(url=url, api_key=KEY, collection="c", timeout=5) as store:
                text = repr(store)
        except StoreError as exc:
            text = f"{exc} {exc!r}"
            assert "\n" not in str(exc) and exc.exit_code == 4
    for output in (text, caplog.text):
        _assert_no_key(output)
    if mode in ("version", "bad-version"):
        assert "***" in caplog.text  # the echoed version was logged, masked


def test_missing_key_hint_names_the_variable_in_use():
    with serve(FakeQdrant(api_key=KEY)) as (url, _), pytest.raises(StoreError) as err:
        open_store(url=url, collection="c", timeout=5, api_key_env="MY_KEY")
    assert str(err.value) == (f"Qdrant at {url} requires an API key (401); set MY_KEY or use --api-key-file")


# ------------------------------------------------------------------------- plain http


@pytest.mark.parametrize(
    "url",
    [
        "http://qdrant.example:6333",
        "HTTP://qdrant.example:6333",
        "Http://Qdrant.Example",
        "hTtP://10.0.0.7:6333/prefix",
        "http://[2001:db8::1]:6333",
        "http://[::ffff:10.0.0.1]:6333",
        "http://127.0.0.1.example.com",
        "http://localhost.example.com:6333",
        " http://qdrant.example:6333 ",
    ],
)
def test_a_key_over_plain_http_to_another_machine_is_refused(url, no_connection):
    with pytest.raises(ConfigError) as err:
        open_store(url=url, api_key=KEY, collection="c")
    assert "refusing to send the API key in clear text" in str(err.value)
    assert "--allow-insecure-key" in str(err.value) and err.value.exit_code == 2
    _assert_no_key(str(err.value))


@pytest.mark.parametrize(
    "url",
    [
        "https://qdrant.example:6333",
        "HTTPS://qdrant.example",
        "http://localhost:6333",
        "HTTP://LOCALHOST",
        "http://127.0.0.1:6333",
        "http://127.8.9.10",
        "http://[::1]:6333",
        "http://[::ffff:127.0.0.1]",
    ],
)
def test_https_and_loopback_are_allowed(url):
    check_key_transport(validate_url(url), has_key=True)


def test_the_opt_in_allows_plain_http_and_without_a_key_nothing_is_refused(monkeypatch, caplog):
    built = []

    def record(*args, **kwargs):
        built.append(kwargs["url"])
        raise RuntimeError("stop here")

    monkeypatch.setattr(server_module, "QdrantClient", record)
    with pytest.raises(StoreError, match="cannot set up a client"):
        open_store(url="HTTP://Qdrant.Example:6333/", api_key=KEY, collection="c", allow_insecure_key=True)
    assert built == ["http://qdrant.example:6333"]  # normalised: scheme and host lower case
    assert "over plain http (allowed explicitly)" in caplog.text
    check_key_transport("http://qdrant.example", has_key=False)


def test_is_loopback():
    for host in ("localhost", "LOCALHOST", "127.0.0.1", "127.255.0.9", "::1", "[::1]", "::ffff:127.0.0.1"):
        assert is_loopback(host), host
    for host in ("", None, "10.0.0.1", "0.0.0.0", "localhost.example", "127.0.0.1.nip.io", "::ffff:10.0.0.1"):
        assert not is_loopback(host), host


def test_malformed_urls_are_refused_before_connecting(no_connection):
    for url in (
        "localhost:6333",
        "ftp://host",
        "http://",
        "http://host:99999",
        "http://ho st",
        "http://ho\r\nst:6333",
    ):
        with pytest.raises(ValueError, match="http"):
            open_store(url=url, collection="c")
        with pytest.raises(ConfigError):
            check_server_settings(url, None, 30)


# ------------------------------------------------------------------------- timeout


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -1, 0, -0.0, "nan", "abc", True, None, "-inf", 1e308, 86401]
)
def test_timeouts_that_bound_nothing_are_refused(value, no_connection):
    with pytest.raises(ConfigError, match="timeout must be (a positive, finite number|at most 86400)"):
        check_timeout(value)
    with pytest.raises(ConfigError):
        open_store(url="http://127.0.0.1:9", collection="c", timeout=value)


def test_valid_timeouts():
    assert check_timeout(2) == 2.0 and check_timeout("0.5") == 0.5 and check_timeout(1e-3) == 1e-3
