"""Secrets never leave the process: every value of a configured key variable is replaced by
``[REDACTED]`` wherever text is written (stderr, run logs, the manifest, the store, the report).

A provider may echo the key back (some proxies put it in a 401 body), so redaction works on
the text itself, not on where it came from. Values are registered when an API judge reads its
key (``ApiJudge._api_key``), or from a config's ``api_key_env`` names (``register_configured``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from rlaif.errors import ConfigError

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4
"""Shorter values (a placeholder such as ``no``) are not secrets worth mangling text for."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_PREFIXES = ("sk-", "sk_")

_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (and its JSON-escaped spelling) from everything written from now on."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _secrets.add(value)
        _secrets.add(json.dumps(value)[1:-1])


def secret_from_env(env: str | None, where: str) -> str:
    """The API key in environment variable ``env`` (``"none"`` when ``env`` is None: a server
    without keys), registered for redaction; a clear error naming ``where`` when unset."""
    if env is None:
        return "none"
    key = os.environ.get(env)
    if not key:
        raise ConfigError(
            f"{where}: the environment variable {env} (api_key_env) is not set; export the key "
            "there, or set api_key_env: null for a server without keys"
        )
    register_secret(key)
    return key


def register_configured(config: dict[str, Any]) -> None:
    """Register the current values of every ``api_key_env`` a (dumped) pipeline config names."""
    for spec in config.get("judge", {}).get("judges", []):
        name = spec.get("api_key_env")
        if name:
            register_secret(os.environ.get(name))


def redact(text: str | None) -> str | None:
    """``text`` with every registered secret replaced; longest first, so a secret that
    contains another is not left half-visible."""
    if not text or not _secrets:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any) -> Any:
    """:func:`redact` through strings nested in dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def looks_like_a_key(name: str) -> bool:
    """True when an ``api_key_env`` value is a pasted key rather than a variable's name."""
    return (
        not _ENV_NAME.match(name)
        or name.startswith(_KEY_PREFIXES)
        or (
            len(name) >= 32
            and any(c.islower() for c in name)
            and any(c.isupper() for c in name)
            and any(c.isdigit() for c in name)
        )
    )


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """A handler filter that redacts a record's message, structured fields and traceback
    before any formatter sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        record.msg, record.args = redact(record.getMessage()), None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD:
                setattr(record, name, redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(record.exc_text)
        return True


def redact_handlers(handlers: Iterable[logging.Handler]) -> None:
    for handler in handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
