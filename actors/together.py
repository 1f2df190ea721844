"""Independent venue reads issued at once, so a reconcile costs one round trip, not four.

Daemon threads, not a ThreadPoolExecutor: a read that hangs must never hold the process at
exit (the executor's workers are joined then), and it is the supervisor, watching the caller's
operation deadline, that decides when the actor is stuck, exactly as for a read made inline.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping


def together(calls: Mapping[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run every call, the first in the caller's thread and the rest alongside it, and return
    their results by name; if any raised, raise the first error in the mapping's order."""
    results: dict[str, Any] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str, fn: Callable[[], Any]) -> None:
        try:
            results[name] = fn()
        except BaseException as e:  # handed to the caller below, in order
            errors[name] = e

    items = list(calls.items())
    helpers = [threading.Thread(target=run, args=item, name=f"read {item[0]}", daemon=True)
               for item in items[1:]]
    for t in helpers:
        t.start()
    if items:
        run(*items[0])
    for t in helpers:
        t.join()
    for name, _fn in items:
        if name in errors:
            raise errors[name]
    return results
