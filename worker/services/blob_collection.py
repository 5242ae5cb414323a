"""Delete blobs that no model, dataset or artifact references any more (a reconciler step)."""

from app.storage import collect_unreferenced_blobs
from worker.runtime import WorkerRuntime


def collect_blobs(rt: WorkerRuntime) -> list[str]:
    """One batch of unreferenced blobs, unused for `blob_gc_grace_s`, deleted; their digests."""
    with rt.session_factory() as session:
        return collect_unreferenced_blobs(session, rt.settings.blob_gc_grace_s)
