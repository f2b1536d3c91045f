"""Writes the protocol's golden vectors: tests/vectors/*.msgpack and index.json.

Run `python tests/vectors/generate_vectors.py` only when the protocol changes on purpose; the Python and C#
test suites check that every vector decodes to its described message and re-encodes byte for byte.
v1.1, v1.2 and v1.3 only add vectors (VECTORS_V1_1, VECTORS_V1_2, VECTORS_V1_3): every earlier vector stays byte for byte what it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent

# An 8x8 PNG (a real image, so clients can decode the texture vectors).
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFElEQVR4nGP8X7GFARtgwio6aCUAtKQCOwtbwZkAAAAASUVORK5CYII=")
_HASH = hashlib.sha256(_PNG).hexdigest()


def F(x: float) -> dict:
    return {"$float": x}


def B(b: bytes) -> dict:
    return {"$bin": base64.b64encode(b).decode()}


VECTORS = [
    ("hello", "client greeting", {"type": "hello", "rid": 1, "protocol": 1, "client": "omokage-unity/0.1.0"}),
    ("hello_token", "greeting with an access token", {"type": "hello", "rid": 1, "protocol": 1, "client": "web/0.1", "token": "s3cret"}),
    ("start_random", "random start with a seed", {"type": "start", "rid": 2, "algorithm": "pca", "init": "random", "seed": 42}),
    ("start_image", "image start: the image is MessagePack bin", {"type": "start", "rid": 3, "algorithm": "nmf", "init": "image", "image": B(_PNG)}),
    ("choose", "pick a face", {"type": "choose", "rid": 4, "id": 1234}),
    ("decide", "settle on a face", {"type": "decide", "rid": 5, "id": 7}),
    ("texture_get", "fetch textures by hash", {"type": "texture.get", "rid": 6, "hashes": [_HASH, "0" * 64]}),
    ("ping_float", "ping with a float clock", {"type": "ping", "rid": 7, "t": F(1732356000.125)}),
    ("ping_int", "ping with an integer clock (number accepts int)", {"type": "ping", "t": 123456789}),
    ("rid_max", "largest rid: 2^31-1 needs a uint32 header", {"type": "choose", "rid": 2147483647, "id": 65536}),
    ("welcome", "server greeting with limits", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee01",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200}}),
    ("candidates_random", "first grid of a random start: distance is nil", {
        "type": "candidates", "rid": 2, "step": 1, "algorithm": "pca", "items": [
            {"id": i, "distance": None, "texture": _HASH, "title": f"Avatar {i}", "url": f"https://avatars.example/items/0-{i:05d}"}
            for i in (3, 141, 59, 26, 535, 89, 79, 323, 846)]}),
    ("candidates_choose", "after choose: chosen first at distance 0, then neighbours; a non-ASCII title", {
        "type": "candidates", "rid": 4, "step": 2, "algorithm": "pca", "items": [
            {"id": 1234, "distance": F(0.0), "texture": _HASH, "title": "桜 — pink twin tails", "url": "https://avatars.example/items/0-01234"},
            {"id": 17, "distance": F(3.5), "texture": _HASH, "title": "Mirei", "url": "https://avatars.example/items/0-00017"}]}),
    ("candidates_image", "image start with the reconstruction inline", {
        "type": "candidates", "rid": 3, "step": 1, "algorithm": "nmf", "items": [
            {"id": 5, "distance": F(12.25), "texture": _HASH, "title": "Avatar 5", "url": "https://avatars.example/items/0-00005"}],
        "reconstruction": {"hash": _HASH, "format": "png", "width": 8, "height": 8, "data": B(_PNG)}}),
    ("decided", "the selection ends", {"type": "decided", "rid": 5, "item": {"id": 7, "texture": _HASH, "title": "Avatar 7",
                                                                           "url": "https://avatars.example/items/0-00007"}, "steps": 3}),
    ("texture", "one texture", {"type": "texture", "rid": 6, "hash": _HASH, "format": "png", "width": 8, "height": 8, "data": B(_PNG)}),
    ("pong", "ping reply", {"type": "pong", "rid": 7, "t": F(1732356000.125), "server_time": F(1732356000.25)}),
    ("error_rid", "error that echoes a rid", {"type": "error", "rid": 4, "code": "not_found", "message": "item 99 is not among the current candidates"}),
    ("error_no_rid", "error about an unreadable frame (no rid)", {"type": "error", "code": "bad_frame", "message": "frame is not valid MessagePack"}),
]

# v1.1: optional fields and new messages (docs/protocol.md, "What changed since v1.0"). New fields come after the
# v1.0 ones in canonical order.
VECTORS_V1_1 = [
    ("hello_v1_1", "v1.1 greeting: announces the minor version", {"type": "hello", "rid": 1, "protocol": 1, "client": "omokage-web/0.2.0", "protocol_minor": 1}),
    ("start_policy", "random start that names a policy", {"type": "start", "rid": 2, "algorithm": "pca", "init": "random", "seed": 42, "policy": "infogain"}),
    ("skip", "none of these: all nine count as worse than the unseen", {"type": "skip", "rid": 8}),
    ("rate", "an explicit rating of a shown face", {"type": "rate", "rid": 9, "id": 141, "rating": 4}),
    ("welcome_v1_1", "v1.1 server greeting: minor version and the policies on offer", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee02",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 1, "policies": ["infogain", "thompson", "study", "random"], "default_policy": "infogain"}),
    ("candidates_probability", "after choose under a policy with a belief: policy and per-face probability", {
        "type": "candidates", "rid": 4, "step": 2, "algorithm": "pca", "items": [
            {"id": 1234, "distance": F(0.0), "texture": _HASH, "title": "桜 — pink twin tails", "url": "https://avatars.example/items/0-01234", "probability": F(0.375)},
            {"id": 17, "distance": F(3.5), "texture": _HASH, "title": "Mirei", "url": "https://avatars.example/items/0-00017", "probability": F(0.125)},
            {"id": 902, "distance": None, "texture": _HASH, "title": "Avatar 902", "url": "https://avatars.example/items/0-00902", "probability": F(0.0)}],
        "policy": "infogain"}),
    ("candidates_skip", "after skip: unseen faces, no chosen face first; a policy without a belief sends no probability", {
        "type": "candidates", "rid": 8, "step": 3, "algorithm": "pca", "items": [
            {"id": i, "distance": None, "texture": _HASH, "title": f"Avatar {i}", "url": f"https://avatars.example/items/0-{i:05d}"}
            for i in (11, 412, 7, 1001, 64, 285, 930, 18, 777)],
        "policy": "study"}),
    ("rated", "the answer to rate", {"type": "rated", "rid": 9, "id": 141, "rating": 4}),
    ("error_bad_policy", "start.policy the server does not offer: bad_field naming the choices", {
        "type": "error", "rid": 2, "code": "bad_field",
        "message": "start.policy: 'oracle' is not served; choose from infogain, thompson, study, random"}),
]
# v1.2: models fitted in the background while the others are served (docs/protocol.md, `models`).
VECTORS_V1_2 = [
    ("hello_v1_2", "v1.2 greeting: this client reads `models` notes", {"type": "hello", "rid": 1, "protocol": 1, "client": "omokage-web/0.3.0", "protocol_minor": 2}),
    ("welcome_v1_2", "v1.2 server greeting while the autoencoder trains: it is in `training`, not yet in `algorithms`", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee03",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 2, "policies": ["thompson", "infogain", "cover", "study", "random"], "default_policy": "thompson",
        "training": [{"algorithm": "ae", "progress": F(0.4), "eta_s": F(21.5)}]}),
    ("models_training", "unsolicited (no rid): training progress; no eta_s before one can be estimated", {
        "type": "models", "algorithms": ["raw", "pca"], "training": [{"algorithm": "nmf", "progress": F(0.0)}, {"algorithm": "ae", "progress": F(0.0)}]}),
    ("models_ready", "unsolicited (no rid): the autoencoder is served now; nothing trains", {
        "type": "models", "algorithms": ["raw", "pca", "nmf", "ae"], "training": []}),
    # studies (`omokage serve --study`): a participant code in hello, the server's plan, questionnaires
    ("hello_participant", "a study participant's greeting: the code from the study file", {"type": "hello", "rid": 1, "protocol": 1, "client": "omokage-unity/0.3.0", "protocol_minor": 2, "participant": "p-7f3a"}),
    ("welcome_study", "the greeting of a study server: where the participant stands (one trial done, a trial next)", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee04",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 2, "policies": ["thompson", "infogain", "cover", "study", "random"], "default_policy": "thompson",
        "study": {"name": "pilot", "title": "Avatar faces, four systems", "trials": 5, "completed": 1, "next": "trial"}}),
    ("study_next", "the participant's next step (a trial begun or resumed, a questionnaire, or the end)", {"type": "study.next", "rid": 2}),
    ("study_next_image", "the next trial when its condition starts from an image", {"type": "study.next", "rid": 2, "image": B(_PNG)}),
    ("candidates_trial", "a study trial's grid: which trial, the condition's label (never its model), a target task's face", {
        "type": "candidates", "rid": 2, "step": 1, "algorithm": "pca", "items": [
            {"id": i, "distance": None, "texture": _HASH, "title": f"Avatar {i}", "url": f"https://avatars.example/items/0-{i:05d}"}
            for i in (3, 141, 59)],
        "policy": "study",
        "trial": {"index": 2, "count": 5, "practice": False, "label": "System B", "task": "target",
                  "target": {"id": 77, "texture": _HASH, "title": "Avatar 77", "url": "https://avatars.example/items/0-00077"}}}),
    ("questionnaire_condition", "after a condition's trials: Likert items 1..5 with anchors, and free text", {
        "type": "questionnaire", "rid": 6, "id": "block-2", "title": "About System B", "items": [
            {"id": "Q1", "kind": "likert", "text": "The faces shown came closer to the face I wanted.", "required": True,
             "min": 1, "max": 5, "labels": ["not at all", "completely"]},
            {"id": "comment", "kind": "text", "text": "Anything else?", "required": False}]}),
    ("questionnaire_final", "at the end: best and worst among the conditions, by the labels the participant saw", {
        "type": "questionnaire", "rid": 9, "id": "final", "title": "Comparing the systems", "items": [
            {"id": "best", "kind": "best", "text": "Which system was the best?", "required": True,
             "choices": ["System B", "System A", "System D", "System C"]},
            {"id": "worst", "kind": "worst", "text": "Which system was the worst?", "required": True,
             "choices": ["System B", "System A", "System D", "System C"]}]}),
    ("answers", "the participant's answers: an integer for Likert, a string for text and for best/worst (a label)", {
        "type": "answers", "rid": 7, "questionnaire": "block-2",
        "answers": [{"item": "Q1", "value": 4}, {"item": "comment", "value": "顔が選びやすかった"}]}),
    ("answered", "answers committed", {"type": "answered", "rid": 7, "questionnaire": "block-2"}),
    ("study_done", "nothing is left for this participant", {"type": "study.done", "rid": 10, "trials": 5}),
    ("error_unknown_participant", "a participant code not in the study", {
        "type": "error", "rid": 1, "code": "unauthorized", "message": "this participant code is not in the study"}),
]
# v1.2, gaze (docs/gaze.md): samples as arrays [t, source, ox, oy, oz, dx, dy, dz, confidence(, panel, u, v)]
_LAYOUT = [{"position": [F(round((c - 1) * 0.36, 2)), F(round(1.5 + (1 - r) * 0.36, 2)), F(-1.5)],
            "rotation": [F(0.0), F(0.0), F(0.0), F(1.0)], "size": [F(0.3), F(0.3)]} for r in range(3) for c in range(3)]
VECTORS_V1_2 += [
    ("gaze_batch_rays", "head gaze, rays only (the server ray-casts them against the layout); no rid: no reply", {
        "type": "gaze.batch", "samples": [
            [F(1732356000.0), "head", F(0.0), F(1.5), F(0.0), F(0.0), F(0.0), F(-1.0), F(1.0)],
            [F(1732356000.0111), "head", F(0.0), F(1.5), F(0.0), F(0.0), F(0.0), F(-1.0), F(1.0)],
            [F(1732356000.0222), "head", F(0.001), F(1.5), F(0.0), F(0.0), F(0.28), F(-0.96), F(1.0)]]}),
    ("gaze_batch_hits", "eye gaze with the client's hits (panel -1: no panel), a low-confidence sample, a rid", {
        "type": "gaze.batch", "rid": 11, "samples": [
            [F(1732356000.5), "eye", F(0.0), F(1.5), F(0.0), F(0.0), F(0.0), F(-1.0), F(0.97), 4, F(0.5), F(0.5)],
            [F(1732356000.5111), "eye", F(0.0), F(1.5), F(0.0), F(0.0), F(0.0), F(-1.0), F(0.2), 4, F(0.5), F(0.5)],
            [F(1732356000.5222), "eye", F(0.0), F(1.5), F(0.0), F(0.6), F(0.0), F(-0.8), F(0.95), -1, F(0.0), F(0.0)]]}),
    ("layout", "the grid's 9 panels in the scene frame (panel k shows candidates.items[k])", {
        "type": "layout", "rid": 12, "panels": _LAYOUT}),
    ("welcome_gaze", "a v1.2 greeting: what a gaze.batch may carry", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee05",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 2, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256}}),
    ("error_gaze_dropped", "a batch with bad samples: the good ones are kept, the bad ones counted", {
        "type": "error", "rid": 11, "code": "bad_field",
        "message": "gaze.batch.samples: 2 of 40 dropped (1 not_unit, 1 out_of_order); see docs/gaze.md for what a sample must be",
        "dropped": 2}),
    ("error_gaze_overloaded", "samples beyond the announced rate are dropped, never queued (no rid: none was sent)", {
        "type": "error", "code": "overloaded",
        "message": "gaze.batch.samples: 30 dropped, over 120 samples per second per source; send fewer", "dropped": 30}),
]
# v1.3: live sketch search
_SKETCH_ITEMS = [{"id": i, "texture": _HASH, "title": f"Avatar {i}", "url": f"https://avatars.example/items/0-{i:05d}",
                  "probability": F(p)} for i, p in ((412, 0.41), (87, 0.18), (1203, 0.09), (5, 0.05), (733, 0.04),
                                                   (96, 0.03), (1450, 0.02), (318, 0.02), (64, 0.01))]
_PREVIEW = {"hash": _HASH, "format": "jpeg", "width": 8, "height": 8, "data": B(_PNG)}
VECTORS_V1_3 = [
    ("hello_v1_3", "v1.3 greeting: this client draws (it is told about sketching in welcome.sketch)", {
        "type": "hello", "rid": 1, "protocol": 1, "client": "omokage-web/0.4.0", "protocol_minor": 3}),
    ("welcome_sketch", "a v1.3 greeting from a server with a sketch model", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee06",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 3, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256},
        "sketch": {"resolution": 32, "preview_size": 96, "tools": ["line", "paint"], "min_width": F(0.001),
                   "max_width": F(0.25), "max_strokes": 256, "max_points_per_message": 512,
                   "max_points_per_stroke": 4096, "max_points": 65536}}),
    ("sketch_begin", "a new, empty drawing", {"type": "sketch.begin", "rid": 20}),
    ("sketch_result_empty", "nothing drawn yet: no faces, the average face as the preview", {
        "type": "sketch.result", "rid": 20, "revision": 0, "strokes": 0, "items": [], "preview": _PREVIEW}),
    ("sketch_stroke_line", "a pen line (tool absent: line), coordinates as one flat array x0, y0, x1, y1, ...", {
        "type": "sketch.stroke", "rid": 21, "points": [F(0.30), F(0.40), F(0.35), F(0.38), F(0.41), F(0.385)],
        "colour": [20, 20, 20], "width": F(0.012)}),
    ("sketch_stroke_paint_append", "the next piece of a stroke of paint being drawn (append: true)", {
        "type": "sketch.stroke", "rid": 22, "points": [F(0.5), F(0.12), F(0.62), F(0.15)],
        "colour": [236, 120, 170], "width": F(0.08), "tool": "paint", "append": True}),
    ("sketch_result", "the faces the drawing fits best and its preview; answers rid 22, which it includes with 21", {
        "type": "sketch.result", "rid": 22, "revision": 2, "strokes": 1, "items": _SKETCH_ITEMS,
        "preview": _PREVIEW}),
    ("sketch_undo", "take back the last whole stroke", {"type": "sketch.undo", "rid": 23}),
    ("sketch_clear", "an empty canvas, the drawing kept open", {"type": "sketch.clear", "rid": 24}),
    ("start_sketch", "a selection that starts from the drawing", {
        "type": "start", "rid": 25, "algorithm": "pca", "init": "sketch", "policy": "thompson"}),
    ("error_sketch_bad_point", "a refused stroke: the drawing is unchanged", {
        "type": "error", "rid": 26, "code": "bad_field",
        "message": "sketch.stroke.points: points must be finite numbers (NaN or infinity received); the drawing is "
                   "unchanged"}),
]
# v1.4: gaze calibration
_NINE = [[F(float(y)), F(float(p))] for p in (10, 0, -10) for y in (-15, 0, 15)]
VECTORS_V1_4 = [
    ("hello_v1_4", "v1.4 greeting: this client can run a gaze calibration", {
        "type": "hello", "rid": 1, "protocol": 1, "client": "omokage-unity/0.6.0", "protocol_minor": 4}),
    ("welcome_calibration", "a v1.4 greeting: the calibration patterns offered, in welcome.gaze", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee07",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 4, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256,
                                               "calibration": ["five-point", "nine-point"]}}),
    ("calibrate_begin", "start a calibration of eye gaze on the nine-point pattern", {
        "type": "calibrate.begin", "rid": 30, "pattern": "nine-point", "source": "eye"}),
    ("calibrate_begin_default", "start a calibration with the defaults (nine-point, eye)", {
        "type": "calibrate.begin", "rid": 31}),
    ("calibration", "the targets to show one at a time (yaw, pitch in degrees, scene frame) and how long", {
        "type": "calibration", "rid": 30, "pattern": "nine-point", "targets": _NINE, "distance_m": F(1.5),
        "settle_s": F(0.5), "dwell_s": F(1.0)}),
    ("calibrate_end", "when each target was on screen and settled, on the server's clock (gaze.batch sent before)", {
        "type": "calibrate.end", "rid": 32, "shown": [
            [k, F(1732356010.0 + 1.5 * k + 0.5), F(1732356010.0 + 1.5 * k + 1.5)] for k in range(9)]}),
    ("calibrated", "the correction fitted and applied to this session's gaze; saved for a study participant", {
        "type": "calibrated", "rid": 32, "source": "eye", "targets": 9, "accuracy_deg": F(0.42),
        "precision_deg": F(0.31), "saved": True}),
    ("error_calibration_failed", "a calibration that could not be fitted: the previous correction stays", {
        "type": "error", "rid": 32, "code": "calibration_failed",
        "message": "calibration: only 2 target(s) with at least 5 samples; need 4; the previous correction stays in "
                   "force"}),
]
# v1.5: device default corrections, cancelling a calibration, the ideal face
_IDEAL_ITEMS = [{"id": i, "distance": F(d), "texture": _HASH, "title": f"Avatar {i}",
                 "url": f"https://avatars.example/items/0-{i:05d}"}
                for i, d in ((733, 0.18), (1203, 0.21), (96, 0.24), (318, 0.26), (1450, 0.27), (64, 0.29),
                             (5, 0.31), (871, 0.33), (20, 0.34))]
VECTORS_V1_5 = [
    ("hello_v1_5_device", "v1.5 greeting from a Quest Pro: its default gaze correction applies until a calibration", {
        "type": "hello", "rid": 1, "protocol": 1, "client": "omokage-unity/0.7.0", "protocol_minor": 5,
        "device": "quest-pro"}),
    ("welcome_v1_5", "a v1.5 greeting: what corrects this session's gaze (the device's default), and ideal faces", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee08",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 5, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256,
                                               "calibration": ["five-point", "nine-point"], "profile": "device"},
        "ideal": {"image_size": 200}}),
    ("calibrate_cancel", "the user abandoned the calibration: the correction in force stays", {
        "type": "calibrate.cancel", "rid": 33}),
    ("calibration_cancelled", "the calibration is over; its samples (how many) were dropped", {
        "type": "calibration.cancelled", "rid": 33, "samples": 412}),
    ("ideal", "the face the session's belief likes best, near the last face chosen", {"type": "ideal", "rid": 40}),
    ("ideal_near", "the same, near another face shown in this selection", {"type": "ideal", "rid": 41, "near": 412}),
    ("ideal_result", "the generated face (inline, like a preview) and the unseen catalog faces nearest to it", {
        "type": "ideal.result", "rid": 40, "near": 412, "items": _IDEAL_ITEMS,
        "preview": {"hash": _HASH, "format": "jpeg", "width": 8, "height": 8, "data": B(_PNG)}}),
]
# v1.6: sharper sketch previews that follow the results
VECTORS_V1_6 = [
    ("hello_v1_6", "v1.6 greeting: this client shows sharper sketch previews when the server sends them", {
        "type": "hello", "rid": 1, "protocol": 1, "client": "omokage-web/0.8.0", "protocol_minor": 6}),
    ("welcome_v1_6", "a v1.6 greeting from a server whose generator is slow: sharper previews follow the results", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee09",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 6, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256,
                                               "calibration": ["five-point", "nine-point"], "profile": "none"},
        "sketch": {"resolution": 32, "preview_size": 64, "tools": ["line", "paint"], "min_width": F(0.001),
                   "max_width": F(0.25), "max_strokes": 256, "max_points_per_message": 512,
                   "max_points_per_stroke": 4096, "max_points": 65536, "sharpens": True},
        "ideal": {"image_size": 200}}),
    ("sketch_preview", "a sharper preview of the result of revision 2 (no rid: it answers no request)", {
        "type": "sketch.preview", "revision": 2, "preview": _PREVIEW}),
]
# v1.7: resuming a selection after a lost connection (docs/protocol.md#resuming-a-selection-v17)
_TOKEN = "3f9c2a7e51d04b8e9a6c1f2d7b8e4a90"
VECTORS_V1_7 = [
    ("hello_v1_7_resume", "v1.7 greeting after a lost connection: go on with the selection of this resume token", {
        "type": "hello", "rid": 1, "protocol": 1, "client": "omokage-web/0.9.0", "protocol_minor": 7,
        "resume": _TOKEN}),
    ("welcome_v1_7", "a v1.7 greeting: the resume token of this connection's selection, valid 10 minutes after a loss", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee0a",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 7, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256,
                                               "calibration": ["five-point", "nine-point"], "profile": "none"},
        "resume": {"token": "9b1e6d0c4a2f48e3b7c5d1a0e6f29c84", "ttl_s": F(600.0)}}),
    ("welcome_v1_7_resumed", "the selection goes on here (its grid follows); a fresh token replaces the spent one", {
        "type": "welcome", "rid": 1, "protocol": 1, "server": "omokage/0.1.0", "session_id": "c0ffee0b",
        "limits": {"max_frame_bytes": 4194304, "max_image_bytes": 3145728, "max_image_pixels": 16000000,
                   "max_messages_per_second": F(200.0), "max_hashes_per_request": 64, "grid_size": 9},
        "algorithms": ["raw", "pca", "nmf", "ae"], "catalog": {"count": 1500, "image_size": 200},
        "protocol_minor": 7, "policies": ["thompson", "infogain", "cover", "study", "random", "thompson+gaze"],
        "default_policy": "thompson", "gaze": {"max_rate_hz": F(120.0), "max_samples_per_batch": 256,
                                               "calibration": ["five-point", "nine-point"], "profile": "none"},
        "resumed": True, "resume": {"token": "e47a0c2b9d6f41a8b3e5c7d9f1a2b4c6", "ttl_s": F(600.0)}}),
    ("candidates_resumed", "right after a resumed welcome, no rid: the grid that was on screen (step 3)", {
        "type": "candidates", "step": 3, "algorithm": "pca", "items": [
            {"id": 1234, "distance": None, "texture": _HASH, "title": "桜 — pink twin tails",
             "url": "https://avatars.example/items/0-01234", "probability": F(0.125)},
            {"id": 17, "distance": None, "texture": _HASH, "title": "Mirei", "url": "https://avatars.example/items/0-00017",
             "probability": F(0.03125)}],
        "policy": "thompson"}),
    ("back", "undo the last choose or skip: the grid before it comes back as it was", {"type": "back", "rid": 9}),
]
SERVER_TYPES = ("welcome", "candidates", "rated", "decided", "texture", "pong", "error", "models", "questionnaire",
                "answered", "study.done", "sketch.result", "calibration", "calibrated", "calibration.cancelled",
                "ideal.result", "sketch.preview")


def to_python(v):
    """JSON description → the Python value msgpack encodes."""
    if isinstance(v, dict):
        if set(v) == {"$float"}:
            return float(v["$float"])
        if set(v) == {"$bin"}:
            return base64.b64decode(v["$bin"])
        return {k: to_python(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_python(x) for x in v]
    return v


def encode(v) -> bytes:
    return msgpack.packb(to_python(v), use_bin_type=True)


def main() -> None:
    index = []
    for minor, vectors in ((0, VECTORS), (1, VECTORS_V1_1), (2, VECTORS_V1_2), (3, VECTORS_V1_3), (4, VECTORS_V1_4),
                            (5, VECTORS_V1_5), (6, VECTORS_V1_6), (7, VECTORS_V1_7)):
        for name, doc, message in vectors:
            data = encode(message)
            (HERE / f"{name}.msgpack").write_bytes(data)
            index.append({"file": f"{name}.msgpack",
                          "direction": "server" if message["type"] in SERVER_TYPES else "client",
                          "since": f"1.{minor}", "description": doc, "sha256": hashlib.sha256(data).hexdigest(),
                          "message": message})
    (HERE / "index.json").write_text(json.dumps({"protocol": 1, "protocol_minor": 7, "vectors": index}, indent=1,
                                                ensure_ascii=False) + "\n")
    print(f"wrote {len(index)} vectors to {HERE}")


if __name__ == "__main__":
    main()
