"""Shared fixtures of the server tests: development certificates, and a real `serve` on
127.0.0.1 (a free port, TLS on by default) running in the test's trio nursery."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from hypothesis import settings

from recorder import certs
from recorder.process import serve
from recorder.rtmp.config import RtmpConfig
from recorder.server.config import ServerConfig
from recorder.sim import sender
from recorder.storage import Store

# Hypothesis fails an example that takes over 200 ms by default: a timing assertion, which fails
# on a busy machine and not on the code (an AMF0 example took 237 ms while the rest of the suite
# ran on the other core). The tests time nothing; the benchmarks measure speed.
settings.register_profile("recorder", deadline=None)
settings.load_profile("recorder")


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    """root_ca.pem, subscriber.pem/-key.pem and device.pem/-key.pem, made once per test run."""
    folder = tmp_path_factory.mktemp("certs")
    certs.init(folder)
    return folder


@pytest.fixture(scope="session")
def other_certs_dir(tmp_path_factory) -> Path:
    """A second, unrelated development CA with its own server and device certificates."""
    folder = tmp_path_factory.mktemp("other-certs")
    certs.init(folder)
    return folder


@pytest.fixture
def client_ssl(certs_dir):
    """A device's TLS: verifies the recorder against root_ca.pem, presents no certificate."""
    return sender.client_ssl_context(str(certs_dir / certs.CA))


@dataclass
class RunningServer:
    """One `serve` running in the test's nursery; stop() shuts it down as a signal would."""

    config: ServerConfig
    rtmp: RtmpConfig | None
    store: Store
    port: int
    scope: trio.CancelScope
    done: trio.Event

    @property
    def url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    def session_path(self, serial: str, session_id: str) -> Path:
        return self.data_dir / serial / session_id

    async def stop(self) -> None:
        """Cancel serve() and wait until it has written and finalised every session."""
        self.scope.cancel()
        with trio.fail_after(30):
            await self.done.wait()


@pytest.fixture
def start_server(nursery, tmp_path, certs_dir):
    """start_server(**ServerConfig overrides, rtmp=RtmpConfig or None, raw_images=the Store's)
    -> RunningServer; each call gets its own data dir."""
    counter = itertools.count()

    async def start(**overrides) -> RunningServer:
        data_dir = overrides.pop("data_dir", None) or tmp_path / f"data-{next(counter)}"
        rtmp = overrides.pop("rtmp", None)
        raw_images = overrides.pop("raw_images", "auto")
        settings = dict(host="127.0.0.1", port=0, data_dir=Path(data_dir), certs_dir=certs_dir, tls=True,
                        header_timeout_s=5.0, idle_timeout_s=10.0, session_grace_s=30.0,
                        flush_interval_s=0.5, console_interval_s=1.0)
        settings.update(overrides)
        config = ServerConfig(**settings)
        store = Store(config.data_dir, raw_images=raw_images)
        scope, done = trio.CancelScope(), trio.Event()

        async def run(task_status=trio.TASK_STATUS_IGNORED):
            try:
                with scope:
                    await serve(config, store, rtmp=rtmp, task_status=task_status)
            finally:
                done.set()

        port = await nursery.start(run)
        return RunningServer(config, rtmp, store, port, scope, done)

    return start


@pytest.fixture
async def server(start_server) -> RunningServer:
    """A TLS server with a fresh data dir (devices verify it with root_ca.pem)."""
    return await start_server()
