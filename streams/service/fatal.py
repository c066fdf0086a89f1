"""Stopping the worker on a failure it cannot work around, such as a local disk that no longer
takes writes: one clear log line, Faust's graceful stop, and a non-zero exit code for the
supervisor (`starcast worker` returns it).

Nothing is lost by stopping: a table value reaches the local store only after its changelog
record is acknowledged, and input offsets are committed only after that (kafka/outbox.py), so a
restart restores the store from the changelog and re-reads the input after the last commit.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("starcast")

EXIT_IO = 74
"""sysexits' EX_IOERR: an input/output error (the local store)."""

_code: int | None = None


def stop(reason: str, code: int = EXIT_IO) -> None:
    """Log `reason` once and stop the worker gracefully; it then exits with `code`."""
    global _code
    if _code is not None:
        return
    _code = code
    log.critical("starcast: %s; stopping the worker (exit %d): a restart restores the local store from the "
                 "changelog", reason, code)
    os.kill(os.getpid(), signal.SIGTERM)


def exit_code() -> int | None:
    """The code `stop` asked for, or None."""
    return _code
