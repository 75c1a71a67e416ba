"""OpenAI Batch API: the requests go up as a JSONL file, results come back as two files
(answers, and requests that failed or expired)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import openai

from rlaif.judges.batch_api import BatchStatus, failed
from rlaif.judges.failures import describe_error
from rlaif.judges.records import Verdict

if TYPE_CHECKING:
    from rlaif.judges.api import ApiJudge

ENDPOINT = "/v1/chat/completions"
ENDED = frozenset({"completed", "expired", "cancelled", "failed"})
UPLOAD_TIMEOUT_S = 600.0


class OpenAIBatches:
    provider = "openai"
    max_bytes = 190_000_000  # input files may be up to 200 MB

    def __init__(self, judge: ApiJudge):
        self.judge = judge
        self.client = openai.OpenAI(
            api_key=judge.api_key,
            base_url=judge.cfg.base_url,
            timeout=judge.cfg.timeout_s,
            max_retries=judge.cfg.max_retries,
        )

    def request(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}

    def submit(self, requests: list[dict[str, Any]]) -> tuple[str, str | None]:
        data = "".join(json.dumps(r) + "\n" for r in requests).encode()
        upload = self.client.files.create(
            file=("requests.jsonl", data, "application/jsonl"),
            purpose="batch",
            timeout=max(self.judge.cfg.timeout_s, UPLOAD_TIMEOUT_S),
        )
        batch = self.client.batches.create(
            input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h"
        )
        return batch.id, upload.id

    def status(self, batch_id: str) -> BatchStatus:
        batch = self.client.batches.retrieve(batch_id)
        errors = batch.errors.data if batch.errors and batch.errors.data else []
        detail = "; ".join(f"{e.code}: {e.message}" for e in errors)
        return BatchStatus(batch.id, batch.status, batch.status in ENDED, detail, batch)

    def results(self, status: BatchStatus) -> Iterator[tuple[str, Verdict]]:
        for file_id in (status.raw.output_file_id, status.raw.error_file_id):
            if not file_id:
                continue
            content = self.client.files.content(file_id, timeout=UPLOAD_TIMEOUT_S).text
            for line in content.splitlines():
                if line.strip():
                    item = json.loads(line)
                    yield item["custom_id"], self._verdict(item)

    def _verdict(self, item: dict[str, Any]) -> Verdict:
        response, error = item.get("response"), item.get("error")
        if response and response.get("status_code") == 200:
            try:
                return self.judge.read_response(response["body"])
            except Exception as exc:  # an unreadable answer is an error to ask again, as online
                return failed(f"unreadable batch result: {describe_error(exc)}")
        if error:
            return failed(f"failed in the batch: {error.get('code')}: {error.get('message')}")
        body = (response or {}).get("body") or {}
        message = (body.get("error") or {}).get("message", "") if isinstance(body, dict) else ""
        return failed(f"failed in the batch: HTTP {(response or {}).get('status_code')}: {message}")

    def close(self) -> None:
        self.client.close()
