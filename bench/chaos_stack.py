"""The embedded stack (``python -m embedded``) on an S3 store, for the chaos run.

``embedded`` always runs on the local folder store: ``child_env`` sets ``STORE_BACKEND=local``
over the environment, and the folder watcher is its stand-in for MinIO's notifications. The chaos
run needs the production road, S3 through a proxy that fails on purpose. So this runs the embedded
stack's own ``main`` (its supervisor, restarts, readiness and shutdown, unchanged) with two
differences: ``STORE_BACKEND`` and the ``MINIO_*`` settings come from the environment, and the
watcher is not started (on S3 the store announces its objects; ``bench/chaos.py`` stands in for
MinIO there). With ``CHAOS_WORKER_REDIS_URL``, the worker reaches Redis through that address (a
fault proxy) instead of ``REDIS_URL``. Each service is still ``python -m <package>``, a child of this process.

    .venv/bin/python bench/chaos_stack.py   # with REDIS_URL, STORE_BACKEND=s3, MINIO_* set
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import embedded.__main__ as stack

_plain_env = stack.child_env


def _s3_env(settings: stack.StackSettings, redis_url: str) -> dict[str, str]:
    return {**_plain_env(settings, redis_url), "STORE_BACKEND": os.environ.get("STORE_BACKEND", "s3")}


_plain_services = stack.services


def _services(settings: stack.StackSettings) -> dict[str, stack.Service]:
    """The worker on a road to Redis of its own (``CHAOS_WORKER_REDIS_URL``, a fault proxy) when given."""
    planned = _plain_services(settings)
    if link := os.environ.get("CHAOS_WORKER_REDIS_URL"):
        for name, (command, own) in planned.items():
            if command == ("gpu_worker",):
                planned[name] = (command, {**own, "REDIS_URL": link})
    return planned


def main() -> None:
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("set REDIS_URL: the chaos run restarts its Redis itself")
    stack.child_env = _s3_env
    stack.services = _services
    # Production's layout, each service a process of its own, so that a fault hits one; and no
    # folder watcher, which watches a local store only.
    os.environ["SERVICES_APART"] = "true"
    del stack.SERVICES["watcher"]
    stack.main()


if __name__ == "__main__":
    main()
