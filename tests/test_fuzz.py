"""Property-based fuzzing: random and mutated frames never crash the connection or the server."""

import os
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from omokage.protocol.connection import Limits, Send, ServerConnection
from omokage.protocol.messages import CLIENT_MESSAGES, ERROR_CODES, SERVER_MESSAGES
from omokage.service.server import EngineBackend
from tests.conftest import RunningServer

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.msgpack"))
SEEDS = [p.read_bytes() for p in VECTORS]
FUZZ_EXAMPLES = int(os.environ.get("OMOKAGE_FUZZ_EXAMPLES", "4000"))

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.binary(max_size=64))
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=5),
                                                        st.dictionaries(st.text(max_size=10), kids, max_size=5)),
                      max_leaves=12)
field_names = st.sampled_from(sorted({f.name for fs in CLIENT_MESSAGES.values() for f in fs} | {"rid", "type"}))
typed_maps = st.builds(lambda t, fields: msgpack.packb({"type": t, **fields}, use_bin_type=True),
                       st.one_of(st.sampled_from(sorted(CLIENT_MESSAGES)), st.text(max_size=12)),
                       st.dictionaries(field_names, values, max_size=5))


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += data[pos:pos + 32]
    return bytes(data)


frames = st.one_of(st.binary(max_size=256), typed_maps, mutated(), st.sampled_from(SEEDS), st.text(max_size=30))
KNOWN_REPLIES = set(SERVER_MESSAGES)  # every server message type, v1.1's `rated` included


@settings(max_examples=FUZZ_EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(frames, min_size=1, max_size=8))
def test_connection_state_machine_never_raises(engine_backend, batch):
    conn = ServerConnection(engine_backend, "fuzz", limits=Limits(max_messages_per_second=1e9, burst=1e9))
    for frame in batch:
        for action in conn.receive(frame, 0.0):
            if isinstance(action, Send):
                msg = action.message
                assert msg["type"] in KNOWN_REPLIES
                if msg["type"] == "error":
                    assert msg["code"] in ERROR_CODES and msg["code"] != "internal", msg
                msgpack.unpackb(action.frame)  # every reply encodes


@pytest.fixture(scope="module")
def engine_backend(engine):
    return EngineBackend(engine)


@pytest.fixture(scope="module")
def fuzz_server(engine):
    srv = RunningServer(engine, limits=Limits(max_messages_per_second=1e6, burst=1e6))
    yield srv
    srv.stop()


class Counter:
    sent = 0
    answered = 0


@pytest.fixture(scope="module")
def fuzz_socket(fuzz_server):
    with connect(fuzz_server.url, compression=None, max_size=None) as ws:
        yield ws


@settings(max_examples=FUZZ_EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames)
def test_server_answers_every_fuzzed_frame(fuzz_socket, frame):
    """After each fuzzed frame a ping with a fresh rid must come back: the server read the frame, answered
    (or ignored it with an error) and is still serving this connection."""
    Counter.sent += 1
    fuzz_socket.send(frame)
    marker = 10**9 + Counter.sent
    fuzz_socket.send(msgpack.packb({"type": "ping", "rid": marker, "t": 0}))
    while True:
        reply = msgpack.unpackb(fuzz_socket.recv(timeout=10), raw=False)
        assert reply["type"] in KNOWN_REPLIES
        if reply.get("code") == "internal":
            raise AssertionError(f"server reported an internal error for {frame!r}")
        if reply.get("rid") == marker and reply["type"] in ("pong", "error"):
            # error only if hello was never accepted (ping before hello is wrong_state)
            Counter.answered += 1
            break


def test_a_valid_session_completes_after_the_fuzzing(fuzz_server, fuzz_socket):
    import asyncio
    from omokage.client import OmokageClient

    assert Counter.sent >= FUZZ_EXAMPLES // 2 and Counter.answered == Counter.sent
    print(f"\nfuzz: sent {Counter.sent} frames over a real socket; the server answered every one")

    async def session():
        async with await OmokageClient.connect(fuzz_server.url) as c:
            grid = await c.start("pca", seed=1)
            grid = await c.choose(grid.ids[2])
            await c.fetch_textures([i.texture for i in grid.items])
            return await c.decide(grid.ids[1])
    assert asyncio.run(session())["type"] == "decided"
    # and the fuzzed connection itself is still open
    fuzz_socket.send(msgpack.packb({"type": "ping", "rid": 1, "t": 0}))
    assert msgpack.unpackb(fuzz_socket.recv(timeout=10))["rid"] == 1
