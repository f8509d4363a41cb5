"""The RTMP server: trio owns the sockets, timeouts and tasks around the sans-IO protocol core;
recordings are written in worker threads, every stream's received media together once per tick
(100 ms; writes.py), so a connection is read no faster than its data reaches the disk and the
memory per connection is bounded by what waits for a tick (256 KiB), one receive and the
core's messages in progress.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from ..listeners import accept_forever
from . import console
from .access import Publish, Refused, parse_publish
from .config import RtmpConfig
from .errors import RtmpProtocolError
from .events import AudioData, Connected, ConnectionClosed, Metadata, PublishRequested, Unpublished, VideoData
from .protocol import ServerConnection
from .recording import Recording
from .recording_recovery import unfinished_recordings
from .streams import RtmpSession
from .ticks import Ticks
from .writes import MediaWrites

RECEIVE_BYTES = 64 << 10
HOUSEKEEPING_S = 0.5
# The status code encoders show for a publish that cannot go ahead (nginx-rtmp sends the same).
BAD_NAME = "NetStream.Publish.BadName"


class RtmpService:
    def __init__(self, config: RtmpConfig, data_dir: Path):
        self.config = config
        self.data_dir = Path(data_dir)
        self.sessions: dict[tuple[str, str], RtmpSession] = {}
        self.finished: list[RtmpSession] = []  # sessions a later publish replaced
        self.connections: set[_Connection] = set()
        self.no_connections = trio.Event()  # set while no connection is open
        self.no_connections.set()
        self.shutting_down = False
        self.writes = MediaWrites(config.coalesce_s)
        self.read_ticks = Ticks(config.read_pause_s)

    def all_sessions(self) -> list[RtmpSession]:
        return [*self.finished, *self.sessions.values()]

    # -- start and stop ---------------------------------------------------------------------

    async def recover_all(self) -> None:
        """Unfinished recordings (a kill -9) are repaired and wait for a re-publish like any
        stream whose publisher left."""
        for folder in await trio.to_thread.run_sync(unfinished_recordings, self.data_dir):
            try:  # reopen() repairs what a crash left first
                recording = await trio.to_thread.run_sync(lambda f=folder: Recording.reopen(f, sync=self.config.sync))
            except Exception as exc:  # one damaged folder must not keep the server from starting
                console.recovery_failed(folder, exc)
                continue
            app, key = folder.parent.parent.name, folder.parent.name
            session = RtmpSession(app, key, recovered=True)
            session.recording = recording
            session.stats = await trio.to_thread.run_sync(recording.stats)
            session.set_state("stopping")
            self.sessions[session.key] = session
            console.recovered(folder)

    async def shutdown(self) -> None:
        """End every publish once what was received (even what waits unread in the sockets)
        is written, then finish every session."""
        self.shutting_down = True
        for connection in list(self.connections):
            connection.stop()
        try:
            await self.no_connections.wait()
        finally:
            self.writes.close()
        for session in list(self.sessions.values()):
            await self.finish(session)
        console.summary(self.all_sessions())

    async def serve(self, endpoints, connections: trio.Nursery, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept publishers on each (listener, wrap) into `connections`, a nursery that outlives
        this task: when serving stops, connections go on until shutdown() stops them in good order."""
        connections.start_soon(self.writes.run)  # ends once shutdown() has closed it
        connections.start_soon(self.read_ticks.run)
        async with trio.open_nursery() as nursery:
            for listener, wrap in endpoints:
                nursery.start_soon(accept_forever, listener, connections, self.handle_connection, wrap)
            nursery.start_soon(self.housekeeping, nursery)
            task_status.started()

    # -- one connection ---------------------------------------------------------------------

    async def handle_connection(self, stream: trio.SocketStream, remote: str) -> None:
        connection = _Connection(self, stream, remote)
        # Cancelling this task would drop what the core has parsed but not yet written: it is
        # shielded, and stops through connection.stop() (shutdown) or its own timeouts.
        with trio.CancelScope(shield=True):
            self.connections.add(connection)
            if self.no_connections.is_set():
                self.no_connections = trio.Event()
            try:
                await connection.run()
            except Exception as exc:  # one connection's failure must never stop the server
                console.connection_failed(remote, f"internal error: {type(exc).__name__}: {exc}")
            finally:
                try:
                    await connection.close()
                finally:
                    self.connections.discard(connection)
                    if not self.connections:
                        self.no_connections.set()

    async def start_publish(self, publish: Publish, connection: _Connection) -> RtmpSession:
        """The session this publish records into; Refused if the key is being published."""
        session = self.sessions.get((publish.app, publish.stream_key))
        if session is not None and session.publisher is not None:
            raise Refused(f"already streaming: {publish.app}/{publish.stream_key} is being published "
                          f"from {session.remote}")
        continued = session is not None and session.open and session.recording is not None
        if not continued:
            if session is not None and session.recording is not None:
                self.finished.append(session)
            session = RtmpSession(publish.app, publish.stream_key)
            self.sessions[session.key] = session
        session.publisher = connection  # claimed before any await: a second publisher is refused
        session.remote = connection.remote
        session.error = None
        session.set_state("initializing")
        try:
            async with session.lock:
                if session.recording is None:
                    session.recording = await trio.to_thread.run_sync(
                        lambda: Recording.create(self.data_dir, publish.app, publish.stream_key, sync=self.config.sync))
                await trio.to_thread.run_sync(lambda: session.recording.begin_publish(
                    client=connection.remote, tc_url=connection.tc_url, publish_name=publish.name))
        except BaseException:
            session.publisher = None
            session.stopped_at = time.monotonic()
            session.set_state("error" if session.recording is not None else "stopped")
            raise
        session.publishes += 1
        console.publishing(session, continued)
        return session

    async def end_publish(self, session: RtmpSession, reason: str, *, error: bool = False) -> None:
        try:
            await session.record(lambda recording: recording.end_publish(reason=reason))
        except Exception as exc:
            console.failed(session, "ending the publish", exc)
            error, reason = True, f"{reason}; then {type(exc).__name__}: {exc}"
        session.publisher = None
        session.stopped_at = time.monotonic()
        if error:
            session.error = reason
        session.set_state("error" if error else "stopping")
        if not self.shutting_down:
            console.ended(session, reason, self.config.grace_s)

    async def finish(self, session: RtmpSession) -> None:
        if not session.open or session.recording is None:
            return
        session.finishing = True
        await self._finish(session)

    async def _finish(self, session: RtmpSession) -> None:
        """Index tables and MP4 (a remux of a long stream takes a while): shielded, so that a
        shutdown waits for the MP4 rather than leave it half written."""
        with trio.CancelScope(shield=True):
            await self._finish_now(session)

    async def _finish_now(self, session: RtmpSession) -> None:
        try:
            await session.record(Recording.finish)
        except Exception as exc:  # e.g. a full disk: the FLV stays, `recorder recover` can finish it
            console.failed(session, "finishing", exc)
            session.error = f"finishing failed: {type(exc).__name__}: {exc}"
            session.set_state("error")
            return
        if session.state != "error":
            session.set_state("stopped")
        console.finished(session)

    # -- once a second ----------------------------------------------------------------------

    async def housekeeping(self, nursery: trio.Nursery) -> None:
        """Flushes of the streams being published, and the finish of those nobody re-published
        (in tasks of their own, so that a long remux delays no other stream's flush)."""
        last_console = time.monotonic()
        while True:
            await trio.sleep(HOUSEKEEPING_S)
            now = time.monotonic()
            for session in list(self.sessions.values()):
                if session.publisher is None and session.open and session.recording is not None \
                        and now - session.stopped_at >= self.config.grace_s:
                    session.finishing = True
                    nursery.start_soon(self._finish, session)
                elif session.publisher is not None and session.recording is not None \
                        and now - session.last_flush >= self.config.flush_interval_s:
                    await self._flush(session, now)
            if now - last_console >= self.config.console_interval_s:
                last_console = now
                for session in self.sessions.values():
                    if session.state == "active":
                        console.periodic(session)

    async def _flush(self, session: RtmpSession, now: float) -> None:
        session.last_flush = now
        try:
            await session.record(Recording.flush)
        except Exception as exc:  # the connection's next write reports a storage failure itself
            console.failed(session, "flushing", exc)


class _Connection:
    """One client: the protocol core, the sessions it publishes, and its socket."""

    def __init__(self, service: RtmpService, stream: trio.SocketStream, remote: str):
        self.service = service
        self.stream = stream
        self.remote = remote
        self.core = ServerConnection()
        self.app: str | None = None
        self.tc_url: str | None = None
        self.publishing: dict[int, RtmpSession] = {}
        self.ended_reason = "disconnected"
        self.failed = False
        self.write_failure: str | None = None  # a write of this connection's media failed
        self.stopping = False
        self.waiting: trio.CancelScope | None = None  # around waits for data: stop() cancels it
        self.sending: trio.CancelScope | None = None  # around sends: stop() shortens their deadline

    def stop(self) -> None:
        """The server is shutting down: take in what the socket holds, write it, end."""
        self.stopping = True
        if self.waiting is not None:
            self.waiting.cancel()
        if self.sending is not None:  # a send to a client that reads nothing: a second more at most
            self.sending.deadline = min(self.sending.deadline, trio.current_time() + 1.0)

    async def _receive(self, deadline: float) -> bytes | None:
        """Data, b"" at the end, or None at the deadline or when stopped."""
        with trio.CancelScope(deadline=deadline) as self.waiting:
            if self.stopping:
                self.waiting.cancel()
            try:
                return await self.stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
        return None

    async def run(self) -> None:
        config = self.service.config
        timeout = config.handshake_timeout_s
        idle_at = trio.current_time() + timeout
        while True:
            if self.stopping:
                await self._drain()
                return
            data = await self._receive(idle_at)
            if self.write_failure is not None:
                await self._end_for_write_failure()
                return
            if data is None and self.stopping:
                continue
            if data is None:
                self.ended_reason = f"nothing received for {timeout:g} s"
                console.connection_failed(self.remote, self.ended_reason)
                return
            timeout = config.idle_timeout_s
            idle_at = trio.current_time() + timeout
            if not await self._take(data) or not data:
                return
            if self.publishing and len(data) < RECEIVE_BYTES:
                # A publisher sends some 70 small messages a second; waking for each costs more
                # than handling it. Pausing once the socket is drained lets the next ones gather
                # in its buffer (TCP flow control bounds them) at the price of that much latency.
                with trio.CancelScope() as self.waiting:
                    if not self.stopping:
                        await self.service.read_ticks.wait()

    async def _take(self, data: bytes) -> bool:
        """Feed received bytes to the core and act on its events; False when the connection must close."""
        try:
            events, error = self.core.receive_data(data), None
        except RtmpProtocolError as exc:
            events, error = exc.events, exc
        keep_going = await self.handle(events)
        sent = await self.send()
        if error is not None:
            self.fail(f"protocol error: {error.description}")
            return False
        return keep_going and sent

    async def _drain(self) -> None:
        """Shutting down: what the publisher sent before now is in the socket; take it in."""
        self.ended_reason = "the server shut down"
        with trio.move_on_after(self.service.config.drain_s):
            while True:
                with trio.move_on_after(0.05):
                    try:
                        data = await self.stream.receive_some(RECEIVE_BYTES)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        data = b""
                    if not await self._take(data) or not data:
                        return
                    continue
                return  # nothing more waiting

    def fail(self, reason: str) -> None:
        self.ended_reason, self.failed = reason, True
        console.connection_failed(self.remote, reason)

    def failed_write(self, message: str) -> None:
        """From MediaWrites: writing this connection's media failed; the connection ends."""
        if self.write_failure is None:
            self.write_failure = message
        if self.waiting is not None:
            self.waiting.cancel()

    async def _end_for_write_failure(self) -> None:
        self.core.send_error(self.write_failure)
        self.fail(self.write_failure)
        await self.send()

    async def send(self) -> bool:
        """Send what the core queued; False if the client reads nothing for the idle timeout (a
        client that never reads would otherwise hold its connection and stream key forever)."""
        data = self.core.data_to_send()
        if not data:
            return True
        timeout = self.service.config.idle_timeout_s
        with trio.move_on_after(timeout) as self.sending:
            if self.stopping:
                self.sending.deadline = min(self.sending.deadline, trio.current_time() + 1.0)
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the reading side sees the end too
        if self.sending.cancelled_caught:
            self.fail("the server shut down while the client read nothing" if self.stopping
                      else f"the client read nothing for {timeout:g} s")
            return False
        return True

    async def handle(self, events) -> bool:
        """Act on a batch of events; False when the connection must close."""
        media: dict[int, list] = {}
        for event in events:
            if isinstance(event, (VideoData, AudioData, Metadata)):
                if event.stream_id in self.publishing:
                    media.setdefault(event.stream_id, []).append(event)
                continue
            if media:  # in order, before what comes next
                self._add_media(media)
                media = {}
            if not await self._settle():
                return False
            if isinstance(event, Connected):
                self.app, self.tc_url = event.app, event.tc_url
            elif isinstance(event, PublishRequested):
                if not await self.publish(event):
                    return False
            elif isinstance(event, Unpublished):
                session = self.publishing.pop(event.stream_id, None)
                if session is not None:
                    await self.service.end_publish(session, "unpublished")
            elif isinstance(event, ConnectionClosed):
                break
        self._add_media(media)
        writes, limit = self.service.writes, self.service.config.coalesce_bytes
        for session in self.publishing.values():
            if writes.waiting_bytes(session) >= limit:  # read no more until the disk took them
                await writes.settle(session)
        return self.write_failure is None

    def _add_media(self, media: dict[int, list]) -> None:
        if self.write_failure is not None:
            return  # the connection is ending: nothing more is written
        for stream_id, events in media.items():
            size = sum(len(e.raw) if isinstance(e, Metadata) else len(e.payload) for e in events)
            self.service.writes.add(self.publishing[stream_id], self, events, size)

    async def _settle(self) -> bool:
        """Every event added so far is written; False if a write failed."""
        for session in list(self.publishing.values()):
            await self.service.writes.settle(session)
        return self.write_failure is None

    async def publish(self, event: PublishRequested) -> bool:
        try:
            if self.service.shutting_down:
                raise Refused("the server is shutting down")
            if event.stream_id in self.publishing:
                raise Refused("this stream is already publishing")
            publish = parse_publish(self.app or "", event.name)
            self.service.config.policy.check(publish)
            session = await self.service.start_publish(publish, self)
        except Refused as exc:
            self.core.reject_publish(event.stream_id, BAD_NAME, str(exc))
            console.refused(self.remote, str(exc))
            self.ended_reason = f"refused: {exc}"
            return False
        except OSError as exc:
            message = f"cannot record: {exc.strerror or exc}"
            self.core.reject_publish(event.stream_id, BAD_NAME, message)
            self.fail(message)
            return False
        self.publishing[event.stream_id] = session
        self.core.accept_publish(event.stream_id)
        return True

    async def close(self) -> None:
        if not await self._settle() and not self.failed:
            await self._end_for_write_failure()
        for session in self.publishing.values():
            await self.service.end_publish(session, self.ended_reason, error=self.failed)
        self.publishing.clear()
        try:
            await self.stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # a TLS close to a peer already gone
