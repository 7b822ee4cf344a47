"""One run over several processes: torch.distributed (launched by ``torchrun``) as the engine uses it.

Only the teacher touches all n training images, and its Nyström solver is a sum over rows: rank r
holds the contiguous rows ``shard(n)`` of the training set, computes its rows of K(X, Z) and its
share of every gradient, Hessian-vector product, duality gap and line-search slope, and the shares
are summed with ``all_reduce`` (gloo on CPU, NCCL on CUDA). Everything of size M (centres, β, c) is
replicated: every rank takes the same decisions from the same reduced numbers. The distillation loop
and the export run on rank 0; the other ranks return after the teacher.

``Cluster()`` is the single process: every collective is the identity, so the one-process run is the
code path the N-process run is compared against.

Faults: every collective runs under the process group's timeout (``DGKIP_DIST_TIMEOUT_S``, default
600 s); a peer that dies or never connects raises :class:`ClusterError` naming the rank(s) and the
cause (the survivors report on the rendezvous store; the silent ranks are named).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence

import torch

Tensor = torch.Tensor
DEFAULT_TIMEOUT_S = 600.0
PROBE_TIMEOUT_S = 10.0        # how long rank 0 waits for the survivors' reports after a failed collective


class ClusterError(RuntimeError):
    """A collective failed: a rank died, timed out or never connected. The message names the rank(s)."""


def _timeout_s() -> float:
    text = os.environ.get("DGKIP_DIST_TIMEOUT_S", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ClusterError(f"DGKIP_DIST_TIMEOUT_S={text!r} is not a number of seconds; unset it or give e.g. 600")
    return value if value > 0 else DEFAULT_TIMEOUT_S


def launched_by_torchrun() -> bool:
    """True when the environment describes a process group of more than one process (torchrun's
    ``WORLD_SIZE``/``RANK``/``MASTER_ADDR``/``MASTER_PORT``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@dataclass
class Cluster:
    """``rank`` of ``world`` processes; ``Cluster()`` is the single process (collectives are identities)."""
    rank: int = 0
    world: int = 1
    backend: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    # ----------------------------------------------------------------------------- set up / tear down
    @classmethod
    def from_env(cls, device: torch.device | None = None) -> "Cluster":
        """Join the process group torchrun describes (``init_process_group`` with the ``env://``
        rendezvous); a single process when ``WORLD_SIZE`` is absent or 1. gloo on CPU, NCCL when the
        run's ``device`` is CUDA. Raises :class:`ClusterError` when the peers do not all connect
        within the timeout."""
        if not launched_by_torchrun():
            return cls()
        import torch.distributed as dist

        timeout = _timeout_s()
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
            # the first collective makes sure every rank is really there before any work starts
            dist.barrier()
        except Exception as exc:          # noqa: BLE001 - rendezvous errors come in many types
            raise ClusterError(f"rank {rank} of {world} could not join the others at "
                               f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')} within "
                               f"{timeout:g} s ({_first_line(exc)}); check that every node runs the same torchrun "
                               "command and can reach the rendezvous address") from exc
        return cls(rank, world, backend, timeout)

    def close(self) -> None:
        """Leave the process group (``destroy_process_group``); a no-op for one process."""
        if self.world > 1:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        """Rank 0: runs the distillation loop and writes the export."""
        return self.rank == 0

    # ------------------------------------------------------------------------------------- sharding
    def shard(self, n: int) -> slice:
        """This rank's contiguous rows of n: [⌊r·n/W⌋, ⌊(r+1)·n/W⌋)."""
        return slice(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def shard_sizes(self, n: int) -> list[int]:
        return [(r + 1) * n // self.world - r * n // self.world for r in range(self.world)]

    # ---------------------------------------------------------------------------------- collectives
    def sum(self, t: Tensor) -> Tensor:
        """Σ over ranks of ``t`` (any shape), returned (in place for several processes)."""
        if self.world == 1:
            return t
        import torch.distributed as dist
        self._guard(dist.all_reduce, t, op=dist.ReduceOp.SUM)
        return t

    def sum_floats(self, *values: float) -> list[float]:
        """Σ over ranks of a few Python floats (float64 on the wire)."""
        if self.world == 1:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64, device=self._wire_device())
        return [float(v) for v in self.sum(t).cpu()]

    def sum_numpy(self, a):
        """Σ over ranks of a numpy array (float64 on the wire), returned as a new array."""
        if self.world == 1:
            return a
        wire = torch.from_numpy(a.astype("float64", copy=True)).to(self._wire_device())
        return self.sum(wire).cpu().numpy()

    def rows(self, local: Tensor, n: int, index: Sequence[int] | Tensor) -> Tensor:
        """The rows ``index`` (global row numbers of an n-row array sharded by :meth:`shard`) of the
        array whose local shard is ``local`` (n_local, …), on every rank, in ``index`` order. Exact:
        each row comes from its one owner and is summed with zeros elsewhere."""
        index = torch.as_tensor(index, dtype=torch.long).cpu()
        if self.world == 1:
            return local[index.to(local.device)]
        sl = self.shard(n)
        mine = (index >= sl.start) & (index < sl.stop)
        out = torch.zeros((len(index), *local.shape[1:]), dtype=local.dtype, device=self._wire_device())
        if bool(mine.any()):
            out[mine.to(out.device)] = local[(index[mine] - sl.start).to(local.device)].to(out.device)
        return self.sum(out).to(local.device)

    def cat(self, local: Tensor) -> Tensor:
        """The rank-ordered concatenation of every rank's ``local`` (n_r, …) (contiguous shards: the
        global array), on every rank."""
        if self.world == 1:
            return local
        import torch.distributed as dist
        sizes = [torch.zeros(1, dtype=torch.long, device=self._wire_device()) for _ in range(self.world)]
        self._guard(dist.all_gather, sizes, torch.tensor([local.shape[0]], device=self._wire_device()))
        width = int(max(s.item() for s in sizes))
        padded = torch.zeros((width, *local.shape[1:]), dtype=local.dtype, device=self._wire_device())
        padded[: local.shape[0]] = local.to(padded.device)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        self._guard(dist.all_gather, parts, padded)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).to(local.device)

    def patient_group(self, timeout_s: float):
        """A gloo group of every rank whose collectives wait up to ``timeout_s`` (for results that take
        as long as the slowest rank's work, e.g. a sweep's cells). Every rank must call this at the same
        point; None for one process."""
        if self.world == 1:
            return None
        import torch.distributed as dist
        return self._guard(dist.new_group, backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))

    def gather(self, obj, group=None) -> list | None:
        """Every rank's picklable ``obj`` on rank 0, in rank order (``gather_object``); None on the
        other ranks. ``group``: from :meth:`patient_group` (gloo, CPU objects)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist
        out = [None] * self.world if self.leader else None
        self._guard(dist.gather_object, obj, out, dst=0, group=group)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            self._guard(dist.barrier)

    def _wire_device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")

    def _guard(self, fn, *args, **kwargs):
        """Run one collective; a failure becomes :class:`ClusterError` naming the ranks that stopped
        answering (found by ``monitored_barrier``) and the cause."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:          # noqa: BLE001 - gloo/NCCL raise RuntimeError and DistBackendError
            raise ClusterError(self._diagnose(exc)) from exc

    def _diagnose(self, exc: BaseException) -> str:
        cause = _first_line(exc)
        silent = [1 - self.rank] if self.world == 2 else self._silent_ranks()
        who = (f"rank{'s' if len(silent) > 1 else ''} {', '.join(map(str, silent))}" if silent
               else "another rank")
        return (f"{who} stopped answering (rank {self.rank} of {self.world} saw: {cause}); the run was abandoned "
                "and nothing was exported. Check that rank's own log (torchrun prints its exit code), then "
                "start the job again")

    def _silent_ranks(self) -> list[int]:
        """After a failed collective every surviving rank reports on the rendezvous store; the ranks
        that have not reported within :data:`PROBE_TIMEOUT_S` are the ones that died or hang."""
        import time
        import torch.distributed as dist
        try:
            store = dist.distributed_c10d._get_default_store()
            store.set(f"dgkip/survivor/{self.rank}", "1")
            deadline, silent = time.monotonic() + PROBE_TIMEOUT_S, []
            for r in range(self.world):
                if r == self.rank:
                    continue
                left = max(0.01, deadline - time.monotonic())
                try:
                    store.wait([f"dgkip/survivor/{r}"], datetime.timedelta(seconds=left))
                except Exception:         # noqa: BLE001 - the store's timeout error
                    silent.append(r)
            return silent
        except Exception:                 # noqa: BLE001 - no store (rank 0 itself died): name nobody
            return []


def _first_line(exc: BaseException) -> str:
    """The first line of a torch.distributed error without gloo's source location and boilerplate."""
    import re
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):[0-9]+\]\s*", "", text)
    return text.split(". This is typically")[0][:300]
