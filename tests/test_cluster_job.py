"""Cluster job folders (engine.cluster_job, issue 13 item 4): the written run.sh really runs under torchrun
(2 gloo processes) and leaves an export the loader reads; the Slurm template is valid bash; configs that
torchrun would refuse are refused before anything is written; non-empty folders are never filled."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cluster_job import FILES, JobOptions, write_cluster_job
from engine.config import ConfigError, DistillConfig
from engine.export import load_distilled, read_manifest

REPO = Path(__file__).resolve().parents[1]
TINY = dict(data="sample", teacher="nystrom", centres=120, steps=10, ipc=1, device="cpu", eval_every=0)


def job_env() -> dict[str, str]:
    """The environment of a machine where the engine is importable and torchrun is on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def run_job(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """./run.sh as a user runs it, from another working directory."""
    return subprocess.run([str(folder / "run.sh"), *args], cwd="/", env=job_env(), capture_output=True, text=True,
                          timeout=180)


def test_run_sh_runs_two_processes_and_exports(tmp_path):
    cfg = DistillConfig(**TINY).validate()
    job = write_cluster_job(cfg, tmp_path / "job", JobOptions(nproc_per_node=2))
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == sorted(FILES)
    assert DistillConfig.load(job.folder / "config.json") == cfg
    assert "--nproc_per_node=2" in (job.folder / "run.sh").read_text()
    r = run_job(job.folder)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "over 2 processes" in r.stderr and "rank 1: teacher done" in r.stderr
    printed = json.loads(r.stdout)
    assert Path(printed["export"]) == job.folder / "export" and printed["metrics"]["processes"] == 2
    folder, manifest, saved = read_manifest(job.folder / "export")
    # the manifest's config is the job's, with the kernel's defaults filled in
    assert saved.replace(kernel_params={}) == cfg and manifest["metrics"]["processes"] == 2
    distilled = load_distilled(job.folder / "export")
    assert distilled.images.shape[0] == len(distilled.classes) and np.isfinite(distilled.images).all()


def test_slurm_script_is_valid_bash_and_names_the_layout(tmp_path):
    cfg = DistillConfig(**TINY).validate()
    job = write_cluster_job(cfg, tmp_path / "job", JobOptions(nproc_per_node=4, nodes=3, gpus_per_node=4,
                                                              time="1-00:00:00"))
    for name in ("job.slurm", "run.sh"):
        check = subprocess.run(["bash", "-n", str(job.folder / name)], capture_output=True, text=True)
        assert check.returncode == 0, (name, check.stderr)
    slurm = (job.folder / "job.slurm").read_text()
    for line in ("#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-task=4",
                 "#SBATCH --time=1-00:00:00", '--nnodes="$SLURM_NNODES" --nproc_per_node=4',
                 '--rdzv_backend=c10d --rdzv_endpoint="$head:29500"', "srun torchrun"):
        assert line in slurm, line
    run = (job.folder / "run.sh").read_text()
    assert "--nnodes=3 --nproc_per_node=4" in run and '"${HEAD:?' in run
    # several nodes without HEAD: the script stops with the fix before starting anything
    r = run_job(job.folder)
    assert r.returncode != 0 and "set HEAD" in r.stderr


def test_slurm_script_runs_with_srun_and_scontrol_stand_ins(tmp_path):
    """job.slurm's own commands, with srun running its command once here and scontrol naming 127.0.0.1."""
    cfg = DistillConfig(**TINY).validate()
    job = write_cluster_job(cfg, tmp_path / "job", JobOptions(nproc_per_node=2))
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "srun").write_text('#!/bin/sh\nexec "$@"\n')
    (shims / "scontrol").write_text("#!/bin/sh\necho 127.0.0.1\n")
    for s in shims.iterdir():
        s.chmod(0o755)
    env = job_env()
    env.update(PATH=f"{shims}{os.pathsep}{env['PATH']}", SLURM_SUBMIT_DIR=str(job.folder), SLURM_NNODES="1",
               SLURM_JOB_ID="7", SLURM_JOB_NODELIST="localhost", SLURM_CPUS_PER_TASK="2")
    import socket
    with socket.socket() as s:               # a free port in place of the template's 29500
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = (job.folder / "job.slurm").read_text().replace(":29500", f":{port}")
    (tmp_path / "job.slurm").write_text(script)
    r = subprocess.run(["bash", str(tmp_path / "job.slurm")], cwd="/", env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert read_manifest(job.folder / "export")[1]["metrics"]["processes"] == 2


@pytest.mark.parametrize("change, field", [({"mode": "kip", "loss": "squared"}, "mode"),
                                           ({"teacher": "exact"}, "teacher"),
                                           ({"certify_exact": True}, "certify_exact")])
def test_what_torchrun_refuses_is_refused_before_writing(tmp_path, change, field):
    cfg = DistillConfig(**{**TINY, "teacher": "auto", "centres": None, **change}).validate()
    with pytest.raises(ConfigError) as err:
        write_cluster_job(cfg, tmp_path / "job", JobOptions(nproc_per_node=2))
    assert err.value.field == field and "one process" in str(err.value)
    assert not (tmp_path / "job").exists() and list(tmp_path.iterdir()) == []
    # one process in all is not torchrun's sharding: allowed
    write_cluster_job(cfg, tmp_path / "single", JobOptions(nproc_per_node=1))


def test_folder_rules_and_local_path_note(tmp_path):
    cfg = DistillConfig(**TINY).validate()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_cluster_job(cfg, full)
    assert sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_cluster_job(cfg, empty).folder == empty and (empty / "run.sh").is_file()
    with pytest.raises(FileExistsError):
        write_cluster_job(cfg, empty)                # the job itself is never overwritten either
    with pytest.raises(ConfigError) as err:
        write_cluster_job(cfg, tmp_path / "bad", JobOptions(nproc_per_node=0))
    assert err.value.field == "nproc_per_node"
    data = tmp_path / "digits.npz"
    local = DistillConfig(**{**TINY, "data": str(data)})
    job = write_cluster_job(local, tmp_path / "local")
    assert json.loads((job.folder / "config.json").read_text())["data"] == str(data)
    assert any("data = " in n and "other machine" in n for n in job.notes)
    readme = (job.folder / "README.txt").read_text()
    assert str(data) in readme
    assert "(Run > Transfer an exported set...)" in readme      # the menu item's name (it said "Evaluate")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]     # no temporary folder left


def test_cli_writes_the_same_job_and_refuses_with_exit_2(tmp_path, capsys):
    from engine import cli
    (tmp_path / "run.json").write_text(json.dumps(TINY))
    assert cli.main(["cluster-job", "--config", str(tmp_path / "run.json"), "--nproc-per-node", "3", "--nodes", "2",
                     "--out", str(tmp_path / "job")]) == 0
    assert "wrote" in capsys.readouterr().err
    assert DistillConfig.load(tmp_path / "job" / "config.json") == DistillConfig(**TINY)
    assert "#SBATCH --nodes=2" in (tmp_path / "job" / "job.slurm").read_text()
    assert "--nnodes=2 --nproc_per_node=3" in (tmp_path / "job" / "run.sh").read_text()
    (tmp_path / "kip.json").write_text(json.dumps({**TINY, "mode": "kip", "loss": "squared"}))
    assert cli.main(["cluster-job", "--config", str(tmp_path / "kip.json"), "--out", str(tmp_path / "kip")]) == 2
    assert "mode: KIP" in capsys.readouterr().err and not (tmp_path / "kip").exists()
