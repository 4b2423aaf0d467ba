"""Common wrapper of stage scripts: project errors become one line and a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable

from zoo.errors import ZooError


def run_stage(body: Callable[[], None]) -> None:
    try:
        body()
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
