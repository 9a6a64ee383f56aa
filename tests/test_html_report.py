"""report.html: self-contained, and every image loads without console errors in headless Chromium.

The browser check drives Debian's `chromium` through the Chrome DevTools protocol on a local
websocket (a minimal client below, standard library only). Without chromium it is skipped with
the reason; CI installs it (`apt-get install -y chromium`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness import cli

CONFIG = """
name = "htmltoy"
kind = "toy"
seed = 4
[report]
title = "HTML toy <report> & friends"
[grid]
n = [10, 100, 1000]
mode = ["fast", "slow"]
"""
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
IMAGES_JS = """JSON.stringify({
  images: Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,
      height: i.naturalHeight, src: i.getAttribute('src').slice(0, 22)})),
  captions: document.querySelectorAll('figure figcaption').length,
  tables: document.querySelectorAll('table').length})"""


@pytest.fixture
def run_dir(toy_kinds, tmp_path) -> Path:
    cfg = tmp_path / "htmltoy.toml"
    cfg.write_text(CONFIG)
    assert cli.main(["run", str(cfg), "--out", str(tmp_path / "out"), "--workers", "1",
                     "--quiet"]) == 0
    (run,) = (tmp_path / "out" / "htmltoy").iterdir()
    return run


def test_report_html_is_self_contained(run_dir):
    page = (run_dir / "report.html").read_text()
    assert (run_dir / "report.md").is_file()
    srcs = re.findall(r"<img src=\"([^\"]*)\"", page)
    assert len(srcs) == 2  # the toy kind's two figures
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r"(src|href)=\"(?!data:)", page), "a resource outside the page"
    assert "<title>HTML toy &lt;report&gt; &amp; friends</title>" in page
    assert page.count("<figcaption>") == 2
    assert "Mean of uniform draws against the number of draws." in page
    assert "<th>n</th><th>mean</th>" in page  # the headline table
    assert "<h2>Provenance</h2>" in page and "numba" in page and "cpu_model" in page
    # the caption paragraph above each image in report.md becomes the figcaption only
    assert page.count("Distribution of per-point wall time.") == 2  # figcaption + img alt


# -- headless Chromium over the DevTools protocol -------------------------------------------------

class DevTools:
    """A minimal websocket client speaking the Chrome DevTools protocol to one page."""

    def __init__(self, ws_url: str, timeout: float = 30.0):
        url = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.next_id = 0
        self.events: list[dict] = []

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("DevTools websocket closed")
        self.buf += chunk

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytearray([0x80 | opcode])
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self.sock.sendall(bytes(head) + mask + bytes(b ^ mask[i % 4]
                                                     for i, b in enumerate(payload)))

    def _message(self) -> dict:
        parts = []
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            mask = self._exact(4) if b1 & 0x80 else b""
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x9:
                self._send(0xA, data)  # pong
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools websocket closed")
            parts.append(data)
            if b0 & 0x80:
                return json.loads(b"".join(parts))

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self._send(0x1, json.dumps({"id": self.next_id, "method": method,
                                    "params": params}).encode())
        while True:
            msg = self._message()
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            assert time.monotonic() < deadline, f"no {method} event"
            self.events.append(self._message())

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error",
                                                                                 "assert"):
                found.append(json.dumps(params.get("args", []))[:300])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('text')} {entry.get('url', '')}"[:300])
        return found


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium with remote debugging on a free local port; yields its HTTP base."""
    exe = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if exe is None:
        reason = ("headless Chromium not found (looked for chromium, chromium-browser, "
                  "google-chrome); on Debian: apt-get install -y chromium")
        print(f"SKIPPED: {reason}")
        pytest.skip(reason=reason)
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=log, stderr=log, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert proc.poll() is None, (profile.parent / "chromium.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # chromium and the helpers it started
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _load(base: str, page: Path) -> tuple[dict, list[str]]:
    """Open `page` in a fresh tab; (image/caption facts, console errors) after the load event."""
    with urllib.request.urlopen(urllib.request.Request(f"{base}/json/new?about:blank",
                                                       method="PUT"), timeout=30) as resp:
        target = json.loads(resp.read())
    tools = DevTools(target["webSocketDebuggerUrl"])
    try:
        for domain in ("Runtime", "Log", "Page"):
            tools.call(f"{domain}.enable")
        tools.call("Page.navigate", url=page.resolve().as_uri())
        tools.wait_for("Page.loadEventFired")
        result = tools.call("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)
        facts = json.loads(result["result"]["value"])
        time.sleep(0.3)
        tools.call("Runtime.evaluate", expression="1")  # collect late events
        return facts, tools.errors()
    finally:
        tools.sock.close()
        urllib.request.urlopen(f"{base}/json/close/{target['id']}", timeout=30).close()


def test_report_html_loads_in_chromium(browser, run_dir):
    facts, errors = _load(browser, run_dir / "report.html")
    assert errors == [], errors
    assert len(facts["images"]) == 2, facts
    for image in facts["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
        assert image["src"].startswith("data:image/png;base64")
    assert facts["captions"] == 2
    assert facts["tables"] >= 2  # headline table + provenance


def test_chromium_check_catches_a_broken_page(browser, tmp_path):
    """The check can fail: a missing image and a console error are both reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!doctype html><meta charset='utf-8'><link rel='icon' href='data:,'>"
                    "<img src='plots/missing.png'><script>console.error('boom')</script>")
    facts, errors = _load(browser, page)
    assert facts["images"][0]["width"] == 0
    assert any("boom" in e for e in errors), errors
    assert any("missing.png" in e for e in errors), errors
