"""SeaweedFS as the DVC remote: `dvc push` then `dvc pull` into an empty cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

from zoo.storage.seaweed import SeaweedServer

from .conftest import BUCKET

DVC = str(Path(sys.executable).parent / "dvc")


def _run(repo: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_dvc_push_and_pull_through_seaweedfs(seaweed: SeaweedServer, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    payload = os.urandom(200_000)
    (repo / "models" / "weights.bin").write_bytes(payload)
    (repo / "models" / "config.json").write_text('{"arch": "mlp"}\n')
    env = {
        **os.environ,
        **seaweed.env(),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    prefix = f"dvc-{uuid.uuid4().hex[:8]}"
    _run(repo, env, "git", "init", "-q")
    _run(repo, env, DVC, "init", "-q")
    _run(repo, env, DVC, "remote", "add", "-d", "seaweed", f"s3://{BUCKET}/{prefix}")
    _run(repo, env, DVC, "remote", "modify", "seaweed", "endpointurl", seaweed.endpoint_url)
    _run(repo, env, DVC, "add", "-q", "models")
    _run(repo, env, DVC, "push", "-q")
    listing = seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    assert len(listing.get("Contents", [])) >= 3  # two files + the directory manifest

    shutil.rmtree(repo / "models")
    shutil.rmtree(repo / ".dvc" / "cache")
    _run(repo, env, DVC, "pull", "-q")
    assert (repo / "models" / "weights.bin").read_bytes() == payload
    assert (repo / "models" / "config.json").read_text() == '{"arch": "mlp"}\n'
