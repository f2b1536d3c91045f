// Gaze to the server (protocol v1.2 `gaze.batch` and `layout`; docs/gaze.md).
//
// GazeSender takes samples from a render loop into a preallocated buffer (push() allocates nothing), and
// every FLUSH_MS turns them into one `gaze.batch` (or more, at most welcome.gaze.max_samples_per_batch
// samples each). It keeps to welcome.gaze.max_rate_hz with a token bucket, stamps each sample on the
// server's clock (the client's clock + the offset measured by ping/pong, see protocol.js), keeps every
// source's times strictly increasing, and is flushed by the page right before choose / skip / decide so
// that the grid's gaze reaches the server ahead of the pick that closes it.
//
// PointerProxy is the desktop stand-in: where the mouse rests on the 2D grid, sampled every animation
// frame as a ray from an eye 60 cm in front of the screen. It is not gaze; the page says so in the
// `hello.client` string of every connection that sends it ("(gaze: pointer proxy)").

import { TokenBucket } from './protocol.js';

export const FLUSH_MS = 100;
const F = 10;                     // per sample: perf ms, ox, oy, oz, dx, dy, dz, panel, u, v
const PX_M = 0.0254 / 96;         // a CSS pixel in metres
const EYE_M = 0.6;                // the proxy's eye distance from the screen

export class GazeSender {
  /**
   * `client`: an OmokageClient (send(), welcome, clockOffsetS); `source`: 'head' (the only one a browser has).
   * Events via `onError(msg)`: an `error` the server sent about gaze (no rid: gaze is fire and forget).
   */
  constructor(client, { capacity = 1024, flushMs = FLUSH_MS, source = 'head' } = {}) {
    this.client = client;
    this.source = source;
    this.capacity = capacity;
    this.buf = new Float64Array(capacity * F);
    this.n = 0;
    this.enabled = false;
    this.rate = 120;
    this.maxBatch = 256;
    this.bucket = new TokenBucket(this.rate, this.rate * 0.25);   // a quarter second's samples at once
    this.lastMs = null;           // the last sample taken: each next one must be later
    this.lastSentT = -Infinity;   // the last sample's server time sent: each next one must be later
    this.stats = { taken: 0, sent: 0, batches: 0, overRate: 0, overflow: 0, layouts: 0, errors: [] };
    this._timer = setInterval(() => this.flush(), flushMs);
  }

  /** A welcome arrived: gaze is on only when it announces `gaze` (a v1.2 server). */
  configure(welcome) {
    const g = welcome && welcome.gaze;
    this.enabled = !!g;
    this.n = 0;
    this.lastMs = null;
    this.lastSentT = -Infinity;
    if (g) {
      this.rate = Number(g.max_rate_hz) > 0 ? Number(g.max_rate_hz) : 120;
      this.maxBatch = Math.max(1, Math.min(this.capacity, Number(g.max_samples_per_batch) || 256));
    }
    this.bucket = new TokenBucket(this.rate, this.rate * 0.25);
  }

  /**
   * One sample at `ms` (performance.now() timeline: rAF and XR frame times are on it): a ray from the origin
   * along the unit direction, and the hit (`panel` -1: none; u, v in 0..1 on that panel). Returns whether it
   * was kept (over the announced rate, or no room: dropped here, never at the server).
   */
  push(ms, ox, oy, oz, dx, dy, dz, panel, u, v) {
    if (!this.enabled) return false;
    if (this.lastMs !== null && !(ms > this.lastMs)) return false;
    this.lastMs = ms;
    if (!this.bucket.available(ms)) {
      this.stats.overRate += 1;
      return false;
    }
    if (this.n >= this.capacity) {
      this.stats.overflow += 1;
      return false;
    }
    this.bucket.spend();
    const b = this.buf;
    let i = this.n * F;
    b[i++] = ms; b[i++] = ox; b[i++] = oy; b[i++] = oz; b[i++] = dx; b[i++] = dy; b[i++] = dz;
    b[i++] = panel; b[i++] = u; b[i] = v;
    this.n += 1;
    this.stats.taken += 1;
    return true;
  }

  /** Send what is pending now (every FLUSH_MS, and before a pick). Outside any frame: this allocates. */
  flush() {
    if (this.n === 0) return;
    const c = this.client;
    if (!this.enabled || c.state !== 'open') {
      this.n = 0;
      return;
    }
    const offset = c.clockOffsetS;
    if (offset == null) return; // no pong yet: keep them until the clocks are known
    const base = performance.timeOrigin / 1000 + offset;
    const b = this.buf;
    let batch = [];
    for (let k = 0; k < this.n; k++) {
      const i = k * F;
      const t = base + b[i] / 1000;
      if (!(t > this.lastSentT)) continue; // the offset estimate moved back: never send out of order
      this.lastSentT = t;
      const panel = b[i + 7];
      batch.push([t, this.source, b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], 1,
        panel, panel < 0 ? 0 : b[i + 8], panel < 0 ? 0 : b[i + 9]]);
      if (batch.length === this.maxBatch) {
        this._send(batch);
        batch = [];
      }
    }
    if (batch.length) this._send(batch);
    this.n = 0;
  }

  _send(samples) {
    try {
      this.client.send('gaze.batch', { samples });
      this.stats.sent += samples.length;
      this.stats.batches += 1;
    } catch { /* the connection went away: these samples are lost, as the grid is */ }
  }

  /** `layout`: panel k (showing candidates.items[k]) as {position [x,y,z], rotation [x,y,z,w], size [w,h]}. */
  layout(panels) {
    if (!this.enabled || this.client.state !== 'open' || !panels.length) return;
    try {
      this.client.send('layout', { panels });
      this.stats.layouts += 1;
      this.lastLayout = panels;
    } catch { /* offline */ }
  }

  /** An `error` without a rid: the server's answer to a gaze.batch or layout that went wrong. */
  serverError(msg) {
    this.stats.errors.push({ code: msg.code, message: msg.message, dropped: msg.dropped });
    if (this.stats.errors.length > 20) this.stats.errors.shift();
  }
}

/**
 * The desktop proxy: the mouse over the 2D grid as a ray from an eye EYE_M in front of the screen centre
 * (x right, y up, the screen at z = -EYE_M, in metres at 96 CSS px per inch). `cards()`: the card elements,
 * `count()`: how many show a face, `active()`: whether a grid is on screen and gaze may be taken.
 */
export class PointerProxy {
  constructor(sender, { cards, count, active, shown }) {
    this.sender = sender;
    this.cards = cards;
    this.count = count;
    this.active = active;  // a grid on screen and no pick in flight: take samples
    this.shown = shown;    // the 2D grid is what the user sees (not the VR scene): its layout is the one
    this.rects = new Float64Array(9 * 4); // left, top, width, height in CSS px, per card
    this.nRects = 0;
    this.x = 0;
    this.y = 0;
    this.inside = false;
    this.mouse = false;
    this.running = false;
    this._layoutKey = '';
    this._frame = (ms) => this.frame(ms);
    const move = (e) => {
      this.x = e.clientX;
      this.y = e.clientY;
      this.inside = true;
      this.mouse = e.pointerType === 'mouse' || e.pointerType === 'pen';
    };
    window.addEventListener('pointermove', move, { passive: true });
    window.addEventListener('pointerdown', move, { passive: true });
    document.documentElement.addEventListener('pointerleave', () => { this.inside = false; });
    window.addEventListener('blur', () => { this.inside = false; });
    const remeasure = () => this.measure();
    window.addEventListener('resize', remeasure, { passive: true });
    window.addEventListener('scroll', remeasure, { passive: true });
  }

  start() {
    if (this.running) return;
    this.running = true;
    requestAnimationFrame(this._frame);
  }

  /** Card rectangles, read when the grid or the page's layout changes (never per frame); sends `layout`. */
  measure() {
    const n = Math.min(9, this.count());
    const vw = window.innerWidth;
    const vh = window.innerHeight;
    const panels = [];
    for (let i = 0; i < n; i++) {
      const r = this.cards[i].getBoundingClientRect();
      this.rects[i * 4] = r.left;
      this.rects[i * 4 + 1] = r.top;
      this.rects[i * 4 + 2] = r.width;
      this.rects[i * 4 + 3] = r.height;
      if (!(r.width > 0 && r.height > 0)) return; // not laid out (hidden page): keep the previous
      panels.push({
        position: [round((r.left + r.width / 2 - vw / 2) * PX_M), round(-(r.top + r.height / 2 - vh / 2) * PX_M), -EYE_M],
        rotation: [0, 0, 0, 1],
        size: [round(r.width * PX_M), round(r.height * PX_M)],
      });
    }
    this.nRects = n;
    const key = JSON.stringify(panels);
    if (key !== this._layoutKey && panels.length && this.shown()) {
      this._layoutKey = key;
      this.sender.layout(panels);
    }
  }

  /** A new grid: its cards are where they are once laid out (and again after the entrance animation). */
  gridShown() {
    this._layoutKey = '';
    this.measure();
    setTimeout(() => this.measure(), 450);
  }

  frame(ms) {
    requestAnimationFrame(this._frame);
    if (!this.inside || !this.mouse || document.hidden || !this.active()) return;
    const vw = window.innerWidth;
    const vh = window.innerHeight;
    const x = (this.x - vw / 2) * PX_M;
    const y = -(this.y - vh / 2) * PX_M;
    const len = Math.sqrt(x * x + y * y + EYE_M * EYE_M);
    let panel = -1;
    let u = 0;
    let v = 0;
    const r = this.rects;
    for (let i = 0; i < this.nRects; i++) {
      const dx = this.x - r[i * 4];
      const dy = this.y - r[i * 4 + 1];
      if (dx >= 0 && dy >= 0 && dx <= r[i * 4 + 2] && dy <= r[i * 4 + 3]) {
        panel = i;
        u = dx / r[i * 4 + 2];
        v = 1 - dy / r[i * 4 + 3];
        break;
      }
    }
    this.sender.push(ms, 0, 0, 0, x / len, y / len, -EYE_M / len, panel, u, v);
  }
}

function round(x) {
  return Math.round(x * 1e5) / 1e5;
}
