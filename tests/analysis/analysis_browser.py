"""Open an HTML file in headless Chromium over the DevTools protocol: JavaScript errors, network
requests, what plotly rendered, and a full-page screenshot.

``ensure_chromium()`` installs Debian's ``chromium`` with apt-get when it is missing and this runs
as root (as CI does); it returns None, with the reason, only when that is impossible.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-allow-origins=*",
    "--hide-scrollbars",
    "--mute-audio",
]


def find_chromium() -> str | None:
    env = os.environ.get("HRNAS_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> tuple[str | None, str]:
    """(path, '') when Chromium is there or could be installed, else (None, why not)."""
    path = find_chromium()
    if path:
        return path, ""
    if not shutil.which("apt-get"):
        return None, "Chromium is not installed and apt-get is not available to install it"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, "Chromium is not installed and installing it with apt-get needs root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as err:
            return None, f"`{' '.join(cmd)}` failed: {err}"
        log.append(f"$ {' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip()[-300:]}")
        if cmd[1] == "install" and proc.returncode == 0:
            path = find_chromium()
            if path:
                return path, ""
    return None, "apt-get could not install chromium:\n" + "\n".join(log)


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=30)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(msg)
            if msg.get("method") == method:
                return msg
        raise TimeoutError(method)

    def evaluate(self, expression: str, timeout: float = 60.0):
        res = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout,
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"evaluate failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def close(self) -> None:
        self.ws.close()


# Returns, per plotly figure in the page, what was rendered.
_INSPECT = r"""
(() => Array.from(document.querySelectorAll('.hrnas-figure')).map(box => {
  const gd = box.querySelector('.plotly-graph-div');
  const count = sel => gd ? gd.querySelectorAll(sel).length : 0;
  return {
    title: box.dataset.title,
    rendered: !!(gd && gd._fullLayout && gd._fullData),
    traces: gd && gd._fullData ? gd._fullData.length : 0,
    svgs: count('svg.main-svg'),
    points: count('.scatterlayer .point') + count('.barlayer .point'),
    lines: count('.scatterlayer .js-line'),
    width: gd ? gd.getBoundingClientRect().width : 0,
    height: gd ? gd.getBoundingClientRect().height : 0,
  };
}))()
"""

_READY = r"""
(() => { const g = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return g.length > 0 && g.every(d => d._fullLayout && d.querySelector('svg.main-svg')); })()
"""


def inspect_page(
    chromium: str, html_path: Path, screenshot: Path | None = None, width: int = 1400, timeout: float = 60.0
) -> dict:
    """Load ``html_path`` and report {figures, errors, requests, screenshot}."""
    profile = tempfile.mkdtemp(prefix="hrnas-chromium-")
    proc = subprocess.Popen(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={width},900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = []
        while not targets and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
                targets = [t for t in json.load(resp) if t.get("type") == "page"]
            time.sleep(0.1)
        dt = DevTools(targets[0]["webSocketDebuggerUrl"])
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                dt.send(f"{domain}.enable")
            dt.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            )
            dt.events.clear()
            dt.send("Page.navigate", {"url": html_path.resolve().as_uri()})
            dt.wait_event("Page.loadEventFired", timeout)
            while not dt.evaluate(_READY):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            time.sleep(0.3)  # let late errors arrive
            figures = dt.evaluate(_INSPECT)
            n_divs = dt.evaluate("document.querySelectorAll('.plotly-graph-div').length")
            errors, requests = _errors_and_requests(dt.events)
            shot = None
            if screenshot is not None:
                height = int(dt.evaluate("document.documentElement.scrollHeight"))
                height = min(height, 16000)
                dt.send(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                )
                time.sleep(0.5)
                data = dt.send(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                    },
                    timeout,
                )["data"]
                screenshot.write_bytes(base64.b64decode(data))
                shot = screenshot
                more_errors, _ = _errors_and_requests(dt.events)
                errors = more_errors
        finally:
            dt.close()
        return {
            "figures": figures,
            "plotly_divs": n_divs,
            "errors": errors,
            "requests": requests,
            "screenshot": shot,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _errors_and_requests(events: list[dict]) -> tuple[list[str], list[str]]:
    errors, requests = [], []
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            det = params.get("exceptionDetails", {})
            errors.append("exception: " + str(det.get("exception", {}).get("description") or det.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(
                "console: "
                + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
            )
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(
                "log: " + str(params["entry"].get("text")) + " " + str(params["entry"].get("url", ""))
            )
        elif method == "Network.requestWillBeSent":
            requests.append(params.get("request", {}).get("url", ""))
    return errors, requests
