"""Datasets: loading (image folders, IDX, CIFAR python, .npz, the built-in sample), the report
shown before a run, and the checks that turn bad input into clear messages.

Pixels are uint8 (N, H, W, C) with C = 1 or 3 throughout; preprocessing into the space the kernel
sees lives in :mod:`engine.data.preprocess`.
"""
from engine.data.dataset import Dataset, check_ipc, check_test_split, untested_classes
from engine.data.loader import load_dataset
from engine.data.report import LARGE_DATASET_BYTES, DatasetError, DatasetReport, Problem
from engine.data.sample import sample_dataset

__all__ = ["Dataset", "DatasetError", "DatasetReport", "LARGE_DATASET_BYTES", "Problem",
           "check_ipc", "check_test_split", "load_dataset", "sample_dataset", "untested_classes"]
