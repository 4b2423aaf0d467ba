"""The README's Python examples run as written (those that need `make demo` outputs are
marked with an `<!-- after make demo -->` line and checked by hand after a demo)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"(<!-- after make demo -->\n)?```python\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    found = []
    for number, match in enumerate(FENCE.finditer(text), start=1):
        if not match.group(1):
            first = match.group(2).strip().splitlines()[0]
            found.append((f"example{number}: {first[:50]}", match.group(2)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize(("name", "code"), examples(), ids=[n for n, _ in examples()])
def test_readme_example_runs(name: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{name}\n{result.stdout}\n{result.stderr}"
