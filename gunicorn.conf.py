"""
Gunicorn settings shared by every way of starting the web process (run command, Dockerfile,
Kubernetes, benchmarks); gunicorn reads ./gunicorn.conf.py by default. Bind address, workers and
threads stay on each command line.
"""

from __future__ import annotations

import gc


def post_worker_init(worker: object) -> None:
    # Start-up leaves ~100,000 long-lived objects (Django, DRF, the chain libraries); every full
    # (generation 2) collection walked them all, stalling the worker's threads for 40-130 ms under
    # load, which was most of bench/api.py's p99. Frozen, they are never walked again.
    gc.freeze()
