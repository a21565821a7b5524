"""Micro-batching: items submitted from many threads at about the same time run through one
call of a batch function, and each caller gets back its own result or its own error.

There is no background thread. The first caller that finds nobody running a batch becomes
the *leader*: it takes the queue (its own item and whatever else waits, up to ``max_batch``),
runs it, hands every caller its outcome, and passes the lead on to a caller still waiting.
So a lone caller runs at once and never waits for a window, requests that arrive while a
batch runs (or while another user holds ``lock``) form the next batch, and closing the
batcher has no thread to stop: it cannot hang.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The batcher was closed before this item was submitted."""


class _Ticket(Generic[T, R]):
    __slots__ = ("done", "error", "item", "value")

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.value: R | None = None
        self.error: BaseException | None = None


@dataclass
class BatchStats:
    """What a batcher has run: ``batches`` calls of the batch function (retries of a failed
    batch one item at a time not counted), ``items`` in them, the ``largest`` batch."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class MicroBatcher(Generic[T, R]):
    """Run ``run(items) -> results`` (one result per item, in order) on items submitted by
    many threads, several per call.

    ``max_batch``: the most items per call; a full queue is flushed at once.
    ``window_s``: how long a leader waits for more items before it runs, but only while the
    previous batch held more than one item (callers are arriving concurrently): a lone
    caller never pays it.
    ``lock``: held while a batch is taken from the queue and run (the model lock): items
    submitted while someone else holds it all join the batch that runs next.

    When ``run`` raises for a batch of several items, each item is run again alone, so one
    bad item fails only its own caller.
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R]], *, max_batch: int = 32,
                 window_s: float = 0.0, lock: AbstractContextManager | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if window_s < 0:
            raise ValueError(f"window_s must be at least 0, got {window_s}")
        self.max_batch, self.window_s = max_batch, window_s
        self._run = run
        self._lock = lock if lock is not None else contextlib.nullcontext()
        self._cond = threading.Condition()
        self._queue: deque[_Ticket[T, R]] = deque()
        self._leading = False
        self._closed = False
        self._last_size = 0
        self.stats = BatchStats()

    def submit(self, item: T) -> R:
        """``item``'s result, or its error raised here; blocks until its batch has run.

        Raises:
            BatcherClosed: after :meth:`close`.
        """
        ticket: _Ticket[T, R] = _Ticket(item)
        with self._cond:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            self._queue.append(ticket)
            self._cond.notify_all()  # a leader inside its window may now be full
            while self._leading and not ticket.done:
                self._cond.wait()
            if not ticket.done:
                self._leading = True
        if not ticket.done:
            try:
                # the queue is FIFO: our ticket is in one of the next batches
                while not ticket.done:
                    self._lead_one()
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.value  # type: ignore[return-value]

    @property
    def pending(self) -> int:
        """Items submitted and not yet taken into a batch."""
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        """Refuse new items; those already submitted still run."""
        with self._cond:
            self._closed = True

    def _lead_one(self) -> None:
        with self._lock:
            with self._cond:
                if self.window_s and self._last_size > 1:
                    deadline = time.monotonic() + self.window_s
                    while len(self._queue) < self.max_batch:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                batch = [self._queue.popleft()
                         for _ in range(min(self.max_batch, len(self._queue)))]
                self._last_size = len(batch)
                self.stats.batches += 1
                self.stats.items += len(batch)
                self.stats.largest = max(self.stats.largest, len(batch))
                self.stats.sizes[len(batch)] = self.stats.sizes.get(len(batch), 0) + 1
            try:
                self._execute(batch)
            finally:
                with self._cond:
                    for ticket in batch:
                        if not ticket.done:  # run raised BaseException: nobody may wait on
                            ticket.error = ticket.error or BatcherClosed("the batch stopped")
                            ticket.done = True
                    self._cond.notify_all()

    def _execute(self, batch: list[_Ticket[T, R]]) -> None:
        try:
            results = list(self._run([ticket.item for ticket in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function returned {len(results)} results "
                                   f"for {len(batch)} items")
        except Exception as err:
            if len(batch) == 1:
                batch[0].error = err
                batch[0].done = True
                return
            for ticket in batch:  # find the bad item(s): each alone
                try:
                    [ticket.value] = self._run([ticket.item])
                except Exception as single:
                    ticket.error = single
                ticket.done = True
            return
        for ticket, value in zip(batch, results, strict=True):
            ticket.value = value
            ticket.done = True
