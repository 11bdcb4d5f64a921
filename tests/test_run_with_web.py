"""`mailbot run --with-web` (the service and the console in one process) and `mailbot run
--metrics-listen` (the console's metrics only, no login), both stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botconfig import local_sections, write_config

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correcto-caballo-bateria"
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def config(tmp_path) -> Path:
    path = write_config(tmp_path, local_sections())
    for folder in ("new", "cur", "tmp"):
        (tmp_path / "inbox" / folder).mkdir(parents=True)
    added = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(path), "users",
                            "add", "ana", "--role", "operator", "--password-stdin"],
                           input=f"{PASSWORD}\n{PASSWORD}\n", capture_output=True, text=True,
                           timeout=120, cwd=ROOT, env=os.environ.copy())
    assert added.returncode == 0, added.stderr
    return path


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:  # /healthz answers 503 before the first pass
        return exc.code, exc.read().decode()


def start(config: Path, tmp_path: Path, *options: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "run.log"
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(config), "run",
                             *options], stdout=subprocess.DEVNULL, stderr=log.open("wb"),
                            cwd=ROOT, env=os.environ.copy())
    return proc, log


def wait_until_up(proc: subprocess.Popen, log: Path, url: str) -> tuple[int, str]:
    """Until `url` answers and the service has installed its SIGTERM handler."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            answer = get(url)
        except OSError:
            answer = None
        if answer and "event=started" in log.read_text(errors="replace"):
            return answer
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{url} did not answer in 60 s:\n{log.read_text(errors='replace')}")


def stop(proc: subprocess.Popen, log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"no exit within 30 s of SIGTERM:\n{log.read_text(errors='replace')}")
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "event=stopped" in text and "Traceback" not in text


def test_run_with_web_serves_the_console_and_stops_on_sigterm(config, tmp_path):
    base = f"http://127.0.0.1:{free_port()}"
    proc, log = start(config, tmp_path, "--with-web", "--listen", base.removeprefix("http://"))
    try:
        status, _ = wait_until_up(proc, log, f"{base}/healthz")
        assert status in (200, 503)
        status, page = get(f"{base}/login")
        assert status == 200 and "<form" in page
        _, text = get(f"{base}/metrics")  # the console's metrics need a login
        assert "mailbot_store_up" not in text
    finally:
        stop(proc, log)


def test_run_metrics_listen_serves_the_metrics_without_login_and_stops_on_sigterm(config,
                                                                                  tmp_path):
    port = free_port()
    proc, log = start(config, tmp_path, "--metrics-listen", f"127.0.0.1:{port}")
    try:
        status, text = wait_until_up(proc, log, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert "mailbot_store_up 1.0" in text and "mailbot_keys_free" in text
    finally:
        stop(proc, log)


@pytest.mark.parametrize("options", [["--once", "--with-web"],
                                     ["--once", "--metrics-listen", "127.0.0.1:9000"],
                                     ["--listen", "127.0.0.1:9000"]])
def test_run_refuses_options_that_do_not_go_together(options, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mailbot", "--config",
                             str(write_config(tmp_path, local_sections())), "run", *options],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "error: run: --" in result.stderr


def test_run_with_web_refuses_a_network_address_without_an_account(tmp_path):
    for folder in ("new", "cur", "tmp"):
        (tmp_path / "inbox" / folder).mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "mailbot", "--config",
                             str(write_config(tmp_path, local_sections())), "run", "--with-web",
                             "--listen", f"0.0.0.0:{free_port()}"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "refusing to serve the console on 0.0.0.0" in result.stderr
