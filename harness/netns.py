"""A private, loopback-only network namespace for `kpbench calibrate` (spec C.1, C.2).

Everything the calibration loads (iptables-legacy, iptables-nft and nftables rules) and every
packet it sends stays inside a namespace named ``kpbcal-<pid>``: it has only ``lo``, every
Service VIP lives in 127.0.0.0/8 and DNATs to a listener on 127.0.0.1, and the host namespace's
rules are never modified (only read, by the safety check).
``net.ipv4.conf.all.route_localnet=1`` (needed to NAT 127/8 traffic) is set inside the
namespace only, and iptables runs with a private
``XTABLES_LOCKFILE`` so the host's iptables users never wait for our restores. The namespace
is removed on success, on error, on Ctrl-C and on SIGTERM/SIGHUP (the context manager turns
those signals into exceptions so the ``finally`` clause runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import UserError

INSTALL_HINT = "on Debian/Ubuntu: apt-get update && apt-get install -y iptables nftables iproute2"

REQUIRED_TOOLS = (
    "ip",
    "iptables-legacy-restore",
    "iptables-legacy-save",
    "iptables-nft-restore",
    "iptables-nft-save",
    "nft",
)


class CalibrationRefused(UserError):
    """Calibration cannot run here (not Linux, not root, tools missing, no namespace)."""


def preflight(tools: Sequence[str] = REQUIRED_TOOLS) -> dict[str, str]:
    """Check the platform, privileges and tools; return {tool: absolute path}.

    Raises CalibrationRefused with a one-line reason (the CLI exits 2).
    """
    if not sys.platform.startswith("linux"):
        raise CalibrationRefused(f"calibrate: platform: expected Linux, got {sys.platform}")
    if os.geteuid() != 0:
        raise CalibrationRefused(
            f"calibrate: privileges: expected root (network namespaces and netfilter), "
            f"got uid {os.geteuid()}"
        )
    found: dict[str, str] = {}
    missing = []
    for tool in tools:
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if path is None:
            missing.append(tool)
        else:
            found[tool] = path
    if missing:
        raise CalibrationRefused(
            f"calibrate: tools: expected {', '.join(missing)} on PATH, got none ({INSTALL_HINT})"
        )
    return found


def host_ruleset_snapshot() -> dict[str, str]:
    """The host namespace's `iptables-save` (legacy and nft) and `nft list ruleset` (read-only)."""
    snap = {}
    for name, argv in (
        ("iptables-legacy-save", ["iptables-legacy-save"]),
        ("iptables-nft-save", ["iptables-nft-save"]),
        ("nft", ["nft", "list", "ruleset"]),
    ):
        if shutil.which(argv[0]) is None:
            snap[name] = "<missing>"
            continue
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        # Drop the timestamp comments iptables-save prints; they change on every call.
        lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]
        snap[name] = "\n".join(lines)
    return snap


class _Interrupted(BaseException):
    """Raised from SIGTERM/SIGHUP so that cleanup in ``finally`` runs."""


def _raise_interrupted(signum, _frame):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise _Interrupted(f"signal {signum}")


class Namespace:
    """Context manager: create ``kpbcal-<pid>[-tag]``, bring ``lo`` up, remove it on exit."""

    def __init__(self, tag: str = "") -> None:
        self.name = f"kpbcal-{os.getpid()}" + (f"-{tag}" if tag else "")
        self._old_handlers: dict[int, object] = {}
        # iptables' lock (/run/xtables.lock) is host-wide although our tables are private: a
        # private lock file keeps long restores from blocking the host's iptables users.
        self.lockfile = f"/run/{self.name}.xtables.lock"
        self.env = {**os.environ, "XTABLES_LOCKFILE": self.lockfile}

    def __enter__(self) -> Namespace:
        # SIGINT too: a background job inherits SIG_IGN for it, Ctrl-C must still clean up.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                self._old_handlers[sig] = signal.signal(sig, _raise_interrupted)
            except ValueError:  # not in the main thread: rely on try/finally only
                break
        try:
            if Path(f"/var/run/netns/{self.name}").exists():
                self._delete()
            proc = subprocess.run(
                ["ip", "netns", "add", self.name], capture_output=True, text=True, timeout=30
            )
            if proc.returncode != 0:
                raise CalibrationRefused(
                    f"calibrate: namespace: expected `ip netns add {self.name}` to succeed, "
                    f"got {proc.stderr.strip() or proc.returncode}"
                )
            self.run(["ip", "link", "set", "lo", "up"])
            self.run(["sysctl", "-q", "-w", "net.ipv4.conf.all.route_localnet=1"])
            self.run(["sysctl", "-q", "-w", "net.ipv4.conf.lo.route_localnet=1"])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._delete()
        finally:
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
            self._old_handlers.clear()

    def _delete(self) -> None:
        Path(self.lockfile).unlink(missing_ok=True)
        for _ in range(5):
            proc = subprocess.run(
                ["ip", "netns", "del", self.name], capture_output=True, text=True, timeout=30
            )
            if proc.returncode == 0 or not Path(f"/var/run/netns/{self.name}").exists():
                return
            time.sleep(0.2)

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self,
        argv: Sequence[str],
        stdin: str | None = None,
        timeout: float = 600,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the namespace; raise RuntimeError with stderr if it fails."""
        proc = subprocess.run(
            self.argv(argv), input=stdin, capture_output=True, text=True, timeout=timeout,
            env=self.env,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:3])} in {self.name} failed ({proc.returncode}): "
                f"{proc.stderr.strip()[:500]}"
            )
        return proc

    def timed(self, argv: Sequence[str], stdin: str | None = None, timeout: float = 600) -> float:
        """Wall seconds of ``argv`` inside the namespace (includes `ip netns exec` set-up)."""
        t0 = time.perf_counter()
        self.run(argv, stdin=stdin, timeout=timeout)
        return time.perf_counter() - t0
