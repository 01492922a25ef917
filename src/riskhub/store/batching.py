"""Group work submitted concurrently: while one batch runs, new items queue for the next.

Used where a per-item round trip costs more than the work itself: the SQLite group commit (one
transaction and one thread hop per batch of concurrent POSTs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Per item: its result, or the exception its submitter gets.
BatchRunner = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class Batcher(Generic[Item, Result]):
    """``submit`` returns the item's own result once the batch that carried it ran. If the
    runner raises, every item of that batch gets the exception (the batch did nothing)."""

    def __init__(self, run: BatchRunner[Item, Result], *, max_batch: int, name: str) -> None:
        self._run = run
        self._max_batch = max_batch
        self._name = name
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` and wait for its result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=self._name)
        return await future

    async def drained(self) -> None:
        """Wait until every queued item was run."""
        if self._task is not None:
            await self._task

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed: each submitter sees why
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the submitter was cancelled
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
