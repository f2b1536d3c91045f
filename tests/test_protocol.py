"""Protocol v1.1: golden vectors, the spec document, and the sans-I/O connection."""

import hashlib
import json
import re
from pathlib import Path

import msgpack
import pytest

from omokage.protocol.connection import Close, Limits, Log, Offload, Send, ServerConnection
from omokage.protocol.messages import (CANDIDATE_ITEM_FIELDS, CLIENT_MESSAGES, ERROR_CODES, PROTOCOL_MINOR,
                                       SERVER_MESSAGES, encode)
from omokage.selection import DEFAULT_POLICY, POLICIES, SERVED_POLICIES, ChosenPlusNearest, SelectionSession
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
    assert set(SERVER_MESSAGES) <= types


# Each minor version's vectors as released: (how many, the digest of their names and bytes, sorted by name). A later
# version only adds vectors: these never change.
RELEASED = {"1.0": (19, "5814d6c5fe8a01c66ada056b85eb563a96a99057677da653fa18db69e19173d2"),
            "1.1": (9, "78caa13803497bd31cc4e9effc8eb92b839ae31ee80306f3bc15753c1fca0320"),
            "1.2": (21, "918976451234f3d8bd928627ca9cc6b0acf5ef4653f0d0926c592d4ac8fe42da"),
            "1.3": (11, "4cd5350a6508e766ba8fedd47aeb3affa238e4c1672381ff06f0ae37026b016d"),
            "1.4": (8, "5f3d9c9ed0997118da6b789de470964bcbd41036c2d1dc9d86b2a7ff27fc77a7"),
            "1.5": (7, "259a7b7074b22460a59fcbcb81e02e7d45ac7c84bdc42255feef35dda9be1f26"),
            "1.6": (3, "fd1028ea768de0ef42cde8477635dcfa82c7575a986a6a5d99c1de9d949e1f04")}


def released(since: str) -> tuple[int, str]:
    """(how many vectors came with that version, the digest of their names and bytes) as the files are now."""
    vectors = sorted((v for v in INDEX["vectors"] if v["since"] == since), key=lambda v: v["file"])
    digest = hashlib.sha256()
    for v in vectors:
        digest.update(v["file"].encode() + b"\0" + (VECTORS / v["file"]).read_bytes())
    return len(vectors), digest.hexdigest()


def test_vector_files_match_the_index_and_the_v1_0_vectors_are_unchanged():
    files = sorted(p.name for p in VECTORS.glob("*.msgpack"))
    assert files == sorted(v["file"] for v in INDEX["vectors"])
    for v in INDEX["vectors"]:
        assert hashlib.sha256((VECTORS / v["file"]).read_bytes()).hexdigest() == v["sha256"], v["file"]
    assert released("1.0") == RELEASED["1.0"]


def test_v1_2_vectors_show_every_addition_and_v1_1_is_unchanged():
    assert released("1.1") == RELEASED["1.1"]
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.2"}
    assert added["hello_v1_2.msgpack"]["protocol_minor"] == 2
    welcome = added["welcome_v1_2.msgpack"]
    assert list(welcome)[-1] == "training" and welcome["protocol_minor"] == 2
    assert all(t["algorithm"] not in welcome["algorithms"] for t in welcome["training"])
    for name in ("models_training.msgpack", "models_ready.msgpack"):
        note = added[name]
        assert "rid" not in note and list(note)[1:] == list(SERVER_MESSAGES["models"])
        assert all(0 <= t["progress"] <= 1 for t in note["training"])
    assert INDEX["protocol_minor"] == PROTOCOL_MINOR >= 2


def test_v1_3_vectors_show_the_sketch_messages_and_v1_2_is_unchanged():
    assert released("1.2") == RELEASED["1.2"]
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.3"}
    assert {m["type"] for m in added.values()} >= {"sketch.begin", "sketch.stroke", "sketch.undo", "sketch.clear",
                                                "sketch.result"}
    assert added["hello_v1_3.msgpack"]["protocol_minor"] == 3
    welcome = added["welcome_sketch.msgpack"]
    assert list(welcome)[-1] == "sketch" and welcome["sketch"]["tools"] == ["line", "paint"]
    for name in ("sketch_result.msgpack", "sketch_result_empty.msgpack"):
        result = added[name]
        assert list(result)[2:] == list(SERVER_MESSAGES["sketch.result"])
    assert len(added["sketch_result.msgpack"]["items"]) == 9 and added["sketch_result_empty.msgpack"]["items"] == []
    assert added["start_sketch.msgpack"]["init"] == "sketch"


def test_v1_4_vectors_show_the_calibration_messages_and_v1_3_is_unchanged():
    assert released("1.3") == RELEASED["1.3"]
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.4"}
    assert {m["type"] for m in added.values()} >= {"calibrate.begin", "calibrate.end", "calibration", "calibrated"}
    assert added["hello_v1_4.msgpack"]["protocol_minor"] == 4
    assert added["welcome_calibration.msgpack"]["gaze"]["calibration"] == ["five-point", "nine-point"]
    for name, mtype in (("calibration.msgpack", "calibration"), ("calibrated.msgpack", "calibrated")):
        assert list(added[name])[2:] == list(SERVER_MESSAGES[mtype])
    assert added["error_calibration_failed.msgpack"]["code"] == "calibration_failed"


def test_v1_5_vectors_show_device_cancel_and_ideal_and_v1_4_is_unchanged():
    assert released("1.4") == RELEASED["1.4"]
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.5"}
    assert {m["type"] for m in added.values()} >= {"calibrate.cancel", "calibration.cancelled", "ideal",
                                                    "ideal.result", "hello", "welcome"}
    assert added["hello_v1_5_device.msgpack"]["device"] == "quest-pro"
    welcome = added["welcome_v1_5.msgpack"]
    assert list(welcome)[-1] == "ideal" and welcome["gaze"]["profile"] == "device"
    for name, mtype in (("ideal_result.msgpack", "ideal.result"),
                        ("calibration_cancelled.msgpack", "calibration.cancelled")):
        assert list(added[name])[2:] == list(SERVER_MESSAGES[mtype])
    assert len(added["ideal_result.msgpack"]["items"]) == 9


def test_v1_6_vectors_show_the_sharper_sketch_preview_and_v1_5_is_unchanged():
    assert released("1.5") == RELEASED["1.5"]
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.6"}
    assert {m["type"] for m in added.values()} == {"hello", "welcome", "sketch.preview"}
    assert added["hello_v1_6.msgpack"]["protocol_minor"] == 6
    assert added["welcome_v1_6.msgpack"]["sketch"]["sharpens"] is True
    preview = added["sketch_preview.msgpack"]
    assert "rid" not in preview and list(preview)[1:] == list(SERVER_MESSAGES["sketch.preview"])


def test_v1_7_vectors_show_resuming_a_selection_and_back_and_v1_6_is_unchanged():
    assert released("1.6") == RELEASED["1.6"]
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.7"}
    assert {m["type"] for m in added.values()} == {"hello", "welcome", "candidates", "back"}
    assert added["back.msgpack"] == {"type": "back", "rid": 9}
    hello = added["hello_v1_7_resume.msgpack"]
    assert hello["protocol_minor"] == 7 and len(hello["resume"]) == 32
    fresh, resumed = added["welcome_v1_7.msgpack"], added["welcome_v1_7_resumed.msgpack"]
    assert "resumed" not in fresh and list(fresh)[-1] == "resume" and fresh["resume"]["ttl_s"] == 600.0
    assert list(resumed)[-2:] == ["resumed", "resume"] and resumed["resumed"] is True
    assert resumed["resume"]["token"] not in (hello["resume"], fresh["resume"]["token"])   # a spent token is not reused
    grid = added["candidates_resumed.msgpack"]
    assert "rid" not in grid and list(grid)[1:] == ["step", "algorithm", "items", "policy"]
    assert INDEX["protocol_minor"] == PROTOCOL_MINOR == 7


def test_v1_1_vectors_show_every_addition():
    added = {v["file"]: from_description(v["message"]) for v in INDEX["vectors"] if v["since"] == "1.1"}
    assert {m["type"] for m in added.values()} >= {"hello", "start", "skip", "rate", "welcome", "candidates", "rated"}
    assert added["hello_v1_1.msgpack"]["protocol"] == 1 and added["hello_v1_1.msgpack"]["protocol_minor"] == 1
    welcome = added["welcome_v1_1.msgpack"]
    assert list(welcome)[-3:] == ["protocol_minor", "policies", "default_policy"]
    assert welcome["default_policy"] in welcome["policies"]
    with_p = added["candidates_probability.msgpack"]
    assert with_p["policy"] and all(0 <= i["probability"] <= 1 for i in with_p["items"])
    assert all(list(i) == list(CANDIDATE_ITEM_FIELDS) for i in with_p["items"])
    assert all("probability" not in i for i in added["candidates_skip.msgpack"]["items"])


def test_the_document_lists_every_message_field_and_error_code():
    doc = (REPO / "docs" / "protocol.md").read_text()
    for mtype, fields in CLIENT_MESSAGES.items():
        section = doc.split(f"### `{mtype}`", 1)
        assert len(section) == 2, f"docs/protocol.md has no section for {mtype}"
        body = section[1].split("###", 1)[0]
        for f in fields:
            assert f"| `{f.name}` |" in body, f"{mtype}.{f.name} is not documented"
    for mtype, names in SERVER_MESSAGES.items():
        section = doc.split(f"### `{mtype}`", 1)
        assert len(section) == 2, f"docs/protocol.md has no section for {mtype}"
        body = section[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
        for name in names:
            assert f"| `{name}` |" in body, f"{mtype}.{name} is not documented"
    item = doc.split("An **item** is a map:", 1)[1].split("\n\n", 1)[0]
    for name in CANDIDATE_ITEM_FIELDS:
        assert f"`{name}`" in item, f"candidates item field {name} is not documented"
    assert "## What changed since v1.0" in doc
    for policy in SERVED_POLICIES:
        assert f"| `{policy}` |" in doc, f"policy {policy} is not described"
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
    (msgpack.packb({"type": "start", "algorithm": "pca", "init": "doodle"}), "bad_field"),
    (msgpack.packb({"type": "start", "algorithm": "pca", "init": "sketch"}), "wrong_state"),  # v1.3: no drawing yet
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
    # each refusal is logged for whoever runs the server, with its reason and never the guess itself
    [refused] = [a.record for a in actions if isinstance(a, Log)]
    assert refused["event"] == "hello_refused" and "token" in refused["reason"] and "no" not in refused.values()
    # a note, not something the reply acknowledges: an event log that cannot be written does not turn it into `internal`
    assert [a.acknowledged for a in actions if isinstance(a, Log)] == [False]


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


# --- v1.1: policies, skip, rate, probability -------------------------------------------------------

def hello_v1_1(backend, **kw):
    conn = ServerConnection(backend, "s11", **kw)
    [welcome] = send(conn, type="hello", rid=1, protocol=1, client="test/1.1", protocol_minor=PROTOCOL_MINOR)
    assert welcome["type"] == "welcome"
    return conn, welcome


def in_canonical_order(message):
    """Keys of a server message: `type`, `rid` if any, then a subsequence of its documented fields, in order."""
    keys = list(message)
    head = ["type", "rid"] if "rid" in message else ["type"]
    assert keys[:len(head)] == head, keys
    documented = list(SERVER_MESSAGES[message["type"]])
    rest = keys[len(head):]
    assert rest == [k for k in documented if k in rest], f"{message['type']}: {rest} not in the order {documented}"
    for item in message.get("items", []):
        assert list(item) == [k for k in CANDIDATE_ITEM_FIELDS if k in item], list(item)
    return True


def test_welcome_offers_the_policies_and_the_minor_version(backend):
    _, welcome = hello_v1_1(backend)
    assert welcome["protocol"] == 1 and welcome["protocol_minor"] == PROTOCOL_MINOR == 7
    assert welcome["policies"] == list(SERVED_POLICIES) and welcome["default_policy"] == DEFAULT_POLICY
    assert DEFAULT_POLICY in welcome["policies"]
    assert in_canonical_order(welcome)


def test_the_v1_0_client_vectors_are_answered_as_in_v1_0(backend):
    """Replaying the v1.0 golden requests: the same replies as before v1.1, plus only fields a v1.0 client ignores."""
    conn = ServerConnection(backend, "v10")
    [welcome] = frames(conn.receive((VECTORS / "hello.msgpack").read_bytes(), 0.0))
    v10_welcome = msgpack.unpackb((VECTORS / "welcome.msgpack").read_bytes())
    assert list(welcome)[:len(v10_welcome)] == list(v10_welcome)  # v1.0 fields first, in v1.0 order
    assert welcome["protocol"] == 1 and welcome["rid"] == v10_welcome["rid"]
    [grid] = frames(conn.receive((VECTORS / "start_random.msgpack").read_bytes(), 1.0))
    # v1.0 semantics: the study's policy, the same random first grid as before policies existed
    reference = SelectionSession(backend.space("pca"), seed=42, policy=ChosenPlusNearest(), grid_size=9)
    assert [i["id"] for i in grid["items"]] == list(reference.start().ids)
    assert grid["policy"] == "study" and all("probability" not in i for i in grid["items"])
    v10_grid = msgpack.unpackb((VECTORS / "candidates_random.msgpack").read_bytes())
    assert list(grid)[:len(v10_grid)] == list(v10_grid) and list(grid["items"][0]) == list(v10_grid["items"][0])
    chosen = grid["items"][4]["id"]
    [nxt] = send(conn, type="choose", rid=4, id=chosen)
    assert [i["id"] for i in nxt["items"]] == list(reference.choose(chosen).ids)
    distances = [i["distance"] for i in nxt["items"]]
    assert distances[0] == 0.0 and distances == sorted(distances)  # chosen first, then nearest unseen
    [pong] = frames(conn.receive((VECTORS / "ping_float.msgpack").read_bytes(), 2.0))
    assert pong == {"type": "pong", "rid": 7, "t": 1732356000.125, "server_time": 2.0}


@pytest.mark.parametrize("policy", SERVED_POLICIES)
def test_start_with_each_served_policy(backend, policy):
    conn, _ = hello_v1_1(backend)
    [grid] = send(conn, type="start", rid=2, algorithm="pca", init="random", seed=3, policy=policy)
    assert grid["policy"] == policy and len(grid["items"]) == 9 and in_canonical_order(grid)
    has_belief = policy not in ("study", "random")
    for item in grid["items"]:
        assert ("probability" in item) == has_belief, (policy, item)
        if has_belief:
            assert isinstance(item["probability"], float) and 0.0 <= item["probability"] <= 1.0
    chosen = grid["items"][2]["id"]
    [nxt] = send(conn, type="choose", rid=3, id=chosen)
    assert nxt["policy"] == policy and nxt["items"][0]["id"] == chosen and in_canonical_order(nxt)
    assert len(nxt["items"]) == 9, f"{policy}: a full grid while the catalog has unseen faces"
    assert not {i["id"] for i in nxt["items"][1:]} & {i["id"] for i in grid["items"]}
    [skipped] = send(conn, type="skip", rid=4)
    assert skipped["policy"] == policy and len(skipped["items"]) == 9 and in_canonical_order(skipped)
    shown = {i["id"] for i in grid["items"]} | {i["id"] for i in nxt["items"]}
    assert not {i["id"] for i in skipped["items"]} & shown


def test_a_v1_1_start_without_policy_gets_the_default_and_a_v1_0_one_the_study(backend):
    conn, _ = hello_v1_1(backend)
    [grid] = send(conn, type="start", algorithm="nmf", init="random")
    assert grid["policy"] == DEFAULT_POLICY
    old = greeted(backend)
    [grid] = send(old, type="start", algorithm="nmf", init="random")
    assert grid["policy"] == "study"
    [grid] = send(old, type="start", algorithm="nmf", init="random", policy=DEFAULT_POLICY)  # may still ask
    assert grid["policy"] == DEFAULT_POLICY


@pytest.mark.parametrize("policy", ["oracle", "top" if "top" in POLICIES and "top" not in SERVED_POLICIES else "x"])
def test_an_unknown_or_unserved_policy_is_bad_field_naming_the_choices(backend, policy):
    conn, _ = hello_v1_1(backend)
    [err] = send(conn, type="start", rid=5, algorithm="pca", init="random", policy=policy)
    assert err["code"] == "bad_field" and err["rid"] == 5 and "start.policy" in err["message"]
    assert all(name in err["message"] for name in SERVED_POLICIES), err["message"]
    [err] = send(conn, type="start", rid=6, algorithm="pca", init="random", policy=7)
    assert err["code"] == "bad_field" and "start.policy" in err["message"]
    assert send(conn, type="ping", t=0)[0]["type"] == "pong"


def test_skip_shows_unseen_faces_without_a_chosen_one(backend):
    conn, _ = hello_v1_1(backend)
    [err] = send(conn, type="skip", rid=1)
    assert err["code"] == "wrong_state" and err["rid"] == 1 and "start" in err["message"]
    [grid] = send(conn, type="start", algorithm="pca", init="random", seed=1, policy="study")
    seen = {i["id"] for i in grid["items"]}
    [skipped] = send(conn, type="skip", rid=2)
    assert skipped["type"] == "candidates" and skipped["rid"] == 2 and skipped["step"] == 2
    assert len(skipped["items"]) == 9 and not {i["id"] for i in skipped["items"]} & seen
    assert in_canonical_order(skipped) and skipped["policy"] == "study"
    [dec] = send(conn, type="decide", id=skipped["items"][0]["id"])
    assert dec["type"] == "decided" and dec["steps"] == 2
    [err] = send(conn, type="skip")
    assert err["code"] == "wrong_state"


def test_skip_and_rate_reach_the_policys_belief(backend):
    conn, _ = hello_v1_1(backend)
    [grid] = send(conn, type="start", algorithm="pca", init="random", seed=5, policy=DEFAULT_POLICY)
    ids = [i["id"] for i in grid["items"]]
    belief = lambda: conn.session.policy.belief.probabilities().copy()  # noqa: E731
    before = belief()
    # the probabilities sent are the belief's mass on each face
    assert [i["probability"] for i in grid["items"]] == pytest.approx(before[ids].tolist())
    send(conn, type="rate", id=ids[0], rating=5)
    send(conn, type="rate", id=ids[1], rating=1)
    rated = belief()
    assert rated[ids[0]] > before[ids[0]] and rated[ids[1]] < before[ids[1]]
    [skipped] = send(conn, type="skip")
    assert skipped["step"] == 2 and not {i["id"] for i in skipped["items"]} & set(ids)
    assert belief()[ids].sum() < rated[ids].sum()  # "none of these": the nine lost mass


def test_rate_acknowledges_and_checks_its_input(backend):
    conn, _ = hello_v1_1(backend)
    [err] = send(conn, type="rate", rid=1, id=0, rating=3)
    assert err["code"] == "wrong_state" and err["rid"] == 1
    [grid] = send(conn, type="start", algorithm="pca", init="random", seed=2, policy="infogain")
    shown = grid["items"][1]["id"]
    [rated] = send(conn, type="rate", rid=2, id=shown, rating=5)
    assert rated == {"type": "rated", "rid": 2, "id": shown, "rating": 5} and in_canonical_order(rated)
    never_shown = next(i for i in range(len(backend.items)) if i not in {x["id"] for x in grid["items"]})
    [err] = send(conn, type="rate", rid=3, id=never_shown, rating=2)
    assert err["code"] == "not_found" and err["rid"] == 3 and str(never_shown) in err["message"]
    for bad in (0, 6, -1, "5", 2.5, True):
        [err] = send(conn, type="rate", rid=4, id=shown, rating=bad)
        assert err["code"] == "bad_field" and "rate.rating" in err["message"], (bad, err)
    # a face shown at an earlier step can still be rated
    [nxt] = send(conn, type="choose", id=grid["items"][0]["id"])
    [rated] = send(conn, type="rate", id=grid["items"][8]["id"], rating=1)
    assert rated["type"] == "rated"
    send(conn, type="decide", id=nxt["items"][0]["id"])
    [err] = send(conn, type="rate", id=shown, rating=4)
    assert err["code"] == "wrong_state"


def test_policy_skip_and_rate_are_logged_like_the_other_events(backend):
    conn, _ = hello_v1_1(backend)
    records = []

    def run(now, **msg):
        actions = conn.receive(msgpack.packb(msg, use_bin_type=True), now)
        records.extend(a.record for a in actions if isinstance(a, Log))
        return frames(actions)

    [grid] = run(1.0, type="start", algorithm="pca", init="random", seed=4, policy="thompson")
    run(2.0, type="rate", id=grid["items"][3]["id"], rating=4)
    [skipped] = run(3.0, type="skip")
    run(4.0, type="choose", id=skipped["items"][0]["id"])
    run(5.0, type="start", algorithm="pca", init="random", policy="study")   # abandons the thompson selection
    run(6.0, type="skip", rid=1)
    events = [r["event"] for r in records]
    assert events == ["start", "rate", "skip", "choose", "abandon", "start", "skip"]
    by = {e: [r for r in records if r["event"] == e] for e in events}
    assert [r["policy"] for r in records] == ["thompson"] * 5 + ["study"] * 2
    assert all(r["session_id"] == "s11" and isinstance(r["at"], float) for r in records)
    assert by["rate"][0]["item"] == grid["items"][3]["id"] and by["rate"][0]["rating"] == 4
    assert by["skip"][0]["candidates"] == [i["id"] for i in skipped["items"]] and by["skip"][0]["at"] == 3.0
    assert by["abandon"][0]["steps"] == 3


def test_an_image_start_keeps_its_policy(backend, engine):
    import numpy as np
    from omokage.catalog.store import encode_texture
    conn, _ = hello_v1_1(backend)
    [offload] = conn.receive(msgpack.packb({"type": "start", "rid": 5, "algorithm": "pca", "init": "image",
                                            "image": b"x", "policy": "thompson"}), 0.0)
    assert isinstance(offload, Offload) and offload.job.policy == "thompson"
    vector, recon = engine.project("pca", np.asarray(engine.catalog.pixels[3]))
    [grid] = frames(conn.projection_done(offload.job, vector, encode_texture(recon), 1.0))
    assert grid["policy"] == "thompson" and "reconstruction" in grid and in_canonical_order(grid)
    assert all("probability" in i for i in grid["items"])


def test_an_integer_out_of_range_is_named_as_an_integer(backend):
    """`start.seed` past 2³¹−1 said "must be between 0 and 2.14748e+09" (found by a kill -9 attack's client)."""
    conn = greeted(backend)
    [err] = send(conn, type="start", rid=2, algorithm="pca", init="random", seed=2**40)
    assert err["code"] == "bad_field" and "must be between 0 and 2147483647" in err["message"], err
