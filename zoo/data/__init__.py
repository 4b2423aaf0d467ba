"""Shipped datasets: sources with recorded checksums, seeded splits, tensor loaders."""

from zoo.data.loaders import SplitTensors, load_split
from zoo.data.prepare import prepare_dataset
from zoo.data.sources import DATASETS, DatasetSpec, get_dataset_spec, list_datasets

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "SplitTensors",
    "get_dataset_spec",
    "list_datasets",
    "load_split",
    "prepare_dataset",
]
