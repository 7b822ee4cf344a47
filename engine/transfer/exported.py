"""Transfer of an exported distilled set: train networks on it and test them on a real dataset (issue 6).

The distilled set's own preprocessing is applied to the real test images (the failure users of
other tools report: evaluating a ZCA-distilled set on un-whitened test data), and the results are
merged into the export's ``manifest.json`` under ``"transfer"``: one entry per network (mean, std,
per-seed accuracies, recipe, seconds) with what it was measured against (dataset, test split, number
of test images, device, date). Re-running one network replaces only that network's entry, and each
network is written as soon as its seeds finish.
"""
from __future__ import annotations

import time
from typing import Iterator, Sequence

from engine.data import DatasetError, load_dataset
from engine.device import resolve_device
from engine.export import load_distilled, update_manifest
from engine.transfer.training import TransferProgress, TransferScore, TransferSummary, run_transfer


def transfer_exported(distilled: str, data: str, *, test_path: str | None = None,
                    networks: Sequence[str] = ("mlp", "convnet", "resnet18"), seeds: int = 3,
                    epochs: int | None = None, device: str = "auto", control=None
                    ) -> Iterator[TransferProgress | TransferScore | TransferSummary]:
    ds_set = load_distilled(distilled)
    cfg = ds_set.config
    ds = load_dataset(data, test_path=test_path, holdout_fraction=cfg.holdout_fraction, seed=cfg.seed)
    missing = [c for c in ds_set.classes if c not in ds.classes]
    if missing:
        raise DatasetError(f"{data}: classes {missing} of the distilled set are not in this dataset — "
                           "evaluate against the dataset it was distilled from")
    ds = ds.select_classes(list(ds_set.classes))
    if tuple(ds.x_test.shape[1:]) != tuple(ds_set.images.shape[1:]):       # before the preprocessing refuses
        raise DatasetError(f"{data}: test images are {tuple(ds.x_test.shape[1:])} (H, W, channels), the distilled "
                           f"ones {tuple(ds_set.images.shape[1:])} — use the dataset it was distilled from")
    x_test = ds_set.preprocess.transform(ds.x_test)
    dev = str(resolve_device(device))
    merged = dict(ds_set.manifest.get("transfer") or {})
    for event in run_transfer(ds_set.images, ds_set.labels, ds_set.targets, x_test, ds.y_test,
                                   networks=networks, seeds=seeds, device=dev, epochs=epochs, control=control):
        if isinstance(event, TransferSummary):
            merged[event.network] = {**event.to_dict(), "data": str(data), "test_data": test_path,
                                     "n_test": int(len(ds.y_test)), "device": dev,
                                     "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            update_manifest(distilled, "transfer", merged)
        yield event
