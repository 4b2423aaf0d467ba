"""Acceptance of the format refactor: this checkout's writer gives the same bytes as the
writer at BASELINE, for every kind of export folder (tests/compress/export_identity.py).

The baseline's `zoo` package is taken from git history (`git archive`), so the comparison
is against that version's real output, not a recorded hash. Move BASELINE forward only in a
commit that changes the format on purpose, and say so in its message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

#: The last commit before the saved-model format moved into zoo/compress/format.py.
BASELINE = "47573fcc532364fecbdce94b4c825e0260615cf7"
SCRIPT = Path(__file__).with_name("export_identity.py")
#: Facts added to zoo.json on purpose since BASELINE (the loaded model's parameter and
#: non-zero counts, what search and the catalog show). Everything else, the weights and
#: config included, must keep the baseline writer's bytes.
ADDED_FACTS = {"sparsity": ("model_parameters", "model_nonzero")}
CARD_FILES = ("zoo.json", "SHA256SUMS")


def _baseline_zoo(dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = dest / "zoo.tar"
    try:
        with archive.open("wb") as out:
            subprocess.run(
                ["git", "archive", "--format=tar", BASELINE, "zoo"],
                cwd=REPO,
                check=True,
                stdout=out,
                stderr=subprocess.PIPE,
            )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"git history with {BASELINE[:12]} is not available here: {exc}")
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _export(pythonpath: Path, out: Path) -> list[str]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _without_added_facts(card: bytes) -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(card)
    for section, keys in ADDED_FACTS.items():
        for key in keys:
            assert key in facts[section], f"zoo.json lost {section}.{key}"
            del facts[section][key]
    return facts


def _sums_without_card(sums: bytes) -> list[str]:
    return [line for line in sums.decode().splitlines() if not line.endswith("  zoo.json")]


@pytest.mark.slow
def test_exports_are_byte_identical_to_the_baseline_writer(tmp_path: Path) -> None:
    old_zoo = _baseline_zoo(tmp_path / "baseline")
    old_names = _export(old_zoo, tmp_path / "old")
    new_names = _export(REPO, tmp_path / "new")
    assert new_names == old_names and len(new_names) == 12
    for name in new_names:
        old, new = _files(tmp_path / "old" / name), _files(tmp_path / "new" / name)
        assert sorted(new) == sorted(old), name
        assert json.loads(old["zoo.json"]) == _without_added_facts(new["zoo.json"]), name
        assert _sums_without_card(old["SHA256SUMS"]) == _sums_without_card(new["SHA256SUMS"])
        differ = [rel for rel in old if old[rel] != new[rel] and rel not in CARD_FILES]
        assert not differ, f"{name}: {differ} differ from the baseline writer's bytes"
