"""Reaching a model behind an HTTP API before any money is spent: one call that costs
nothing (the server's model list) says whether the address answers, the key is taken and
the model is served, so a wrong one fails preflight instead of the stage after sampling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from rlaif.errors import ConfigError
from rlaif.redaction import redact

log = logging.getLogger(__name__)
UNREACHABLE = ("APIConnectionError", "APITimeoutError")
"""The SDKs' errors (openai and anthropic share the names) for nothing answering in time."""


def openai_models(base_url: str | None, api_key: str) -> list[str]:
    """The model ids an OpenAI-compatible server lists (a free call)."""
    import openai

    with openai.OpenAI(base_url=base_url, api_key=api_key, timeout=10.0, max_retries=2) as client:
        return [m.id for m in client.models.list()]


def check_served(
    who: str,
    where: str,
    model: str,
    key_env: str | None,
    list_models: Callable[[], Iterable[str]],
    *,
    check_model: bool = True,
) -> None:
    """Raise a ``ConfigError`` naming ``who`` when ``list_models`` shows the server at
    ``where`` unreachable, refusing the key in ``key_env`` or (with ``check_model``) not
    serving ``model``. A server without a model list (404), with an empty one, or failing
    for now (429, 5xx) is let through with a warning: the run's own retries deal with that."""
    try:
        served = set(list_models())
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        name = type(exc).__name__
        if name in UNREACHABLE:
            raise ConfigError(
                f"{who}: nothing answers at {where} ({name}: {redact(str(exc))[:200]}); check "
                "base_url and that the server is up"
            ) from None
        if status in (401, 403):
            key = f"the key in ${key_env}" if key_env else "a request without a key"
            raise ConfigError(f"{who}: {where} refused {key} (HTTP {status})") from None
        if status == 404:
            log.info(
                "%s: %s has no model list; the model name is checked at the first call", who, where
            )
            return
        log.warning("%s: could not list models at %s (%s); going on", who, where, name)
        return
    if not check_model:
        return
    if not served:
        log.warning(
            "%s: %s lists no models, so whether it serves '%s' is checked at the first call",
            who,
            where,
            model,
        )
        return
    if model not in served:
        shown = ", ".join(sorted(served)[:20])
        raise ConfigError(
            f"{who}: {where} does not serve model '{model}'; it serves: {shown} (a proxy or "
            "deployment whose names its model list does not show: set check_model: false)"
        )
