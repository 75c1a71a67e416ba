"""Provider prompt caching: what of a request is the same for every request about its prompt,
and what input tokens cost once a provider reports some of them as cached.

Every shipped rubric renders its system message, its instructions and the prompt (or the
conversation) before the answers, so a prompt's requests share that prefix: N answers make
N(N-1) pairwise requests in both orders, each repeating it. Providers discount a repeated
prefix: Anthropic reads a cached one at 0.1x the input price (a write costs 1.25x for five
minutes, 2x for an hour) where a ``cache_control`` breakpoint marks it; OpenAI caches prefixes
of 1,024 tokens or more by itself at 0.1x to 0.5x by model family, and a ``prompt_cache_key``
sends a prompt's requests to the same cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any


def prefix_group(messages: list[dict[str, Any]], shared: int) -> str:
    """What a request shares with the other requests about its prompt (its messages up to
    ``shared`` characters of the last one), hashed: also OpenAI's ``prompt_cache_key``."""
    head = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"][:shared]}]
    return "rlaif-" + hashlib.sha256(json.dumps(head, sort_keys=True).encode()).hexdigest()[:24]


class CacheFirst:
    """The order requests go out in so a provider's prompt cache can serve them: a prompt's
    first request alone, the others once it is answered (its prefix is then cached; sent
    together, they would all miss), the next prompts' first requests filling the wait.
    ``groups``: each request's :func:`prefix_group`."""

    def __init__(self, groups: list[str]):
        self._group = groups
        self._leaders: deque[int] = deque()
        self._followers: dict[str, list[int]] = {}
        for index, group in enumerate(groups):
            if group in self._followers:
                self._followers[group].append(index)
            else:
                self._followers[group] = []
                self._leaders.append(index)
        self._ready: deque[int] = deque()
        self._held = len(groups) - len(self._leaders)
        self._released = asyncio.Event()

    async def take(self) -> int | None:
        """The next request to send; None when every request has been taken."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._leaders:
                return self._leaders.popleft()
            if self._held == 0:
                return None
            self._released.clear()
            await self._released.wait()

    def answered(self, index: int) -> None:
        """``index`` is answered (or failed): the rest of its prompt's requests may go."""
        followers = self._followers.pop(self._group[index], None)
        if followers:
            self._ready.extend(followers)
            self._held -= len(followers)
            self._released.set()


@dataclass(frozen=True)
class Rates:
    """USD per million tokens: fresh input, output, input read from the cache, input written
    to it."""

    input: float
    output: float
    cached_input: float
    cache_write: float

    def cost(
        self,
        input_tokens: int | None,
        output_tokens: int | None,
        cached_tokens: int | None = None,
        written_tokens: int | None = None,
    ) -> float:
        """A call's cost; ``input_tokens`` counts every input token, cached and written ones
        included."""
        cached, written = cached_tokens or 0, written_tokens or 0
        fresh = max((input_tokens or 0) - cached - written, 0)
        return (
            fresh * self.input
            + cached * self.cached_input
            + written * self.cache_write
            + (output_tokens or 0) * self.output
        ) / 1e6


def ttl_for(setting: str, batch: bool) -> str:
    """The cache lifetime a request asks for: ``auto`` is 5 minutes online, where a prompt's
    requests are sent one after another, and an hour through provider batches, which answer
    a batch's requests in any order over hours: a 2x write pays off over a 1.25x one once a
    prefix is read again after its 5 minutes would have run out."""
    if setting != "auto":
        return setting
    return "1h" if batch else "5m"
