"""Several devices and several hosts: JAX's distributed runtime, the device mesh and the shardings.

Data parallel training on a one-axis mesh ("data"): each step's batch is split by rows across the devices
(`NamedSharding(mesh, P("data"))`), the carried hidden state is split the same way (its rows are the batch's
streams), and parameters and optimizer state are replicated. The train step is one `jax.jit` with those
shardings; XLA inserts the all-reduce of the gradients. With several processes (`jax.distributed`), the mesh
spans every process's devices and each process builds only its own rows of the batch.

Anything that must happen on every process in the same order (collectives, checkpoint saves, agreeing on a
run name or on stopping) goes through this module, so the rest of the code can stay single-process minded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from charlstm.errors import UsageError, UserError

AXIS = "data"
T = TypeVar("T")


class DistributedError(UserError):
    """The distributed runtime could not start, or the processes disagree."""


class DistributedOptionError(DistributedError, UsageError):
    """A --coordinator, --num-processes or --process-id value that cannot describe a job (exit code 2)."""


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
    timeout_s: int = 300,
) -> bool:
    """Join a multi-process job with `jax.distributed.initialize`; returns whether it did.

    Nothing happens unless a coordinator, a process count or id, or `auto` (cluster auto-detection: SLURM,
    Open MPI, TPU pods, `JAX_COORDINATOR_ADDRESS`) is given. Must run before JAX touches a device.
    """
    if coordinator is None and num_processes is None and process_id is None and not auto:
        return False
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DistributedOptionError(
                f"--coordinator {coordinator!r} is not HOST:PORT",
                "pass the address of process 0 and a free port, e.g. --coordinator node1:12345",
            )
    if num_processes is not None and num_processes < 1:
        raise DistributedOptionError(
            f"--num-processes must be at least 1 (got {num_processes})", "pass the number of processes in the job"
        )
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise DistributedOptionError(
            f"--process-id {process_id} is outside 0..{num_processes - 1}",
            "number the processes 0, 1, ..., num_processes - 1",
        )
    # CPU processes exchange gradients through gloo (TCP); GPUs use NCCL and ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=timeout_s,
        )
    except (ValueError, TypeError) as err:  # missing or inconsistent arguments, after auto-detection
        raise DistributedError(
            f"cannot start the distributed runtime: {err}",
            "pass --coordinator HOST:PORT --num-processes N --process-id I, or run under SLURM / "
            "Open MPI with --distributed",
        ) from None
    except RuntimeError as err:  # includes XLA's errors: unreachable coordinator, timeout, already started
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise DistributedError(
            f"cannot join the distributed job at {coordinator or 'the detected coordinator'}: {first}",
            "check that every process got the same --coordinator and --num-processes and that "
            "process 0 is running and reachable",
        ) from None
    return True


@dataclass(frozen=True)
class Layout:
    """Where a training run's arrays live: a one-axis mesh and the two shardings used on it."""

    mesh: Mesh

    @property
    def data(self) -> NamedSharding:
        """Rows (axis 0) split across the mesh: batches and the carried state."""
        return NamedSharding(self.mesh, PartitionSpec(AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """A full copy on every device: parameters, optimizer state, step, key, scalars."""
        return NamedSharding(self.mesh, PartitionSpec())

    @property
    def n_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    def rows(self, batch: int) -> slice:
        """This process's rows of a global batch of `batch` rows (contiguous: the mesh is ordered by process)."""
        spans = [idx[0] for idx in self.data.addressable_devices_indices_map((batch,)).values() if idx is not None]
        return slice(min(s.start or 0 for s in spans), max(batch if s.stop is None else s.stop for s in spans))

    def put_rows(self, local: np.ndarray, batch: int) -> jax.Array:
        """A global array of `batch` rows, split across the mesh, from this process's rows `local`."""
        shape = (batch, *local.shape[1:])
        out: jax.Array = jax.make_array_from_process_local_data(self.data, np.asarray(local), shape)
        return out

    def put_replicated(self, value: Any) -> jax.Array:
        """A global replicated array from a value every process holds identically."""
        host = np.asarray(value)
        out: jax.Array = jax.make_array_from_process_local_data(self.replicated, host, host.shape)
        return out

    def put_global(self, value: Any) -> jax.Array:
        """A value every process holds whole: split by rows when they divide evenly, else replicated."""
        host = np.asarray(value)
        if host.ndim and host.shape[0] % self.n_devices == 0:
            return self.put_rows(host[self.rows(host.shape[0])], host.shape[0])
        return self.put_replicated(host)


def one_device() -> Layout:
    """This process's first device alone: the layout of a single-process run (compare-rnn's cells, the benchmarks,
    the reading commands), so one code path serves it and the mesh."""
    return Layout(Mesh(np.array(jax.local_devices()[:1]), (AXIS,)))


def make_layout(devices: int = 0, batch_size: int | None = None) -> Layout:
    """The mesh over `devices` local devices per process (0: all of them) across every process.

    Raises a one-line error when more devices are asked for than exist, or when the global batch does not
    split evenly across the devices (every device must get the same number of rows).
    """
    local = jax.local_devices()
    if devices > len(local):
        raise DistributedError(
            f"dist.devices={devices} but this process sees {len(local)} {local[0].platform} device(s)",
            f"pass --set dist.devices={len(local)} (0: all devices; also on --resume); on a CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N splits it into N devices",
        )
    k = devices or len(local)
    # Every process contributes its first k local devices; the mesh is ordered by process so that each
    # process's rows of the batch are one contiguous block.
    chosen = [
        d
        for p in range(jax.process_count())
        for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:k]
    ]
    layout = Layout(Mesh(np.array(chosen), (AXIS,)))
    if batch_size is not None and batch_size % layout.n_devices:
        n = layout.n_devices
        raise DistributedError(
            f"data.batch_size={batch_size} does not split evenly across {n} devices",
            f"set data.batch_size to a multiple of {n} (e.g. {max(n, batch_size // n * n)}), or change dist.devices",
        )
    return layout


def process_count() -> int:
    return int(jax.process_count())


def is_main() -> bool:
    """Whether this is process 0, the one that prints, writes metrics and owns the run directory."""
    return jax.process_index() == 0


def _text_to_array(text: str, size: int = 4096) -> np.ndarray:
    data = text.encode("utf-8")[: size - 4]
    return np.frombuffer(len(data).to_bytes(4, "little") + data.ljust(size - 4, b"\0"), dtype=np.uint8).copy()


def _array_to_text(arr: np.ndarray) -> str:
    raw = np.asarray(arr, dtype=np.uint8).tobytes()
    return raw[4 : 4 + int.from_bytes(raw[:4], "little")].decode("utf-8", errors="replace")


def broadcast_text(text: str) -> str:
    """Process 0's `text` on every process (e.g. a run name made from the clock)."""
    if jax.process_count() == 1:
        return text
    from jax.experimental import multihost_utils

    return _array_to_text(multihost_utils.broadcast_one_to_all(_text_to_array(text)))


def agree_max(value: int) -> int:
    """The largest of every process's `value`, on every process (e.g. a signal number, 0 for none)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.asarray(multihost_utils.process_allgather(np.int32(value))).max())


def together(fn: Callable[[], T], what: str) -> T:
    """Run `fn` on every process; if it raised a UserError on any of them, raise one on all of them.

    Without this a problem seen by one process (a missing file on one host) leaves the others waiting in
    the next collective until the runtime's heartbeat gives up, with no word of why.
    """
    if jax.process_count() == 1:
        return fn()
    from jax.experimental import multihost_utils

    result: Any = None
    error: UserError | None = None
    try:
        result = fn()
    except UserError as err:
        error = err
    report = _text_to_array(f"{error.message}\n{error.hint}" if error else "")
    reports = np.asarray(multihost_utils.process_allgather(report))
    for p, row in enumerate(reports):
        text = _array_to_text(row)
        if text:
            if error is not None:
                raise error
            message, _, hint = text.partition("\n")
            raise DistributedError(f"process {p} failed while {what}: {message}", hint)
    return cast(T, result)


def check_same(value: str, what: str, hint: str) -> None:
    """Every process must hold the same `value` (compared by hash), e.g. the corpus each one read."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(value.encode("utf-8")).digest(), dtype=np.uint8)
    digests = np.asarray(multihost_utils.process_allgather(digest))
    differ = [p for p in range(len(digests)) if not np.array_equal(digests[p], digests[0])]
    if differ:
        raise DistributedError(f"processes {differ} see a different {what} than process 0", hint)


def describe(layout: Layout) -> str:
    """One line for the start of a run: devices, processes and the platform."""
    dev = layout.mesh.devices.flat[0]
    procs = jax.process_count()
    where = f" in {procs} processes" if procs > 1 else ""
    return f"{layout.n_devices} {dev.platform} device(s){where}, batch split {layout.n_devices} ways"


def to_host(tree: Any) -> Any:
    """NumPy copies of (replicated or local) arrays, usable by single-process code such as sampling."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a) if isinstance(a, (jax.Array, np.ndarray)) else a, tree)
