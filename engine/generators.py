"""Driving the engine's event generators to completion (the callers that do not relay events)."""
from __future__ import annotations

from typing import Callable, Generator, TypeVar

E = TypeVar("E")
R = TypeVar("R")


def drain(gen: Generator[E, None, R], on_event: Callable[[E], None] | None = None) -> R:
    """Run ``gen`` to the end, passing each yielded event to ``on_event``; return its return value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(event)
