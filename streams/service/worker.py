"""`starcast worker`: one Faust worker process, configured from the environment."""

from __future__ import annotations

import asyncio
import os
import sys

from faust.worker import Worker

from streams.core.engine import tune_gc
from streams.service.app import create_app
from streams.service import fatal
from streams.service.kafka import VersionMismatch
from streams.service.reach import limit_repeats, wait_for_broker
from streams.service.settings import Settings, SettingsError


def unwritable(path: str) -> str | None:
    """None if a file can be created, written, synced and removed in `path` (created if
    missing); otherwise why not. RocksDB would otherwise fail later, at the first table open."""
    probe = os.path.join(path, f".starcast-write-check-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "wb") as out:
            out.write(b"ok")
            out.flush()
            os.fsync(out.fileno())
        os.remove(probe)
    except OSError as exc:
        return f"{exc.__class__.__name__}: {exc.strerror or exc}"
    return None


def run_worker(loglevel: str = "warning") -> int:
    """Run until stopped. Exit codes for a supervisor: 2 at once for a setting, a library
    version or a data directory that cannot be used; 74 when the local store cannot be written
    (fatal.py); 1 when Faust stops on an error it does not retry; 0 when asked to stop."""
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except (SettingsError, VersionMismatch) as exc:
        print(f"starcast worker: {exc}", file=sys.stderr)
        return 2
    problem = unwritable(settings.data_dir)
    if problem is not None:
        print(f"starcast worker: the data directory {settings.data_dir} is not writable ({problem})", file=sys.stderr)
        return 2
    # Started before the broker, or cut off from it: wait (with /healthz saying so), not exit.
    loop = asyncio.new_event_loop()  # its own: the worker's loop stays Faust's
    try:
        loop.run_until_complete(wait_for_broker(settings.bootstrap_servers, settings.web_bind, settings.web_port,
                                                tls=settings.tls))
    except KeyboardInterrupt:
        return 130
    finally:
        loop.close()
    limit_repeats()
    tune_gc()
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner hooks the root logger at DEBUG so it can spin on every record:
    # that makes aiokafka build a debug record per message sent (~10% of a worker's time).
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        code = fatal.exit_code()
        if code is not None:  # stopped on a failure (fatal.py): the supervisor must see it
            return code
        if done.code not in (0, None):  # Faust stopped on an error it does not retry (e.g. the
            # broker lost during a table recovery): nothing is lost, a restart resumes
            print(f"starcast worker: stopped on an error (above); exit {done.code}: restart it to resume "
                  "from the changelogs and the committed offsets", file=sys.stderr)
        raise done
    return 0
