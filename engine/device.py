"""Device and dtype resolution, and the step loop's CPU threads. Certificates always use float64 (on
CPU when the device lacks it)."""
from __future__ import annotations

import statistics
from contextlib import contextmanager
from typing import Iterator

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" → CUDA when present, else MPS when present, else CPU; explicit names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is available; choose 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device 'mps' was requested but Apple MPS is not available; choose 'auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def certificate_device(device: torch.device) -> torch.device:
    """Where float64 certificates run: the device itself, except MPS (no float64) → CPU."""
    return torch.device("cpu") if device.type == "mps" else device


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


# Below this many flops a step is "small": on a 2-core machine with any other load, a (100 × 100)·(100 × 10)
# product took 2.7 ms with 2 threads and 22 µs with 1 (measured while another process used a core).
SMALL_STEP_FLOPS = 2e9


def step_threads(device: torch.device, flops_per_step: float, policy: str = "auto") -> int | None:
    """Intra-op threads for a step (None: leave torch's setting), before or without timing: "one" → 1
    and "all" → None on the CPU; "auto" → 1 for small CPU steps (:data:`SMALL_STEP_FLOPS`), else None.
    :class:`StepThreads` times the alternative on a run's own steps."""
    if device.type != "cpu" or policy == "all":
        return None
    return 1 if policy == "one" or flops_per_step < SMALL_STEP_FLOPS else None


class StepThreads:
    """The threads of each step of a run's loop (:func:`engine.distill._loop`), chosen by timing.

    Policy "auto", a small CPU step (:func:`step_threads` says 1) and torch set to n > 1 threads: one
    thread and n threads are both timed on the run's own steps, and the faster kept (below). On 2 idle
    cores (2,000-image pool, ntk-fc) n threads took 0.76× the time of one at IPC 10 and 0.90-0.97× at
    IPC 1; with another process busy on one of the cores they took 1.2-2.2× the time. After
    :attr:`WARMUP` steps, and again every :attr:`RETRY` steps (other processes come and go), blocks of
    :attr:`BLOCK` steps alternate, one thread first, :attr:`ROUNDS` blocks each; n threads are kept
    when their median step is at most :attr:`MARGIN` × one thread's, else one thread is (also the
    choice until the first trial ends). A trial that the run's ``steps`` would cut short is not begun.
    GEMMs round differently on 1 and n threads, so under "auto" two runs of one seed can differ in the
    last bits; "one" and "all" fix the count and time nothing.
    """

    # WARMUP covers the run estimate's probe (engine.plan.time.STEPS steps): it times the untried policy
    WARMUP, BLOCK, ROUNDS, RETRY, MARGIN = 24, 6, 3, 500, 0.95
    KEPT = 20            # trials kept in :attr:`trials` (a run's metrics), the latest ones

    @classmethod
    def trial_steps(cls) -> int:
        """Steps of one trial: :attr:`ROUNDS` blocks of :attr:`BLOCK` steps for each of the two counts."""
        return 2 * cls.BLOCK * cls.ROUNDS

    @classmethod
    def first_trial_end(cls) -> int:
        """The last step of the first trial (1-based)."""
        return cls.WARMUP + cls.trial_steps()

    def __init__(self, device: torch.device, flops_per_step: float, policy: str = "auto",
                 steps: int | None = None) -> None:
        if self.first_trial_end() > self.RETRY:
            raise ValueError(f"StepThreads: the first trial (steps {self.WARMUP + 1}-{self.first_trial_end()}) "
                             f"must end by step RETRY = {self.RETRY}")
        fixed = step_threads(device, flops_per_step, policy)
        n = torch.get_num_threads()
        self.steps = steps                            # the run's step count (None: unbounded)
        # one thread against n: only where "auto" picked one thread for its size and n > 1, and not in a
        # torchrun job (its processes run with one thread each, as torchrun sets, unless told otherwise)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        tune = policy == "auto" and fixed == 1 and n > 1 and not distributed
        self.candidates: tuple[int | None, ...] = (1, n) if tune else (fixed,)
        self.choice = self.candidates[0]
        self._cpu = device.type == "cpu"
        self._times: dict[int | None, list[float]] = {c: [] for c in self.candidates}
        self.trials: list[dict[str, float]] = []      # the latest KEPT trials: first step, median s each, choice

    def used(self) -> int | None:
        """The CPU threads the steps run on now (None off the CPU)."""
        if not self._cpu:
            return None
        return torch.get_num_threads() if self.choice is None else self.choice

    def _trial_offset(self, step: int) -> int | None:
        """The step's place in a trial (0-based), or None outside one."""
        if len(self.candidates) < 2 or step <= self.WARMUP:
            return None
        start = self.WARMUP + 1 if step < self.RETRY else step - step % self.RETRY
        offset = step - start
        if self.steps is not None and start + self.trial_steps() - 1 > self.steps:
            return None                              # the run ends before this trial could decide
        return offset if offset < self.trial_steps() else None

    def threads(self, step: int) -> int | None:
        """Threads for ``step`` (1-based; None: torch's setting): a trial's candidate, else the choice."""
        offset = self._trial_offset(step)
        return self.choice if offset is None else self.candidates[(offset // self.BLOCK) % 2]

    def record(self, step: int, seconds: float) -> None:
        """The wall time of ``step`` as :meth:`threads` ran it; the last step of a trial decides."""
        offset = self._trial_offset(step)
        if offset is None:
            return
        if offset == 0:
            for times in self._times.values():
                times.clear()
        self._times[self.candidates[(offset // self.BLOCK) % 2]].append(seconds)
        if offset == self.trial_steps() - 1:
            one, many = (statistics.median(self._times[c]) for c in self.candidates)
            self.choice = self.candidates[1] if many <= self.MARGIN * one else self.candidates[0]
            self.trials.append({"step": step - offset, "one_thread_s": one, "threads": self.candidates[1],
                                "threads_s": many, "chosen": self.choice})
            del self.trials[:-self.KEPT]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave as is), then restore the setting."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
