"""Where independent pieces of work run: in this process one after another, at once in a pool of local processes, or
as tasks of a Ray cluster (``yolo-attn ablate --jobs N``, ``--executor ray``).

Both executors take a module-level function ``work(item, device) -> result`` and the items, and return the results
in the items' order; ``device`` is the ``--device`` of the process that runs the item. Every worker process first
loads the plugins of this one (by name: a file's path, or a dotted module), sets torch's thread count and passes its
``yolo_attn`` log records on. Where a worker process dies (killed, out of memory), ``failed(item, why)`` stands for
the items it took with it, so that the other items' results are kept.

- :class:`LocalPool`: ``jobs`` processes started with ``spawn`` (``concurrent.futures.ProcessPoolExecutor``); the
  CPU cores this process may use are divided among them, and ``--device 0,1,2,3`` gives each process one GPU, round
  robin. One job runs in this process, with torch's threads as they are.
- :class:`RayExecutor`: one Ray task per item, one GPU per task where this process sees CUDA, else the same CPU
  share as the local pool; ``address`` joins a running cluster (whose nodes must all see the run folder: checked
  with a marker file that a task on every node reads back), none starts Ray locally.
"""

from __future__ import annotations

import logging
import multiprocessing
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

import torch

from yolo_attn.errors import UserError
from yolo_attn.plugins import load_plugin, loaded_plugins
from yolo_attn.utils.cpu_share import available_cores
from yolo_attn.utils.device import device_indices

Item = TypeVar("Item")
Result = TypeVar("Result")
Work = Callable[[Item, str], Result]
Failed = Callable[[Item, str], Result]

EXECUTORS = ("local", "ray")
RAY_INSTALL = "pip install 'yolo-attn[ray]'"
LOGGER = logging.getLogger(__name__)
ROOT_LOGGER = "yolo_attn"


class Executor(Protocol):
    """Runs ``work(item, device)`` for every item and returns the results in the items' order; ``failed(item, why)``
    stands for an item whose worker process died."""

    def run_all(self, work: Work[Item, Result], items: Sequence[Item], failed: Failed[Item, Result]) -> list[Result]:
        ...


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process needs before its first item: the plugins of the process that started it (by name),
    torch's intra-op thread count and the level of the ``yolo_attn`` logger."""

    plugins: tuple[str, ...]
    threads: int
    log_level: int

    @classmethod
    def here(cls, threads: int) -> WorkerSetup:
        return cls(tuple(p.name for p in loaded_plugins()), threads, logging.getLogger(ROOT_LOGGER).getEffectiveLevel())

    def apply(self) -> None:
        for name in self.plugins:
            load_plugin(name)
        torch.set_num_threads(self.threads)


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // jobs)


def job_devices(device: str, jobs: int) -> list[str]:
    """The ``--device`` of each of ``jobs`` parallel workers: the GPUs ``device`` names, round robin (``0,1`` with 3
    jobs: ``0``, ``1``, ``0``); any other device (``''``, ``cpu``, one GPU) for every worker."""
    indices = device_indices(device)
    if len(indices) < 2:
        return [device] * jobs
    return [str(indices[i % len(indices)]) for i in range(jobs)]


def make_executor(kind: str, jobs: int, device: str, ray_address: str | None, run_folder: Path) -> Executor:
    """The executor ``--executor`` names, for ``--jobs`` workers on ``--device``."""
    if kind == "ray":
        return RayExecutor(jobs, device, ray_address, run_folder)
    if kind != "local":
        raise UserError(f"--executor {kind!r}: choose from {', '.join(EXECUTORS)}")
    if ray_address is not None:
        raise UserError("--ray-address needs --executor ray")
    return LocalPool(jobs, device)


# -- the local process pool ---------------------------------------------------------------------------------------

_worker_device = ""  # in a pool worker: the --device that worker runs on (set once by _start_pool_worker)


class _ForwardRecords(logging.Handler):
    """Hands a worker's log record to the logger of the same name in this process (whose handlers show it)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


def _start_pool_worker(setup: WorkerSetup, devices: Any, records: Any) -> None:
    """A pool worker's initializer: its log records go to the queue ``records``, it takes its device from the queue
    ``devices`` (one per worker) and applies ``setup``."""
    global _worker_device
    logger = logging.getLogger(ROOT_LOGGER)
    logger.addHandler(QueueHandler(records))
    logger.setLevel(setup.log_level)
    _worker_device = devices.get()
    setup.apply()


def _run_in_pool_worker(work: Work[Item, Result], item: Item) -> Result:
    return work(item, _worker_device)


class LocalPool:
    """``jobs`` processes on this machine (``spawn``), each with ``cores // jobs`` torch threads and its device;
    one job runs in this process."""

    def __init__(self, jobs: int, device: str) -> None:
        self.jobs, self.device = jobs, device

    def run_all(self, work: Work[Item, Result], items: Sequence[Item], failed: Failed[Item, Result]) -> list[Result]:
        if self.jobs == 1:
            return [work(item, self.device) for item in items]
        threads = threads_per_job(self.jobs)
        LOGGER.info(f"ablate: {self.jobs} jobs, {threads} threads each")
        context = multiprocessing.get_context("spawn")
        devices, records = context.Queue(), context.Queue()
        for device in job_devices(self.device, self.jobs):
            devices.put(device)
        listener = QueueListener(records, _ForwardRecords())
        listener.start()
        try:
            with ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_start_pool_worker,
                                     initargs=(WorkerSetup.here(threads), devices, records)) as pool:
                futures = [pool.submit(_run_in_pool_worker, work, item) for item in items]
                try:
                    return [_pool_result(future, item, failed) for future, item in zip(futures, items, strict=True)]
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
        finally:
            listener.stop()


def _pool_result(future: Any, item: Item, failed: Failed[Item, Result]) -> Result:
    try:
        return future.result()
    except BrokenProcessPool as e:
        return failed(item, f"its worker process died ({e})")


# -- Ray ----------------------------------------------------------------------------------------------------------

def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray: {RAY_INSTALL}") from None
    return ray


def _run_ray_task(work: Work[Item, Result], item: Item, setup: WorkerSetup, device: str) -> Result:
    """One item in a Ray worker process: its ``yolo_attn`` records on the worker's stderr (which Ray shows on the
    driver), ``setup`` applied, then the work."""
    logger = logging.getLogger(ROOT_LOGGER)
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    logger.setLevel(setup.log_level)
    setup.apply()
    return work(item, device)


def _read_marker(path: str) -> str:
    marker = Path(path)
    return marker.read_text(encoding="utf-8") if marker.is_file() else ""


class RayExecutor:
    """One Ray task per item: one GPU each where this process sees CUDA (the task's device is then its GPU), else
    ``cores // jobs`` CPUs and torch threads each. ``address``: join that cluster (the run folder must be on storage
    every node sees, checked at start); none: start Ray on this machine unless it is started already."""

    def __init__(self, jobs: int, device: str, address: str | None, run_folder: Path) -> None:
        self.jobs, self.device, self.address, self.run_folder = jobs, device, address, run_folder

    def run_all(self, work: Work[Item, Result], items: Sequence[Item], failed: Failed[Item, Result]) -> list[Result]:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, include_dashboard=False)
        try:
            if self.address is not None:
                self.check_shared_storage(ray)
            gpus = torch.cuda.is_available() and self.device.strip().lower() != "cpu"
            threads = threads_per_job(self.jobs)
            resources = {"num_gpus": 1} if gpus else {"num_cpus": threads}
            device = "0" if gpus else self.device  # Ray shows a task only its own GPU
            LOGGER.info(f"ablate: {len(items)} Ray tasks, each with "
                        + ("one GPU" if gpus else f"{threads} CPU(s) and {threads} torch threads"))
            task = ray.remote(_run_ray_task).options(**resources)
            setup = WorkerSetup.here(threads)
            refs = [task.remote(work, item, setup, device) for item in items]
            return [self._result(ray, ref, item, failed) for ref, item in zip(refs, items, strict=True)]
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _result(ray: ModuleType, ref: Any, item: Item, failed: Failed[Item, Result]) -> Result:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, (UserError, KeyboardInterrupt)):
                raise e.cause from None
            return failed(item, f"its Ray task failed ({type(e.cause).__name__}: {e.cause})")
        except ray.exceptions.RayError as e:  # the worker or its node died
            return failed(item, f"its Ray task failed ({type(e).__name__})")

    def check_shared_storage(self, ray: ModuleType) -> None:
        """A file written here must be readable from a task on every node of the cluster: the pairs' folders are
        written by the tasks and read back by this process."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.run_folder.mkdir(parents=True, exist_ok=True)
        marker = self.run_folder / f".ray-storage-check-{uuid.uuid4().hex}"
        token = uuid.uuid4().hex
        marker.write_text(token, encoding="utf-8")
        nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
        reader = ray.remote(_read_marker)
        try:
            seen = ray.get([reader.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, False))
                            .remote(str(marker.resolve())) for node in nodes])
        finally:
            marker.unlink()
        blind = [node for node, text in zip(nodes, seen, strict=True) if text != token]
        if blind:
            raise UserError(f"--ray-address {self.address}: the run folder {self.run_folder.resolve()} is not visible "
                            f"from {len(blind)} of the cluster's {len(nodes)} nodes; put --project on storage every "
                            "node mounts at the same path (NFS, a shared volume)")
