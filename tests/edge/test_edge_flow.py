"""EdgeStream's flow control and body hand-over, on a stand-in session (no sockets): the receive window grows for a
visitor that keeps up, several DATA frames reach the visitor in one write, a small complete body in one piece."""

from __future__ import annotations

import asyncio

from connector import protocol
from dataplane.streams import GRANT_THRESHOLD, MAX_STREAM_WINDOW, EdgeStream


class Session:
    def __init__(self) -> None:
        self.streams: dict[int, EdgeStream] = {}
        self.frames: list[protocol.Message] = []
        self.loop = asyncio.get_running_loop()

    def queue_frame(self, frame: bytes) -> None:
        self.frames.append(protocol.decode(frame))

    async def send_frame(self, frame: bytes) -> None:
        self.queue_frame(frame)


def stream() -> tuple[Session, EdgeStream]:
    session = Session()
    edge_stream = EdgeStream(session, 1)  # type: ignore[arg-type]
    session.streams[1] = edge_stream
    return session, edge_stream


async def test_the_window_doubles_for_a_visitor_that_keeps_up_and_never_passes_the_cap():
    session, s = stream()
    granted = protocol.INITIAL_WINDOW
    chunk = b"x" * protocol.MAX_DATA_CHUNK
    for _ in range(64):
        s.on_frame(protocol.Data(1, chunk))
        assert await s.read() == chunk
        await s.consumed(len(chunk))
        granted += sum(f.increment for f in session.frames)
        session.frames.clear()
    in_flight = granted - 64 * len(chunk)  # what the connector may send now without waiting
    assert in_flight == MAX_STREAM_WINDOW


async def test_a_visitor_that_does_not_read_gets_no_credit():
    session, s = stream()
    for _ in range(protocol.INITIAL_WINDOW // protocol.MAX_DATA_CHUNK):
        s.on_frame(protocol.Data(1, b"y" * protocol.MAX_DATA_CHUNK))
    assert session.frames == []
    s.on_frame(protocol.Data(1, b"z"))  # one byte beyond the window: reset
    assert s.reset is not None and s.reset.code == protocol.ResetCode.FLOW_CONTROL_ERROR
    assert isinstance(session.frames[-1], protocol.Reset)


async def test_frames_that_arrived_together_are_read_as_one_piece_and_a_complete_body_at_once():
    _, s = stream()
    for part in (b"a", b"b", b"c"):
        s.on_frame(protocol.Data(1, part))
    assert await s.read() == b"abc"
    reader = asyncio.ensure_future(s.read())
    await asyncio.sleep(0)
    s.on_frame(protocol.Data(1, b"d"))
    assert await reader == b"d"
    s.on_frame(protocol.Data(1, b"e"))
    s.on_frame(protocol.Data(1, b"f", end_stream=True))
    assert s.complete and s.take_rest() == b"ef"
    assert GRANT_THRESHOLD == protocol.INITIAL_WINDOW // 2


async def test_requests_of_one_loop_turn_share_a_connection_and_turns_rotate():
    import uuid

    from dataplane.hub import ConnectorSession, Hub

    async def noop(*args):
        return None

    hub = Hub()
    tunnel = uuid.uuid4()
    sessions = [
        ConnectorSession(uuid.uuid4(), uuid.uuid4(), tunnel, uuid.uuid4(), index, "", noop, noop) for index in range(2)
    ]
    for session in sessions:
        session.features = frozenset({protocol.FEATURE_STREAMS})
    hub.sessions[tunnel] = {s.connection_id: s for s in sessions}
    first_turn = {id(hub.pick_session(tunnel)) for _ in range(5)}
    await asyncio.sleep(0)
    second_turn = {id(hub.pick_session(tunnel)) for _ in range(5)}
    assert len(first_turn) == len(second_turn) == 1 and first_turn != second_turn
    await asyncio.sleep(0)
    current = hub.pick_session(tunnel)
    current.draining = True  # a connection that drains is left at once, even within the turn
    assert hub.pick_session(tunnel) is not current
    current.draining = False
    (other,) = [s for s in sessions if s is not current]
    other.closed = True
    await asyncio.sleep(0)
    assert all(hub.pick_session(tunnel) is current for _ in range(3))


async def test_unanswered_requests_are_watched_after_one_to_two_periods_by_one_timer_for_all(monkeypatch):
    """_SlowWatch: no timer per request; a request still unanswered one to two periods after it was sent gets its
    visitor watch, an answered one never does, and the timer stops when nothing is left to watch."""
    from edge import app

    monkeypatch.setattr(app, "WATCH_VISITOR_AFTER", 0.05)
    loop = asyncio.get_running_loop()
    watch = app._SlowWatch(loop)

    class Visitor:
        def __init__(self) -> None:
            self.slow_at: float | None = None

        def slow(self) -> None:
            self.slow_at = loop.time()

    answered, slow = Visitor(), Visitor()
    added = loop.time()
    watch.add(answered)
    watch.add(slow)
    first_timer = watch.timer
    await asyncio.sleep(0.01)
    watch.discard(answered)  # answered within the first period
    await asyncio.sleep(0.2)
    assert answered.slow_at is None
    assert slow.slow_at is not None and 0.05 <= slow.slow_at - added <= 0.15
    assert watch.timer is None and not watch.current and not watch.previous
    assert first_timer is not None  # one timer was armed for both; none is left behind

    late = Visitor()
    watch.add(late)
    await asyncio.sleep(0.07)  # moved to the previous generation, not due yet
    watch.discard(late)  # answered in its second period: discarded from there
    await asyncio.sleep(0.1)
    assert late.slow_at is None and watch.timer is None


def session_with(send_now) -> object:
    import uuid

    from dataplane.hub import ConnectorSession

    sent: list[bytes] = []

    async def send_bytes(data: bytes) -> None:
        sent.append(data)

    async def close(code: int, reason: str) -> None:
        pass

    session = ConnectorSession(
        connection_id=uuid.uuid4(),
        organisation_id=uuid.uuid4(),
        tunnel_id=uuid.uuid4(),
        connector_id=uuid.uuid4(),
        conn_index=0,
        origin_ip="",
        send_bytes=send_bytes,
        close=close,
        send_now=send_now,
    )
    session.batching = True
    session.sent_by_writer = sent  # type: ignore[attr-defined]
    return session


def frames_of(messages: list[bytes]) -> list[bytes]:
    return [bytes(frame) for message in messages for frame in protocol.split_frames(message)]


async def test_a_burst_of_requests_leaves_at_once_in_order_and_the_rest_at_the_end_of_the_turn():
    """EARLY_FLUSH_FRAMES: the connector starts on a burst's first requests while the edge reads the rest."""
    from dataplane.hub import EARLY_FLUSH_FRAMES

    written: list[bytes] = []
    session = session_with(written.append)
    frames = [protocol.encode(protocol.Data(2 * n + 1, b"r%d" % n)) for n in range(EARLY_FLUSH_FRAMES + 3)]
    for frame in frames[: EARLY_FLUSH_FRAMES - 1]:
        session.queue_frame(frame)
    assert written == []  # below the threshold: the end of the turn
    session.queue_frame(frames[EARLY_FLUSH_FRAMES - 1])
    assert len(written) == 1 and frames_of(written) == frames[:EARLY_FLUSH_FRAMES]  # one BATCH, at once
    for frame in frames[EARLY_FLUSH_FRAMES:]:
        session.queue_frame(frame)
    await asyncio.sleep(0.01)  # the writer task sends the rest at the end of the turn
    assert frames_of(written + session.sent_by_writer) == frames
    session.stop_writer()


async def test_no_early_write_overtakes_frames_the_writer_is_sending_nor_happens_without_a_sync_send():
    from dataplane.hub import EARLY_FLUSH_FRAMES

    written: list[bytes] = []
    session = session_with(written.append)
    session._writing = True  # the writer is between the frames it took: nothing may go out before them
    frames = [protocol.encode(protocol.Data(2 * n + 1, b"x")) for n in range(EARLY_FLUSH_FRAMES)]
    for frame in frames:
        session.queue_frame(frame)
    assert written == []
    session._writing = False
    await asyncio.sleep(0.01)
    assert frames_of(session.sent_by_writer) == frames
    session.stop_writer()

    daphne_like = session_with(None)  # no synchronous send (daphne): the writer task only
    for frame in frames:
        daphne_like.queue_frame(frame)
    assert daphne_like.sent_by_writer == []
    await asyncio.sleep(0.01)
    assert frames_of(daphne_like.sent_by_writer) == frames
    daphne_like.stop_writer()
