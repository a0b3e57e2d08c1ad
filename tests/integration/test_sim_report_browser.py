"""The simulator's HTML report opens in headless Chromium and every chart image loads.

The report's inline script writes each image's ``complete && naturalWidth > 0`` into
``<pre id="img-status">`` once the page has loaded; ``--dump-dom`` returns the DOM after that.
A screenshot is also taken and checked to contain a rendered page (not a blank canvas).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from subnet.cli import main

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian package 'chromium'; CI installs it)",
)


def _chromium(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    rc = main(
        [
            "simulate",
            "--scenario",
            "copier",
            "--epochs",
            "12",
            "--validators",
            "3",
            "--miners",
            "5",
            "--sweep",
            "bonds_penalty=65535,0",
            "--out",
            str(out),
            "--exact-checks",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    return out / "report.html"


def test_report_images_load_in_chromium(report: Path, tmp_path: Path) -> None:
    proc = _chromium(tmp_path, "--dump-dom", report.as_uri())
    m = re.search(r'<pre id="img-status"[^>]*>([^<]*)</pre>', proc.stdout)
    assert m, f"no status element in DOM (rc={proc.returncode}): {proc.stderr[-500:]}"
    status = json.loads(html.unescape(m.group(1)))
    assert len(status) == 7  # sweep chart + 3 charts x 2 runs
    assert all(s["ok"] and s["width"] > 100 for s in status), status


def test_report_screenshot_renders(report: Path, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    shot = tmp_path / "shot.png"
    proc = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,1600", report.as_uri())
    assert shot.is_file(), proc.stderr[-500:]
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1200
    colours = {tuple(p) for p in pixels[::7, ::7, :3].reshape(-1, 3).round(2).tolist()}
    assert len(colours) > 20  # text, table lines and coloured chart lines, not a blank page


def test_a_wide_sweep_with_many_validators_fits_a_1400px_window(tmp_path: Path) -> None:
    """Three sweep columns and ten validators: no horizontal scrolling, nothing visible but
    the report (the image status stays hidden) (issue 17)."""
    out = tmp_path / "wide"
    rc = main(
        [
            "simulate",
            "--scenario",
            "offline",
            "--epochs",
            "12",
            "--validators",
            "10",
            "--miners",
            "6",
            "--sweep",
            "weights.power=1,2,4",
            "--out",
            str(out),
            "--exact-checks",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    proc = _chromium(
        tmp_path, "--dump-dom", "--window-size=1400,900", (out / "report.html").as_uri()
    )
    m = re.search(r'<pre id="layout"[^>]*>([^<]*)</pre>', proc.stdout)
    assert m, proc.stderr[-500:]
    layout = json.loads(html.unescape(m.group(1)))
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    assert re.search(r'<pre id="img-status" hidden="">', proc.stdout)
