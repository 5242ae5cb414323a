"""A running shard's heartbeat from a background thread, so a piece with long stretches between progress
reports (loading its inputs in a cold process, exporting a model) is not taken for lost."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from worker.runtime import WorkerRuntime
from worker.services.shards.state import ShardClaim, record_shard_progress


@contextmanager
def shard_heartbeat(rt: WorkerRuntime, claim: ShardClaim) -> Iterator[None]:
    """Refresh the shard's heartbeat every heartbeat_interval_s while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(rt.settings.heartbeat_interval_s):
            try:
                with rt.session_factory() as session:
                    record_shard_progress(session, claim, None)
            except Exception:  # noqa: BLE001, S112 - a missed beat is harmless; a stopped shard ends at its next progress
                continue

    thread = threading.Thread(target=beat, name=f"shard-heartbeat-{claim.shard_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
