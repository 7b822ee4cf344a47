"""A cluster job folder: the current settings and ready commands to run them on other machines.

:func:`write_cluster_job` writes, into a new (or empty) folder:

- ``config.json``: the run's :class:`~engine.config.DistillConfig`, exactly as the app would run it;
- ``run.sh``: a ready ``torchrun`` command for one node (``--standalone``) or, with several nodes, the
  c10d rendezvous form (set ``HEAD`` to the first node's host name); the other form is commented;
- ``job.slurm``: an ``sbatch`` template (one ``torchrun`` per node started by ``srun``);
- ``README.txt``: what is sharded, what is refused, where the export appears, the dataset paths the
  other machine must see.

Configs that ``torchrun`` would refuse (:func:`engine.distill.refuse_unsharded`: KIP mode, the exact
teacher, ``certify_exact``) are refused here first, with the same reason. The folder is checked like
an export's target (:func:`engine.output.check_target_location`: never a non-empty folder) and
written atomically: the files appear together or not at all.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine.cluster import Cluster
from engine.config import ConfigError, DistillConfig
from engine.output import TargetLock, check_target_location, make_temp_dir, target_state
from engine.text import printable

EXPORT_NAME = "export"          # the export folder, relative to the job folder
RDZV_PORT = 29500               # torchrun's default master port
FILES = ("config.json", "run.sh", "job.slurm", "README.txt")


@dataclass
class JobOptions:
    """``nproc_per_node`` processes on each of ``nodes`` machines; Slurm's ``cpus_per_task``,
    ``gpus_per_node`` (0: CPU, gloo) and ``time`` limit."""

    nproc_per_node: int = 2
    nodes: int = 1
    cpus_per_task: int = 0          # 0: one CPU per process
    gpus_per_node: int = 0
    time: str = "04:00:00"

    def check(self) -> "JobOptions":
        for name, lo, hi in (("nproc_per_node", 1, 4096), ("nodes", 1, 65536), ("cpus_per_task", 0, 65536),
                             ("gpus_per_node", 0, 1024)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ConfigError(name, f"must be a whole number from {lo} to {hi} (got {printable(v)})")
        if not self.time or any(c not in "0123456789:-" for c in self.time):
            raise ConfigError("time", f"{printable(self.time)} is not a Slurm time limit such as 04:00:00 or 1-00:00:00")
        return self

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nodes


@dataclass
class ClusterJob:
    folder: Path
    files: list[Path]
    notes: list[str] = field(default_factory=list)


def local_paths(cfg: DistillConfig) -> list[tuple[str, str]]:
    """(setting, path) of every file or folder the run reads that is a path on this machine."""
    found = []
    for name in ("data", "test_data", "init_from"):
        value = getattr(cfg, name)
        if value is None or (name == "data" and value == "sample"):
            continue
        found.append((name, value))
    return found


def refuse(cfg: DistillConfig, options: JobOptions) -> None:
    """Raise :class:`ConfigError` when ``torchrun`` with ``options.world`` processes would refuse ``cfg``
    (the same rules and message as :func:`engine.distill.refuse_unsharded`)."""
    from engine.distill import refuse_unsharded

    cfg.validate()
    options.check()
    refuse_unsharded(cfg, Cluster(0, options.world))


def _torchrun(options: JobOptions, multi_node: bool) -> str:
    if multi_node:
        return (f'$TORCHRUN --nnodes={options.nodes} --nproc_per_node={options.nproc_per_node} '
                f'--rdzv_id=dgkip --rdzv_backend=c10d --rdzv_endpoint="$HEAD:{RDZV_PORT}" \\\n'
                f'    -m engine distill --config config.json --out {EXPORT_NAME} "$@"')
    return (f'$TORCHRUN --standalone --nnodes=1 --nproc_per_node={options.nproc_per_node} \\\n'
            f'    -m engine distill --config config.json --out {EXPORT_NAME} "$@"')


def _commented(text: str) -> str:
    return "\n".join("# " + line for line in text.splitlines())


def run_sh(options: JobOptions) -> str:
    multi = options.nodes > 1
    active, other = _torchrun(options, multi), _torchrun(JobOptions(options.nproc_per_node, max(options.nodes, 2)),
                                                         not multi)
    if multi:
        head = (f': "${{HEAD:?set HEAD to the host name of the first node, e.g. HEAD=node01 ./run.sh, on each of the '
                f'{options.nodes} nodes}}"\n')
        other_note = "# The same job on this one machine alone:"
    else:
        head = ""
        other_note = ("# Several machines: run this on every node (c10d rendezvous on the first node, HEAD = its host\n"
                      "# name, port 29500 open between the nodes), with --nnodes set to the number of nodes:")
    return f"""#!/usr/bin/env bash
# DGKIP distillation over {options.world} process{'es' if options.world > 1 else ''} ({options.nodes} node{'s' if multi else ''} x {options.nproc_per_node}), written by DGKIP Studio.
# Run it from anywhere: it works in its own folder. Extra arguments go to `dgkip-engine distill`
# (e.g. ./run.sh --overwrite). The export appears in ./{EXPORT_NAME}/ on the node where rank 0 runs.
# The engine must be importable there (pip install dgkip-studio, or PYTHONPATH=<source folder>);
# TORCHRUN picks another launcher, e.g. TORCHRUN="python3 -m torch.distributed.run" ./run.sh
set -euo pipefail
cd "$(dirname "$0")"
TORCHRUN="${{TORCHRUN:-torchrun}}"
{head}{active}

{other_note}
{_commented(other.replace('$TORCHRUN', 'torchrun').replace(' "$@"', ''))}
"""


def job_slurm(options: JobOptions) -> str:
    cpus = options.cpus_per_task or options.nproc_per_node
    gpus = (f"#SBATCH --gpus-per-task={options.gpus_per_node}" if options.gpus_per_node
            else f"##SBATCH --gpus-per-task={options.nproc_per_node}         # uncomment for CUDA (NCCL): one GPU per process")
    return f"""#!/bin/bash
# DGKIP distillation on {options.nodes} node{'s' if options.nodes > 1 else ''} x {options.nproc_per_node} processes, written by DGKIP Studio.
# Submit from this folder:  sbatch job.slurm   (the export appears in ./{EXPORT_NAME}/)
# One task per node: srun starts one torchrun on each node, torchrun starts the processes.
#SBATCH --job-name=dgkip
#SBATCH --nodes={options.nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task={cpus}
{gpus}
#SBATCH --time={options.time}
#SBATCH --output=slurm-%j.out

set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-$(pwd)}}"
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export OMP_NUM_THREADS=$(( ${{SLURM_CPUS_PER_TASK:-{cpus}}} / {options.nproc_per_node} > 0 ? ${{SLURM_CPUS_PER_TASK:-{cpus}}} / {options.nproc_per_node} : 1 ))
srun torchrun --nnodes="$SLURM_NNODES" --nproc_per_node={options.nproc_per_node} \\
    --rdzv_id="$SLURM_JOB_ID" --rdzv_backend=c10d --rdzv_endpoint="$head:{RDZV_PORT}" \\
    -m engine distill --config config.json --out {EXPORT_NAME}
"""


def readme(cfg: DistillConfig, options: JobOptions, notes: list[str]) -> str:
    paths = "\n".join(f"  - {name}: {printable(value)}" for name, value in local_paths(cfg)) or \
        "  - none: the built-in 'sample' dataset travels with the engine"
    return f"""DGKIP cluster job: {options.world} process{'es' if options.world > 1 else ''} ({options.nodes} node{'s' if options.nodes > 1 else ''} x {options.nproc_per_node} per node)

Files
  config.json  the run's settings, exactly as DGKIP Studio would run them
  run.sh       ./run.sh on one machine ({'set HEAD=<first node> and run it on every node' if options.nodes > 1 else 'torchrun --standalone'}); the other form is in its comments
  job.slurm    sbatch job.slurm from this folder (a template: check the partition, time, GPUs)

The export appears in ./{EXPORT_NAME}/ beside these files, on the machine where rank 0 runs (one
machine: this one; several: the node torchrun's rendezvous makes rank 0, so a shared file system is
simplest). Open it in DGKIP Studio like any other export (Run > Transfer an exported set...), or
copy it back first. A non-empty ./{EXPORT_NAME}/ is never replaced unless ./run.sh --overwrite is given
(and then only an earlier export).

What is sharded: the Nyström teacher. Each process keeps only its rows of the training set (an .npz
dataset with uint8 images is read by row; other sources are read whole by every process, which then
cuts out its rows), computes its rows of K(X, Z) and its share of every gradient, Hessian-vector product
and duality gap; the shares are all-reduced (gloo on CPU, NCCL on CUDA). Rank 0 then distils,
certifies and exports alone; the other processes exit 0.

Refused under torchrun (the job would stop at once): KIP mode, the exact teacher (teacher = 'exact')
and certify_exact. teacher = 'auto' becomes the Nyström teacher.

Faults: a process that dies, hangs or cannot connect stops the job with exit status 4 and a message
naming the rank; nothing is exported. Each collective waits at most DGKIP_DIST_TIMEOUT_S seconds
(default 600).

Paths on this machine that the other machine must also see (copy them there at the same path, use a
shared file system, or edit config.json):
{paths}
{''.join(f'{chr(10)}Note: {n}' for n in notes)}
"""


def write_cluster_job(cfg: DistillConfig, folder: str | os.PathLike, options: JobOptions | None = None) -> ClusterJob:
    """Write the job folder (see the module docstring) and return what was written. Raises
    :class:`ConfigError` for a config torchrun would refuse, ``FileExistsError`` for a non-empty
    folder or a file, :class:`engine.output.ExportError` for a location that cannot be written."""
    options = options or JobOptions()
    refuse(cfg, options)
    target = Path(os.path.abspath(folder))
    check_target_location(target)
    notes = [f"{name} = {printable(value)} is a path on this machine: the other machine must see it at the same "
             "path (or edit config.json)" for name, value in local_paths(cfg)]
    if cfg.teacher == "auto" and options.world > 1:
        notes.append("teacher 'auto' runs the Nyström teacher under torchrun (the sharded one)")
    texts = {"config.json": cfg.to_json() + "\n", "run.sh": run_sh(options), "job.slurm": job_slurm(options),
             "README.txt": readme(cfg, options, notes)}
    target.parent.mkdir(parents=True, exist_ok=True)
    with TargetLock(target):
        target_state(target, overwrite=False)       # again under the lock: only a new or empty folder
        tmp = make_temp_dir(target)
        try:
            for name, text in texts.items():
                (tmp / name).write_text(text, encoding="utf-8")
            for name in ("run.sh", "job.slurm"):
                path = tmp / name
                path.chmod(path.stat().st_mode | 0o111)
            try:
                os.rename(tmp, target)              # an empty folder is replaced by rename; a filled one refuses
            except OSError as exc:
                raise FileExistsError(f"{printable(target)} was filled by something else while the job was "
                                      "written — choose a new folder name") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return ClusterJob(target, [target / name for name in FILES], notes)
