"""What a person sees: PDFs rendered with pdftoppm, HTML pages opened in headless Chromium.

Both tools are Debian packages (`make system-deps` installs them); a test that needs one fails,
never skips, when it is missing.
"""

import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

# Injected before the page's own scripts: console.error / console.warn calls, uncaught errors and
# rejected promises are logged with a tag Chromium's log keeps (it logs every console call at INFO).
CONSOLE_PROBE = """<script>(function () {
  const tag = (kind) => { const own = console[kind];
    console[kind] = (...args) => own.call(console, `SEAICE-${kind.toUpperCase()}: ` + args.map(String).join(" ")); };
  tag("error"); tag("warn");
  window.addEventListener("error", (e) => console.log("SEAICE-UNCAUGHT: " + e.message));
  window.addEventListener("unhandledrejection", (e) => console.log("SEAICE-UNCAUGHT: " + e.reason));
})();</script>"""
PROBLEM_MARKERS = ("SEAICE-ERROR", "SEAICE-WARN", "SEAICE-UNCAUGHT", "Failed to load resource")
# Chromium itself refuses the network, so a page that needs it fails on a networked machine too:
# no host name resolves, and every request, loopback included, goes to a proxy nobody serves
OFFLINE = ("--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
           "--proxy-bypass-list=<-loopback>", "--disable-background-networking")


def tool(name: str) -> str:
    """The path of ``name``. Missing, it fails the test, unless the Makefile, unable to install it
    without root, declared it missing (``SEAICE_MISSING_TOOLS``): then the test skips, naming it."""
    path = shutil.which(name)
    if path is None and name in os.environ.get("SEAICE_MISSING_TOOLS", "").split():
        pytest.skip(f"{name} is not installed and make could not install it without root")
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian packages poppler-utils, chromium)")
    return path


def pdf_pages(pdf: Path, out_dir: Path, dpi: int = 40) -> list[np.ndarray]:
    """Each page of ``pdf`` rendered by pdftoppm, as an (H, W, 3) float array in [0, 1]."""
    stem = out_dir / pdf.stem
    subprocess.run([tool("pdftoppm"), "-r", str(dpi), "-png", str(pdf), str(stem)], check=True,
                   capture_output=True, timeout=60)
    return [matplotlib.image.imread(p)[..., :3] for p in sorted(out_dir.glob(f"{pdf.stem}*.png"))]


def pdf_text(pdf: Path) -> str:
    """The text of ``pdf`` as pdftotext reads it (its titles, labels), whitespace folded to single spaces."""
    done = subprocess.run([tool("pdftotext"), str(pdf), "-"], check=True, capture_output=True, text=True, timeout=60)
    return " ".join(done.stdout.split())


def drawn_share(image: np.ndarray) -> float:
    """Share of pixels that are not (near) white."""
    return float((image.min(axis=-1) < 0.9).mean())


def _chromium(*args: str, offline: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                           "--virtual-time-budget=15000", *(OFFLINE if offline else ()), *args],
                          capture_output=True, text=True, timeout=timeout)


def console_problems(page: Path, work: Path, offline: bool = True) -> list[str]:
    """Console errors and warnings, uncaught errors and failed loads of ``page`` in headless
    Chromium, offline (:data:`OFFLINE`: anything fetched from the network fails) unless ``offline``
    is False (the control of the test that shows the blocking works)."""
    html = page.read_text()
    at = html.find("<head>")
    probed = work / f"{page.stem}.probed.html"
    probed.write_text(html[:at + 6] + CONSOLE_PROBE + html[at + 6:] if at >= 0 else CONSOLE_PROBE + html)
    run = _chromium("--enable-logging=stderr", "--v=0", "--dump-dom", probed.as_uri(), offline=offline)
    return [line.split('"', 1)[-1][:300] for line in run.stderr.splitlines()
            if ":CONSOLE" in line and any(marker in line for marker in PROBLEM_MARKERS)]


def screenshot(page: Path, png: Path, size: str = "1200,1600") -> np.ndarray:
    """``page`` as headless Chromium draws it, (H, W, 3) in [0, 1]."""
    _chromium(f"--window-size={size}", f"--screenshot={png}", page.as_uri())
    return matplotlib.image.imread(png)[..., :3]
