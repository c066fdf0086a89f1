"""`starcast worker`: one Faust worker process, configured from the environment."""

from __future__ import annotations

from faust.worker import Worker

from streams.core.engine import tune_gc
from streams.service.app import create_app


def run_worker(loglevel: str = "warning") -> int:
    tune_gc()
    app = create_app()
    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    return 0
