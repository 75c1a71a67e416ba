"""What went wrong with a judge call, said the same way everywhere: errors that stop a stage,
a failure's short reason, and the retry hints a provider sent."""

from __future__ import annotations

from rlaif.errors import RlaifError


class FatalJudgeError(RlaifError):
    """An error that every further request would repeat; the stage stops at once."""


def status_of(exc: BaseException | None) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def retry_after(exc: BaseException | None) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def describe_error(exc: BaseException) -> str:
    """``Type status: first line of the message``, short enough for a judgment record; a
    failed connection is named by what failed (refused, reset, no such host)."""
    status = status_of(exc)
    cause = connection_failure(exc) if status is None else None
    named = exc if cause is None else cause
    message = str(named).splitlines()[0][:300] if str(named) else ""
    return f"{type(named).__name__}{f' {status}' if status else ''}: {message}"


def connection_failure(exc: BaseException | None) -> OSError | None:
    """The refused, reset or unresolvable connection behind ``exc``, if any. The SDKs'
    aiohttp transport reports every connection that failed as a timeout; a server that is
    down is not slow, and the error should say which it was."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def failure_reason(error: str) -> str:
    """``APIConnectionError``, ``RateLimitError 429``...: an error text without its detail."""
    if error.startswith("gave up after"):
        error = error.partition(": ")[2]
    return error.partition(":")[0].strip() or "unknown"
