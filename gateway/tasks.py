"""Background tasks owned by a context manager: started on entry, cancelled and awaited on exit.

Every long-lived task of a worker (metrics flush, policy watch, kill-switch watch) runs this way, inside
the app's `cleanup_ctx`, so none is fire-and-forget and none outlives the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
