"""Protocol v1: golden vectors, the spec document, and the sans-I/O connection."""

import json
import re
from pathlib import Path

import msgpack
import pytest

from omokage.protocol.connection import Close, Limits, Log, Offload, Send, ServerConnection
from omokage.protocol.messages import CLIENT_MESSAGES, ERROR_CODES, encode
from omokage.service.server import EngineBackend
from tests.vectors.generate_vectors import to_python as from_description

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "tests" / "vectors"
INDEX = json.loads((VECTORS / "index.json").read_text())


@pytest.mark.parametrize("vector", INDEX["vectors"], ids=lambda v: v["file"])
def test_golden_vector_decodes_and_reencodes_byte_for_byte(vector):
    data = (VECTORS / vector["file"]).read_bytes()
    decoded = msgpack.unpackb(data, raw=False)
    expected = from_description(vector["message"])
    assert decoded == expected
    assert [type(x) for x in _leaves(decoded)] == [type(x) for x in _leaves(expected)]  # float stays float
    assert encode(decoded) == data
    assert list(decoded)[0] == "type" and (list(decoded)[1] == "rid" if "rid" in decoded else True)


def _leaves(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _leaves(x)
    elif isinstance(v, list):
        for x in v:
            yield from _leaves(x)
    else:
        yield v


def test_vectors_cover_every_message_type():
    types = {v["message"]["type"] for v in INDEX["vectors"]}
    assert set(CLIENT_MESSAGES) <= types
    assert {"welcome", "candidates", "decided", "texture", "pong", "error"} <= types


def test_the_document_lists_every_message_field_and_error_code():
    doc = (REPO / "docs" / "protocol.md").read_text()
    for mtype, fields in CLIENT_MESSAGES.items():
        section = doc.split(f"### `{mtype}`", 1)
        assert len(section) == 2, f"docs/protocol.md has no section for {mtype}"
        body = section[1].split("###", 1)[0]
        for f in fields:
            assert f"| `{f.name}` |" in body, f"{mtype}.{f.name} is not documented"
    for code in ERROR_CODES:
        assert re.search(rf"\| `{code}` \|", doc), f"error code {code} is not documented"


# --- the sans-I/O connection ------------------------------------------------------------------

@pytest.fixture
def backend(engine):
    return EngineBackend(engine)


def frames(actions):
    return [a.message for a in actions if isinstance(a, Send)]


def send(conn, now=0.0, **msg):
    return frames(conn.receive(msgpack.packb(msg, use_bin_type=True), now))


def greeted(backend, **kw):
    conn = ServerConnection(backend, "s1", **kw)
    [welcome] = send(conn, type="hello", rid=1, protocol=1, client="test", **({"token": kw["token"]} if kw.get("token") else {}))
    assert welcome["type"] == "welcome"
    return conn


def test_whole_session_through_the_state_machine(backend):
    conn = greeted(backend)
    [cands] = send(conn, type="start", rid=2, algorithm="pca", init="random", seed=4)
    assert cands["type"] == "candidates" and cands["rid"] == 2 and cands["step"] == 1 and len(cands["items"]) == 9
    assert all(i["distance"] is None for i in cands["items"])
    chosen = cands["items"][3]["id"]
    [nxt] = send(conn, type="choose", rid=3, id=chosen)
    assert nxt["items"][0]["id"] == chosen and nxt["step"] == 2
    [dec] = send(conn, type="decide", rid=4, id=nxt["items"][1]["id"])
    assert dec["type"] == "decided" and dec["item"]["url"].startswith("https://") and dec["steps"] == 2
    hashes = [i["texture"] for i in cands["items"]]
    textures = send(conn, type="texture.get", rid=5, hashes=hashes + ["f" * 64])
    assert [t["type"] for t in textures] == ["texture"] * 9 + ["error"]
    assert textures[-1]["code"] == "not_found" and textures[-1]["rid"] == 5


@pytest.mark.parametrize("frame, code", [
    (b"\xc1", "bad_frame"),                                       # never-used MessagePack byte
    (msgpack.packb([1, 2, 3]), "bad_frame"),                      # not a map
    (msgpack.packb({"type": "ping", "t": 1}) + b"\x00", "bad_frame"),  # trailing bytes
    (msgpack.packb(msgpack.ExtType(1, b"x")), "bad_frame"),       # extension type
    (msgpack.packb({"type": "dance"}), "unknown_type"),
    (msgpack.packb({"rid": 1}), "bad_field"),                    # no type
    (msgpack.packb({"type": "choose", "id": "7"}), "bad_field"),   # wrong type
    (msgpack.packb({"type": "choose", "id": -1}), "bad_field"),    # out of range
    (msgpack.packb({"type": "choose", "id": True}), "bad_field"),  # bool is not an int
    (msgpack.packb({"type": "ping", "t": float("nan")}), "bad_field"),
    (msgpack.packb({"type": "start", "algorithm": "pca", "init": "sketch"}), "bad_field"),
    (msgpack.packb({"type": "start", "algorithm": "vae", "init": "random"}), "bad_field"),
    (msgpack.packb({"type": "start", "algorithm": "pca", "init": "image"}), "bad_field"),  # image missing
    (msgpack.packb({"type": "texture.get", "hashes": ["a"] * 65}), "too_large"),
    (msgpack.packb({"type": "texture.get", "hashes": []}), "bad_field"),
    (msgpack.packb({"type": "choose", "id": 3}), "wrong_state"),  # before start
    (msgpack.packb({"type": "hello", "protocol": 1, "client": "again"}), "wrong_state"),
    ("{\"type\": \"ping\"}", "bad_frame"),                         # text frame
    (b"\x00" * (5 * 1024 * 1024), "too_large"),
])
def test_each_bad_input_gets_its_error_code_and_the_connection_keeps_working(backend, frame, code):
    conn = greeted(backend)
    [err] = frames(conn.receive(frame, 0.0))
    assert err["type"] == "error" and err["code"] == code, err
    [pong] = send(conn, type="ping", rid=9, t=1.5)
    assert pong == {"type": "pong", "rid": 9, "t": 1.5, "server_time": 0.0}


def test_rid_is_echoed_on_errors(backend):
    conn = greeted(backend)
    [err] = send(conn, type="choose", rid=77, id="x")
    assert err["rid"] == 77 and "choose.id" in err["message"]


def test_version_mismatch_names_both_versions(backend):
    conn = ServerConnection(backend, "s")
    [err] = send(conn, type="hello", protocol=2, client="future")
    assert err["code"] == "bad_field" and "2" in err["message"] and "1" in err["message"]


def test_nothing_but_hello_before_the_token(backend):
    conn = ServerConnection(backend, "s", token="sesame")
    [err] = send(conn, type="start", algorithm="pca", init="random")
    assert err["code"] == "unauthorized"
    [err] = send(conn, type="hello", protocol=1, client="x", token="wrong")
    assert err["code"] == "unauthorized"
    [welcome] = send(conn, type="hello", protocol=1, client="x", token="sesame")
    assert welcome["type"] == "welcome"


def test_three_failed_hellos_close_the_connection(backend):
    conn = ServerConnection(backend, "s", token="sesame")
    for _ in range(2):
        send(conn, type="hello", protocol=1, client="x", token="no")
    actions = conn.receive(msgpack.packb({"type": "hello", "protocol": 1, "client": "x"}), 0.0)
    assert any(isinstance(a, Close) and a.code == 1008 for a in actions)


def test_message_rate_is_limited(backend):
    conn = greeted(backend, limits=Limits(max_messages_per_second=10, burst=20))
    replies = [send(conn, now=1.0, type="ping", t=i)[0]["type"] for i in range(40)]
    # hello at t=0 took one token; a second of refill (10) tops the bucket back up to its burst of 20
    assert replies.count("pong") == 20 and replies.count("error") == 20
    assert send(conn, now=3.0, type="ping", t=0)[0]["type"] == "pong"  # refills with time
    for i in range(30):
        send(conn, now=3.0, rid=i, type="ping", t=0)
    [refused] = send(conn, now=3.0, rid=99, type="choose", id=1)
    assert refused["code"] == "overloaded" and refused["rid"] == 99  # the refusal names its request


def test_image_start_is_offloaded_and_completed(backend, engine):
    import numpy as np
    from omokage.catalog.store import encode_texture
    conn = greeted(backend)
    actions = conn.receive(msgpack.packb({"type": "start", "rid": 5, "algorithm": "pca", "init": "image",
                                          "image": b"\x89PNG..."}), 0.0)
    [offload] = actions
    assert isinstance(offload, Offload) and offload.job.rid == 5
    vector, recon = engine.project("pca", np.asarray(engine.catalog.pixels[3]))
    done = frames(conn.projection_done(offload.job, vector, encode_texture(recon), 1.0))
    assert done[0]["items"][0]["id"] == 3 and done[0]["reconstruction"]["width"] == 64
    # the reconstruction can be fetched by hash like any texture
    [tex] = send(conn, type="texture.get", hashes=[done[0]["reconstruction"]["hash"]])
    assert tex["type"] == "texture"


def test_session_events_are_logged(backend):
    conn = greeted(backend)
    actions = conn.receive(msgpack.packb({"type": "start", "algorithm": "nmf", "init": "random", "seed": 1}), 5.0)
    [log] = [a for a in actions if isinstance(a, Log)]
    assert log.record["event"] == "start" and log.record["at"] == 5.0 and len(log.record["candidates"]) == 9


def test_the_announced_hash_limit_is_the_enforced_one(backend):
    conn = ServerConnection(backend, "s", limits=Limits(max_hashes_per_request=2))
    [welcome] = send(conn, type="hello", protocol=1, client="x")
    assert welcome["limits"]["max_hashes_per_request"] == 2
    tex = backend.items[0].texture
    assert [m["type"] for m in send(conn, type="texture.get", hashes=[tex, tex])] == ["texture", "texture"]
    [err] = send(conn, type="texture.get", hashes=[tex] * 3)
    assert err["code"] == "too_large"


def test_an_invalid_rid_is_never_echoed(backend):
    conn = greeted(backend, limits=Limits(max_messages_per_second=1, burst=1))
    # the bucket is empty after hello: this refusal must not echo a bool as the rid
    [refused] = send(conn, rid=True, type="ping", t=0)
    assert refused["code"] == "overloaded" and "rid" not in refused


def test_only_the_latest_reconstruction_is_kept(backend, engine):
    import numpy as np
    from omokage.catalog.store import encode_texture
    conn = greeted(backend)
    hashes = []
    for item in (3, 4):
        [offload] = conn.receive(msgpack.packb({"type": "start", "algorithm": "pca", "init": "image", "image": b"x"}), 0.0)
        vector, recon = engine.project("pca", np.asarray(engine.catalog.pixels[item]))
        tex = encode_texture(recon)
        conn.projection_done(offload.job, vector, tex, 0.0)
        hashes.append(tex.hash)
    assert hashes[0] != hashes[1]
    assert [m["type"] for m in send(conn, type="texture.get", hashes=hashes)] == ["texture", "error"]
