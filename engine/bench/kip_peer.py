"""Our KIP against KIP as Google published it, on exactly the same data (issue 17, item 3).

    python -m engine.bench.kip_peer --peer-python PEER/bin/python --out DIR [--steps 1000] [--ipcs 1,10]
                              [--lams 1e-6] [--depth 1] [--datasets /work/shared/datasets]

The peer is :mod:`engine.bench.peer.kip_train`, run by a separate Python with ``neural-tangents`` and ``jax``
(not project dependencies). For MNIST (``mnist-train.npz`` / ``mnist-test.npz`` in ``--datasets``) this
builds the engine's own run data — a 2,000-image pool (``max_per_class = 200``, the engine's stratified
cap, seed 0), standardised pixels fitted on the pool, one-hot targets, initial images the engine's
class-balanced real sample — and then, for every IPC, λ and ridge convention ("trace", "fixed"):

* ours: :func:`engine.distill.run` in KIP mode (``kip_batch = 2000``, the whole pool every step,
  float32, Adam at ``lr``);
* the peer: the same pool, targets and initial images, the same steps, Adam, float32, ``stax`` NTK.

First the kernels are compared (ours against ``stax``, depth 1, 3 and ``--depth``, float64, on 200 pool images against 100). Each
distilled set is scored by kernel ridge regression in float64 with our kernel (equal to ``stax``, see
above) on the full MNIST test split (10,000 images), with the ridge of the convention it was trained
under (KIP's own evaluation) and, in a second column, under the other one. Writes ``kip_peer.json`` and
``kip_peer.md`` in ``--out``; threads: torch 1, XLA 1 (single-threaded Eigen).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.config import DistillConfig
from engine.data import load_dataset
from engine.data.preprocess import Preprocessor
from engine.distill import _initial_images, prepare_dataset, run, to_nchw
from engine.events import Done
from engine.kernels import make_kernel
from engine.kip import kip_ridge_value

PEER_SCRIPT = Path(__file__).parent / "peer" / "kip_train.py"
PEER_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
            "OMP_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _peer(python: str, command: str, arrays: dict, timeout: float = 3600) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, **arrays)
        env = {**os.environ, **PEER_ENV}
        subprocess.run([python, str(PEER_SCRIPT), command, str(inp), str(out)], check=True, env=env,
                       timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with np.load(out) as f:
            return {k: f[k] for k in f.files}


def krr_accuracy(kernel, xs: np.ndarray, ys: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, lam: float,
                 ridge: str, n_classes: int) -> float:
    """Test accuracy of kernel ridge regression fitted on (xs, one-hot ys) with the KIP ridge ``ridge``
    (float64; argmax of the scores)."""
    a = to_nchw(xs).double()
    Y = torch.nn.functional.one_hot(torch.from_numpy(ys).long(), n_classes).double()
    with torch.no_grad():
        kss = kernel(a)
        rho = kip_ridge_value(kss, lam, ridge)
        coef = torch.linalg.solve(kss + rho * torch.eye(len(a), dtype=torch.float64), Y)
        correct = 0
        for i in range(0, len(x_test), 2000):
            scores = kernel(to_nchw(x_test[i:i + 2000]).double(), a) @ coef
            correct += int((scores.argmax(1).numpy() == y_test[i:i + 2000]).sum())
    return correct / len(x_test)


def compare(peer_python: str, datasets: Path, out: Path, steps: int, ipcs: list[int], lams: list[float],
            depth: int, lr: float = 0.01, per_class: int = 200, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    train, test = datasets / "mnist-train.npz", datasets / "mnist-test.npz"
    params = {"depth": depth, "w_std": 2 ** 0.5, "b_std": 0.1}
    base = DistillConfig(data=str(train), test_data=str(test), max_per_class=per_class, mode="kip", loss="squared",
                         kernel="ntk-fc", kernel_params=params, lr=lr, steps=steps, seed=seed, eval_every=0,
                         snapshot_every=0, kip_batch=10 * per_class, device="cpu", dtype="float32",
                         optimizer="adam", init="real", preprocess="standardize")
    loaded = load_dataset(base.data, test_path=base.test_data, seed=seed)
    ds = prepare_dataset(base, loaded)
    assert ds.rows is None, "row-coded sources are not used here"
    pre = Preprocessor.fit(ds.x_train[:], method=base.preprocess, zca_reg=base.zca_reg)
    x_pool, y_pool = pre.transform(ds.x_train[:]), ds.y_train.astype(np.int64)
    x_test, y_test = pre.transform(ds.x_test[:]), ds.y_test.astype(np.int64)
    n_classes = len(ds.classes)
    kernel = make_kernel("ntk-fc", **params)
    flat = lambda x: x.reshape(len(x), -1)                       # C = 1: NHWC and NCHW flatten alike

    # kernels: ours against stax, float64
    report: dict = {"settings": {"dataset": "MNIST", "pool": len(y_pool), "per_class": per_class, "test": len(y_test),
                                 "kernel": "ntk-fc", "kernel_params": params, "lr": lr, "steps": steps, "seed": seed,
                                 "optimizer": "adam", "dtype": "float32 (training), float64 (evaluation)",
                                 "kip_batch": 10 * per_class, "preprocess": "standardize (fitted on the pool)",
                                 "targets": "one-hot", "threads": "torch 1, XLA 1"}, "kernels": [], "runs": []}
    for d in sorted({1, 3, depth}):
        k = make_kernel("ntk-fc", depth=d)
        half = len(x_pool) // 2
        a, b = x_pool[:half][:200], x_pool[half:][:100]
        peer = _peer(peer_python, "kernel", {"a": flat(a).astype(np.float64), "b": flat(b).astype(np.float64),
                                             "depth": d})
        ours = k(to_nchw(a).double(), to_nchw(b).double()).numpy()
        row = {"depth": d, "max_abs_diff": float(np.abs(ours - peer["ntk"]).max()),
               "max_rel_diff": float((np.abs(ours - peer["ntk"]) / np.abs(peer["ntk"])).max()),
               "max_value": float(np.abs(peer["ntk"]).max())}
        report["kernels"].append(row)
        print(f"kernel depth {d}: ours vs stax max |diff| {row['max_abs_diff']:.2e} (rel {row['max_rel_diff']:.2e})",
              flush=True)

    for ipc in ipcs:
        cfg0 = base.replace(ipc=ipc)
        xs0, ys0 = _initial_images(cfg0, x_pool, y_pool, n_classes)
        for lam in lams:
            for ridge in ("trace", "fixed"):
                cfg = cfg0.replace(lam=lam, kip_ridge=ridge)
                done = [e for e in run(cfg, dataset=loaded) if isinstance(e, Done)][-1]
                res = done.result
                assert np.array_equal(res.labels, ys0)
                ours_ms = 1e3 / done.metrics["steps_per_second"]
                eye = np.eye(n_classes, dtype=np.float32)
                t0 = time.perf_counter()
                peer = _peer(peer_python, "train", {
                    "xb": flat(x_pool).astype(np.float32), "yb": eye[y_pool], "xs": flat(xs0).astype(np.float32),
                    "ys": eye[ys0], "lam": lam, "lr": lr, "steps": steps, "depth": depth, "ridge": ridge})
                peer_wall = time.perf_counter() - t0
                xs_peer = peer["xs"].reshape(xs0.shape)
                row = {"ipc": ipc, "lam": lam, "ridge": ridge,
                       "ours_loss0": res.curves[0]["objective"], "peer_loss0": float(peer["losses"][0]),
                       "ours_loss_last": res.curves[-1]["objective"], "peer_loss_last": float(peer["losses"][-1]),
                       "ours_ms_per_step": ours_ms, "peer_ms_per_step": 1e3 * float(np.median(peer["seconds"])),
                       "peer_wall_s": peer_wall, "app_distilled_accuracy": done.metrics["distilled_test_accuracy"]}
                for ev in ("trace", "fixed"):
                    row[f"ours_acc_{ev}"] = krr_accuracy(kernel, res.images, res.labels, x_test, y_test, lam, ev,
                                                         n_classes)
                    row[f"peer_acc_{ev}"] = krr_accuracy(kernel, xs_peer, ys0, x_test, y_test, lam, ev, n_classes)
                row["init_acc"] = krr_accuracy(kernel, xs0, ys0, x_test, y_test, lam, ridge, n_classes)
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
                (out / "kip_peer.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "kip_peer.md").write_text(to_markdown(report))
    return report


def to_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"Kernels, ours against neural-tangents `stax` (float64, 200 × 100 pool images): " + "; ".join(
        f"depth {k['depth']}: max |Δ| {k['max_abs_diff']:.1e} (relative {k['max_rel_diff']:.1e}, values ≤ "
        f"{k['max_value']:.2f})" for k in report["kernels"]) + ".", "",
        f"Settings: {s['dataset']}, {s['pool']:,}-image pool ({s['per_class']} per class, seed {s['seed']}), kernel "
        f"{s['kernel']} {json.dumps(s['kernel_params'])}, {s['steps']} {s['optimizer']} steps at lr {s['lr']:g}, "
        f"KIP batch {s['kip_batch']:,} (the whole pool every step), {s['dtype']}, {s['preprocess']}, {s['targets']} "
        f"targets, threads {s['threads']}; test: the full MNIST test split ({s['test']:,} images), KRR in float64.", "",
        "| IPC | λ | trained with ridge | ours % (own ridge) | peer % (own ridge) | ours − peer | ours % (other ridge) | "
        "peer % (other ridge) | initial images % | loss₀ ours / peer | final loss ours / peer | ms/step ours / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        own, other = r["ridge"], "fixed" if r["ridge"] == "trace" else "trace"
        lines.append(
            f"| {r['ipc']} | {r['lam']:g} | {own} | {100 * r[f'ours_acc_{own}']:.2f} | {100 * r[f'peer_acc_{own}']:.2f} | "
            f"{100 * (r[f'ours_acc_{own}'] - r[f'peer_acc_{own}']):+.2f} | {100 * r[f'ours_acc_{other}']:.2f} | "
            f"{100 * r[f'peer_acc_{other}']:.2f} | {100 * r['init_acc']:.2f} | {r['ours_loss0']:.6f} / {r['peer_loss0']:.6f} | "
            f"{r['ours_loss_last']:.6f} / {r['peer_loss_last']:.6f} | {r['ours_ms_per_step']:.1f} / {r['peer_ms_per_step']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench.kip_peer", description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", required=True, help="a Python with neural-tangents and jax")
    p.add_argument("--out", required=True)
    p.add_argument("--datasets", default=str(Path(__file__).resolve().parents[3] / "shared" / "datasets"))
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--ipcs", default="1,10")
    p.add_argument("--lams", default="1e-6")
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.01)
    a = p.parse_args(argv)
    datasets = Path(a.datasets)
    if not (datasets / "mnist-train.npz").is_file() or not (datasets / "mnist-test.npz").is_file():
        print(f"no MNIST in {datasets}", file=sys.stderr)
        return 2
    compare(a.peer_python, datasets, Path(a.out), a.steps, [int(v) for v in a.ipcs.split(",")],
            [float(v) for v in a.lams.split(",")], a.depth, a.lr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
