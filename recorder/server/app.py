"""The recorder server: accepts devices' connections, routes requests, keeps the sessions."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import ssl
import time
from collections.abc import Sequence
from urllib.parse import parse_qs

import h11
import trio

from ..listeners import accept_forever
from ..storage.sessionlock import SessionBusy
from ..tokens import TokenChecker
from . import console
from .balance import LeastConnections
from .config import ServerConfig
from .feed import DRAIN_S, FEED_PATH, FeedEndpoint, FeedHub
from .feedrelay import RELAY_DRAIN_S, FeedRelay
from .heap import HeapTrimmer
from .http import ClientTooSlow, HttpConnection
from .ingest import BodyIngest, header_problem
from .live import LiveSession
from .loopload import LoadWatch
from .merge import merge_metrics, merge_status
from .overload import Overload, Ticket
from .peers import RELEASE_PATH, Peers
from .status import StatusSource, metrics, status
from .tlsreads import server_tls_stream

UNOPENED_KEPT = 4096
ENOSPC_MESSAGE = "the recorder's disk is full; nothing more can be stored until space is freed"
# A worker waiting for a session that another worker holds asks for it again this often.
RELEASE_ASK_AGAIN_S = 1.0
SESSION_BUSY_MESSAGE = ("the session is being written by another process that did not let it go: another "
                        "recorder on this data folder?")
# What this server answers besides devices' streams (which are POSTed to any path).
READ_PATHS = ("/status", "/metrics", "/healthz")
# With a token file, these need a read token (what is recorded, and from whom, is for the
# operator's eyes); /healthz stays open for liveness probes and says nothing but "ok".
PROTECTED_READS = ("/status", "/metrics", FEED_PATH)
# Request headers that are not stored with a session's headers.
SECRET_HEADERS = (b"authorization", b"proxy-authorization", b"cookie")
# Every TLS connection begins with a handshake record, whose first byte is this content type;
# anything else on the HTTPS port is most likely plain HTTP, which gets a plain answer.
TLS_HANDSHAKE_RECORD = 0x16
PLAIN_HTTP_TO_HTTPS = (
    b"400 Bad Request: this is the recorder's HTTPS port, and the request came in plain HTTP.\n"
    b"Use https:// instead of http:// (or start the recorder with --plain-http).\n")


class Recorder:
    def __init__(self, config: ServerConfig, store, status_sources: Sequence[StatusSource] = (),
                 feed: FeedHub | None = None, peers: Peers | None = None, server_started_ns: int | None = None):
        self.config = config
        # When this server run began (with several workers: when the supervisor started).
        self.server_started_ns = time.time_ns() if server_started_ns is None else server_started_ns
        self.store = store
        # The other ingest workers (recorder serve --workers N), or None when this process is
        # the only one.
        self.peers = peers
        # The live feed: what the sessions store, for GET /feed and in-process handlers.
        self.feed = feed if feed is not None else FeedHub()
        self.feed_endpoint = FeedEndpoint(self.feed, drain_s=DRAIN_S if peers is None else RELAY_DRAIN_S)
        self.feed_relay = None if peers is None else FeedRelay(peers)
        # Shown in /status and /metrics beside the sessions.
        # How busy the event loop is; under --raw-images auto, whether RAW frames are compressed.
        self.load = LoadWatch(store.raw_images)
        # Freed C heap memory given back to the system every few seconds (see heap.py).
        self.heap = HeapTrimmer()
        self.status_sources = (*status_sources, StatusSource("feed", self.feed.status, self.feed.metric_families),
                               StatusSource("load", self.load.status, self.load.metric_families),
                               StatusSource("memory", self.heap.status, self.heap.metric_families))
        self.sessions: dict[tuple[str, str], LiveSession] = {}
        # Sessions whose requests were refused in a row because they could not be opened (a full
        # disk): for the console to say so once per doubling. Forgotten once a session opens;
        # emptied past UNOPENED_KEPT so that devices that never return do not make it grow.
        self._unopened: dict[tuple[str, str], int] = {}
        # Sessions that finished and left `sessions` (keep_finished_s, or handed over to another
        # worker), and what they received here. A session counts once in the server's sum over
        # its workers, however often it leaves and comes back: see _came_back.
        self.forgotten = {"sessions": 0, "records": 0, "bytes": 0}
        # Per session: a lock that requests take to attach to it, one at a time (see _attaching),
        # and how many requests hold or wait for it.
        self._attach_locks: dict[tuple[str, str], list] = {}
        # Open connections and bytes in flight against their limits; refusals (see overload.py).
        self.overload = Overload(config)
        # Device and reader tokens (see recorder/tokens.py); None: no token checks.
        self.tokens = None if config.tokens_file is None else TokenChecker(
            config.tokens_file, on_error=lambda message: console.say(message))
        self.shutting_down = False
        self.started = time.time()
        # Every connection runs shielded: it must outlive a cancellation of serve() until
        # shutdown() has answered it and written what it received. Its scope is cancelled by
        # hand once shutdown() is done.
        self.connection_scopes: set[trio.CancelScope] = set()
        # The requests whose bodies are being stored, and an event set whenever there are none.
        self.ingests: set[trio.CancelScope] = set()
        self.no_ingests = trio.Event()
        self.no_ingests.set()

    # -- connections --------------------------------------------------------------------------

    async def serve(self, listeners, connections: trio.Nursery, ssl_context: ssl.SSLContext | None = None, *,
                    worker_listeners=(), balance: LeastConnections | None = None,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept devices on `listeners` (in TLS with `ssl_context` if given) into `connections`,
        a nursery that outlives this task: when serving stops, connections go on until
        shutdown() has answered them. `worker_listeners`: the Unix socket the other workers
        ask this one on (peers.py); `balance`: this worker's turns at the listeners it shares
        with them (balance.py)."""
        handle = self._run_plain_connection if ssl_context is None else functools.partial(
            self._run_tls_connection, ssl_context)
        accept = None
        if balance is not None:
            handle, accept = balance.counted(handle), balance.accept
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(functools.partial(accept_forever, listener, connections, handle, accept=accept))
            for listener in worker_listeners:
                nursery.start_soon(accept_forever, listener, connections, self._run_worker_connection)
            nursery.start_soon(self.housekeeping)
            nursery.start_soon(self.load.run)
            nursery.start_soon(self.heap.run)
            task_status.started()

    async def _run_connection(self, stream: trio.abc.Stream, remote: str, ticket: Ticket) -> None:
        with trio.CancelScope(shield=True) as scope:
            self.connection_scopes.add(scope)
            try:
                await self.handle_connection(stream, remote, ticket)
            finally:
                self.connection_scopes.discard(scope)

    async def _run_worker_connection(self, stream: trio.SocketStream, remote: str) -> None:
        """Another worker asking (peers.py): no limits, no tokens, only this worker's own figures."""
        await self._run_connection(stream, "worker", Ticket("worker"))

    async def _run_plain_connection(self, stream: trio.SocketStream, remote: str) -> None:
        with self.overload.connection(remote) as ticket:
            if ticket.unanswered:
                await trio.aclose_forcefully(stream)
                return
            await self._run_connection(stream, remote, ticket)

    async def _run_tls_connection(self, context: ssl.SSLContext, stream: trio.SocketStream, remote: str) -> None:
        with self.overload.connection(remote) as ticket:
            if ticket.unanswered:
                await trio.aclose_forcefully(stream)
                return
            await self._run_tls(context, stream, remote, ticket)

    async def _run_tls(self, context: ssl.SSLContext, stream: trio.SocketStream, remote: str, ticket: Ticket) -> None:
        # Look at the first byte without taking it: a TLS client's hello goes on to the
        # handshake whole, while plain HTTP is told in plain HTTP to use https (as nginx does),
        # instead of a reset that leaves the user guessing.
        first = b""
        with trio.move_on_after(self.config.header_timeout_s) as waiting:
            try:
                first = await stream.socket.recv(1, socket.MSG_PEEK)
            except OSError:
                pass
        if waiting.cancelled_caught:
            console.tls_refused(remote, f"no TLS handshake within {self.config.header_timeout_s:g} s")
            await trio.aclose_forcefully(stream)
            return
        if first and first[0] != TLS_HANDSHAKE_RECORD:
            await self._answer_plain_http(stream, remote)
            return
        await self._run_connection(server_tls_stream(stream, context), remote, ticket)

    async def _answer_plain_http(self, stream: trio.SocketStream, remote: str) -> None:
        console.tls_refused(remote, "plain HTTP sent to the HTTPS port (answered 400: use https://)")
        head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(PLAIN_HTTP_TO_HTTPS))
        conn = HttpConnection(stream, max_header_bytes=self.config.max_header_bytes,
                              receive_bytes=self.config.receive_bytes, remote=remote)
        conn.linger = True  # the request is still unread: read it away, lest the close reset the answer
        try:
            with trio.move_on_after(self.config.header_timeout_s):
                await stream.send_all(head + PLAIN_HTTP_TO_HTTPS)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def handle_connection(self, stream: trio.abc.Stream, remote: str, ticket: Ticket) -> None:
        conn = HttpConnection(stream, max_header_bytes=self.config.max_header_bytes,
                              receive_bytes=self.config.receive_bytes, remote=remote)
        conn.ticket = ticket
        conn.from_worker = ticket.address == "worker"
        # A connection past a limit is there for one answer: it waits no longer for its request
        # to begin than for the request's head.
        idle_timeout = self.config.header_timeout_s if ticket.over else self.config.idle_timeout_s
        try:
            if isinstance(stream, trio.SSLStream):
                with trio.move_on_after(self.config.header_timeout_s) as handshake:
                    try:
                        await stream.do_handshake()
                    except trio.BrokenResourceError as exc:
                        # Why a device was turned away (no client certificate, an unknown CA,
                        # a client that gives up) is worth a line: it cannot tell us itself.
                        console.tls_refused(remote, _tls_reason(exc))
                        return
                if handshake.cancelled_caught:
                    console.tls_refused(remote, f"no TLS handshake within {self.config.header_timeout_s:g} s")
                    return
            while not self.shutting_down or conn.h11.trailing_data[0]:
                event = await conn.next_request(idle_timeout, self.config.header_timeout_s)
                if isinstance(event, h11.ConnectionClosed):
                    break
                await self.route(conn, event)
                if not conn.reusable():
                    break
                conn.h11.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            message = ("request headers are larger than the recorder accepts "
                       f"({self.config.max_header_bytes} bytes)" if status == 431 else f"bad HTTP request: {exc}")
            console.refused(remote, status, message)
            if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await conn.error(status, message)
                except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                    pass
        except ClientTooSlow:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        except Exception as exc:  # one connection's unexpected failure must not stop the others
            console.connection_error(remote, exc)
        finally:
            await conn.aclose()

    async def route(self, conn: HttpConnection, request: h11.Request) -> None:
        path = request.target.decode("latin-1").split("?", 1)[0]
        method = request.method.decode("latin-1")
        if conn.from_worker:
            await self.route_worker(conn, request, path, method)
            return
        denied = self._denied(path, method, request)
        if denied:
            code, message = denied
            console.refused(conn.remote, code, message)
            challenge = [("www-authenticate", 'Bearer realm="recorder"')] if code == 401 else []
            await conn.error(code, message, head=method == "HEAD", extra_headers=challenge)
            return
        if (conn.h11.they_are_waiting_for_100_continue and method == "POST" and not self.shutting_down
                and not conn.ticket.over):
            await conn.send(h11.InformationalResponse(status_code=100, headers=[]))
        if path == FEED_PATH:
            if method != "GET":
                await conn.error(405, f"{path} answers GET, not {method}", head=method == "HEAD")
                return
            if conn.ticket.over:  # a reader of the feed costs the recorder: refused past a limit
                await self._refuse(conn, conn.ticket.over)
                return
            await self.drain(conn)
            await self.feed_endpoint.serve(conn, request, relay=self.feed_relay)
            return
        if path in READ_PATHS:
            if method not in ("GET", "HEAD"):
                await conn.error(405, f"{path} answers GET, not {method}")
                return
            await self.drain(conn)
            head = method == "HEAD"
            if path == "/status":
                body, kind = json.dumps(await self.all_status(), indent=1).encode() + b"\n", "application/json"
            elif path == "/metrics":
                body, kind = await self.all_metrics(), "text/plain; version=0.0.4; charset=utf-8"
            else:
                body, kind = b'{"status": "ok"}\n', "application/json"
            await conn.respond(200, body, kind, head=head)
            return
        if method in ("GET", "HEAD"):
            await conn.error(404, f"no such page {path}: this recorder answers GET on {', '.join(READ_PATHS)}; "
                                  f"devices POST their streams (to any path)", head=method == "HEAD",
                             paths=list(READ_PATHS))
            return
        if method != "POST":
            await conn.error(405, f"devices stream with POST; {method} is not accepted on {path}")
            return
        await self.ingest(conn, request)

    async def all_status(self) -> dict:
        """/status: this process's, or with workers every worker's as one."""
        if self.peers is None:
            return status(self)
        merged = merge_status([self.worker_status(), *(json.loads(body) for body in await self.peers.gather("/status"))])
        # A worker still starting, being restarted or too busy to answer in time is named, so that
        # its sessions (and worker 0's RTMP section) missing from the rest is not taken for none.
        answering = {w["index"] for w in merged["workers"]}
        merged["workers_not_answering"] = [i for i in range(self.peers.count) if i not in answering]
        return merged

    def worker_status(self) -> dict:
        """This worker's /status, which names it in "workers" (a list the merge joins)."""
        own = status(self)
        for session in own["sessions"]:
            session["worker"] = self.peers.index
        if self.peers.limits is not None:
            own["overload"]["limits"] = dict(self.peers.limits)  # the server's, which the workers share out
        own["workers"] = [{"index": self.peers.index, "pid": os.getpid(), "uptime_s": own["uptime_s"],
                           "connections": self.overload.open + self.overload.past_limits,
                           "sessions": len(self.sessions),
                           "receiving": sum(s.state == "receiving" for s in self.sessions.values()),
                           "event_loop_busy": round(self.load.load.busy, 3)}]
        return own

    async def all_metrics(self) -> bytes:
        own = metrics(self)
        if self.peers is None:
            return own
        return merge_metrics([own, *await self.peers.gather("/metrics")])

    async def route_worker(self, conn: HttpConnection, request: h11.Request, path: str, method: str) -> None:
        """What another worker asks of this one: its own figures and feed, or a session."""
        await self.drain(conn)
        if path == "/status" and method == "GET":
            await conn.respond(200, json.dumps(self.worker_status()).encode(), "application/json")
        elif path == "/metrics" and method == "GET":
            await conn.respond(200, metrics(self), "text/plain; version=0.0.4; charset=utf-8")
        elif path == FEED_PATH and method == "GET":
            await self.feed_endpoint.serve(conn, request, kind="worker")
        elif path == RELEASE_PATH and method == "POST":
            query = parse_qs(request.target.decode("latin-1").partition("?")[2])
            released = await self.release((query["serial"][0], query["session"][0].lower()))
            await conn.respond_json(200, {"released": released})
        else:
            await conn.error(404, f"workers do not ask {method} {path}")

    def _denied(self, path: str, method: str, request: h11.Request) -> tuple[int, str] | None:
        """With a token file: (401 or 403, why) for a request its token does not allow, else None.
        A POST (a device's stream) needs a token allowed to write its device-serial; GET and
        HEAD of /status, /metrics and /feed a read token. Answered before anything of the
        request is read or stored. A token is checked on top of the client certificate when
        --verify-clients is on too: TLS has already refused a device without one."""
        if self.tokens is None:
            return None
        if method == "POST" and path not in READ_PATHS and path != FEED_PATH:
            need = "write"
        elif method in ("GET", "HEAD") and path in PROTECTED_READS:
            need = "read"
        else:
            return None  # /healthz, and what is answered 404 or 405 anyway
        authorization, serials = None, []
        for name, value in request.headers:
            name = name.lower()
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"device-serial":  # every one of them: ingest() takes the last
                serials.append(value.decode("latin-1"))
        token = self.tokens.authenticate(authorization)
        if token is None:
            what = "a device token (Authorization: Bearer <token>)" if need == "write" else \
                "a read token (Authorization: Bearer <token>)"
            return 401, (f"{path} needs {what}; " + ("the token sent is not valid (unknown or revoked)"
                                                     if authorization else "none was sent"))
        if need == "read":
            return None if token.read else (403, f"token {token.id} may not read {path} (it is not a read token)")
        if not token.writes:
            return 403, f"token {token.id} may not send data (it is a read token)"
        for serial in serials:
            if not token.may_write(serial):
                return 403, f"token {token.id} may not write device serial {serial}"
        return None  # a missing device-serial is answered 400 by ingest()

    async def drain(self, conn: HttpConnection) -> None:
        """Read (and drop) the rest of a request that carries nothing for us."""
        while not isinstance(await conn.next_event(self.config.idle_timeout_s), h11.EndOfMessage):
            pass

    # -- ingest -------------------------------------------------------------------------------

    async def ingest(self, conn: HttpConnection, request: h11.Request) -> None:
        # Credentials never reach the disk, /status or the feed: the stored headers would
        # otherwise hand a device's token to whoever reads the session (or replays it).
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers
                   if k.lower() not in SECRET_HEADERS}
        if self.shutting_down:
            await conn.error(503, "the recorder is shutting down; reconnect to continue the session")
            return
        problem = header_problem(headers)
        if problem:
            console.refused(conn.remote, 400, problem)
            await conn.error(400, problem)
            return
        refusal = self.overload.admit_device(conn.ticket, takeover=self._takes_over(headers, conn))
        if refusal:
            await self._refuse(conn, refusal)
            return
        scope = trio.CancelScope()
        key = (headers["device-serial"], headers["session-id"].lower())
        async with self._attaching(key):
            try:
                session = await self.attach(headers, conn)
            except OSError as exc:
                await self._storage_error(conn, exc, key)
                return
            except SessionBusy:
                console.refused(conn.remote, 503, SESSION_BUSY_MESSAGE)
                await conn.error(503, SESSION_BUSY_MESSAGE, extra_headers=[("retry-after", "5")])
                return
            self._unopened.pop(key, None)
            # Before the next request for this session may attach: it sees this one receiving,
            # takes the session over by cancelling `scope`, and waits for `released`.
            session.connection_scope = scope
            released = session.released = trio.Event()
        body = BodyIngest(session, coalesce_bytes=self.config.coalesce_bytes,
                          flush_interval_s=self.config.flush_interval_s, on_held=self.overload.hold)
        self._ingest_started(scope)
        try:
            with scope:
                try:
                    await self._receive_body(conn, session, body)
                    return
                except ClientTooSlow as exc:
                    await self._end_request(session, body)
                    self.detach(session, f"idle ({exc})")
                    return
                except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
                    # A device that vanishes mid-body shows up as an h11 protocol error (the body
                    # ended early): what it sent is kept all the same.
                    await self._end_request(session, body)
                    self.detach(session, "the device closed the connection mid-request")
                    return
                except OSError as exc:
                    self.detach(session, f"storage error: {exc}")
                    await self._storage_error(conn, exc)
                    return
            # Cancelled: a reconnect took the session over, or the server is stopping. What this
            # connection received is written before the session changes hands.
            with trio.CancelScope(shield=True):
                try:
                    await self._end_request(session, body)
                except OSError as exc:
                    await self._storage_error(conn, exc)
                    return
                if self.shutting_down:
                    try:
                        await conn.error(503, "the recorder is shutting down; reconnect to continue the session")
                    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                        pass
        finally:
            body.release()
            released.set()
            self._ingest_ended(scope)

    def _takes_over(self, headers: dict[str, str], conn: HttpConnection) -> bool:
        """The request continues a session that another connection, still open, is receiving
        (a device reconnecting before the server noticed its old connection die)."""
        session = self.sessions.get((headers["device-serial"], headers["session-id"].lower()))
        return (session is not None and session.state == "receiving" and session.connection_scope is not None
                and session.connection is not conn)

    async def _refuse(self, conn: HttpConnection, reason: str) -> None:
        """503 for overload: which limit, when to retry; the console hears of it (rate-limited)."""
        self.overload.refuse(conn.ticket, reason)
        retry = self.overload.retry_after_s
        await conn.error(503, self.overload.message(reason, conn.ticket.address),
                         extra_headers=[("retry-after", str(retry))], limit=reason, retry_after_s=retry)

    def _ingest_started(self, scope: trio.CancelScope) -> None:
        if self.shutting_down:
            scope.cancel()  # it began while shutdown() waited for the others: it ends with them
        if not self.ingests:
            self.no_ingests = trio.Event()
        self.ingests.add(scope)

    def _ingest_ended(self, scope: trio.CancelScope) -> None:
        self.ingests.discard(scope)
        if not self.ingests:
            self.no_ingests.set()

    async def _receive_body(self, conn: HttpConnection, session: LiveSession, body: BodyIngest) -> None:
        """The body, its flushes running beside the receiving (ingest.py)."""
        failure = None
        async with trio.open_nursery() as flushes:
            body.flushes = flushes
            try:
                await self._receive_events(conn, session, body)
            except Exception as exc:  # raised as it is, once the flush under way is done
                failure = exc
            finally:
                body.flushes = None
        if failure is not None:
            raise failure

    async def _receive_events(self, conn: HttpConnection, session: LiveSession, body: BodyIngest) -> None:
        interval, idle_timeout = self.config.flush_interval_s, self.config.idle_timeout_s
        while True:
            event = conn.buffered_event()
            if event is h11.NEED_DATA:
                # Wait for more, but write what has arrived once it has waited `interval`: data
                # reaches the disk in time even when the device pauses.
                flush_in = body.pending_since + interval - time.monotonic() if body.waiting else idle_timeout
                if await conn.receive(max(0.0, min(flush_in, idle_timeout))):
                    continue
                if body.waiting and flush_in <= idle_timeout:
                    await body.write()
                    continue
                raise ClientTooSlow(f"nothing received for {idle_timeout:g} s")
            if isinstance(event, h11.Data):
                await body.add(event.data, event.chunk_start, event.chunk_end)
                if body.due():
                    await body.write()
            elif isinstance(event, h11.EndOfMessage):
                await self._end_request(session, body)
                session.set_state("waiting")
                await conn.respond_json(200, {
                    "status": "ok", "session_id": session.session_id, "device": session.serial,
                    "bytes": body.bytes, "records": body.counters.records,
                    "highest_sequence": session.writer.highest_sequence,
                    "gaps": body.counters.gaps, "resends": body.counters.resends,
                    "corrupt_bytes": body.counters.corrupt_bytes, "malformed": body.counters.malformed,
                    **({"undecoded": True, "warning": "the body is not SRF1 version 1: it is stored verbatim "
                        "and not decoded"} if body.raw else {}),
                })
                self._waiting_since(session)
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("connection closed")

    async def _end_request(self, session: LiveSession, body: BodyIngest) -> None:
        await body.write(final=True)
        counters = body.counters
        async with session.lock:
            await trio.to_thread.run_sync(session.writer.end_request, counters, time.time_ns())
            session.stats = await trio.to_thread.run_sync(session.writer.stats)

    async def _storage_error(self, conn: HttpConnection, exc: OSError, key: tuple[str, str] | None = None) -> None:
        """Answer a request whose data could not be stored; `key`: the (serial, session id) it
        was for, when its session could not even be opened (recovering or creating its folder
        failed), for the console to name it all the same."""
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        status = 507 if full else 500
        message = ENOSPC_MESSAGE if full else f"the recorder could not store the data: {exc.strerror or exc}"
        # The session whose write failed, for the console to name (None: it never opened).
        session = next((s for s in self.sessions.values() if s.connection is conn), None)
        if session is not None:
            console.storage_error(session, status, message)
        elif key is not None:
            if len(self._unopened) >= UNOPENED_KEPT:
                self._unopened.clear()
            self._unopened[key] = count = self._unopened.get(key, 0) + 1
            console.session_not_opened(*key, conn.remote, status, message, count)
        else:
            console.refused(conn.remote, status, message)
        # A full disk may be freed at any moment: the device is told when to try again.
        retry = [("retry-after", str(self.config.retry_after_s))] if full else []
        try:
            await conn.error(status, message, extra_headers=retry,
                             **({"retry_after_s": self.config.retry_after_s} if full else {}))
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
            pass

    # -- sessions -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _attaching(self, key: tuple[str, str]):
        """Requests for one session attach one at a time: two first requests of a new session
        (or of one being reopened) would each open its writer, and a second request could start
        writing beside the first before the first could be taken over."""
        entry = self._attach_locks.setdefault(key, [trio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._attach_locks[key]

    async def attach(self, headers: dict[str, str], conn: HttpConnection) -> LiveSession:
        key = (headers["device-serial"], headers["session-id"].lower())
        session = self.sessions.get(key)
        first = session is None
        if session is None:
            writer = await self.open_writer(key)
            session = LiveSession(*key, writer, resumed=writer.highest_sequence is not None)
            self.sessions[key] = session
            if self._came_back(writer):
                self.forgotten["sessions"] -= 1
        elif session.state in ("finished", "unfinished"):
            # The device came back after the session was finalised (or failed to be, say on a
            # full disk): reopen it, appending; the store recovers a folder left unfinished.
            session.writer = await self.open_writer(key)
            session.resumed = True
        elif session.connection_scope is not None and session.state == "receiving":
            session.connection_scope.cancel()  # a reconnect replaces a connection that went stale
            await session.released.wait()  # ... once that connection has written what it received
        session.remote = conn.remote
        session.requests += 1
        if session.connection is not conn:  # a further request on the same connection is no reconnect
            session.connection = conn
            session.connections += 1
            console.connected(session, first)
        session.set_state("receiving")
        if session.writer.feed is None:  # a new writer (a new session, or one reopened)
            session.writer.feed = self.feed.session_feed(*key)
        async with session.lock:
            await trio.to_thread.run_sync(session.writer.begin_request, headers, conn.remote, time.time_ns())
        return session

    async def open_writer(self, key: tuple[str, str]):
        """The session's writer. A session another worker holds (its device reconnected to this
        one) is asked for, and taken once that worker has let it go (see release())."""
        try:
            return await trio.to_thread.run_sync(self.store.open_writer, *key)
        except SessionBusy:
            if self.peers is None:
                raise
        deadline = trio.current_time() + self.config.header_timeout_s
        while True:
            # Asked again now and then: a worker that was itself just opening the session when
            # first asked had nothing to let go of yet.
            await self.peers.release(*key, timeout_s=self.config.header_timeout_s)
            ask_again = trio.current_time() + RELEASE_ASK_AGAIN_S
            while trio.current_time() < ask_again:
                try:
                    return await trio.to_thread.run_sync(self.store.open_writer, *key)
                except SessionBusy:
                    if trio.current_time() >= deadline:
                        raise
                    await trio.sleep(0.05)

    async def release(self, key: tuple[str, str]) -> bool:
        """Another worker's request: let go of a session its device now sends to that worker.
        A connection still receiving it is ended (what it received is written), the session is
        finalised and leaves this worker; the other worker reopens it and goes on appending."""
        session = self.sessions.get(key)
        if session is not None and not self._holds(key) and key not in self._attach_locks:
            self.forget(key, session)  # finished here, it goes on (and is listed) there
        if not self._holds(key):
            # Not waiting for _attaching here: a request of this worker for the session may be
            # waiting for the asking worker's release, which waits for this answer.
            return False
        async with self._attaching(key):
            session = self.sessions.get(key)
            if session is None or not self._holds(key):
                return False
            if session.connection_scope is not None and session.state == "receiving":
                session.connection_scope.cancel()
                await session.released.wait()
            if session.state not in ("finished", "unfinished"):
                await self.finalise(session, handed_over=True)
            del self.sessions[key]
            # What it received here stays in this worker's figures; it is listed where it goes on
            # (and counted there as having come back).
            self.forgotten["sessions"] += 1
            self.forgotten["records"] += session.counters.records
            self.forgotten["bytes"] += session.counters.bytes + session.raw_bytes
            return True

    def _holds(self, key: tuple[str, str]) -> bool:
        """This worker has the session's writer open (and so its folder's lock): an attach of
        such a session never waits for another worker."""
        session = self.sessions.get(key)
        return session is not None and session.state not in ("finished", "unfinished")

    def detach(self, session: LiveSession, reason: str) -> None:
        if session.state == "receiving":
            console.dropped(session, reason)
        session.set_state("waiting")
        self._waiting_since(session)

    def _waiting_since(self, session: LiveSession) -> None:
        session.connection_scope = None
        session.waiting_since = time.monotonic()

    async def finalise(self, session: LiveSession, *, handed_over: bool = False) -> None:
        async with session.lock:
            if session.writer.closed:  # finalised meanwhile (its grace ran out as the server stopped)
                return
            try:
                await trio.to_thread.run_sync(session.writer.close)
            except OSError as exc:  # e.g. a full disk: the live files stay, recovery finishes them
                console.internal_error(session, "finalising", exc)
                session.set_state("unfinished")
                return
            finally:
                session.stats = await trio.to_thread.run_sync(session.writer.stats)
        session.set_state("finished")
        if handed_over:
            console.handed_over(session)
        else:
            console.finished(session)

    async def housekeeping(self) -> None:
        """Once a second: rates, flushes of quiet sessions, finalising sessions nobody resumed
        (side by side, each in a task of its own: one long finalising holds up no other)."""
        last_console = time.monotonic()
        finalising: set[tuple[str, str]] = set()
        async with trio.open_nursery() as finalisations:
            while True:
                await trio.sleep(1.0)
                now = time.monotonic()
                self.overload.report(now)
                for key, session in list(self.sessions.items()):
                    if key in self._attach_locks or key in finalising:
                        continue  # a request is attaching to it (or it is being finalised): not now
                    if session.state == "finished" and time.time() - session.state_since >= self.config.keep_finished_s:
                        self.forget(key, session)
                        continue
                    if session.state in ("finished", "unfinished"):
                        continue
                    if session.state == "waiting" and now - session.waiting_since >= self.config.session_grace_s:
                        finalising.add(key)
                        finalisations.start_soon(self._finalise_quiet, key, session, finalising)
                        continue
                    try:
                        await self._sample(session, now)
                    except Exception as exc:  # a status figure must never stop the recording
                        console.internal_error(session, "status", exc)
                if now - last_console >= self.config.console_interval_s:
                    last_console = now
                    for session in self.sessions.values():
                        if session.state == "receiving":
                            console.periodic(session)

    async def _finalise_quiet(self, key: tuple[str, str], session: LiveSession, finalising: set) -> None:
        """A session whose grace ran out, finalised under its attach lock (a device coming back
        meanwhile waits, then reopens it), and whole even if serving stops meanwhile."""
        try:
            with trio.CancelScope(shield=True):
                async with self._attaching(key):
                    if self.sessions.get(key) is session and session.state == "waiting" and \
                            time.monotonic() - session.waiting_since >= self.config.session_grace_s:
                        await self.finalise(session)
        finally:
            finalising.discard(key)

    def _came_back(self, writer) -> bool:
        """A session opened from disk that had a request in this server run: it left the live
        view of this worker or another one (forgotten, or handed over), where it was counted
        in finished_earlier; it is live again, and is counted once more when it leaves."""
        last = writer.last_wall_time_ns
        return last is not None and last >= self.server_started_ns

    def forget(self, key: tuple[str, str], session: LiveSession) -> None:
        """A session finished long enough ago leaves the live view; what it was is kept in two
        counts, so that nothing grows with the number of sessions a server has seen. A device
        coming back later reopens it from disk (attach)."""
        del self.sessions[key]
        self.forgotten["sessions"] += 1
        self.forgotten["records"] += session.counters.records
        self.forgotten["bytes"] += session.counters.bytes + session.raw_bytes

    async def _sample(self, session: LiveSession, now: float) -> None:
        async with session.lock:
            session.stats = await trio.to_thread.run_sync(session.writer.stats)
        totals = {"records": session.counters.records, "bytes": session.counters.bytes + session.raw_bytes}
        totals.update({f"stream:{name}": info["rows"] for name, info in session.stats.get("streams", {}).items()})
        session.meter.sample(now, totals)

    async def shutdown(self) -> None:
        """Stop taking data, write what was received, finalise every open session."""
        self.shutting_down = True
        for scope in list(self.ingests):
            scope.cancel()
        while self.ingests:
            await self.no_ingests.wait()
        for session in list(self.sessions.values()):
            if session.state not in ("finished", "unfinished"):
                await self.finalise(session)
        await self.feed_endpoint.close()  # readers of the feed take its last batches
        self.overload.report_all()
        under_load = console.under_load(self.store.raw_images)
        if self.peers is None:
            console.summary(list(self.sessions.values()), self.forgotten, under_load)
        else:  # the supervisor prints one summary of every worker's
            self.peers.summary_path().write_text(json.dumps({
                "rows": console.summary_rows(list(self.sessions.values())), "forgotten": self.forgotten,
                "under_load": under_load}))

    def release_connections(self) -> None:
        """After shutdown(): end the connections still open (idle keep-alives, readers of /status)."""
        for scope in list(self.connection_scopes):
            scope.cancel()


def _tls_reason(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return cause.reason or str(cause)
    return str(cause or exc) or type(exc).__name__
