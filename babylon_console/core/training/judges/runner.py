"""Judging many windows with bounded concurrency.

At most `concurrency` windows are with the judge at any moment (an `asyncio.Semaphore`). One window
failing never stops the others: its slot in the result list holds a `JudgeError` instead of a
`WindowJudgment`. `on_result(result)` (a plain function or a coroutine function) is called as each
window finishes, in completion order, so the engine can turn results into events while the rest are
still being judged. A callback that raises is logged and ignored.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence

from .base import Judge, JudgeError, JudgeInput, WindowJudgment

log = logging.getLogger(__name__)

JudgeResult = WindowJudgment | JudgeError
OnResult = Callable[[JudgeResult], Awaitable[None] | None]


async def judge_windows(
    judge: Judge,
    items: Sequence[JudgeInput],
    concurrency: int,
    on_result: OnResult | None = None,
    timeout_s: float | None = None,
) -> list[JudgeResult]:
    """Judge every item; results are in the order of `items`. A window whose judging (retries
    included) takes longer than `timeout_s` becomes a `JudgeError` saying so."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    if not items:
        return []
    semaphore = asyncio.Semaphore(concurrency)

    async def notify(result: JudgeResult) -> None:
        if on_result is None:
            return
        try:
            outcome = on_result(result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("on_result callback failed for window %s", result.window_id)

    async def one(item: JudgeInput) -> JudgeResult:
        async with semaphore:
            try:
                result: JudgeResult = await asyncio.wait_for(judge.judge(item), timeout_s)
            except TimeoutError:
                result = JudgeError(item.window_id, f"the judge did not finish within {timeout_s:g} s "
                                                    "(BABYLON_JUDGE_TIMEOUT_S)")
            except JudgeError as exc:
                result = exc
            except Exception as exc:  # a judge bug must not take the other windows down
                result = JudgeError(item.window_id, f"{type(exc).__name__}: {exc}")
                result.__cause__ = exc
        await notify(result)
        return result

    return list(await asyncio.gather(*(one(item) for item in items)))
