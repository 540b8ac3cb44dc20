"""The ``hq`` application: error handling, logging, and which process speaks (rank 0).

Commands are thin: parse options, build a config, call one library function, print its result. Heavy
imports happen inside the commands, so ``hq --help`` loads neither torch nor a Qdrant library.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import typer

from hybrid_qdrant.errors import HQError
from hybrid_qdrant.ranks import main_process

app = typer.Typer(
    name="hq",
    help="Hybrid-batch training and mono/cross/multilingual retrieval evaluation on Qdrant.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold an API key
    add_completion=False,
    rich_markup_mode=None,  # help text is plain: "[lora]" is shown, not taken for markup
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(func):
    """Turn library errors into one line on stderr and the error's exit code (HQ_DEBUG=1 re-raises)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = os.environ.get("HQ_DEBUG") == "1"
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except HQError as exc:
            if debug:
                raise
            _fail(one_scrubbed_line(str(exc) or type(exc).__name__), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; run the same command again to resume", 130)
        except Exception as exc:  # unexpected: one scrubbed line, never a traceback with locals
            if debug:
                raise
            message = one_scrubbed_line(f"{type(exc).__name__}: {exc}")
            _fail(message + " (HQ_DEBUG=1 for a traceback)", 1)

    return wrapper


def one_scrubbed_line(text: str) -> str:
    """The first line of ``text`` with every API key read by this process masked (scrubbed first, so
    neither a line break nor a cut can leave part of a key behind)."""
    from hybrid_qdrant.store.connection import known_secrets, one_line, scrub

    text = scrub(text, *known_secrets())
    return one_line(text.splitlines()[0] if text.strip() else text, 500)


class _ScrubSecrets(logging.Filter):
    """Masks the API keys this process read in every log record its handlers write."""

    def filter(self, record: logging.LogRecord) -> bool:
        from hybrid_qdrant.store.connection import known_secrets, scrub

        secrets = known_secrets()
        if secrets:
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: the handler reports it
                return True
            scrubbed = scrub(message, *secrets)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


def setup_logging(verbose: bool) -> None:
    """Log to stderr (INFO with --verbose, else WARNING; other ranks of a distributed launch: WARNING),
    keys scrubbed."""
    logging.basicConfig(
        level=logging.INFO if verbose and main_process() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _ScrubSecrets) for f in handler.filters):
            handler.addFilter(_ScrubSecrets())
    from hybrid_qdrant.encoding.encoder import route_hub_logging

    route_hub_logging()  # huggingface_hub's warnings once, through these handlers


def command(group: typer.Typer, name: str, **kwargs):
    """Register a command on ``group`` with the error handling."""

    def decorate(func):
        group.command(name, **kwargs)(handle_errors(func))
        return func

    return decorate
