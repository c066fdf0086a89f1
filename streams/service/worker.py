"""`starcast worker`: one Faust worker process, configured from the environment."""

from __future__ import annotations

from faust.worker import Worker

from streams.core.engine import tune_gc
from streams.service.app import create_app


def run_worker(loglevel: str = "warning") -> int:
    tune_gc()
    app = create_app()
    worker = Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner hooks the root logger at DEBUG so it can spin on every record:
    # that makes aiokafka build a debug record per message sent (~10% of a worker's time).
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
