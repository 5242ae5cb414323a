"""Per-process resources of a worker: settings, database sessions and the queue client."""

import contextlib
import os
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db import make_engine, make_session_factory
from app.queue import JobQueue
from app.settings import Settings, get_settings


@dataclass
class WorkerRuntime:
    """What tasks and the reconciler share inside one process."""

    settings: Settings
    session_factory: sessionmaker[Session]
    queue: JobQueue


_runtimes: dict[int, WorkerRuntime] = {}


def runtime() -> WorkerRuntime:
    """This process's runtime; a forked child builds its own so no connection crosses a fork."""
    pid = os.getpid()
    if pid not in _runtimes:
        settings = get_settings()
        _runtimes[pid] = WorkerRuntime(
            settings=settings,
            session_factory=make_session_factory(make_engine(settings)),
            queue=JobQueue(settings),
        )
    return _runtimes[pid]


# The pool's size, written by the worker's main process before its pool starts (inherited by children).
POOL_PROCESSES_ENV = "GAUNTLET_POOL_PROCESSES"


@dataclass(frozen=True)
class PoolProcessSetup:
    """What one pool process was set to: its index, torch threads and the device it sees."""

    index: int
    processes: int
    threads: int
    interop_threads: int
    wait_policy: str | None
    cuda_visible_devices: str | None

    def describe(self) -> str:
        """One log line."""
        return (
            f"pool process {self.index} of {self.processes}: torch threads {self.threads}, interop threads "
            f"{self.interop_threads}, OMP_WAIT_POLICY={self.wait_policy}, "
            f"CUDA_VISIBLE_DEVICES={self.cuda_visible_devices}"
        )


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_gpus(text: str | None) -> list[str]:
    """The GPUs of a comma-separated list ("0,1", or device UUIDs); empty for none."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def torch_threads_for(cores: int, processes: int, override: int | None = None) -> int:
    """Intra-op threads of one pool process: the operator's setting, else its share of the cores."""
    if override is not None:
        return max(1, override)
    return max(1, cores // max(1, processes))


def pool_process_env(index: int, gpus: list[str]) -> dict[str, str]:
    """Environment a pool process sets at start: with GPUs, the one device it sees (index modulo count)."""
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)]}


def configure_pool_process(index: int, processes: int, settings: Settings) -> PoolProcessSetup:
    """Give this pool process its device and its share of the cores; idle threads do not spin.

    Runs before any job in the process (CUDA is initialised lazily, so the device set here is the
    one the process sees). OMP_WAIT_POLICY=PASSIVE must already be in the environment when torch's
    OpenMP runtime loads: worker/celery_app.py sets it before the worker imports torch.
    """
    os.environ.update(pool_process_env(index, parse_gpus(settings.worker_gpus)))
    import torch

    torch.set_num_threads(torch_threads_for(usable_cores(), processes, settings.torch_threads))
    # Refused once inter-op work ran in this process (or it was set before): then it is kept.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return PoolProcessSetup(
        index=index,
        processes=processes,
        threads=torch.get_num_threads(),
        interop_threads=torch.get_num_interop_threads(),
        wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
