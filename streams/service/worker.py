"""`starcast worker`: one Faust worker process, configured from the environment."""

from __future__ import annotations

import sys

from faust.worker import Worker

from streams.core.engine import tune_gc
from streams.service.app import create_app
from streams.service.kafka import VersionMismatch
from streams.service.settings import Settings, SettingsError


def run_worker(loglevel: str = "warning") -> int:
    """Run until stopped; a setting or library version that cannot be used exits 2 at once."""
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except (SettingsError, VersionMismatch) as exc:
        print(f"starcast worker: {exc}", file=sys.stderr)
        return 2
    tune_gc()
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner hooks the root logger at DEBUG so it can spin on every record:
    # that makes aiokafka build a debug record per message sent (~10% of a worker's time).
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
