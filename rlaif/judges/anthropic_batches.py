"""Anthropic Message Batches: the requests go inline, results come back as JSONL, one
outcome per request (succeeded, errored, canceled or expired)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anthropic

from rlaif.judges.batch_api import BatchStatus, failed
from rlaif.judges.records import Verdict

if TYPE_CHECKING:
    from rlaif.judges.api import ApiJudge

UPLOAD_TIMEOUT_S = 600.0


class AnthropicBatches:
    provider = "anthropic"
    max_bytes = 240_000_000  # a batch may be up to 256 MB

    def __init__(self, judge: ApiJudge):
        self.judge = judge
        self.client = anthropic.Anthropic(
            api_key=judge.api_key,
            base_url=judge.cfg.base_url,
            timeout=judge.cfg.timeout_s,
            max_retries=judge.cfg.max_retries,
        )

    def request(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"custom_id": key, "params": body}

    def submit(self, requests: list[dict[str, Any]]) -> tuple[str, str | None]:
        timeout = max(self.judge.cfg.timeout_s, UPLOAD_TIMEOUT_S)
        batch = self.client.messages.batches.create(requests=requests, timeout=timeout)
        return batch.id, None

    def status(self, batch_id: str) -> BatchStatus:
        batch = self.client.messages.batches.retrieve(batch_id)
        counts = batch.request_counts
        detail = (
            f"{counts.succeeded} succeeded, {counts.errored} errored, "
            f"{counts.expired} expired, {counts.canceled} canceled"
        )
        return BatchStatus(
            batch.id, batch.processing_status, batch.processing_status == "ended", detail, batch
        )

    def results(self, status: BatchStatus) -> Iterator[tuple[str, Verdict]]:
        for item in self.client.messages.batches.results(status.batch_id):
            result = item.result
            if result.type == "succeeded":
                yield item.custom_id, self.judge.read_response(result.message)
            elif result.type == "errored":
                error = result.error.error
                yield item.custom_id, failed(f"failed in the batch: {error.type}: {error.message}")
            else:
                yield item.custom_id, failed(f"request {result.type} in the batch")

    def close(self) -> None:
        self.client.close()
