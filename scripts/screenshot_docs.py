"""Screenshots of the reference documentation as a reader's browser shows it.

Builds the site (``mkdocs build --strict``) into a temporary folder and has headless
Chromium (Debian's ``chromium`` package) photograph a few pages, so a change to the
docs can be looked at, not only built:

    python scripts/screenshot_docs.py [--out docs-screenshots] [--height 2400]

Writes one PNG per page into ``--out`` and prints their paths. Needs ``chromium`` on
PATH (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
# Page (relative to the site) -> screenshot name. The fragment scrolls the page there.
PAGES: Final = {
    "reference/clients/index.html": "clients.png",
    "reference/errors/index.html#accountapi.APIStatusError": "errors.png",
    "reference/profile/index.html": "profile.png",
    "index.html#benchmarks": "home-chart.png",
}


_FRAME: Final = (
    "<!doctype html><html><body style='margin:0'>"
    "<iframe src='{src}' style='border:0;width:100vw;height:100vh'></iframe>"
    "</body></html>"
)


def build(site: Path) -> None:
    """The site as CI builds it: strict, so a broken reference fails here too."""
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def shoot(browser: str, url: str, png: Path, width: int, height: int) -> None:
    """One page, at the given window size, into ``png``."""
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI and this script's users run it as root
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",  # let the theme's scripts settle first
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/screenshot_docs.py")
    parser.add_argument("--out", type=Path, default=ROOT / "docs-screenshots")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build(site)
        for page, name in PAGES.items():
            path, _, fragment = page.partition("#")
            url = (site / path).as_uri()
            if fragment:
                # Headless Chromium photographs the top of a page even when its URL
                # names a fragment; a frame scrolled to the fragment shows that part.
                frame = site / f"_frame_{name}.html"
                frame.write_text(_FRAME.format(src=f"{url}#{fragment}"), encoding="utf-8")
                url = frame.as_uri()
            png = args.out / name
            shoot(browser, url, png, args.width, args.height)
            print(png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
