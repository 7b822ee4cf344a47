"""Sweeps: one base config, a grid of settings, one table.

``dgkip-engine sweep --config base.json --grid lam=1e-2,1e-3,1e-4 --grid ipc=1,10 --out DIR`` runs
every cell of the Cartesian product of the grid (each an ordinary single-process run of
:func:`engine.distill.run`), exports cell ``lam=1e-3_ipc=10`` to ``DIR/lam=1e-3_ipc=10/`` and writes
``DIR/sweep.md`` and ``DIR/sweep.json``: every cell's settings, status, key metrics, seconds and
export folder.

- ``--grid KEY=V1,V2,…``: KEY is a setting of :class:`~engine.config.DistillConfig` with a type (the
  settings the config file checks); each value is read as that type and checked by the config's own
  rule. A bad key or value is a :class:`~engine.config.ConfigError` naming the key and what it takes.
- A cell that fails (a combination the config refuses, data that does not allow it, out of memory…)
  is recorded as ``failed`` with its message; the other cells still run.
- Locally the cells run one after another. The first Ctrl-C stops after the current cell (its export
  finishes); the second abandons it. Either way the table of the finished cells is written.
- Under ``torchrun`` (``WORLD_SIZE`` > 1) cell i runs on rank i mod world, as a single-process run (a
  sweep shares cells, not the teacher). Rank 0 gathers the results (``gather_object`` over gloo,
  :meth:`engine.cluster.Cluster.gather`) and writes the table. Each rank exports its cells under its
  own ``DIR`` (the same folder when it is on a shared file system).
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.config import _FIELDS, ConfigError, DistillConfig
from engine.interrupts import FirstInterruptWindsDown
from engine.text import printable, shown

SWEEP_JSON, SWEEP_MD = "sweep.json", "sweep.md"
DEFAULT_WAIT_S = 86_400.0       # how long rank 0 waits for the other ranks' cells (DGKIP_SWEEP_WAIT_S)
MAX_CELLS = 10_000
KEY_METRICS = (("gap", "gap"), ("radius", "radius"), ("distilled_test_accuracy", "kernel test acc."),
               ("teacher_test_accuracy", "teacher test acc."), ("random_subset_test_accuracy", "random subset acc."))
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
_NONE = ("none", "null", "")


@dataclass
class Axis:
    """One ``--grid`` option: the setting, its values (typed) and their spellings (for folder names)."""
    key: str
    values: list[Any]
    texts: list[str]


def _typed(key: str, text: str) -> Any:
    """``text`` as the type of setting ``key``, checked by the config's own rule."""
    spec = _FIELDS[key]
    value: Any = text
    low = text.strip().lower()
    if spec.optional and low in _NONE:
        value = None
    elif spec.kind == "int":
        try:
            value = int(text)
        except ValueError:
            pass
    elif spec.kind == "float":
        try:
            value = float(text)
        except ValueError:
            pass
    elif spec.kind == "bool":
        value = True if low in _TRUE else False if low in _FALSE else text
    spec.check(key, value)          # ConfigError: "KEY: must be … (got 'text'); e.g. …" / "is not one of …"
    return value


def parse_grid(items: Sequence[str]) -> list[Axis]:
    """``["lam=1e-2,1e-3", "ipc=1,10"]`` → axes. Raises :class:`ConfigError` naming the key and what it
    takes (unknown setting, a value of the wrong type or range, a key or value given twice)."""
    axes: list[Axis] = []
    allowed = ", ".join(sorted(_FIELDS))
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError("grid", f"{shown(item)} is not KEY=V1,V2,… (e.g. lam=1e-2,1e-3,1e-4)")
        if key not in _FIELDS:
            raise ConfigError("grid", f"{shown(key)} is not a setting a grid can vary; choose one of: {allowed}")
        if any(a.key == key for a in axes):
            raise ConfigError(key, "is given in two --grid options; list all its values in one (e.g. "
                              f"{key}=V1,V2)")
        texts = [t.strip() for t in rest.split(",")]
        if not rest.strip() or any(not t for t in texts) and not _FIELDS[key].optional:
            raise ConfigError(key, f"{shown(item)} has an empty value; list values separated by commas, e.g. "
                              f"{key}={_FIELDS[key].example or 'A,B'}")
        values = [_typed(key, t) for t in texts]
        for i, v in enumerate(values):
            if v in values[:i]:
                raise ConfigError(key, f"{shown(texts[i])} is listed twice in the grid; give each value once")
        axes.append(Axis(key, values, texts))
    if not axes:
        raise ConfigError("grid", "give at least one --grid KEY=V1,V2,… (e.g. --grid lam=1e-2,1e-3,1e-4)")
    count = math.prod(len(a.values) for a in axes)
    if count > MAX_CELLS:
        raise ConfigError("grid", f"has {count:,} cells (at most {MAX_CELLS:,}); sweep fewer values")
    return axes


def _token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-.") or "none"


def cells(axes: list[Axis]) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, settings) of every cell, in the grid's order (the last axis varies fastest).
    Names are ``key=value`` joined by ``_`` with the values as written, made safe for file systems."""
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, combo in enumerate(itertools.product(*[range(len(a.values)) for a in axes])):
        name = "_".join(f"{a.key}={_token(a.texts[j])}" for a, j in zip(axes, combo))
        if len(name.encode()) > 200:
            name = name.encode()[:190].decode(errors="ignore").rstrip("_=") + f"_cell{i}"
        if name in seen:                    # two spellings that clean up alike (e.g. paths)
            name = f"{name}_cell{i}"
        seen.add(name)
        out.append((name, {a.key: a.values[j] for a, j in zip(axes, combo)}))
    return out


@dataclass
class CellResult:
    index: int
    name: str
    settings: dict[str, Any]
    status: str = "not run"          # "ok" | "stopped" | "failed" | "interrupted" | "not run" | "lost"
    message: str = ""
    seconds: float = 0.0
    export: str | None = None
    rank: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


class _StopAfterCell(FirstInterruptWindsDown):
    """SIGINT: the first stops after the current cell, the second raises KeyboardInterrupt."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__()
        self.say = say

    def first(self) -> None:
        self.say("\nstopping after the current cell; the table of the finished cells is still written "
                 "(Ctrl-C again to abandon this cell)…")


def check_out(out: Path, names: list[str], overwrite: bool) -> None:
    """The sweep folder: new or empty, or (``overwrite``) an earlier sweep's; every cell's export
    location as the exporter checks it. Raises ``FileExistsError`` / :class:`engine.output.ExportError`."""
    from engine.output import check_target_location, check_target_name

    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{printable(out)} is a file — choose a folder name for the sweep")
        if any(out.iterdir()):
            if not (out / SWEEP_JSON).is_file():        # never replaced: --overwrite would not help
                raise FileExistsError(f"{printable(out)} already exists and is not an earlier sweep (no {SWEEP_JSON}), "
                                      "so it is never replaced — choose a new folder name")
            if not overwrite:
                raise FileExistsError(f"{printable(out)} already exists — choose a new folder name, or replace an "
                                      "earlier sweep's cells with --overwrite")
    for i, name in enumerate(names):      # the cells share one parent: its writability and space once
        (check_target_name if i else check_target_location)(out / name, overwrite=overwrite)


def run_cell(cell: CellResult, cfg: DistillConfig, out: Path, overwrite: bool, say: Callable[[str], None]) -> None:
    """One cell as an ordinary single-process run, exported to ``out/cell.name``; fills ``cell``.
    Errors of the run are the cell's (status ``failed``); KeyboardInterrupt propagates."""
    from engine.control import RunControl
    from engine.distill import run
    from engine.events import Done
    from engine.export import save_result

    t0 = time.perf_counter()
    try:
        done = None
        for event in run(cfg, RunControl()):
            if isinstance(event, Done):
                done = event
        if done is None or done.result is None:
            raise RuntimeError(f"the run ended without a result ({done.reason if done else 'no Done event'})")
        outcome = save_result(done.result, out / cell.name, overwrite=overwrite)
        cell.export = str(outcome.path)
        cell.metrics = dict(done.metrics)
        cell.status = "ok" if done.reason == "finished" else done.reason
        if outcome.recovered:
            cell.message = outcome.message()
    except KeyboardInterrupt:
        cell.status, cell.message = "interrupted", "abandoned by a second Ctrl-C"
        raise
    except Exception as exc:         # noqa: BLE001 - a cell's failure is recorded, the sweep goes on
        cell.status, cell.message = "failed", printable(exc)
    finally:
        cell.seconds = time.perf_counter() - t0
    say(f"cell {cell.index + 1} {cell.name}: {cell.status}"
        + (f" — {cell.message}" if cell.message else "")
        + (f", gap {cell.metrics['gap']:.4e}" if isinstance(cell.metrics.get("gap"), float) else "")
        + f" ({cell.seconds:.1f} s)")


def sweep(base: DistillConfig, axes: list[Axis], out: str | os.PathLike, *, overwrite: bool = False,
          cluster=None, say: Callable[[str], None] = print, command: str = "") -> dict[str, Any]:
    """Run the grid's cells (this rank's share under torchrun) and, on rank 0, write the table.
    Returns the table (rank 0; ``{}`` elsewhere). ``table["interrupted"]``: Ctrl-C ended it early."""
    from engine.cluster import Cluster, ClusterError

    cluster = cluster or Cluster()
    out = Path(os.path.abspath(out))
    base.validate()
    grid = cells(axes)
    check_out(out, [name for name, _ in grid], overwrite)
    group = cluster.patient_group(_wait_s()) if cluster.distributed else None
    cluster.barrier()               # every rank has checked the folder before any writes to it
    results = [CellResult(i, name, settings, rank=i % cluster.world) for i, (name, settings) in enumerate(grid)]
    mine = [c for c in results if c.rank == cluster.rank]
    if cluster.distributed:
        _use_own_gpu()
    out.mkdir(parents=True, exist_ok=True)
    interrupted = False
    with _StopAfterCell(say) as stop:
        for cell in mine:
            if stop.count:
                interrupted = True
                break
            say(f"cell {cell.index + 1}/{len(results)} {cell.name}"
                + (f" (rank {cluster.rank})" if cluster.distributed else "") + "…")
            try:
                run_cell(cell, base.replace(**cell.settings), out, overwrite, say)
            except KeyboardInterrupt:
                interrupted = True
                break
        interrupted = interrupted or bool(stop.count)
    lost = None
    if cluster.distributed:
        try:
            gathered = cluster.gather([c.__dict__ for c in mine], group=group)
        except ClusterError as exc:
            gathered, lost = None, exc
        if not cluster.leader:
            if lost is not None:
                raise lost
            return {}
        by_index = {c["index"]: c for part in (gathered or [[c.__dict__ for c in mine]]) for c in part}
        for cell in results:
            if cell.index in by_index:
                cell.__dict__.update(by_index[cell.index])
            elif lost is not None:
                cell.status, cell.message = "lost", f"rank {cell.rank} did not report: {printable(lost)}"
    table = write_table(out, base, axes, results, cluster.world, command, interrupted)
    if lost is not None:
        raise lost
    return table


def _wait_s() -> float:
    text = os.environ.get("DGKIP_SWEEP_WAIT_S", "")
    try:
        value = float(text) if text else DEFAULT_WAIT_S
    except ValueError:
        raise ConfigError("DGKIP_SWEEP_WAIT_S", f"{text!r} is not a number of seconds; unset it or give e.g. 86400")
    return value if value > 0 else DEFAULT_WAIT_S


def _use_own_gpu() -> None:
    """Under torchrun on a GPU machine each rank's cells run on its own GPU (LOCAL_RANK)."""
    import torch
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return printable(v).replace("|", "\\|")


def write_table(out: Path, base: DistillConfig, axes: list[Axis], results: list[CellResult], world: int,
                command: str, interrupted: bool) -> dict[str, Any]:
    """``sweep.json`` and ``sweep.md`` in ``out`` (each written to a temporary file, then renamed)."""
    counts = {s: sum(c.status == s for c in results) for s in dict.fromkeys(c.status for c in results)}
    table = {"command": command, "processes": world, "interrupted": interrupted, "counts": counts,
             "grid": {a.key: a.values for a in axes}, "base": base.to_dict(),
             "cells": [{k: v for k, v in c.__dict__.items()} for c in results]}
    keys = [a.key for a in axes]
    lines = [f"# Sweep: {len(results)} cell{'s' if len(results) != 1 else ''}", "",
             f"`{command}`" if command else "",
             "", "Status: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + (" (stopped early by Ctrl-C: the cells not run are listed as such)" if interrupted else "")
             + (f"; {world} processes (cell i on rank i mod {world})" if world > 1 else ""), "",
             "| " + " | ".join(keys + ["status"] + [label for _, label in KEY_METRICS] + ["seconds", "export"]) + " |",
             "|" + "---|" * (len(keys) + len(KEY_METRICS) + 3)]
    for c in results:
        status = c.status + (f": {c.message}" if c.message else "")
        row = [_fmt(c.settings[k]) for k in keys] + [_fmt(status)] + [_fmt(c.metrics.get(k)) for k, _ in KEY_METRICS]
        row += [f"{c.seconds:.1f}" if c.status != "not run" else "–", _fmt(os.path.relpath(c.export, out))
                if c.export else "–"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Every cell's settings and metrics: {SWEEP_JSON}. Base config: the `base` entry there."]
    for name, text in ((SWEEP_JSON, json.dumps(table, indent=2, default=str) + "\n"), (SWEEP_MD, "\n".join(lines) + "\n")):
        tmp = out / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    return table
