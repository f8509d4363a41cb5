"""`make run ARGS="..."` hands ARGS to `recorder serve`, and certs init uses the --certs-dir
among them. The install step is left out (-o install) and BIN points at this interpreter's
scripts, so the real Makefile recipe runs against the package under test."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from server_support import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make_run(args: list[str], *flags: str, **popen) -> subprocess.Popen:
    command = ["make", "-s", "-o", "install", *flags, "run", f"ARGS={shlex.join(args)}", f"BIN={BIN}"]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def serve_until_healthy(run: subprocess.Popen, url: str, cafile: Path | None = None) -> str:
    """Wait for /healthz to answer (verifying the server with cafile, for https), then stop what
    make started as a signal would; return make's output."""
    try:
        deadline = time.monotonic() + 60
        while True:
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "serve never answered /healthz"
            try:
                context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
                with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:  # no certificates or no listener yet (ssl.SSLError is an OSError too)
                time.sleep(0.2)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
    return out


def test_make_run_passes_args_to_serve():
    dry = make_run(["--port", "8443", "--data-dir", "/mnt/x"], "-n")
    out, _ = dry.communicate(timeout=60)
    assert dry.returncode == 0, out
    assert out.splitlines()[-1] == f"{BIN}/recorder serve --port 8443 --data-dir /mnt/x"


def test_make_run_serves_on_the_given_port_with_certificates_in_the_given_folder(tmp_path):
    port, data_dir, certs_dir = free_port(), tmp_path / "recordings", tmp_path / "my certs"
    run = make_run(["--host", "127.0.0.1", "--port", str(port), "--rtmp-port", "0",
                    "--data-dir", str(data_dir), "--certs-dir", str(certs_dir)], start_new_session=True)
    # Verified with the CA that certs init wrote into the folder named in ARGS.
    out = serve_until_healthy(run, f"https://localhost:{port}", cafile=certs_dir / "root_ca.pem")
    assert f"certificates in {certs_dir}:" in out
    assert sorted(p.name for p in certs_dir.iterdir()) == sorted(
        ["root_ca.pem", "root_ca-key.pem", "subscriber.pem", "subscriber-key.pem", "device.pem", "device-key.pem"])
    assert data_dir.is_dir()


def test_make_run_with_plain_http_needs_no_certificates(tmp_path):
    port, data_dir = free_port(), tmp_path / "data"
    run = make_run(["--plain-http", "--host", "127.0.0.1", "--port", str(port), "--rtmp-port", "0",
                    "--data-dir", str(data_dir), "--certs-dir", str(tmp_path / "certs")], start_new_session=True)
    out = serve_until_healthy(run, f"http://127.0.0.1:{port}")
    assert "certs init" not in out and not (tmp_path / "certs").exists()
    assert data_dir.is_dir()
