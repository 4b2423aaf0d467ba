"""A registry that cannot be reached falls back to the cache with a logged warning
(through `logging`, which applications route or silence, not a print)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client.conftest import SMALL
from zoo.client import api


def test_cache_fallback_is_logged_as_a_warning(
    small_store: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = small_store()
    api.download(SMALL.stub, registry=store)
    os.rename(store, str(tmp_path / "moved"))
    with caplog.at_level(logging.WARNING, logger="zoo.client.session"):
        assert api.info(SMALL.stub, registry=store).version == 1
    assert any(
        r.levelno == logging.WARNING and "registry unreachable" in r.getMessage()
        for r in caplog.records
    )
    assert "registry unreachable" not in capsys.readouterr().out
