"""Where the shards of an INR zoo are fitted: in this process, or as Ray tasks.

A backend only computes: it takes a `FitJob` (what all shards share) and `ShardTask` s
(one per shard: its targets and seeds) and yields a `ShardResult` per shard as each
finishes, in any order. The driver (`build_inr_zoo`) writes every result through the
`ZooWriter` as it arrives, so an interrupted run keeps the finished shards and resumes.

Both backends call the same `fit_shard`, and a network's result depends only on its seed
and target, so they give the same zoo. Bit-for-bit equality also needs the same
intra-op thread count: a Ray task sets ``torch.set_num_threads(num_cpus_per_task)``
(1 by default), so compare against a local run with ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import ipaddress
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from weightspace.core.weights import Weights
from weightspace.inr.siren import SirenRecipe
from weightspace.zoo.fit_inr import fit_inrs


@dataclass(frozen=True)
class FitJob:
    """What every shard of a zoo shares."""

    coords: Tensor  # [P, d] in [-1, 1]
    recipe: SirenRecipe
    batch_size: int  # networks fitted together inside a shard
    device: str = "cpu"


@dataclass(frozen=True)
class ShardTask:
    """Fit the networks of shard ``shard``: one per row of ``targets``."""

    shard: int
    targets: Tensor  # [n, P, c] signal values in [0, 1]
    seeds: tuple[int, ...]  # n initialisation seeds


@dataclass(frozen=True)
class ShardResult:
    shard: int
    weights: Weights  # [n, 1, ...] on the CPU
    psnr: Tensor  # [n] dB
    steps: Tensor  # [n] optimiser steps taken
    seconds: float  # wall time of the fit, where it ran


def fit_shard(job: FitJob, task: ShardTask, on_step: Callable[[int], None] | None = None) -> ShardResult:
    """Fit one shard in batches of ``job.batch_size`` networks (the work unit of every backend);
    ``on_step`` as in `fit_inrs` (a local run's progress bar; Ray tasks report per shard)."""
    start = time.perf_counter()
    parts = []
    for lo in range(0, len(task.seeds), job.batch_size):
        hi = lo + job.batch_size
        parts.append(
            fit_inrs(job.coords, task.targets[lo:hi], job.recipe, task.seeds[lo:hi], device=job.device,
                     on_step=on_step)
        )
    return ShardResult(
        task.shard,
        Weights.cat([r.weights for r in parts]).to("cpu"),
        torch.cat([r.psnr for r in parts]),
        torch.cat([r.steps for r in parts]),
        time.perf_counter() - start,
    )


class Backend(Protocol):
    name: str

    def run(self, job: Any, tasks: Iterable[Any], work: Callable[[Any, Any], Any] = ...) -> Iterator[Any]:
        """Run ``work(job, task)`` (default `fit_shard`) for every task; yield each result as it
        is ready (any order). Other zoo builders (e.g. trained classifiers) pass their own ``work``,
        a module-level function so that Ray can ship it."""
        ...


class LocalBackend:
    """Shards one after another in this process (the networks of a batch fit in parallel)."""

    name = "local"

    def run(self, job: Any, tasks: Iterable[Any], work: Callable[[Any, Any], Any] = fit_shard) -> Iterator[Any]:
        for task in tasks:
            yield work(job, task)


def _require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError(
            "--backend ray needs Ray, an optional extra: pip install 'weightspace[ray]'"
        ) from None
    return ray


# Ray's "cluster mode" switch: on (its Linux default), ray.init swaps a loopback node address
# for the machine's primary address (services.resolve_ip_for_localhost); off, it keeps it.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOOPBACK = "127.0.0.1"


def _is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1, an IPv4-mapped loopback (::ffff:127.x.y.z) and "localhost"."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


@contextmanager
def _loopback_node(ray: Any) -> Iterator[None]:
    """While starting a local instance, keep Ray's node address on loopback.

    Ray's GCS, raylet (node manager and object manager), core workers (the driver's too)
    and agents bind to loopback only when the node address *is* loopback, and to every
    interface (``::``) otherwise. ``ray.init(_node_ip_address="127.0.0.1")`` alone is not
    enough on Linux: Ray replaces a loopback address by the machine's own unless its
    cluster mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, Ray's default on
    Windows/macOS). That switch is read when ``ray`` is imported, so the already-imported
    constant is patched too; the environment variable is what the processes Ray spawns
    inherit. Both are restored afterwards (the node, once started, keeps its address).
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    patch = constants is not None and hasattr(constants, "ENABLE_RAY_CLUSTER")
    old_env, old_const = os.environ.get(_RAY_CLUSTER_ENV), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_RAY_CLUSTER_ENV] = "0"
    if patch:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if patch:
            constants.ENABLE_RAY_CLUSTER = old_const
        if old_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = old_env


def _fit_shard_task(job: Any, task: Any, threads: int, work: Callable[[Any, Any], Any] = fit_shard) -> Any:
    # Ray sets OMP_NUM_THREADS for a task, but a reused worker may have run torch already
    torch.set_num_threads(threads)
    return work(job, task)


class RayBackend:
    """Shards as Ray tasks, on a local Ray instance or the cluster at ``address``.

    If Ray is already initialised (e.g. by the caller), that instance is used and left
    running. Otherwise ``address=None`` starts a local instance whose processes (GCS,
    raylet, object manager, workers, agents, the driver's own server) listen on
    127.0.0.1 only (see `_loopback_node`; checked with Ray 2.60 by
    tests/zoo/test_ray_loopback.py, and warned about at start if this Ray put the node
    elsewhere), with no dashboard and no usage-stats reporting (``RAY_USAGE_STATS_ENABLED``
    is set to 0 unless already set), and shuts it down afterwards; an address connects to
    a cluster whose nodes must have weightspace installed. At most ``max_in_flight`` shards are
    submitted at once (default: twice the cluster's CPUs), so the driver never holds
    every shard's targets in the object store.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus_per_task: int = 1,
        num_gpus_per_task: float = 0.0,
        max_in_flight: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.address, self.num_cpus_per_task, self.num_gpus_per_task = (
            address,
            int(num_cpus_per_task),
            num_gpus_per_task,
        )
        self.max_in_flight, self.init_kwargs = max_in_flight, dict(init_kwargs or {})

    def _init(self, ray: Any) -> bool:
        if ray.is_initialized():
            return False
        if self.address is None:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kwargs = {"_node_ip_address": _LOOPBACK, "include_dashboard": False, **self.init_kwargs}
            loopback = _is_loopback(str(kwargs["_node_ip_address"]))  # unless init_kwargs chose an address
            with _loopback_node(ray) if loopback else nullcontext():
                ray.init(**kwargs)
            node_ip = ray.util.get_node_ip_address()
            if loopback and not _is_loopback(node_ip):
                # a Ray whose address resolution we could not steer: say so, don't hide it
                warnings.warn(
                    f"Ray {getattr(ray, '__version__', '?')} started its node on {node_ip}, not loopback:"
                    " its processes may listen on every network interface",
                    RuntimeWarning,
                    stacklevel=3,
                )
        else:
            ray.init(address=self.address, **self.init_kwargs)
        return True

    def run(self, job: Any, tasks: Iterable[Any], work: Callable[[Any, Any], Any] = fit_shard) -> Iterator[Any]:
        ray = _require_ray()
        started = self._init(ray)
        pending: list[Any] = []
        try:
            remote = ray.remote(num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task)(
                _fit_shard_task
            )
            job_ref = ray.put(job)  # shared coordinates and recipe travel once
            window = self.max_in_flight or max(1, 2 * int(ray.cluster_resources().get("CPU", 1)))
            todo = iter(tasks)

            def submit() -> bool:
                task = next(todo, None)
                if task is None:
                    return False
                pending.append(remote.remote(job_ref, task, self.num_cpus_per_task, work))
                return True

            while len(pending) < window and submit():
                pass
            while pending:
                done, _ = ray.wait(pending, num_returns=1)
                pending.remove(done[0])
                result = ray.get(done[0])
                submit()
                yield result
        finally:
            for ref in pending:  # interrupted: the driver stops, so do its tasks
                ray.cancel(ref, force=True)
            if started:
                ray.shutdown()


def make_backend(name: str | Backend, ray_address: str | None = None) -> Backend:
    """``"local"``, ``"ray"`` (with ``ray_address``), or a backend object passed through."""
    if not isinstance(name, str):
        return name
    if name == "local":
        if ray_address is not None:
            raise ValueError("--ray-address needs --backend ray")
        return LocalBackend()
    if name == "ray":
        return RayBackend(ray_address)
    raise ValueError(f"unknown backend {name!r}; expected 'local' or 'ray'")


__all__ = [
    "Backend",
    "FitJob",
    "LocalBackend",
    "RayBackend",
    "ShardResult",
    "ShardTask",
    "fit_shard",
    "make_backend",
]
