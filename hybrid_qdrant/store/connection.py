"""Server connection settings: the URL, the API key (kept secret), the timeout, and scrubbing messages.

Every check here runs before anything connects and raises a one-line ``ConfigError`` that never quotes
the key.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from hybrid_qdrant.errors import ConfigError

#: Environment variable the CLI reads the API key from.
API_KEY_ENV = "QDRANT_API_KEY"

_MASK = "***"
#: Longest timeout accepted (s): beyond it a limit bounds nothing (and overflows socket timeouts).
MAX_TIMEOUT = 86400.0
_LOOPBACK_NAMES = ("localhost", "localhost.")


#: API keys this process has read: every message and log line the CLI writes is scrubbed of them.
_KNOWN_SECRETS: list[str] = []


def remember_secret(value: str | None) -> None:
    """Add a key to the ones ``known_secrets`` returns (what the CLI scrubs from its output)."""
    if value and value not in _KNOWN_SECRETS:
        _KNOWN_SECRETS.append(value)


def known_secrets() -> tuple[str, ...]:
    """The API keys this process has read."""
    return tuple(_KNOWN_SECRETS)


class Secret:
    """A string that never shows itself in ``str``, ``repr`` or f-strings; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def forms(self) -> list[str]:
        """Every representation the key may take in a message, longest first (see ``secret_forms``)."""
        return secret_forms(self._value)

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)


def secret_forms(value: str) -> list[str]:
    """``value`` as it may appear in text: raw, stripped, repr/escaped, JSON, URL-encoded, base64, hex."""
    if not value:
        return []
    forms = {value, value.strip()}
    raw = value.encode("utf-8", "surrogatepass")
    forms.add(repr(value)[1:-1])  # Python escapes: '\r' -> '\\r'
    forms.add(repr(raw)[2:-1])  # bytes repr, as h11 and httpx quote header values
    forms.add(value.encode("unicode_escape").decode("ascii"))
    forms.add(json.dumps(value)[1:-1])
    for encoded in (quote(value, safe=""), quote_plus(value, safe="")):
        forms.update((encoded, _lower_escapes(encoded)))
    for blob in (raw, b":" + raw, raw + b":"):  # base64 of the key and of basic-auth pairs around it
        forms.add(base64.b64encode(blob).decode("ascii").rstrip("="))
        forms.add(base64.urlsafe_b64encode(blob).decode("ascii").rstrip("="))
    forms.add(raw.hex())
    return sorted((f for f in forms if f), key=len, reverse=True)


def _lower_escapes(text: str) -> str:
    parts = text.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def scrub(text: str, *secrets: Secret | str | None) -> str:
    """``text`` with every secret, in every representation ``secret_forms`` knows, replaced by ``***``."""
    forms: set[str] = set()
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            forms.update(secret_forms(value))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _MASK)
    return text


def one_line(text: str, width: int = 300) -> str:
    """``text`` on one line: control characters become spaces, runs of blanks collapse, long text is cut.

    Scrub before calling this: cutting first could leave part of a key behind.
    """
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    line = " ".join(cleaned.split())
    return line if len(line) <= width else line[: width - 3] + "..."


# ----------------------------------------------------------------------------- the key


def check_api_key(value: str | None, source: str) -> str | None:
    """The key with surrounding whitespace (and a byte-order mark) removed; None if nothing is left.

    Raises:
        ConfigError: the key holds a character an HTTP header or gRPC metadata cannot carry (a control
            character such as a Windows line ending inside it, or a non-ASCII character); the message
            names ``source``, never the key.
    """
    if value is None:
        return None
    key = value.strip().lstrip("\ufeff").strip()
    if not key:
        return None
    for ch in key:
        if not " " <= ch <= "~":
            kind = "a non-ASCII" if ord(ch) > 127 else "a control"
            raise ConfigError(
                f"the API key from {source} contains {kind} character; an API key is printable ASCII "
                "(check the key file's encoding and line endings)"
            )
    return key


def resolve_api_key(
    api_key: str | None = None,
    key_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    env_name: str = API_KEY_ENV,
    required: bool = False,
) -> str | None:
    """The API key: ``api_key``, else the first line of ``key_file``, else ``$env_name``, else None.

    Surrounding whitespace is stripped and the key is checked (``check_api_key``).

    Args:
        required: a missing or empty ``$env_name`` is a ConfigError (the variable was named explicitly).
    """
    if api_key:
        return check_api_key(api_key, "the api_key argument")
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file {key_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"the API key file {key_file} is not UTF-8 text") from None
        first = next((line for line in lines if line.strip()), "")
        key = check_api_key(first, f"the file {key_file}")
        if key is None:
            raise ConfigError(f"the API key file {key_file} is empty")
        return key
    env = os.environ if environ is None else environ
    key = check_api_key(env.get(env_name), f"${env_name}")
    if key is None and required:
        state = "is empty" if env_name in env else "is not set"
        raise ConfigError(f"the API key variable {env_name} {state}; export it or use --api-key-file")
    return key


# ----------------------------------------------------------------------------- the URL


def validate_url(url: str) -> str:
    """``url`` normalised (scheme and host lower-case, no user info, query or fragment); ValueError otherwise.

    Accepts ``http``/``https`` in any case (``HTTP://``, ``Https://``) with a host and a valid port.
    """
    text = str(url).strip()
    error = ValueError(f"Qdrant URL must look like http(s)://host[:port][/prefix], got {redact_url(text)!r}")
    if any(not ch.isprintable() or ch.isspace() for ch in text):
        raise error
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise error from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise error
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (safe to print)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host = f"{host}:{parts.port}"
        return one_line(urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), "", "")), 200)
    except ValueError:
        return "<unparseable URL>"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8, ``::1`` (or ``::ffff:127.x.y.z``)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def check_key_transport(url: str, has_key: bool, allow_insecure_key: bool = False) -> None:
    """Refuse to send an API key in clear text (``http://``) to a host other than this machine.

    Raises:
        ConfigError: ``has_key``, the scheme is http, the host is not loopback and the user did not opt in
            with ``allow_insecure_key`` (``--allow-insecure-key``).
    """
    parts = urlsplit(url)
    if not has_key or parts.scheme.lower() != "http" or is_loopback(parts.hostname):
        return
    if not allow_insecure_key:
        raise ConfigError(
            f"refusing to send the API key in clear text to {redact_url(url)}: use https://, or pass "
            "--allow-insecure-key (config: allow_insecure_key = true) if the network is trusted"
        )


# ----------------------------------------------------------------------------- the timeout


def check_timeout(value: object, name: str = "timeout") -> float:
    """``value`` as a positive number of seconds up to a day; ConfigError otherwise (nan, inf, 0, < 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
            value = one_line(str(value), 40)
        else:
            value = number
    else:
        number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if number > MAX_TIMEOUT:
        raise ConfigError(f"{name} must be at most {MAX_TIMEOUT:g} seconds (a day), got {value!r}")
    return number


def check_server_settings(
    url: str,
    api_key: str | None,
    timeout: object,
    allow_insecure_key: bool = False,
) -> str:
    """Every check a server connection needs before it is opened; the normalised URL.

    Raises:
        ConfigError: a malformed URL, a bad timeout, a malformed key, or a key over plain http to a
            remote host without ``allow_insecure_key``.
    """
    try:
        normalised = validate_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_timeout(timeout)
    check_key_transport(normalised, bool(api_key), allow_insecure_key)
    return normalised
