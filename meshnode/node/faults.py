"""Fault containment: a failure in one piece of work fails that piece, never the node.

A peer's stream, a task, an embedder or an LLM call can fail in ways nobody listed: a
dependency that is down, a bug met by a strange input. The code that runs such a piece of
work catches what escapes it and hands it to :class:`Faults`, which logs it and counts it by
where it happened (``/v1/status`` shows the counts), and the node goes on.

Only ``Exception`` is contained: trio.Cancelled and KeyboardInterrupt derive from
BaseException and always pass through.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

log = logging.getLogger(__name__)
S = TypeVar("S")


class Faults:
    """Counts the faults this node contained, by where they happened."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def record(self, where: str, exc: BaseException, *, expected: bool = False,
               **context: Any) -> None:
        """Log and count ``exc``, raised in ``where``.

        An ``expected`` fault is a dependency failing in a way it documents (an embedder
        endpoint down): one warning line, the traceback only at debug. Anything else is a
        bug or an unmapped failure, logged as an error with its traceback.
        """
        self._counts[where] += 1
        extra = {"where": where, "error": str(exc) or type(exc).__name__, **context}
        if expected:
            log.warning("contained a fault", extra=extra)
            log.debug("fault traceback", exc_info=exc, extra={"where": where})
        else:
            log.error("contained an unexpected fault", exc_info=exc, extra=extra)

    @contextmanager
    def contained(self, where: str, **context: Any) -> Iterator[None]:
        """Run the body; an Exception escaping it is recorded and goes no further."""
        try:
            yield
        except Exception as exc:
            self.record(where, exc, **context)

    def counts(self) -> dict[str, int]:
        return dict(sorted(self._counts.items()))

    def total(self) -> int:
        return sum(self._counts.values())


def contained_handler(
    faults: Faults, where: str, handler: Callable[[S], Awaitable[None]]
) -> Callable[[S], Awaitable[None]]:
    """``handler`` for streams of one protocol, with anything it raises contained.

    What a stream handler raises would otherwise reach the libp2p connection's nursery and
    stop the host: one peer's stream must not do that.
    """

    async def run(stream: S) -> None:
        try:
            await handler(stream)
        except Exception as exc:
            faults.record(where, exc, peer=_peer(stream))

    return run


def _peer(stream: object) -> str:
    try:
        return str(getattr(stream, "peer_id", "?"))
    except Exception:  # a stream whose connection is already gone
        return "?"
