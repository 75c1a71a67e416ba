"""The loopback judge server with the providers' batch endpoints, so batch judging runs
against real SDK clients over real HTTP on 127.0.0.1.

OpenAI: ``POST /v1/files`` (multipart), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. Anthropic:
``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
``GET /v1/messages/batches/{id}/results``. Each request of a batch is judged by the same
deterministic judge as the online endpoints (``LoopbackJudgeServer.respond``).

Tests steer it: a batch ends after ``complete_after_polls`` retrievals, or when
``complete_batches()`` is called; ``expire_batches(done=k)`` ends open batches as expired
with only their first ``k`` requests answered; a request whose text holds ``[[batch_error]]``
fails inside its batch (a 500 for it alone); ``batch_faults`` holds HTTP statuses that the
next calls to the batch and file endpoints answer instead (a 500, a 401). ``submitted``
counts how often each custom id was submitted, ``online_bodies`` keeps the body of every
online call.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal

from rlaif.testing.loopback import LoopbackJudgeServer, _content

Reply = tuple[int, dict[str, str], bytes]
_BATCH_PATH = re.compile(r"^/v1/(batches|messages/batches)/([\w-]+)(/cancel|/results)?$")
_FILE_CONTENT = re.compile(r"^/v1/files/([\w-]+)/content$")
_DAY_S = 86_400


@dataclass
class _Batch:
    id: str
    provider: Literal["openai", "anthropic"]
    requests: list[dict[str, Any]]
    """``{"custom_id", "body"}``, in submission order."""
    input_file_id: str | None
    created_at: int
    polls: int = 0
    status: Literal["in_progress", "completed", "expired", "cancelled"] = "in_progress"
    ended_at: int | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    """Per request: ``{"custom_id", "status_code", "body"}``, or ``{"custom_id", "lost"}``
    (``expired``/``cancelled``) for a request the batch never ran."""
    output_file_id: str | None = None
    error_file_id: str | None = None


class LoopbackBatchServer(LoopbackJudgeServer):
    """``with LoopbackBatchServer(complete_after_polls=2) as server: ...``"""

    def __init__(self, *, complete_after_polls: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.complete_after_polls = complete_after_polls
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.submitted: Counter[str] = Counter()
        self.online_bodies: list[dict[str, Any]] = []
        self.batch_faults: list[int] = []
        self._ids = itertools.count(1)
        self._batch_lock = threading.RLock()

    # -- steering from tests --------------------------------------------------------------
    def open_batches(self) -> list[str]:
        with self._batch_lock:
            return [b.id for b in self.batches.values() if b.status == "in_progress"]

    def complete_batches(self) -> None:
        with self._batch_lock:
            for batch in self.batches.values():
                if batch.status == "in_progress":
                    self._end(batch, "completed", len(batch.requests))

    def expire_batches(self, done: int) -> None:
        """End every open batch as expired, with its first ``done`` requests answered."""
        with self._batch_lock:
            for batch in self.batches.values():
                if batch.status == "in_progress":
                    self._end(batch, "expired", done)

    # -- judging --------------------------------------------------------------------------
    def respond(self, path: str, body: dict[str, Any], key_sent: str = "") -> Reply:
        with self._batch_lock:
            self.online_bodies.append(body)
        return super().respond(path, body, key_sent)

    def _outcome(self, provider: str, request: dict[str, Any]) -> dict[str, Any]:
        body = request["body"]
        custom_id = request["custom_id"]
        text = "\n".join(_content(m) for m in body.get("messages", []))
        if "[[batch_error]]" in text:
            error = {"message": "the judge failed on this request", "type": "api_error"}
            return {"custom_id": custom_id, "status_code": 500, "body": {"error": error}}
        path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
        status, _, data = LoopbackJudgeServer.respond(self, path, body)
        return {"custom_id": custom_id, "status_code": status, "body": json.loads(data)}

    def _end(self, batch: _Batch, status: Literal["completed", "expired", "cancelled"], done: int):
        lost = {"expired": "expired", "cancelled": "cancelled"}.get(status, "")
        batch.outcomes = [
            self._outcome(batch.provider, r)
            if i < done
            else {"custom_id": r["custom_id"], "lost": lost}
            for i, r in enumerate(batch.requests)
        ]
        batch.status = status
        batch.ended_at = int(time.time())
        if batch.provider == "openai":
            ok = [o for o in batch.outcomes if o.get("status_code") == 200]
            failed = [o for o in batch.outcomes if o.get("status_code") != 200]
            batch.output_file_id = self._store_file([_openai_line(o) for o in ok]) if ok else None
            batch.error_file_id = (
                self._store_file([_openai_line(o) for o in failed]) if failed else None
            )

    def _store_file(self, lines: list[dict[str, Any]]) -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = "".join(json.dumps(line) + "\n" for line in lines).encode()
        return file_id

    # -- routing --------------------------------------------------------------------------
    def route(self, method: str, path: str, content_type: str | None, raw: bytes) -> Reply | None:
        if not path.startswith(("/v1/files", "/v1/batches", "/v1/messages/batches")):
            return super().route(method, path, content_type, raw)
        with self._batch_lock:
            if self.batch_faults:
                status = self.batch_faults.pop(0)
                return status, {}, b'{"error": {"message": "injected fault", "type": "api_error"}}'
            if method == "POST" and path == "/v1/files":
                return _json(self._upload(content_type or "", raw))
            if method == "GET" and (match := _FILE_CONTENT.match(path)):
                data = self.files.get(match.group(1))
                return _not_found() if data is None else (200, {}, data)
            if method == "POST" and path == "/v1/batches":
                return self._create_openai(json.loads(raw))
            if method == "POST" and path == "/v1/messages/batches":
                return self._create_anthropic(json.loads(raw))
            match = _BATCH_PATH.match(path)
            if not match or match.group(2) not in self.batches:
                return _not_found()
            batch = self.batches[match.group(2)]
            action = match.group(3)
            if method == "POST" and action == "/cancel":
                if batch.status == "in_progress":
                    self._end(batch, "cancelled", 0)
                return _json(self._openai_batch(batch))
            if method == "GET" and action == "/results":
                return (200, {}, self._anthropic_results(batch))
            if method == "GET" and action is None:
                batch.polls += 1
                after = self.complete_after_polls
                if batch.status == "in_progress" and after is not None and batch.polls >= after:
                    self._end(batch, "completed", len(batch.requests))
                if batch.provider == "openai":
                    return _json(self._openai_batch(batch))
                return _json(self._anthropic_batch(batch))
            return _not_found()

    def _upload(self, content_type: str, raw: bytes) -> dict[str, Any]:
        message = BytesParser(policy=HTTP).parsebytes(
            b"content-type: " + content_type.encode() + b"\r\n\r\n" + raw
        )
        parts = {
            part.get_param("name", header="content-disposition"): part
            for part in message.iter_parts()
        }
        data = parts["file"].get_payload(decode=True)
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = data
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": parts["file"].get_filename() or "upload.jsonl",
            "purpose": parts["purpose"].get_payload(decode=True).decode(),
            "status": "processed",
        }

    def _create_openai(self, body: dict[str, Any]) -> Reply:
        data = self.files.get(body.get("input_file_id", ""))
        if data is None:
            return _not_found()
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        requests = [{"custom_id": x["custom_id"], "body": x["body"]} for x in lines]
        batch = self._new_batch("openai", requests, body["input_file_id"])
        return _json(self._openai_batch(batch))

    def _create_anthropic(self, body: dict[str, Any]) -> Reply:
        requests = [{"custom_id": r["custom_id"], "body": r["params"]} for r in body["requests"]]
        return _json(self._anthropic_batch(self._new_batch("anthropic", requests, None)))

    def _new_batch(
        self, provider: Literal["openai", "anthropic"], requests: list[dict], file_id: str | None
    ) -> _Batch:
        prefix = "batch" if provider == "openai" else "msgbatch"
        batch = _Batch(f"{prefix}_{next(self._ids)}", provider, requests, file_id, int(time.time()))
        self.batches[batch.id] = batch
        self.submitted.update(r["custom_id"] for r in requests)
        return batch

    # -- the providers' shapes ------------------------------------------------------------
    def _openai_batch(self, batch: _Batch) -> dict[str, Any]:
        ended = batch.status != "in_progress"
        ok = sum(o.get("status_code") == 200 for o in batch.outcomes)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": batch.created_at,
            "in_progress_at": batch.created_at,
            "expires_at": batch.created_at + _DAY_S,
            f"{batch.status}_at" if ended else "finalizing_at": batch.ended_at,
            "request_counts": {
                "total": len(batch.requests),
                "completed": ok,
                "failed": len(batch.outcomes) - ok,
            },
            "metadata": None,
        }

    def _anthropic_batch(self, batch: _Batch) -> dict[str, Any]:
        ended = batch.status != "in_progress"
        kinds = Counter(_anthropic_result(o)["type"] for o in batch.outcomes)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(batch.requests),
                "succeeded": kinds["succeeded"],
                "errored": kinds["errored"],
                "canceled": kinds["canceled"],
                "expired": kinds["expired"],
            },
            "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + _DAY_S),
            "ended_at": _iso(batch.ended_at) if batch.ended_at else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    def _anthropic_results(self, batch: _Batch) -> bytes:
        lines = [
            {"custom_id": o["custom_id"], "result": _anthropic_result(o)} for o in batch.outcomes
        ]
        return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _openai_line(outcome: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = {"id": f"batch_req_{outcome['custom_id'][:12]}"}
    line["custom_id"] = outcome["custom_id"]
    if "lost" in outcome:
        code = f"batch_{outcome['lost']}"
        message = "This request could not be executed before the batch ended."
        return {**line, "response": None, "error": {"code": code, "message": message}}
    response = {"status_code": outcome["status_code"], "request_id": "req_loopback"}
    return {**line, "response": {**response, "body": outcome["body"]}, "error": None}


def _anthropic_result(outcome: dict[str, Any]) -> dict[str, Any]:
    if "lost" in outcome:
        return {"type": "canceled" if outcome["lost"] == "cancelled" else "expired"}
    if outcome["status_code"] == 200:
        return {"type": "succeeded", "message": outcome["body"]}
    error = outcome["body"].get("error", {})
    return {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "api_error", "message": error.get("message", "")},
        },
    }


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _json(payload: dict[str, Any]) -> Reply:
    return 200, {}, json.dumps(payload).encode()


def _not_found() -> Reply:
    return 404, {}, b'{"error": {"message": "not found", "type": "not_found_error"}}'
