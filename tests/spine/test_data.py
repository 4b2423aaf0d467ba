"""Shipped data: documented shapes, dtypes and balance; checksums; no partial outputs."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data import get_dataset_spec, list_datasets, load_split, prepare_dataset
from zoo.errors import ChecksumMismatchError, SourceMissingError, UnknownNameError

# The documented facts of each dataset: split sizes and per-image shape.
EXPECTED = {
    "fashion_mnist": {"sizes": (55000, 5000, 10000), "shape": (1, 28, 28), "classes": 10},
    "mnist5k": {"sizes": (3500, 500, 1000), "shape": (1, 28, 28), "classes": 10},
    "digits": {"sizes": (1259, 179, 359), "shape": (1, 8, 8), "classes": 10},
    "rotten_tomatoes": {"sizes": (10248, 1280, 1280), "shape": None, "classes": 2},
    "political_speeches": {"sizes": (2207, 316, 630), "shape": None, "classes": 2},
}


def test_all_shipped_datasets_are_listed() -> None:
    assert list_datasets() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_split_sizes_and_balance(prepared_data: Path, name: str) -> None:
    spec = get_dataset_spec(name)
    counts = []
    for split, size in zip(("train", "val", "test"), EXPECTED[name]["sizes"], strict=True):
        with np.load(prepared_data / name / f"{split}.npz", allow_pickle=False) as archive:
            labels = archive["y"]
            assert labels.dtype == np.int64 and len(labels) == size
            counts.append(np.bincount(labels, minlength=spec.num_classes))
    assert spec.num_classes == EXPECTED[name]["classes"]
    train, val, test = (c / c.sum() for c in counts)
    # Stratified: every split keeps the class proportions of the training split.
    assert np.abs(val - train).max() < 0.01 and np.abs(test - train).max() < 0.02


def test_political_speeches_hide_who_is_speaking(prepared_data: Path) -> None:
    with np.load(prepared_data / "political_speeches" / "train.npz") as archive:
        texts = [str(t) for t in archive["text"]]
    # Transcripts open paragraphs with "BARACK OBAMA:" / "MITT ROMNEY:": the party's name.
    assert not [t for t in texts if re.match(r"[A-Z][A-Z .]+:", t)]
    assert min(len(t) for t in texts) >= 80


def test_rotten_tomatoes_is_the_full_labelled_corpus(prepared_data: Path) -> None:
    total = sum(
        len(np.load(prepared_data / "rotten_tomatoes" / f"{s}.npz")["y"])
        for s in ("train", "val", "test")
    )
    assert total == 12808


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist5k", "digits"])
def test_image_loader_shapes_and_dtypes(prepared_data: Path, name: str) -> None:
    data = load_split(prepared_data / name, "val", limit=64)
    x = data.inputs["x"]
    assert x.shape == (64, *EXPECTED[name]["shape"]) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert data.labels.dtype == torch.int64 and len(data) == 64


def test_text_loader_tokenizes_and_trims_padding(prepared_data: Path) -> None:
    from zoo.models.text import load_tokenizer

    data = load_split(
        prepared_data / "rotten_tomatoes",
        "val",
        limit=16,
        tokenizer=load_tokenizer(),
        max_length=48,
    )
    assert data.inputs["input_ids"].shape == (16, 48)
    inputs, labels = next(iter(data.loader(batch_size=16)))
    width = int(data.inputs["attention_mask"].sum(1).max())
    assert inputs["input_ids"].shape == (16, width) and inputs["input_ids"].dtype == torch.int64
    assert set(labels.tolist()) <= {0, 1}


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    a = prepare_dataset("digits", tmp_path / "a", seed=0)
    b = prepare_dataset("digits", tmp_path / "b", seed=0)
    c = prepare_dataset("digits", tmp_path / "c", seed=1)
    assert a["splits"] == b["splits"]
    read = lambda p: np.load(p / "test.npz")["x"]  # noqa: E731
    assert np.array_equal(read(tmp_path / "a"), read(tmp_path / "b"))
    assert not np.array_equal(read(tmp_path / "a"), read(tmp_path / "c"))
    assert c["splits"]["test"]["size"] == a["splits"]["test"]["size"]


def copy_source(name: str, dest: Path) -> Path:
    spec = get_dataset_spec(name)
    for file in spec.files:
        shutil.copy2(spec.locate() / file.name, dest / file.name)
    return dest


def test_corrupted_source_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    source = copy_source("digits", tmp_path)
    target = source / "digits.csv.gz"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF
    target.write_bytes(bytes(data))
    out = tmp_path / "out"
    with pytest.raises(ChecksumMismatchError, match=r"digits\.csv\.gz") as info:
        prepare_dataset("digits", out, source_dir=source)
    assert info.value.expected != info.value.actual
    assert not out.exists()


def test_missing_source_names_package_and_install_command(tmp_path: Path) -> None:
    source = copy_source("fashion_mnist", tmp_path)
    (source / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SourceMissingError) as info:
        prepare_dataset("fashion_mnist", tmp_path / "out", source_dir=source)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert not (tmp_path / "out").exists()


def test_failed_prepare_keeps_the_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_dataset("digits", out, seed=0)
    before = (out / "train.npz").read_bytes()
    (tmp_path / "src").mkdir()
    source = copy_source("digits", tmp_path / "src")
    with gzip.open(source / "digits.csv.gz", "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(ChecksumMismatchError):
        prepare_dataset("digits", out, source_dir=source)
    assert (out / "train.npz").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match=r"fashion_mnist.*mnist5k"):
        get_dataset_spec("cifar10")
