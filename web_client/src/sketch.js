// Live sketch search (protocol v1.3, docs/protocol.md "Sketch"): a drawing surface whose strokes go to the server
// while they are drawn.
//
// SketchPad owns the canvas (Pointer Events: mouse, touch and pen alike; one pointer at a time), the page's copy of
// the drawing (to paint it, and to send it again after a reconnect) and the messages: a live stroke leaves in pieces
// (`sketch.stroke`, `append: true` after the first) at most every THROTTLE_MS, never more than
// welcome.sketch.max_points_per_message points each, without waiting for results. The server coalesces: a
// `sketch.result` answers the newest message it includes, so there are fewer results than messages when the user
// draws faster than the server projects. Results of an older drawing (before a `sketch.begin`) or older than the one
// shown (`revision`) are dropped here; the page gets each newer one through `onResult`.

import { TokenBucket } from './protocol.js';

export const THROTTLE_MS = 33; // about 30 Hz
const INK = [29, 26, 36];      // what a line looks like (the server compares lines with line art: colour is moot)
const PAPER = '#f4f0ea';

/** Defaults where welcome.sketch leaves something out (docs/protocol.md `welcome.sketch`). */
const DEFAULTS = { min_width: 0.001, max_width: 0.25, max_strokes: 256, max_points_per_message: 512,
  max_points_per_stroke: 4096, tools: ['line', 'paint'] };

export class SketchPad {
  /**
   * `client`: the OmokageClient; `canvas`: the drawing surface. Callbacks: `onResult(result)` (a newer
   * `sketch.result` of the current drawing), `onSharper(msg)` (v1.6: a `sketch.preview`, the sharper preview of the
   * result on screen), `onError(msg, what)` (an `error` answering a sketch message; `what`: 'stroke', 'undo',
   * 'clear', 'begin' or 'other'), `onChange()` (the drawing changed here), `onFull(limit)` (a stroke was refused
   * before sending: the drawing holds `max_strokes`).
   */
  constructor(client, canvas, { onResult = () => {}, onSharper = () => {}, onError = () => {}, onChange = () => {},
    onFull = () => {} } = {}) {
    this.client = client;
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.onResult = onResult;
    this.onSharper = onSharper;
    this.onError = onError;
    this.onChange = onChange;
    this.onFull = onFull;
    this.limits = { ...DEFAULTS };
    this.tool = 'line';
    this.colour = [92, 58, 38];
    this.width = 0.02;
    this.strokes = [];       // {tool, colour, width, points: [x0, y0, ...], cuts: [where each piece sent ended]}
    this.live = null;        // the stroke being drawn: {stroke, pointerId, sent (points sent), pieces}
    this.gen = 0;            // +1 on every sketch.begin: results of an earlier drawing are stale
    this.begun = false;      // a sketch.begin went out on this connection
    this.revision = 0;       // the revision the server's drawing has after everything sent (stroke, piece, undo, clear)
    this.shown = -1;         // the revision of the result handed to onResult (of this gen)
    this.latest = null;      // that result
    this._meta = new Map();  // rid -> {type, gen, stroke}
    this._timer = null;
    this._frame = 0;
    this._replayTimer = null;
    this._replays = 0;       // replays since the last result (a bound: a replay that does not help is not repeated)
    this._replayedTo = 0;    // the revision a replay brings the server's drawing to: only a result of it counts
    this._droppedGen = -1;   // a gen some of whose messages the server dropped (overloaded): a replay resends them
    // Sent at most half the server's message rate (welcome.limits), with a burst of the rate: a replay of a long
    // drawing (hundreds of pieces) goes out paced, in order, instead of over the server's limit at once
    this._queue = [];        // [type, fields, stroke, gen] waiting for their turn
    this._bucket = this._newBucket();
    this._pump = null;
    this._lastSend = -Infinity;
    this.stats = { messages: { 'sketch.begin': 0, 'sketch.stroke': 0, 'sketch.undo': 0, 'sketch.clear': 0 },
      pieces: 0, points: 0, maxPointsPerMessage: 0, moves: 0, results: 0, stale: 0, sharpened: 0, errors: [],
      sendTimes: [] };
    client.addEventListener('sketch', (ev) => this._reply(ev.detail));
    this._bindPointer();
    if (typeof ResizeObserver === 'function') new ResizeObserver(() => this.redraw()).observe(canvas);
  }

  /** welcome.sketch of the server (null: it does not sketch). */
  configure(sketch) {
    this.limits = { ...DEFAULTS, ...(sketch || {}) };
    this.begun = false;
    this._bucket = this._newBucket(); // this server's message rate
    this.width = this.clampWidth(this.width);
  }

  clampWidth(w) {
    return Math.min(this.limits.max_width, Math.max(this.limits.min_width, Number(w) || this.limits.min_width));
  }

  get empty() {
    return this.strokes.length === 0;
  }

  /** Results still to come for what was sent (false: the result shown is of the newest drawing). */
  get pending() {
    return this.begun && this.shown !== this.revision;
  }

  // -- messages ---------------------------------------------------------------------------------
  _send(type, fields = {}, stroke = null) {
    if (this._queue.length || !this._bucket.available(performance.now())) {
      this._queue.push([type, fields, stroke, this.gen]);
      this._schedulePump();
      return null;
    }
    return this._sendNow(type, fields, stroke, this.gen);
  }

  _sendNow(type, fields, stroke, gen) {
    const rid = this.client.sendSketch(type, fields); // throws ConnectionLost when offline
    this._bucket.spend();
    this._meta.set(rid, { type, gen, stroke });
    this.stats.messages[type] = (this.stats.messages[type] || 0) + 1;
    return rid;
  }

  /** Half the server's message rate (whatever else the page sends besides), in bursts of the full rate. */
  _newBucket() {
    const limits = this.client.welcome && this.client.welcome.limits;
    const perSecond = limits && limits.max_messages_per_second > 0 ? limits.max_messages_per_second : 200;
    return new TokenBucket(perSecond / 2, perSecond);
  }

  _schedulePump() {
    if (this._pump) return;
    this._pump = setTimeout(() => {
      this._pump = null;
      try {
        while (this._queue.length && this._bucket.available(performance.now())) {
          const [type, fields, stroke, gen] = this._queue.shift();
          this._sendNow(type, fields, stroke, gen);
        }
      } catch {
        this._queue = []; // offline: the reconnect sends the drawing again
        return;
      }
      if (this._queue.length) this._schedulePump();
    }, 50);
  }

  /** A new, empty drawing on the server (and here). */
  begin() {
    clearTimeout(this._replayTimer);
    this._cancelLive();
    this.strokes = [];
    this._startGen();
    this.redraw();
    this.onChange();
  }

  /** The page's drawing again on the server (after a reconnect, or to recover from a refused message). */
  replay() {
    clearTimeout(this._replayTimer);
    this._cancelLive();
    this._startGen();
    for (const s of this.strokes) this._sendWhole(s);
    this._replayedTo = this.revision;
  }

  _startGen() {
    this._queue = []; // an earlier drawing's messages not sent yet: this one replaces them
    this._replayedTo = 0;
    this.gen += 1;
    this.revision = 0;
    this.shown = -1;
    this.latest = null;
    this._meta.clear();
    this.begun = false;
    this._send('sketch.begin');
    this.begun = true;
  }

  /** A stroke again, in the pieces it first went in (the server draws each piece on its own: the same pieces make
   * the same drawing, to the pixel), the rest in pieces as large as a message may be. */
  _sendWhole(stroke) {
    const per = this.limits.max_points_per_message;
    const n = stroke.points.length / 2;
    const cuts = (stroke.cuts || []).filter((c) => c <= n);
    stroke.cuts = [];
    let from = 0;
    for (const to of cuts) {
      if (to <= from) continue;
      for (let a = from; a < to; a += per) this._sendPiece(stroke, a, Math.min(to, a + per));
      from = to;
    }
    for (; from < n; from += per) this._sendPiece(stroke, from, Math.min(n, from + per));
  }

  _sendPiece(stroke, from, to) {
    const points = stroke.points.slice(from * 2, to * 2);
    this._send('sketch.stroke', { points, colour: stroke.colour, width: stroke.width, tool: stroke.tool,
      append: from > 0 ? true : undefined }, stroke);
    (stroke.cuts || (stroke.cuts = [])).push(to);
    this.revision += 1;
    this.stats.pieces += 1;
    this.stats.points += to - from;
    this.stats.maxPointsPerMessage = Math.max(this.stats.maxPointsPerMessage, to - from);
    const t = this.stats.sendTimes;
    t.push(performance.now());
    if (t.length > 400) t.splice(0, t.length - 400);
  }

  undo() {
    this._endLive();
    if (!this.begun) return false;
    const had = this.strokes.length > 0;
    this._send('sketch.undo');
    if (had) {
      this.strokes.pop();
      this.revision += 1; // nothing to undo leaves the server's revision as it is
      this.redraw();
      this.onChange();
    }
    return had;
  }

  clear() {
    this._endLive();
    if (!this.begun) return;
    this._send('sketch.clear');
    this.revision += 1;
    this.strokes = [];
    this.redraw();
    this.onChange();
  }

  _reply(msg) {
    if (msg.type === 'sketch.preview') {
      // v1.6: only for the result on screen (the server sends none for a drawing that changed since, but a begin of
      // this page's may have crossed it on the way)
      if (this.latest && msg.revision === this.shown) {
        this.stats.sharpened += 1;
        this.onSharper(msg);
      }
      return;
    }
    const meta = this._meta.get(msg.rid);
    if (msg.type === 'sketch.result') {
      this.stats.results += 1;
      // this result covers every message sent before it: forget their bookkeeping
      if (meta) {
        for (const [rid] of this._meta) {
          this._meta.delete(rid);
          if (rid === msg.rid) break;
        }
      }
      if (!meta || meta.gen !== this.gen || !(msg.revision > this.shown)) {
        this.stats.stale += 1;
        return;
      }
      this.shown = msg.revision;
      this.latest = msg;
      // a result of only part of a replay does not show the replay worked: the bound on replays holds until one of
      // the whole drawing comes back
      if (msg.revision >= this._replayedTo) this._replays = 0;
      this.onResult(msg);
      return;
    }
    if (msg.type !== 'error') return;
    this._meta.delete(msg.rid);
    this.stats.errors.push({ code: msg.code, message: msg.message });
    const what = meta ? meta.type.replace('sketch.', '') : 'other';
    if (meta && meta.gen === this.gen && msg.code === 'overloaded') this._droppedGen = meta.gen;
    if (meta && meta.gen === this.gen && meta.type !== 'sketch.begin') {
      // a piece refused because an earlier one of its stroke was dropped (overloaded) is not a bad stroke: the replay
      // that follows sends it again, so the page keeps it
      const refused = meta.stroke && (msg.code === 'bad_field' || msg.code === 'too_large')
        && this._droppedGen !== meta.gen;
      if (refused) {
        // the server left its drawing as it was: so does the page (the stroke goes), and sends it again in full,
        // since later pieces of that stroke may have gone on to the one before it
        const i = this.strokes.indexOf(meta.stroke);
        if (i >= 0) this.strokes.splice(i, 1);
        if (this.live && this.live.stroke === meta.stroke) this._cancelLive();
        this.redraw();
        this.onChange();
      }
      // a message the server dropped (over its rate, out of step): it gets the page's drawing again, a moment later
      // when it was busy; not over and over when that does not help (no result came since the last time)
      if ((refused || msg.code === 'wrong_state' || msg.code === 'overloaded') && this._replays < 3) {
        this._replays += 1;
        clearTimeout(this._replayTimer);
        const again = () => { try { this.replay(); } catch { /* offline: the reconnect sends it again */ } };
        if (msg.code === 'overloaded') this._replayTimer = setTimeout(again, 1000);
        else again();
      }
    }
    this.onError(msg, what);
  }

  // -- pointer input ------------------------------------------------------------------------------
  _bindPointer() {
    const c = this.canvas;
    c.style.touchAction = 'none';
    c.addEventListener('pointerdown', (e) => this._down(e));
    c.addEventListener('pointermove', (e) => this._move(e));
    c.addEventListener('pointerup', (e) => this._up(e));
    c.addEventListener('pointercancel', (e) => this._up(e));
    c.addEventListener('lostpointercapture', (e) => this._up(e));
    c.addEventListener('contextmenu', (e) => e.preventDefault());
  }

  _xy(e) {
    const r = this.canvas.getBoundingClientRect();
    // off the canvas is fine (the server clips), far off is not: keep within a canvas of the edge
    const x = Math.min(2, Math.max(-1, (e.clientX - r.left) / (r.width || 1)));
    const y = Math.min(2, Math.max(-1, (e.clientY - r.top) / (r.height || 1)));
    return [Math.round(x * 1e4) / 1e4, Math.round(y * 1e4) / 1e4];
  }

  _down(e) {
    if (this.live || (e.pointerType === 'mouse' && e.button !== 0)) return;
    if (!this.begun || this.client.state !== 'open') return;
    if (this.strokes.length >= this.limits.max_strokes) {
      this.onFull(this.limits.max_strokes);
      return;
    }
    e.preventDefault();
    try { this.canvas.setPointerCapture(e.pointerId); } catch { /* synthetic pointers have no capture */ }
    const stroke = { tool: this.tool, colour: this.tool === 'line' ? [...INK] : [...this.colour],
      width: this.clampWidth(this.width), points: [] };
    this.strokes.push(stroke);
    this.live = { stroke, pointerId: e.pointerId, sent: 0 };
    this._add(this._xy(e));
    this._schedule();
    this.onChange();
  }

  _move(e) {
    if (!this.live || e.pointerId !== this.live.pointerId) return;
    e.preventDefault();
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ev of events.length ? events : [e]) {
      this.stats.moves += 1;
      this._add(this._xy(ev));
    }
    this._schedule();
  }

  _up(e) {
    if (!this.live || e.pointerId !== this.live.pointerId) return;
    if (e.type !== 'lostpointercapture') this._add(this._xy(e));
    this._endLive();
    this.onChange();
  }

  /** One point onto the live stroke (a point within half a pixel of the last is skipped). */
  _add([x, y]) {
    const live = this.live;
    let s = live.stroke;
    const p = s.points;
    const n = p.length / 2;
    if (n > 0) {
      const side = this.canvas.getBoundingClientRect().width || 300;
      if (Math.hypot(x - p[p.length - 2], y - p[p.length - 1]) * side < 0.5) return;
    }
    if (n >= this.limits.max_points_per_stroke) {
      // the stroke is as long as one may be: send it and go on with a new stroke from its last point
      this._flush();
      if (this.strokes.length >= this.limits.max_strokes) {
        this._endLive();
        this.onFull(this.limits.max_strokes);
        return;
      }
      const next = { tool: s.tool, colour: s.colour, width: s.width, points: p.slice(-2) };
      this.strokes.push(next);
      this.live = { stroke: next, pointerId: live.pointerId, sent: 0 };
      s = next;
    }
    s.points.push(x, y);
    this._paintSegment(s);
  }

  _schedule() {
    if (this._timer) return;
    const wait = Math.max(0, this._lastSend + THROTTLE_MS - performance.now());
    this._timer = setTimeout(() => {
      this._timer = null;
      this._flush();
    }, wait);
  }

  /** Send the live stroke's points not sent yet: one piece, or more when over the per-message limit. */
  _flush() {
    clearTimeout(this._timer);
    this._timer = null;
    const live = this.live;
    if (!live) return;
    const n = live.stroke.points.length / 2;
    if (live.sent >= n) return;
    try {
      while (live.sent < n) {
        const to = Math.min(n, live.sent + this.limits.max_points_per_message);
        this._sendPiece(live.stroke, live.sent, to);
        live.sent = to;
      }
    } catch { /* offline: the reconnect sends the whole drawing again */ }
    this._lastSend = performance.now();
  }

  _endLive() {
    if (!this.live) return;
    this._flush();
    const id = this.live.pointerId;
    this.live = null;
    try { if (this.canvas.hasPointerCapture(id)) this.canvas.releasePointerCapture(id); } catch { /* gone */ }
  }

  _cancelLive() {
    clearTimeout(this._timer);
    this._timer = null;
    this.live = null;
  }

  // -- painting -------------------------------------------------------------------------------------
  /** The canvas's backing store at the device's pixel ratio; returns its side in device pixels. */
  _fit() {
    const c = this.canvas;
    const side = Math.max(1, Math.round(c.clientWidth * (window.devicePixelRatio || 1)));
    if (c.width !== side || c.height !== side) {
      c.width = side;
      c.height = side;
    }
    return side;
  }

  /** Paint everything: paint strokes underneath (later over earlier, as on the server), lines on top. */
  redraw() {
    if (this._frame) cancelAnimationFrame(this._frame);
    this._frame = 0;
    const side = this._fit();
    const g = this.ctx;
    g.clearRect(0, 0, side, side);
    for (const s of this.strokes) if (s.tool === 'paint') this._path(s, 0, side);
    for (const s of this.strokes) if (s.tool !== 'paint') this._path(s, 0, side);
  }

  _paintSegment(s) {
    if (this._frame) return; // a full repaint is due anyway
    if (s.tool === 'paint' && this.strokes.some((o) => o.tool !== 'paint')) {
      // lines stay on top of paint: paint it all again, once per frame
      this._frame = requestAnimationFrame(() => {
        this._frame = 0;
        this.redraw();
      });
      return;
    }
    this._path(s, Math.max(0, s.points.length / 2 - 2), this._fit());
  }

  /** Stroke `s` from point `from` on. */
  _path(s, from, side) {
    const g = this.ctx;
    const p = s.points;
    const n = p.length / 2;
    if (n === 0) return;
    g.strokeStyle = g.fillStyle = `rgb(${s.colour[0]}, ${s.colour[1]}, ${s.colour[2]})`;
    const w = Math.max(1, s.width * side);
    if (n === 1 || from >= n - 1) {
      g.beginPath();
      g.arc(p[2 * (n - 1)] * side, p[2 * (n - 1) + 1] * side, w / 2, 0, Math.PI * 2);
      g.fill();
      return;
    }
    g.lineWidth = w;
    g.lineCap = 'round';
    g.lineJoin = 'round';
    g.beginPath();
    g.moveTo(p[2 * from] * side, p[2 * from + 1] * side);
    for (let i = from + 1; i < n; i++) g.lineTo(p[2 * i] * side, p[2 * i + 1] * side);
    g.stroke();
  }

  /** The drawing as a PNG blob on paper (for "Your drawing" beside the selection it started). */
  snapshot(size = 256) {
    const c = document.createElement('canvas');
    c.width = c.height = size;
    const g = c.getContext('2d');
    g.fillStyle = PAPER;
    g.fillRect(0, 0, size, size);
    g.drawImage(this.canvas, 0, 0, size, size);
    return new Promise((resolve) => c.toBlob(resolve, 'image/png'));
  }
}

export const PAPER_COLOUR = PAPER;
