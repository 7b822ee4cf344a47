"""The step loop's CPU threads (engine.device.StepThreads): which count each step runs, and that the
timed trial keeps the faster one."""
import numpy as np
import pytest
import torch

from engine.config import ConfigError, DistillConfig
from engine.device import SMALL_STEP_FLOPS, StepThreads, step_threads
from engine.distill import run
from engine.events import Done

CPU = torch.device("cpu")
TRIAL = StepThreads.trial_steps()


@pytest.fixture
def four_threads(monkeypatch):
    """torch reports 4 intra-op threads (nothing is run with them here)."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)


def _drive(tuner: StepThreads, steps: range, seconds) -> list[int | None]:
    """Run ``steps`` through the tuner, each 'taking' seconds(step, threads); the threads used."""
    used = []
    for step in steps:
        n = tuner.threads(step)
        used.append(n)
        tuner.record(step, seconds(step, n))
    return used


def test_trial_alternates_blocks_and_keeps_the_faster_count(four_threads):
    tuner = StepThreads(CPU, SMALL_STEP_FLOPS / 10)
    assert tuner.candidates == (1, 4)
    first = StepThreads.WARMUP + 1
    used = _drive(tuner, range(1, first + TRIAL + 10), lambda step, n: 1.0 if n == 1 else 0.5)
    assert used[:StepThreads.WARMUP] == [1] * StepThreads.WARMUP            # the untried policy first
    trial = used[StepThreads.WARMUP:StepThreads.WARMUP + TRIAL]
    block = StepThreads.BLOCK
    assert trial == ([1] * block + [4] * block) * StepThreads.ROUNDS
    assert used[StepThreads.WARMUP + TRIAL:] == [4] * 10                       # four threads won
    assert tuner.choice == 4
    assert tuner.trials == [{"step": first, "one_thread_s": 1.0, "threads": 4, "threads_s": 0.5, "chosen": 4}]


def test_later_trials_follow_the_load_and_a_small_gain_keeps_one_thread(four_threads):
    tuner = StepThreads(CPU, 1e6)
    # four threads twice as fast until step 500, then (another process started) twice as slow
    _drive(tuner, range(1, 1100), lambda step, n: 1.0 if n == 1 else (0.5 if step < 500 else 2.0))
    assert [t["chosen"] for t in tuner.trials] == [4, 1, 1]
    assert [t["step"] for t in tuner.trials] == [StepThreads.WARMUP + 1, 500, 1000]
    assert tuner.threads(1099) == 1
    # 3 % faster is within the margin: one thread stays
    close = StepThreads(CPU, 1e6)
    _drive(close, range(1, 200), lambda step, n: 1.0 if n == 1 else 0.97)
    assert close.choice == 1 and close.trials[0]["chosen"] == 1


def test_a_noisy_step_in_each_block_does_not_decide(four_threads):
    """Medians: the first step of each block (thread wake-ups) may be slow without swaying the choice."""
    tuner = StepThreads(CPU, 1e6)
    first = StepThreads.WARMUP + 1
    _drive(tuner, range(1, first + TRIAL), lambda step, n: (9.0 if (step - first) % StepThreads.BLOCK == 0
                                                             else (1.0 if n == 1 else 0.6)))
    assert tuner.choice == 4


@pytest.mark.parametrize("device, flops, policy, expected", [
    (CPU, 1e6, "one", 1),
    (CPU, 1e6, "all", None),
    (CPU, 10 * SMALL_STEP_FLOPS, "auto", None),                # large steps: all threads, untimed
    (CPU, 10 * SMALL_STEP_FLOPS, "one", 1),
    (torch.device("cuda"), 1e6, "auto", None),
    (torch.device("cuda"), 1e6, "one", None),                 # the count is the CPU's
])
def test_fixed_policies_time_nothing(four_threads, device, flops, policy, expected):
    tuner = StepThreads(device, flops, policy)
    assert tuner.candidates == (expected,) and step_threads(device, flops, policy) == expected
    assert _drive(tuner, range(1, 600), lambda step, n: 1.0) == [expected] * 599
    assert tuner.trials == []


def test_one_thread_machine_times_nothing(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    tuner = StepThreads(CPU, 1e6)
    assert tuner.candidates == (1,)
    assert _drive(tuner, range(1, 100), lambda step, n: 1.0) == [1] * 99 and tuner.trials == []


def test_a_trial_the_run_would_cut_short_is_not_begun(four_threads):
    """A run that ends inside a trial window would alternate counts without ever deciding."""
    short = StepThreads(CPU, 1e6, steps=StepThreads.WARMUP + TRIAL - 1)
    assert _drive(short, range(1, short.steps + 1), lambda step, n: 1.0 if n == 1 else 0.5) == [1] * short.steps
    assert short.trials == []
    # the first trial fits, the one at step 500 does not: four threads stay from the first
    run = StepThreads(CPU, 1e6, steps=510)
    used = _drive(run, range(1, 511), lambda step, n: 1.0 if n == 1 else 0.5)
    assert len(run.trials) == 1 and used[StepThreads.WARMUP + TRIAL:] == [4] * (510 - StepThreads.WARMUP - TRIAL)


def test_a_schedule_whose_first_trial_overlaps_the_next_is_refused(four_threads, monkeypatch):
    monkeypatch.setattr(StepThreads, "RETRY", StepThreads.WARMUP + TRIAL - 1)
    with pytest.raises(ValueError, match="RETRY"):
        StepThreads(CPU, 1e6)


def test_the_run_estimates_probe_ends_before_the_first_trial():
    from engine.plan import time as step_timing
    assert StepThreads.WARMUP >= step_timing.STEPS


def test_cpu_threads_setting_is_checked():
    with pytest.raises(ConfigError, match="cpu_threads"):
        DistillConfig(cpu_threads="many").validate()
    assert DistillConfig().cpu_threads == "auto"


def _run(**kw):
    cfg = DistillConfig(ipc=1, eval_every=0, snapshot_every=0, device="cpu", **kw).validate()
    return [e for e in run(cfg) if isinstance(e, Done)][-1].result


def test_a_run_records_its_trial_and_a_fixed_count_repeats_bit_for_bit():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    steps = StepThreads.WARMUP + TRIAL + 2
    try:
        timed = _run(steps=steps)
        assert torch.get_num_threads() == 2                      # the run's counts were its own
        a, b = _run(steps=steps, cpu_threads="one"), _run(steps=steps, cpu_threads="one")
        every = _run(steps=3, cpu_threads="all")
    finally:
        torch.set_num_threads(before)
    assert every.metrics["step_threads"] == 2 and every.metrics["thread_trials"] == []
    trials = timed.metrics["thread_trials"]
    assert len(trials) == 1 and trials[0]["step"] == StepThreads.WARMUP + 1
    assert trials[0]["one_thread_s"] > 0 and trials[0]["threads_s"] > 0 and trials[0]["threads"] == 2
    assert timed.metrics["step_threads"] == trials[0]["chosen"] in (1, 2)
    assert a.metrics["step_threads"] == 1 and a.metrics["thread_trials"] == []
    np.testing.assert_array_equal(a.images, b.images)
