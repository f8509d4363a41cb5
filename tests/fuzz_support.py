"""What tests/test_fuzz.py needs besides its targets: the input budget, a byte mutator driven by
a Hypothesis-drawn program, the count of inputs each target ran, and a raw HTTP client that
sends many requests to a real server at once.

Budget: FUZZ_INPUTS (inputs per target) overrides each target's short default; `make fuzz`
sets it to a million. Every Hypothesis example runs a batch of inputs (one structured seed and
many mutations of it), so examples = inputs / batch.
"""

from __future__ import annotations

import math
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from server_support import RECORDER, free_port

# -- budget and counts -----------------------------------------------------------------------------

FUZZ_INPUTS = int(os.environ.get("FUZZ_INPUTS", "0") or 0)
# While a long run goes, a line per target this often.
PROGRESS_S = 60.0


def budget(default_inputs: int, share: float = 1.0) -> int:
    """Inputs a target runs: its share of FUZZ_INPUTS if set, else its short default."""
    return max(default_inputs, round(FUZZ_INPUTS * share)) if FUZZ_INPUTS else default_inputs


def fuzz_settings(default_inputs: int, batch: int, share: float = 1.0, **overrides) -> settings:
    """Hypothesis settings for a target that runs `batch` inputs per example."""
    return settings(max_examples=max(1, math.ceil(budget(default_inputs, share) / batch)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example, HealthCheck.filter_too_much],
                    **overrides)


@dataclass
class Tally:
    """Inputs one target ran, and for how long (the whole Hypothesis run, generation included)."""

    name: str
    inputs: int = 0
    seconds: float = 0.0
    started: float | None = None
    _last_report: float = field(default=0.0)

    def begin(self) -> None:
        self.started = time.perf_counter()
        self._last_report = self.started

    def count(self, n: int = 1) -> None:
        self.inputs += n
        if FUZZ_INPUTS:
            now = time.perf_counter()
            if now - self._last_report >= PROGRESS_S:
                self._last_report = now
                print(f"  {self.name}: {self.inputs} inputs, {now - self.started:.0f} s", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.started is not None:
            self.seconds += time.perf_counter() - self.started
            self.started = None

    def line(self) -> str:
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return f"{self.name:<28} {self.inputs:>9} inputs {self.seconds:>8.1f} s {rate:>9.0f} inputs/s"


# -- the mutator -----------------------------------------------------------------------------------

# Bytes and integers that tend to sit on a parser's boundaries.
INTERESTING_8 = (0x00, 0x01, 0x02, 0x03, 0x09, 0x0A, 0x0D, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFE, 0xFF)
INTERESTING_INTS = (0, 1, 2, 3, 4, 7, 8, 11, 16, 31, 32, 64, 127, 128, 255, 256, 1023, 4096, 32767, 32768, 65535,
                    65536, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1)
_WIDTHS = (1, 2, 3, 4, 8)


class _Program:
    """Reads a mutation program byte by byte; past its end it reads zeros."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        if self.pos < len(self.data):
            self.pos += 1
            return self.data[self.pos - 1]
        return 0

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out.ljust(n, b"\x00")


def mutate(data: bytes, program: bytes, tokens: tuple[bytes, ...] = ()) -> bytes:
    """`data` with the edits `program` describes, one after another: flip a bit, set a byte,
    write an interesting integer, insert bytes or a token, delete, duplicate or repeat a range,
    truncate. An empty program leaves the data as it is. Positions are spread over the whole
    data whatever its size, so short programs reach anywhere (and shrink towards the start)."""
    out = bytearray(data)
    p = _Program(program)
    while p.more():
        op = p.byte() % 13
        n = len(out)
        pos = p.u16() * (n + 1) >> 16  # 0..n
        arg = p.byte()
        if op <= 4 and pos >= n:
            if not n:
                continue
            pos = n - 1
        if op == 0:
            out[pos] ^= 1 << (arg & 7)
        elif op == 1:
            out[pos] = arg
        elif op == 2:
            out[pos] = INTERESTING_8[arg % len(INTERESTING_8)]
        elif op == 3:
            out[pos] = (out[pos] + (arg & 0x1F) - 16) & 0xFF
        elif op == 4:
            width = _WIDTHS[arg % len(_WIDTHS)]
            value = INTERESTING_INTS[(arg >> 3) % len(INTERESTING_INTS)] if arg < 0xF0 else n
            order = "big" if p.byte() & 1 else "little"
            out[pos:pos + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, order)
        elif op == 5:
            out[pos:pos] = p.take(arg % 16 + 1)
        elif op == 6:
            if tokens:
                out[pos:pos] = tokens[arg % len(tokens)]
        elif op == 7:
            if tokens:
                token = tokens[arg % len(tokens)]
                out[pos:pos + len(token)] = token
        elif op == 8:
            del out[pos:pos + (arg % 32 + 1 if arg < 0xE0 else (arg - 0xDF) * 256)]
        elif op == 9:
            source = p.u16() * (n + 1) >> 16
            out[pos:pos] = out[source:source + arg % 64 + 1]
        elif op == 10:
            out[pos:pos] = bytes(out[pos:pos + arg % 8 + 1]) * (p.byte() % 64 + 2)
        elif op == 11:
            del out[pos:]
        else:  # swap the byte with its neighbour: order-sensitive fields
            if pos + 1 < n:
                out[pos], out[pos + 1] = out[pos + 1], out[pos]
    return bytes(out)


# A program: short edits are the common case; a long one rewrites much of a small input.
PROGRAM = st.one_of(st.binary(min_size=4, max_size=16), st.binary(max_size=64))


def programs(batch: int):
    """`batch` programs; the first is empty, so every seed also runs as it is."""
    return st.lists(PROGRAM, min_size=batch - 1, max_size=batch - 1).map(lambda rest: [b"", *rest])


def cut(data: bytes, how: int) -> list[bytes]:
    """`data` in pieces, as a network delivers it: whole (how % 4 == 0), in pieces of 1, 2, 4 ...
    4096 bytes, or in about three pieces at places `how` picks."""
    kind = how % 4
    if kind == 0 or len(data) < 2:
        return [data]
    if kind == 1:
        size = 1 << how // 4 % 13
        return [data[i:i + size] for i in range(0, len(data), size)]
    a = how * 2654435761 % len(data)
    b = how * 40503 % len(data)
    a, b = sorted((a, b))
    return [piece for piece in (data[:a], data[a:b], data[b:]) if piece]


# -- a real server, and raw requests to it -----------------------------------------------------------


@dataclass
class ServeProcess:
    """`recorder serve` (plain HTTP, or TLS with the certificates in certs_dir) in its own process,
    its output in a file. Used by a whole test module: started and stopped synchronously."""

    data_dir: Path
    log: Path
    certs_dir: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def tls(self) -> bool:
        return self.certs_dir is not None

    _read_to: int = 0

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def new_output(self) -> str:
        """The whole lines written since the last call (a long run's log is too long to read
        again after every batch)."""
        with open(self.log, "rb") as f:
            f.seek(self._read_to)
            data = f.read()
        whole = data[:data.rfind(b"\n") + 1]
        self._read_to += len(whole)
        return whole.decode(errors="replace")

    def start(self, timeout: float = 30.0) -> ServeProcess:
        args = [RECORDER, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--rtmp-port", "0"]
        args += ["--certs-dir", str(self.certs_dir)] if self.tls else ["--plain-http"]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"recorder serve exited with {self.process.returncode}:\n{self.output}"
            if "listening on" in self.output:
                return self
            time.sleep(0.05)
        raise AssertionError(f"recorder serve did not start within {timeout} s:\n{self.output}")

    def stop(self) -> int:
        """SIGINT, as Ctrl+C: the server finalises its sessions and exits."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


STATUS_LINE = re.compile(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ")
FEED_TYPE = b"application/vnd.recorder.feed"


@dataclass
class Exchange:
    request: bytes
    response: bytes = b""
    error: str | None = None  # the server did not close the connection in time

    @property
    def statuses(self) -> list[int]:
        """Status codes of the responses received, in order (1xx included)."""
        return [int(code) for code in STATUS_LINE.findall(self.response)]


_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$")


def _complete(response: bytes) -> bool:
    """Whether `response` holds a whole final response with a Content-Length (in TLS, where the
    client cannot end its side, this is where it stops waiting for the server to close)."""
    at = 0
    while (end := response.find(b"\r\n\r\n", at)) >= 0:
        head = response[at:end]
        if not head.startswith(b"HTTP/1.1 1"):  # a 100 Continue comes before the final response
            length = _CONTENT_LENGTH.search(head)
            return length is not None and len(response) - end - 4 >= int(length.group(1))
        at = end + 4
    return False


async def _one(port: int, exchange: Exchange, ssl_context, timeout: float, tls_wait: float) -> None:
    """Send the request, end our side, read until the server closes (a live feed, which never
    ends, is closed once its head has come)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname="localhost")
            await stream.do_handshake()
        try:
            await stream.send_all(exchange.request)
            if ssl_context is None:
                await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server answered and closed before reading it all: its answer is still read
        response = bytearray()
        # TLS has no half-close: a request the server is still waiting on is left after tls_wait.
        with trio.move_on_after(tls_wait if ssl_context is not None else math.inf):
            with trio.fail_after(timeout):
                while True:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        break
                    if not data:
                        break
                    response += data
                    if FEED_TYPE in response or _complete(response):
                        break
        exchange.response = bytes(response)
    except trio.TooSlowError:
        exchange.error = f"the server neither answered nor closed within {timeout} s"
    finally:
        await trio.aclose_forcefully(stream)


def exchange_all(port: int, requests: list[bytes], ssl_context=None, *, timeout: float = 20.0,
                 tls_wait: float = 0.5) -> list[Exchange]:
    """Each request on its own connection, all at once; their exchanges in the same order."""
    exchanges = [Exchange(r) for r in requests]
    if ssl_context is None:
        _exchange_plain(port, exchanges, timeout)
        return exchanges

    async def run():
        async with trio.open_nursery() as nursery:
            for exchange in exchanges:
                nursery.start_soon(_one, port, exchange, ssl_context, timeout, tls_wait)

    trio.run(run)
    return exchanges


def _exchange_plain(port: int, exchanges: list[Exchange], timeout: float) -> None:
    """_one() for plain TCP, with a selector instead of trio: the client's share of the CPU is
    most of a fuzzing run's, and this costs a third of trio's."""
    selector = selectors.DefaultSelector()
    open_ = {}
    for exchange in exchanges:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        state = {"exchange": exchange, "sent": 0, "response": bytearray(), "writing": True}
        selector.register(sock, selectors.EVENT_WRITE, state)
        open_[sock] = state
    deadline = time.monotonic() + timeout
    try:
        while open_:
            left = deadline - time.monotonic()
            if left <= 0:
                for state in open_.values():
                    state["exchange"].error = f"the server neither answered nor closed within {timeout} s"
                break
            for key, _ in selector.select(left):
                sock, state = key.fileobj, key.data
                try:
                    if state["writing"]:
                        request = state["exchange"].request
                        if state["sent"] < len(request):
                            state["sent"] += sock.send(request[state["sent"]:state["sent"] + 65536])
                        if state["sent"] >= len(request):
                            sock.shutdown(socket.SHUT_WR)
                            state["writing"] = False
                            selector.modify(sock, selectors.EVENT_READ, state)
                        continue
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:  # refused, reset: what the server answered before is kept
                    data = b""
                    if state["writing"]:
                        state["writing"] = False
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            pass
                        if data:
                            selector.modify(sock, selectors.EVENT_READ, state)
                if data:
                    state["response"] += data
                    if FEED_TYPE not in state["response"]:
                        continue
                state["exchange"].response = bytes(state["response"])
                selector.unregister(sock)
                sock.close()
                del open_[sock]
    finally:
        for sock in open_:
            selector.unregister(sock)
            sock.close()
        selector.close()


def healthz(port: int, ssl_context=None) -> int | None:
    """The status /healthz answers (None: no answer)."""
    (exchange,) = exchange_all(port, [b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"],
                               ssl_context, tls_wait=10.0)
    statuses = exchange.statuses
    return statuses[-1] if statuses else None
