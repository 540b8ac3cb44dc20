"""hq's server options: checked before anything loads or connects, one line with exit code 2 when
wrong, the API key never printed (CliRunner; servers are fakes on 127.0.0.1)."""

from __future__ import annotations

import logging

import pytest
import typer
from fake_qdrant import FakeQdrant, serve
from typer.testing import CliRunner

import hybrid_qdrant.store as store_module
import hybrid_qdrant.store.server as server_module
from hybrid_qdrant.cli import app
from hybrid_qdrant.cli import hq as cli_app
from hybrid_qdrant.cli.options import STORE
from hybrid_qdrant.errors import ConfigError
from hybrid_qdrant.store.connection import remember_secret

KEY = "hq-cli-K3y/+=&'\"x"
runner = CliRunner()


def hq(*args: str):
    return runner.invoke(app, list(args))


def _no_key(text: str) -> None:
    assert not [KEY[i : i + 6] for i in range(len(KEY) - 5) if KEY[i : i + 6] in text], text


@pytest.fixture
def nothing_opens(monkeypatch):
    """Fail if a store is opened or a client built: the options must be refused first."""

    def refuse(*args, **kwargs):
        raise AssertionError("connected before the options were checked")

    monkeypatch.setattr(store_module, "open_store", refuse)
    monkeypatch.setattr(server_module, "QdrantClient", refuse)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e308"])
def test_timeouts_that_bound_nothing_are_refused_before_anything_runs(value, nothing_opens, tmp_path):
    for args in (
        ["collections", "list", "--url", "http://127.0.0.1:9"],
        ["collections", "list"],  # the embedded store ignores it, but a bad value is still an error
        ["collections", "info", "xq", "--url", "http://127.0.0.1:9"],
        ["search", "Wohin mündet der Rhein?", "--url", "http://127.0.0.1:9"],
        ["search", "Wohin mündet der Rhein?", "-c", "xq"],
        # a missing data directory would be a data error: the options are checked before loading
        [
            "evaluate",
            "--benchmark",
            "beir",
            "--data-dir",
            str(tmp_path / "missing"),
            "--url",
            "http://127.0.0.1:9",
        ],
        [
            "ingest",
            "--benchmark",
            "beir",
            "--data-dir",
            str(tmp_path / "missing"),
            "--url",
            "http://127.0.0.1:9",
        ],
    ):
        result = hq(*args, "--timeout", value)
        assert result.exit_code == 2, (args, result.output)
        assert "timeout must be a positive, finite number of seconds" in result.output or (
            "timeout must be at most 86400 seconds" in result.output
        )
        assert result.output.count("\n") == 1


def test_timeout_from_a_config_file_is_checked_too(tmp_path, nothing_opens):
    config = tmp_path / "eval.toml"
    config.write_text('[benchmark]\nname = "beir"\n[store]\nurl = "http://127.0.0.1:9"\ntimeout = nan\n')
    result = hq("evaluate", str(config))
    assert result.exit_code == 2 and "timeout must be a positive" in result.output


def test_an_unset_key_variable_is_named(monkeypatch, nothing_opens):
    monkeypatch.delenv("MY_KEY", raising=False)
    result = hq("collections", "list", "--url", "http://127.0.0.1:9", "--api-key-env", "MY_KEY")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "MY_KEY is not set" in result.output and "QDRANT_API_KEY" not in result.output


def test_without_a_key_the_server_hint_names_the_variable(monkeypatch):
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    with serve(FakeQdrant(api_key=KEY)) as (url, _):
        result = hq("collections", "list", "--url", url, "--timeout", "5")
    assert result.exit_code == 4
    assert "requires an API key (401); set QDRANT_API_KEY or use --api-key-file" in result.output


def test_a_windows_key_file_or_variable_works(monkeypatch, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(KEY.encode() + b"\r\n")
    with serve(FakeQdrant(api_key=KEY)) as (url, fake):
        fake.collections["docs"] = {
            "vector_name": "",
            "size": 4,
            "distance": "Cosine",
            "metadata": None,
            "indexes": set(),
            "points": {},
        }
        monkeypatch.setenv("MY_KEY", KEY + "\r")  # export MY_KEY=$(cat key.txt) from a CRLF file
        by_env = hq("collections", "list", "--url", url, "--api-key-env", "MY_KEY", "--timeout", "5")
        monkeypatch.delenv("MY_KEY")
        by_file = hq("collections", "list", "--url", url, "--api-key-file", str(key_file), "--timeout", "5")
    for result in (by_env, by_file):
        assert result.exit_code == 0, result.output
        assert result.output.startswith("docs\t0 points\tdim 4")


@pytest.mark.parametrize("bad", [KEY[:5] + "\r" + KEY[5:], KEY + "\x1b", KEY + "ü"])
def test_a_malformed_key_is_refused_without_printing_it(bad, monkeypatch, nothing_opens):
    monkeypatch.setenv("QDRANT_API_KEY", bad)
    result = hq("collections", "list", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "the API key from $QDRANT_API_KEY contains a" in result.output
    _no_key(result.output)


@pytest.mark.parametrize(
    "url", ["http://qdrant.example:6333", "HTTP://qdrant.example:6333", "Http://10.1.2.3"]
)
def test_plain_http_to_another_machine_needs_the_opt_in(url, monkeypatch, tmp_path):
    monkeypatch.setenv("QDRANT_API_KEY", KEY)
    built = []

    def stop(*args, **kwargs):
        built.append(kwargs["url"])
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(server_module, "QdrantClient", stop)
    refused = hq("collections", "list", "--url", url)
    assert refused.exit_code == 2 and refused.output.count("\n") == 1
    assert "refusing to send the API key in clear text" in refused.output
    assert "--allow-insecure-key" in refused.output and not built
    allowed = hq("collections", "list", "--url", url, "--allow-insecure-key")
    assert allowed.exit_code == 4 and "cannot set up a client" in allowed.output and len(built) == 1
    config = tmp_path / "eval.toml"
    config.write_text(f'[store]\nurl = "{url}"\nallow_insecure_key = true\n[benchmark]\nname = "beir"\n')
    from_config = hq("ingest", str(config), "--data-dir", str(tmp_path / "missing"))
    assert from_config.exit_code == 2 and "clear text" not in from_config.output  # past the check
    for result in (refused, allowed, from_config):
        _no_key(result.output)


def test_errors_and_logs_are_scrubbed_of_every_form_of_the_key(capsys, caplog, monkeypatch):
    remember_secret(KEY)

    @cli_app.handle_errors
    def fails():
        raise ConfigError(f"a line quoting {KEY!r} and {KEY.encode()!r}\nand a second line {KEY}")

    with pytest.raises(typer.Exit) as exit_:
        fails()
    assert exit_.value.exit_code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a line quoting '***' and b'***'") and err.count("\n") == 1
    _no_key(err)
    cli_app.setup_logging(verbose=True)
    logging.getLogger("hybrid_qdrant.test").warning("echoed %s", KEY)
    assert "echoed ***" in caplog.text
    _no_key(caplog.text)


def test_server_options_are_documented_in_the_help():
    text = hq("ingest", "--help").output
    for option in ("--allow-insecure-key", "--timeout", "--api-key-env"):
        assert option in text
    flags = {flag.key: flag for flag in STORE}
    assert "within 4 x timeout" in flags["store.timeout"].help
    assert flags["store.allow_insecure_key"].decls == ("--allow-insecure-key",)


def test_store_settings_never_show_the_key(monkeypatch):
    from hybrid_qdrant.evaluation.jobs import load_job, store_kwargs

    monkeypatch.setenv("QDRANT_API_KEY", KEY)
    cfg = load_job(None, {"store.url": "https://qdrant.example"})
    kwargs = store_kwargs(cfg.store, cfg.collection)
    assert kwargs["api_key"] == KEY
    _no_key(repr(cfg))
    _no_key(str(cfg))
