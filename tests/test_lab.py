"""`make lab` runs `minicomp lab`: start that server and talk to its HTTP API."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_lab_serves_the_course(tmp_path):
    port, token = _free_port(), "minicomp-test-token"
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "minicomp", "lab", "--no-browser", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        status = None
        for _ in range(120):
            if proc.poll() is not None:
                break
            try:
                status = _get(f"{base}/api/status?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        assert status is not None, f"JupyterLab did not start:\n{proc.stdout.read() if proc.poll() is not None else ''}"
        assert "started" in status
        listing = _get(f"{base}/api/contents/lessons?token={token}")
        names = {item["name"] for item in listing["content"]}
        assert "00_bits_and_bytes.ipynb" in names
        lab_page = urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10).read().decode()
        assert "JupyterLab" in lab_page or "jupyter" in lab_page.lower()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
