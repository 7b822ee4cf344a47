"""``dgkip-engine``: the headless command line (same config file and step iterator as the GUI).

    dgkip-engine distill  --data PATH --out DIR [options]     distil and export
    dgkip-engine inspect  --data PATH                         dataset report, no run
    dgkip-engine transfer --distilled DIR --data PATH         train real networks on the set
    dgkip-engine bench    --suite quick --out DIR             result tables and speed ratios
    dgkip-engine cluster-job --config run.json --nproc-per-node N [--nodes K] --out JOB
                                                              run.sh / job.slurm for other machines
    dgkip-engine sweep    --config base.json --grid lam=1e-2,1e-3 --grid ipc=1,10 --out DIR
                                                              one run per grid cell, one table

``distill`` prints the memory and time estimate (:mod:`engine.plan`) before the run starts and
refuses a run that does not fit (its estimated peak over the memory budget, or over the memory this
machine has available) with what it needs per stage and what to change, before any kernel is built —
the estimate's ``fits``, the same decision :func:`engine.distill.run` enforces itself.

``distill`` checks the output folder (new or empty or a replaceable export, writable, free space for
the estimated export) before it reads the data, prints the dataset's problems, and saves a result
whose target fails at the last moment to a recovery folder (its path is printed).

Exit status: 0 success, 1 an internal error or a result that could be saved nowhere, 2 bad input
(invalid setting, unreadable data, over the memory budget, unusable output folder), 3 the result was
saved to a recovery folder instead of ``--out``, 4 a process of a torchrun job failed (the message
names the rank; nothing is exported), 5 a sweep's table was written but some of its cells failed,
130 interrupted (a first Ctrl-C stops after the current step,
or lets the export finish, and still exports; a second aborts).

Under ``torchrun --nproc_per_node=N -m engine distill …`` every process runs this command with the
same arguments: they share the Nyström teacher (:mod:`engine.cluster`), then rank 0 distils, prints
and exports while the others exit 0. Without torchrun nothing changes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from engine import __version__
from engine.bench import SUITES as BENCH_SUITES
from engine.cluster import ClusterError
from engine.config import DEVICES, SETTINGS, ConfigError, DistillConfig, check_settings_target
from engine.control import Cancelled, RunControl
from engine.data import DatasetError, load_dataset
from engine.events import Done, Evaluation, Progress, Stage, Step, TeacherDone, TeacherProgress, stop_effect
from engine.interrupts import FirstInterruptWindsDown
from engine.operators import ResourceError
from engine.text import printable

INTERNAL_ERROR = 1
BAD_INPUT = 2
RECOVERED = 3       # the export's target failed; the result was saved to a recovery folder (printed)
CLUSTER_FAILED = 4  # a rank of a torchrun job died, timed out or never connected
EXPORT_FAILED = 1   # the result could not be saved anywhere
SWEEP_CELLS_FAILED = 5  # a sweep's table was written, but some cells failed (their messages are in it)

def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _kernel_params(items: Sequence[str]) -> dict[str, Any]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("kernel_params", f"{item!r} is not KEY=VALUE (e.g. depth=3)")
        params[key.strip()] = _parse_value(value.strip())
    return params


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`DistillConfig` field, generated from its declaration
    (:data:`engine.config.SETTINGS`): ``--max-per-class N`` sets ``max_per_class``. Choices are checked
    by argparse, numbers typed; a flag not given leaves the config file's value (its default is None)."""
    defaults = DistillConfig()
    for setting in SETTINGS.values():
        flag = setting.cli_flag
        if flag is None:
            continue
        default = getattr(defaults, setting.name)
        shown_default = f" (default: {default})" if default not in (None, {}, "") else ""
        help_text = (setting.help + shown_default).replace("%", "%%")     # argparse formats help with %
        kind = setting.kind
        if kind == "choice":
            parser.add_argument(flag, dest=setting.name, choices=setting.spec.options(), help=help_text)
        elif kind == "bool":
            parser.add_argument(flag, dest=setting.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif kind in ("int", "float"):
            parser.add_argument(flag, dest=setting.name, type=int if kind == "int" else float, help=help_text)
        elif kind == "params":
            parser.add_argument(flag, dest=setting.name, action="append", default=[], metavar="KEY=VALUE",
                                help=help_text + " Repeat for more parameters, e.g. depth=3.")
        elif kind == "names":
            parser.add_argument(flag, dest=setting.name, metavar="A,B,...",
                                help=help_text + " Comma-separated names, e.g. cat,dog.")
        elif kind == "path":
            parser.add_argument(flag, dest=setting.name, metavar="PATH", help=help_text)
        else:
            raise TypeError(f"setting {setting.name!r} of kind {kind!r} has a flag but no CLI form; give it "
                            "flag=None or teach add_setting_flags its kind")


def config_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the setting flags given in ``args`` set (not yet validated): classes split at
    commas, kernel parameters parsed from KEY=VALUE (numbers and true/false as JSON)."""
    changes: dict[str, Any] = {}
    for setting in SETTINGS.values():
        value = getattr(args, setting.name, None)
        if setting.cli_flag is None or value is None or value == [] or (value == "" and setting.kind == "names"):
            continue
        if setting.kind == "names":
            value = [c.strip() for c in value.split(",") if c.strip()]
        elif setting.kind == "params":
            value = _kernel_params(value)
        changes[setting.name] = value
    return changes


def build_config(args: argparse.Namespace) -> DistillConfig:
    """Config file (if any) overridden by the flags that were given. ``--kernel-param`` adds to the
    file's kernel parameters unless ``--kernel`` changes the kernel (whose parameters then start empty)."""
    cfg = DistillConfig.load(args.config) if args.config else DistillConfig()
    changes = config_changes(args)
    if "kernel_params" in changes:
        base = dict(cfg.kernel_params) if "kernel" not in changes else {}
        changes["kernel_params"] = {**base, **changes["kernel_params"]}
    elif "kernel" in changes and changes["kernel"] != cfg.kernel:
        changes["kernel_params"] = {}
    return cfg.replace(**changes).validate()


class _Progress:
    """One status line on a terminal (\\r-updated), periodic plain lines otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0

    def line(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif force or now - self.last > 5.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last = now

    def done(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _say(text: str, stream=None) -> None:
    """Print ``text`` with control characters escaped (names in it come from the user's files)."""
    print(printable(text, keep_newlines=True), file=stream or sys.stderr)


def _print_problems(report, shown_files: int = 5) -> None:
    """The dataset's problems: how many, the first ``shown_files``, where the rest are listed."""
    problems = report.problems
    if not problems:
        return
    skipped = sum(p.severity == "error" for p in problems)
    _say(f"dataset: {len(problems)} problem{'s' if len(problems) > 1 else ''} ({skipped} file"
         f"{'' if skipped == 1 else 's'} skipped):")
    for p in problems[:shown_files]:
        _say(f"  {p}")
    if len(problems) > shown_files:
        _say(f"  … {len(problems) - shown_files} more (the export's manifest.json lists every one)")


class _Interrupts(FirstInterruptWindsDown):
    """SIGINT during a run and its export: the first stops the run after the current step (or lets
    the export finish), the second raises ``KeyboardInterrupt`` (the export's temporary folder is
    removed on the way out). Installed only on the main thread."""

    def __init__(self, control: RunControl) -> None:
        super().__init__()
        self.control, self.exporting = control, False
        self.stage: str | None = None          # the last Stage event's name

    def first(self) -> None:
        if self.exporting:
            _say("\nfinishing the export (Ctrl-C again to abort)…")
            return
        self.control.stop()
        effect = stop_effect(self.stage)
        if effect == "before-steps":                                   # it stops at step 0, the teacher fitted
            _say("\nstopping before the first step: once the teacher is fitted (the certificate needs it), the "
                 "initial images are certified and exported (Ctrl-C again to abort)…")
        elif effect == "certify":
            _say("\nthe steps are done: certifying, then exporting (Ctrl-C again to abort)…")
        elif effect == "certify-exact":
            _say("\nskipping the distance to the exact teacher; exporting the result (Ctrl-C again to abort)…")
        else:
            _say("\nstopping after the current step; the result is still exported (Ctrl-C again to abort)…")


def cmd_distill(args: argparse.Namespace) -> int:
    from engine.cluster import Cluster, launched_by_torchrun
    from engine.device import resolve_device

    cfg = build_config(args)
    if not launched_by_torchrun():
        return _distill(args, cfg, Cluster())
    try:
        device = resolve_device(cfg.device)
    except RuntimeError as exc:
        raise ConfigError("device", str(exc)) from None
    cluster = Cluster.from_env(device)
    try:
        return _distill(args, cfg, cluster)
    finally:
        cluster.close()


def _check_save_config(path: Path, cfg: DistillConfig, config_file: str | None) -> None:
    """Refuse a ``--save-config`` target that is one of the run's inputs (the dataset, its test split,
    the config read) or an existing file that is not a settings file (a JSON object of settings only;
    an export's manifest.json is not one): writing the settings there would destroy it."""
    if not path.exists():
        return
    where = printable(str(path))
    for flag, given in {"--data": cfg.data, "--test-data": cfg.test_data, "--config": config_file}.items():
        if given and os.path.exists(given) and os.path.samefile(path, given):
            raise ConfigError("save_config", f"{where} is the run's {flag} input; writing the settings there "
                              "would destroy it — choose a new file name such as run.json")
    check_settings_target(path)


def _distill(args: argparse.Namespace, cfg: DistillConfig, cluster) -> int:
    """``distill`` in one process, or as one rank of a torchrun job (only rank 0 writes anything)."""
    from engine.distill import budget_bytes, prepare_dataset, refuse_unsharded, run
    from engine.plan import estimate_run
    from engine.export import estimate_export_bytes, save_result
    from engine.output import ExportError, check_target_location

    refuse_unsharded(cfg, cluster)
    if not cluster.leader:
        return _follow(cfg, cluster)
    if cluster.distributed and _read_by_row(cfg) is None:
        _say(f"note: {cfg.data} is read whole by every process (only .npz datasets with uint8 images, without "
             "an explicit test source, are read by row)")
    out = Path(args.out)
    # the output location first: a run whose result cannot be written is refused before any work
    for note in check_target_location(out, overwrite=args.overwrite):
        _say(f"note: {note}")
    if args.save_config:
        _check_save_config(Path(args.save_config), cfg, args.config)
        cfg.save(args.save_config)
    # the estimate comes before anything big is built: refuse here rather than run out of memory
    # (run() refuses by the same rule, engine.plan.check_run; here the summary is printed too)
    dataset = (_read_by_row(cfg) if cluster.distributed else None) or load_dataset(
        cfg.data, test_path=cfg.test_data, holdout_fraction=cfg.holdout_fraction, seed=cfg.seed,
        max_bytes=budget_bytes(cfg))
    _print_problems(dataset.report)
    ds = prepare_dataset(cfg, dataset)    # its problems (classes, ipc, test split, init_from) come first, as in run()
    check_target_location(out, overwrite=args.overwrite, needed_bytes=estimate_export_bytes(
        cfg.ipc * len(ds.classes), ds.report.image_shape, len(ds.classes), cfg.steps, cfg.preprocess == "zca"))
    estimate = estimate_run(cfg, dataset.report, ranks=cluster.world)
    if not estimate.fits:
        _say(estimate.summary())
        raise ResourceError(estimate.message)
    _say(f"{estimate.summary()}. {estimate.message}")
    control = RunControl()
    progress = _Progress()
    done = None
    with _Interrupts(control) as interrupts:
        for event in run(cfg, control, dataset=dataset, cluster=cluster):
            if isinstance(event, Stage):
                interrupts.stage = event.name
                progress.done(f"== {event.name}: {printable(event.message)}")
            elif isinstance(event, Progress):
                eta = event.seconds * (event.total - event.done) / event.done if event.done else 0.0
                progress.line(f"{_bar(event.done, event.total)} {event.stage}: {event.done:,}/{event.total:,} rows  "
                              f"{event.seconds:.0f} s  ETA {eta:.0f} s", force=event.done == event.total)
            elif isinstance(event, TeacherProgress):
                progress.line(f"teacher {event.unit} {event.iteration:,}: gap {event.gap:.3e} (relative "
                              f"{event.rel_gap:.2e})")
            elif isinstance(event, TeacherDone):
                progress.done(f"teacher ({event.reason or event.kind}): relative gap {event.rel_gap:.2e} after "
                              f"{event.solver}, {event.seconds:.1f} s, n = {event.n:,}, support = {event.n_support:,}")
            elif isinstance(event, Step):
                rate = event.step / event.elapsed if event.elapsed > 0 else 0.0
                eta = (event.total - event.step) / rate if rate > 0 else 0.0
                value = f"gap {event.gap:.4e}  r {event.radius:.3g}" if event.gap == event.gap else f"KIP loss {event.objective:.4e}"
                progress.line(f"{_bar(event.step, event.total)} {event.step}/{event.total}  {value}  "
                              f"{rate:.1f} steps/s  ETA {eta:.0f} s", force=event.step == event.total)
            elif isinstance(event, Evaluation):
                progress.done(f"step {event.step}: certified gap {event.gap:.4e}, radius {event.radius:.3g}, "
                              f"accuracy {event.distilled_accuracy:.4f} (teacher {event.teacher_accuracy:.4f}, "
                              f"random {event.random_accuracy:.4f}), certified consistency {event.certified_consistency:.4f}")
            elif isinstance(event, Done):
                done = event
        interrupts.exporting = True
        try:
            outcome = save_result(done.result, out, overwrite=args.overwrite)
        except ExportError as exc:
            _say(f"dgkip-engine: error: {exc}")
            return EXPORT_FAILED
    for note in outcome.notes:
        _say(f"note: {note}")
    if cluster.distributed:
        _say(f"rank 0: {_peak()}")
    print(json.dumps({"export": str(outcome.path), "reason": done.reason, "metrics": done.metrics,
                      **({"recovered_from": str(outcome.target)} if outcome.recovered else {})},
                     indent=2, default=str))
    if outcome.recovered:
        _say(f"dgkip-engine: error: {outcome.message()}")
        return RECOVERED
    return 130 if done.reason == "stopped" and interrupts.count else 0


def _follow(cfg: DistillConfig, cluster) -> int:
    """A rank other than 0: load the data, take part in the teacher, exit 0 (rank 0 reports)."""
    from engine.distill import budget_bytes, run

    dataset = _read_by_row(cfg) or load_dataset(cfg.data, test_path=cfg.test_data,
                                                holdout_fraction=cfg.holdout_fraction, seed=cfg.seed,
                                                max_bytes=budget_bytes(cfg))
    for event in run(cfg, RunControl(), dataset=dataset, cluster=cluster):
        if isinstance(event, TeacherDone):
            _say(f"rank {cluster.rank}: teacher done ({event.seconds:.1f} s, {_peak()}); rank 0 distils and exports")
    return 0


def _read_by_row(cfg: DistillConfig):
    """The dataset as row codes (each rank then reads only its rows, engine.data.rows), or None when
    its source is read whole."""
    from engine.data.rows import NotShardable
    from engine.distill import budget_bytes
    try:
        return load_dataset(cfg.data, test_path=cfg.test_data, holdout_fraction=cfg.holdout_fraction,
                            seed=cfg.seed, max_bytes=budget_bytes(cfg), by_row=True)
    except NotShardable:
        return None


def _peak() -> str:
    from engine.timing import peak_rss_mb
    peak = peak_rss_mb()
    return "peak memory unknown" if peak is None else f"peak memory {peak:,.0f} MiB"


def cmd_inspect(args: argparse.Namespace) -> int:
    ds = load_dataset(args.data, test_path=args.test_data)
    _say(ds.report.summary(), sys.stdout)
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    from engine.transfer import TransferScore, TransferSummary, transfer_exported

    progress = _Progress()
    for event in transfer_exported(args.distilled, args.data, test_path=args.test_data,
                                 networks=[n.strip() for n in args.networks.split(",") if n.strip()],
                                 seeds=args.seeds, epochs=args.epochs, device=args.device):
        if isinstance(event, TransferScore):
            progress.done(f"{event.network} seed {event.seed}: test accuracy {event.test_accuracy:.4f} ({event.seconds:.1f} s)")
        elif isinstance(event, TransferSummary):
            progress.done(f"{event.network}: {100 * event.mean:.2f} ± {100 * event.std:.2f} % over {len(event.accuracies)} seeds")
        else:
            progress.line(f"{event.network} seed {event.seed}: epoch {event.epoch}/{event.epochs}, loss {event.train_loss:.4f}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from engine.bench import run_suite

    command = "dgkip-engine bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 1 else "dgkip-engine bench"
    report = run_suite(args.suite, args.out, args.datasets, command=command)
    print(f"wrote {Path(args.out) / 'bench.md'} ({report['seconds']:.0f} s)")
    return 0


def cmd_cluster_job(args: argparse.Namespace) -> int:
    """The job folder of :mod:`engine.cluster_job` (what Run › Export a cluster job… writes)."""
    from engine.cluster_job import EXPORT_NAME, JobOptions, write_cluster_job

    cfg = DistillConfig.load(args.config) if args.config else DistillConfig()
    if args.data:
        cfg = cfg.replace(data=args.data).validate()
    job = write_cluster_job(cfg, args.out, JobOptions(nproc_per_node=args.nproc_per_node, nodes=args.nodes,
                                                      cpus_per_task=args.cpus_per_task,
                                                      gpus_per_node=args.gpus_per_node, time=args.time))
    for note in job.notes:
        _say(f"note: {note}")
    _say(f"wrote {job.folder}: run ./run.sh there (or sbatch job.slurm); the export appears in "
         f"{job.folder / EXPORT_NAME}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Every cell of the grid (spread over the ranks under torchrun), then sweep.md and sweep.json."""
    from engine.cluster import Cluster, launched_by_torchrun
    from engine.sweep import SWEEP_MD, parse_grid, sweep

    base = DistillConfig.load(args.config) if args.config else DistillConfig()
    if args.data:
        base = base.replace(data=args.data).validate()
    axes = parse_grid(args.grid)
    import shlex
    command = "dgkip-engine " + shlex.join(getattr(args, "argv", None) or ["sweep"])
    cluster = Cluster.from_env() if launched_by_torchrun() else Cluster()
    try:
        table = sweep(base, axes, args.out, overwrite=args.overwrite, cluster=cluster, say=_say, command=command)
    finally:
        cluster.close()
    if not cluster.leader:
        return 0
    counts = table["counts"]
    print(json.dumps({"table": str(Path(args.out).resolve() / SWEEP_MD), "cells": len(table["cells"]),
                      "counts": counts}, indent=2))
    if table["interrupted"]:
        return 130
    return SWEEP_CELLS_FAILED if any(s != "ok" for s in counts) else 0


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgkip-engine", description="Certified dataset distillation (DGKIP), headless.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("distill", help="distil a dataset and export the result")
    d.add_argument("--out", required=True, help="new folder for the export")
    d.add_argument("--config", help="JSON config (as saved by the GUI or --save-config, or an export's "
                   "manifest.json: its run's settings); flags override it")
    d.add_argument("--save-config", dest="save_config", help="write the effective config to this JSON file")
    d.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    add_setting_flags(d)
    d.set_defaults(func=cmd_distill)

    i = sub.add_parser("inspect", help="print the dataset report")
    i.add_argument("--data", required=True)
    i.add_argument("--test-data", dest="test_data")
    i.set_defaults(func=cmd_inspect)

    e = sub.add_parser("transfer", aliases=["evaluate"],
                       help="train real networks on a distilled set, test on real data ('evaluate' is the old name)")
    e.add_argument("--distilled", required=True, help="an exported distilled folder")
    e.add_argument("--data", required=True, help="the real dataset (its test split is used)")
    e.add_argument("--test-data", dest="test_data")
    e.add_argument("--networks", default="mlp,convnet,resnet18")
    e.add_argument("--seeds", type=int, default=3)
    e.add_argument("--epochs", type=int, help="override every recipe's epochs (quick runs)")
    e.add_argument("--device", default="auto", choices=DEVICES)
    e.set_defaults(func=cmd_transfer)

    b = sub.add_parser("bench", help="result tables and performance ratios (Markdown + JSON)")
    b.add_argument("--suite", choices=BENCH_SUITES, default="quick")
    b.add_argument("--out", required=True, help="folder for bench.md and bench.json")
    b.add_argument("--datasets", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"),
                   help="folder with mnist-train.npz etc. (../shared/datasets beside the repository)")
    b.set_defaults(func=cmd_bench)

    j = sub.add_parser("cluster-job", help="write config.json, run.sh (torchrun) and job.slurm for other machines")
    j.add_argument("--config", help="the run's config (JSON, as saved by the GUI or --save-config)")
    j.add_argument("--data", help="override the config's dataset")
    j.add_argument("--nproc-per-node", dest="nproc_per_node", type=int, default=2)
    j.add_argument("--nodes", type=int, default=1)
    j.add_argument("--cpus-per-task", dest="cpus_per_task", type=int, default=0,
                   help="Slurm CPUs per node task (default: one per process)")
    j.add_argument("--gpus-per-node", dest="gpus_per_node", type=int, default=0)
    j.add_argument("--time", default="04:00:00", help="Slurm time limit")
    j.add_argument("--out", required=True, help="new (or empty) folder for the job")
    j.set_defaults(func=cmd_cluster_job)

    s = sub.add_parser("sweep", help="one run per cell of a grid of settings; one table (Markdown + JSON)")
    s.add_argument("--config", help="the base config (JSON, as saved by the GUI or --save-config)")
    s.add_argument("--data", help="override the base config's dataset")
    s.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a setting and its values, e.g. lam=1e-2,1e-3,1e-4 (repeat for more settings)")
    s.add_argument("--out", required=True, help="new folder: one export per cell, sweep.md and sweep.json")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier sweep's cells in --out")
    s.set_defaults(func=cmd_sweep)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, ResourceError, FileExistsError, ValueError) as exc:
        _say(f"dgkip-engine: error: {exc}")
        return BAD_INPUT
    except OSError as exc:          # the output location (ExportError), --save-config, a file vanishing
        plain = exc.strerror and exc.filename and type(exc).__str__ is OSError.__str__
        _say(f"dgkip-engine: error: {exc.filename}: {exc.strerror} — check the path and its permissions"
             if plain else f"dgkip-engine: error: {exc}")
        return BAD_INPUT
    except MemoryError:
        _say("dgkip-engine: error: out of memory — lower max_per_class or the memory budget "
             "(--memory-budget-gb) so that the run is refused before it starts")
        return BAD_INPUT
    except ClusterError as exc:
        _say(f"dgkip-engine: error: {exc}")
        return CLUSTER_FAILED
    except (KeyboardInterrupt, Cancelled):
        _say("dgkip-engine: interrupted")
        return 130
    except Exception as exc:        # a bug: say so in one line; DGKIP_DEBUG=1 shows the traceback
        if os.environ.get("DGKIP_DEBUG") == "1":
            raise
        _say(f"dgkip-engine: internal error ({type(exc).__name__}: {exc}); please report it — run with "
             "DGKIP_DEBUG=1 for the traceback")
        return INTERNAL_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
