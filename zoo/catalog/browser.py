"""The headless browser the catalog tests drive: Debian's `chromium`, through Playwright.

`playwright install` downloads browsers from the internet; we use the distribution's
package instead, so CI and laptops need only apt. `python -m zoo.catalog.browser install`
installs it (the Makefile's `browser` target); `... check` says whether it is usable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

PACKAGES = ("chromium", "chromium-driver")
ENV_CHROMIUM = "ZOO_CHROMIUM"
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Headless, no sandbox (containers run as root), and no background traffic of any kind.
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def find_chromium() -> str | None:
    """$ZOO_CHROMIUM, then the Debian locations, then `chromium` on PATH."""
    env = os.environ.get(ENV_CHROMIUM)
    if env:
        return env if os.access(env, os.X_OK) else None
    for path in CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -r requirements; it is pinned there)"
    if find_chromium() is None:
        return (
            "chromium is not installed: run `make browser` (python -m zoo.catalog.browser install)"
        )
    return None


def install() -> int:
    """apt-get install the browser (as root, or through sudo when available)."""
    if find_chromium() is not None:
        print(f"chromium already installed at {find_chromium()}")
        return 0
    prefix: list[str] = []
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        if shutil.which("sudo") is None:
            print("need root (or sudo) to apt-get install chromium", file=sys.stderr)
            return 1
        prefix = ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*prefix, "apt-get", "update"], check=True, env=env)
    subprocess.run(
        [*prefix, "apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
        check=True,
        env=env,
    )
    print(f"chromium installed at {find_chromium()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.catalog.browser")
    parser.add_argument("action", choices=("install", "check"))
    args = parser.parse_args(argv)
    if args.action == "install":
        return install()
    reason = missing()
    print(reason or f"ok: chromium at {find_chromium()}, playwright importable")
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(main())
