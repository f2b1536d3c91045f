// omokage protocol v1.7 over one WebSocket (docs/protocol.md): binary frames, one MessagePack map each.
//
// OmokageClient keeps one connection alive (reconnecting with backoff), sends `hello` on every open (v1.7: with the
// resume token of the last welcome, so the selection goes on after a lost connection or a reload of the tab),
// matches replies to requests by `rid`, pings periodically for the round-trip time, and caches
// textures by content hash as Blob URLs.

import { decode, encode } from '@msgpack/msgpack';

export const PROTOCOL_VERSION = 1;
// v1.1: policies, skip, rate, probability; v1.2: welcome.training and the unsolicited `models` message
// (an older server ignores the minor and sends neither), gaze (`gaze.batch`, `layout`, welcome.gaze) and
// studies (hello.participant, study.next, answers); v1.3: live sketch search (welcome.sketch, `sketch.*`, start
// init `sketch`); v1.4 adds only gaze calibration, which this page never starts (it ignores welcome.gaze.calibration);
// v1.5: the ideal face (welcome.ideal, `ideal` -> `ideal.result`); its hello.device and welcome.gaze.profile concern
// headsets with eye tracking, so the page sends no device and ignores the profile (v1.7's `calibration` too: the page
// never offers a calibration, whatever the profile); v1.6: sharper sketch previews
// (`sketch.preview` after a result, from a server whose welcome.sketch.sharpens); v1.7: resuming a selection
// (welcome.resume's token in the next hello.resume; welcome.resumed, then the grid as a `candidates` without rid) and
// `back` (undo the last choose or skip)
export const PROTOCOL_MINOR = 7;
export const CLIENT_NAME = 'omokage-web/0.9.0';
// where the resume token is kept: sessionStorage (per tab, kept across a reload, gone with the tab: one tab is one
// selection), never localStorage, which every tab of the origin shares
export const RESUME_KEY = 'omokage.resume';

// v1.7: the server's close reason when another connection presented this one's resume token and took its selection
// over (docs/protocol.md "Resuming a selection"): the selection goes on there, so this page must not reconnect and
// start one of its own unasked
export const SUPERSEDED_REASON = 'this selection was resumed on another connection';

const MIME = { jpeg: 'image/jpeg', png: 'image/png' };
const RETRY_DELAYS_MS = [1000, 2000, 3000, 5000];

/** The server answered a request with `error`. */
export class ServerError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ServerError';
    this.code = code;
  }
}

/** The connection went away before the reply came. */
export class ConnectionLost extends Error {
  constructor(message = 'the connection to the server closed') {
    super(message);
    this.name = 'ConnectionLost';
  }
}

/**
 * Events (EventTarget, detail in `event.detail`):
 *   status   {state: 'connecting'|'open'|'offline', attempt, retryInMs, everOpened, reason}
 *   welcome  the welcome map (after each successful hello)
 *   latency  {rttMs, offsetS}
 *   message  an unsolicited server message (no pending rid), e.g. v1.2 `models`
 *   sketch   v1.3: a `sketch.result`, or an `error` answering a sketch message (see sendSketch); v1.6: a
 *            `sketch.preview` (a sharper preview of the result of its `revision`)
 *   candidates  v1.7: a `candidates` without rid, the grid of a resumed selection (it follows a welcome whose
 *            `resumed` is true): the grid the page showed, to render as the current one
 */
export class OmokageClient extends EventTarget {
  /**
   * `clientName`: the `hello.client` string, or a function returning it (asked at each hello);
   * `participant`: a study participant's code for `hello.participant` (v1.2), or null; `resumeKey`: the
   * sessionStorage key of the v1.7 resume token (null: kept in memory only).
   */
  constructor(url, { token = null, participant = null, clientName = CLIENT_NAME, pingIntervalMs = 2000,
    requestTimeoutMs = 20000, silenceTimeoutMs = 10000, resumeKey = RESUME_KEY } = {}) {
    super();
    this.url = url;
    this.resumeKey = resumeKey;
    // v1.7: the token of the last welcome.resume, presented in the next hello (a reload of the tab reads it back)
    this.resumeToken = this._loadResume();
    this.token = token;
    this.participant = participant;
    this.clientName = clientName;
    this.pingIntervalMs = pingIntervalMs;
    this.requestTimeoutMs = requestTimeoutMs;
    // a link that stays silent this long while pings go out is dead even if the socket says open (a Wi-Fi that went
    // away without a FIN, a proxy that stopped relaying): it is dropped and the reconnect runs, as the C# client does
    this.silenceTimeoutMs = silenceTimeoutMs;
    this._heardAt = 0;
    this.ws = null;
    this.welcome = null;
    this.state = 'offline';
    this.everOpened = false;
    this.attempt = 0;
    this.rttMs = null;
    this.clockOffsetS = null; // server clock - client clock (s), from the ping with the shortest round trip
    this._bestRttMs = Infinity;
    this.textures = new TextureCache(this);
    this._rid = 0;
    this._pending = new Map(); // rid -> {onMessage(msg) -> bool done, fail(err), timer}
    this._sketchRids = new Map(); // v1.3: rid -> send order of the sketch messages not answered or covered yet
    this._sketchSeq = 0;
    this._pingTimer = null;
    this._retryTimer = null;
    this._stopped = false;
  }

  // -- connection lifecycle ------------------------------------------------------------------
  connect() {
    this._stopped = false;
    this._fatal = null;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    this._setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this._closed(String(err && err.message || err));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (ev) => {
      this._heardAt = performance.now();
      this._frame(ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      if (ev.code === 1000 && ev.reason === SUPERSEDED_REASON) this._superseded(ev.reason);
      else this._closed(ev.reason || closeReason(ev.code));
    };
    ws.onerror = () => {}; // onclose follows with the reason
  }

  /** Try again now (the "Retry now" button). */
  retryNow() {
    if (this.state === 'offline') {
      this.attempt = 0;
      this.connect();
    }
  }

  /** Drop the connection and open a new one now (a new hello: e.g. with a participant code just entered). */
  reconnect() {
    const ws = this.ws;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (ws) {
      ws.onopen = null;
      ws.onclose = null;
      ws.onmessage = null;
      this.ws = null;
      try { ws.close(1000, 'reconnecting'); } catch { /* already closed */ }
      this._drop();
    }
    this.attempt = 0;
    this.connect();
  }

  close() {
    this._stopped = true;
    clearTimeout(this._retryTimer);
    clearInterval(this._pingTimer);
    if (this.ws) this.ws.close(1000, 'client closed');
  }

  async _opened(ws) {
    try {
      const name = typeof this.clientName === 'function' ? this.clientName() : this.clientName;
      const hello = { protocol: PROTOCOL_VERSION, client: String(name).slice(0, 128), protocol_minor: PROTOCOL_MINOR };
      if (this.token) hello.token = this.token;
      if (this.participant) hello.participant = this.participant;
      if (this.resumeToken) hello.resume = this.resumeToken;
      this.welcome = await this.request('hello', hello);
      // the token presented is spent whatever the answer: the new welcome's replaces it (none: nothing to resume)
      const r = this.welcome.resume;
      this._keepResume(r && typeof r === 'object' && typeof r.token === 'string' && r.token ? r.token : null);
    } catch (err) {
      // a refused hello (token, version) is checked before the resume token, which is still good: it is kept
      if (err instanceof ServerError) {
        this._stopped = true; // a wrong version or token will not fix itself by retrying
        this._fatal = { code: err.code, message: err.message };
      }
      ws.close(1000, 'hello refused');
      return;
    }
    this.attempt = 0;
    this.everOpened = true;
    this._setState('open');
    this.dispatchEvent(new CustomEvent('welcome', { detail: this.welcome }));
    clearInterval(this._pingTimer);
    this._heardAt = performance.now();
    this._pingTimer = setInterval(() => this._keepAlive(ws), this.pingIntervalMs);
    this.ping().catch(() => {});
  }

  /** A ping, unless the server has said nothing for silenceTimeoutMs: then the link is given up and reconnected. */
  _keepAlive(ws) {
    if (this.ws !== ws) return;
    const silentMs = performance.now() - this._heardAt;
    if (silentMs <= this.silenceTimeoutMs) {
      this.ping().catch(() => {});
      return;
    }
    ws.onopen = null;
    ws.onclose = null;
    ws.onmessage = null;
    try { ws.close(4000, 'no answer'); } catch { /* already closed */ }
    this._closed(`the server has not answered for ${Math.round(silentMs / 1000)} s (the network may have dropped)`);
  }

  /** v1.7: this connection goes on with the selection of the token its hello presented (the grid follows). */
  get resumed() {
    return !!(this.welcome && this.welcome.resumed === true);
  }

  _loadResume() {
    if (!this.resumeKey) return null;
    try {
      const kept = JSON.parse(sessionStorage.getItem(this.resumeKey) || 'null');
      // a token is for the server that gave it: another server (?server=) must not see it
      return kept && kept.server === this.url && typeof kept.token === 'string' ? kept.token : null;
    } catch {
      return null;
    }
  }

  /** v1.7: never present the token kept (this tab is a copy of another, which owns it: see tab.js). */
  forgetResume() {
    this._keepResume(null);
  }

  _keepResume(token) {
    this.resumeToken = token;
    if (!this.resumeKey) return;
    try {
      if (token) sessionStorage.setItem(this.resumeKey, JSON.stringify({ server: this.url, token }));
      else sessionStorage.removeItem(this.resumeKey);
    } catch { /* storage off: the token lives as long as the page */ }
  }

  _drop() {
    this.welcome = null;
    clearInterval(this._pingTimer);
    this.clockOffsetS = null; // a new connection measures again (the server may be another one)
    this._bestRttMs = Infinity;
    const lost = new ConnectionLost();
    for (const [, p] of this._pending) p.fail(lost);
    this._pending.clear();
    this._sketchRids.clear(); // the drawing belonged to that connection
    this.textures.connectionLost();
  }

  _closed(reason) {
    this.ws = null;
    this._drop();
    if (this._stopped) {
      this._setState('offline', this._fatal
        ? { reason: `${this._fatal.message} [${this._fatal.code}]`, code: this._fatal.code, message: this._fatal.message, fatal: true }
        : { reason, retryInMs: null });
      return;
    }
    const delay = RETRY_DELAYS_MS[Math.min(this.attempt, RETRY_DELAYS_MS.length - 1)];
    this.attempt += 1;
    this._setState('offline', { reason, retryInMs: delay, retryAt: performance.now() + delay });
    this._retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** v1.7: the selection went on on another connection (its token presented there): offline until the user asks for a
   * new selection here (retryNow). The token is spent: the other connection holds the selection's new one. */
  _superseded(reason) {
    this.ws = null;
    this._drop();
    this._stopped = true;
    this._keepResume(null);
    this._setState('offline', { reason, retryInMs: null, superseded: true });
  }

  _setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', {
      detail: { state, attempt: this.attempt, everOpened: this.everOpened, url: this.url, ...extra },
    }));
  }

  // -- frames ---------------------------------------------------------------------------------
  /** A message that has no reply (v1.2 `gaze.batch`, `layout`): errors about it come without a rid. */
  send(type, fields = {}) {
    this._send({ type, ...fields });
  }

  _send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new ConnectionLost('not connected to the server');
    this.ws.send(encode(msg, { ignoreUndefined: true }));
  }

  _frame(data) {
    if (!(data instanceof ArrayBuffer)) return; // the protocol has binary frames only
    let msg;
    try {
      msg = decode(new Uint8Array(data));
    } catch (err) {
      console.warn('omokage: undecodable frame', err);
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'sketch.preview') { // v1.6: a sharper preview of a result (no rid): the sketch stream's
      this.dispatchEvent(new CustomEvent('sketch', { detail: msg }));
      return;
    }
    if (msg.type === 'candidates' && msg.rid == null) { // v1.7: a resumed selection's grid, after its welcome
      this.dispatchEvent(new CustomEvent('candidates', { detail: msg }));
      return;
    }
    if (msg.type === 'sketch.result' || (msg.rid != null && this._sketchRids.has(msg.rid))) {
      this._sketchReply(msg);
      return;
    }
    const pending = msg.rid != null ? this._pending.get(msg.rid) : undefined;
    if (pending) {
      if (pending.onMessage(msg)) {
        clearTimeout(pending.timer);
        this._pending.delete(msg.rid);
      }
    } else {
      this.dispatchEvent(new CustomEvent('message', { detail: msg }));
    }
  }

  /**
   * Send a request; `collect(msg)` is called for each reply with its rid and returns
   * {done: bool, value}; the promise resolves with the last value when done.
   */
  _exchange(type, fields, collect) {
    return new Promise((resolve, reject) => {
      const rid = this._rid = (this._rid % 0x7fffffff) + 1;
      const entry = {
        onMessage: (msg) => {
          let result;
          try {
            result = collect(msg);
          } catch (err) {
            reject(err);
            return true;
          }
          if (result.done) resolve(result.value);
          return result.done;
        },
        fail: reject,
        timer: setTimeout(() => {
          this._pending.delete(rid);
          reject(new Error(`no reply to ${type} within ${this.requestTimeoutMs / 1000} s`));
        }, this.requestTimeoutMs),
      };
      this._pending.set(rid, entry);
      try {
        this._send({ type, rid, ...fields });
      } catch (err) {
        clearTimeout(entry.timer);
        this._pending.delete(rid);
        reject(err);
      }
    });
  }

  /** One request, one reply; an `error` reply rejects with ServerError. */
  request(type, fields = {}) {
    return this._exchange(type, fields, (msg) => {
      if (msg.type === 'error') throw new ServerError(msg.code, msg.message);
      return { done: true, value: msg };
    });
  }

  async ping() {
    const t0 = performance.now();
    // seconds since the Unix epoch (the unit of server_time) on the performance clock, the clock of animation
    // and XR frame times, so that gaze samples can be put on the server's clock with this offset
    const t = (performance.timeOrigin + t0) / 1000;
    const reply = await this.request('ping', { t });
    const t1 = performance.now();
    this.rttMs = t1 - t0;
    const offset = reply.server_time - (t + (t + this.rttMs / 1000)) / 2;
    // NTP-style: the exchange with the shortest round trip bounds the offset best; a slowly drifting clock
    // still moves it, as each later ping within 1.5x of that round trip replaces it
    if (this.rttMs <= this._bestRttMs * 1.5 || this.clockOffsetS == null) {
      this._bestRttMs = Math.min(this._bestRttMs, this.rttMs);
      this.clockOffsetS = offset;
    }
    this.dispatchEvent(new CustomEvent('latency', { detail: { rttMs: this.rttMs, offsetS: this.clockOffsetS } }));
    return this.rttMs;
  }

  // -- v1.3 sketch -----------------------------------------------------------------------------
  /**
   * Send a sketch message (`sketch.begin`, `sketch.stroke`, `sketch.undo`, `sketch.clear`) without waiting: the
   * server coalesces, so one `sketch.result` answers the newest message it includes (its rid) and the earlier ones
   * get no reply of their own. Returns the message's rid; results and the errors of sketch messages arrive as
   * `sketch` events (no timeout: a covered message never gets one).
   */
  sendSketch(type, fields = {}) {
    const rid = this._rid = (this._rid % 0x7fffffff) + 1;
    this._send({ type, rid, ...fields });
    this._sketchRids.set(rid, ++this._sketchSeq);
    return rid;
  }

  /** Sketch messages sent and not yet answered (by their own reply or a later one's). */
  get sketchInFlight() {
    return this._sketchRids.size;
  }

  _sketchReply(msg) {
    const at = this._sketchRids.get(msg.rid);
    if (msg.type === 'sketch.result' && at !== undefined) {
      // the result answers its rid and covers every sketch message sent before it
      for (const [rid, seq] of this._sketchRids) if (seq <= at) this._sketchRids.delete(rid);
    } else {
      this._sketchRids.delete(msg.rid);
    }
    this.dispatchEvent(new CustomEvent('sketch', { detail: msg }));
  }

  /** v1.3: what the server's sketch search takes (welcome.sketch), or null when it does not sketch. */
  get sketch() {
    return (this.welcome && this.welcome.sketch && typeof this.welcome.sketch === 'object') ? this.welcome.sketch : null;
  }

  // -- protocol messages ----------------------------------------------------------------------
  /** v1.2: feature models the server is still fitting, [{algorithm, progress 0..1, eta_s?}] (empty: none). */
  get training() {
    return (this.welcome && Array.isArray(this.welcome.training)) ? this.welcome.training : [];
  }

  /** The policies the server offers (empty from a v1.0 server, which has none). */
  get policies() {
    return (this.welcome && Array.isArray(this.welcome.policies)) ? this.welcome.policies : [];
  }

  /**
   * start; `policy` (one of `policies`) is left out when null: the server's default. `init` 'sketch' (v1.3) starts
   * from the connection's drawing (its latest `sketch.result`).
   */
  start(algorithm, { image = null, seed, policy = null, init = null } = {}) {
    const fields = { algorithm, init: init || (image ? 'image' : 'random'), seed };
    if (image) fields.image = image;
    if (policy) fields.policy = policy;
    return this.request('start', fields);
  }

  choose(id) {
    return this.request('choose', { id });
  }

  /** "None of these": the next grid of faces not seen yet (v1.1). */
  skip() {
    return this.request('skip', {});
  }

  /**
   * v1.7: undo the last `choose` or `skip`: resolves with the grid before it (`candidates`: the same faces in the same
   * order, its step). `wrong_state` on the first grid, after `decide` and in a study; a v1.6 server: `unknown_type`.
   */
  back() {
    return this.request('back', {});
  }

  /** An explicit rating 1..5 of a face shown in this selection (v1.1); resolves with `rated`. */
  rate(id, rating) {
    return this.request('rate', { id, rating });
  }

  decide(id) {
    return this.request('decide', { id });
  }

  /** v1.5: what the server can generate (welcome.ideal: {image_size}), or null when it cannot (no PCA model). */
  get ideal() {
    return (this.welcome && this.welcome.ideal && typeof this.welcome.ideal === 'object') ? this.welcome.ideal : null;
  }

  /**
   * v1.5: the face the session's belief likes best near a favourite (`near`: a face shown in this selection; null:
   * the server's choice, the last face chosen) and the unseen faces nearest it; resolves with `ideal.result`.
   */
  requestIdeal(near = null) {
    return this.request('ideal', near == null ? {} : { near });
  }

  /** v1.2 studies: what comes next for this participant: `candidates` (with `trial`), `questionnaire` or `study.done`. */
  studyNext(image = null) {
    return this.request('study.next', image ? { image } : {});
  }

  /** v1.2 studies: answers [{item, value}] to the questionnaire `id`; resolves with `answered`. */
  answer(questionnaire, answers) {
    return this.request('answers', { questionnaire, answers });
  }

  /** texture.get: one `texture` per known hash (same rid), then one `error not_found` if any was unknown. */
  fetchTextures(hashes) {
    const got = [];
    return this._exchange('texture.get', { hashes }, (msg) => {
      if (msg.type === 'texture') {
        got.push(msg);
        return { done: got.length === hashes.length, value: got };
      }
      if (msg.type === 'error' && msg.code === 'not_found') {
        console.warn('omokage:', msg.message);
        return { done: true, value: got };
      }
      if (msg.type === 'error') throw new ServerError(msg.code, msg.message);
      return { done: false };
    });
  }
}

/**
 * Textures by content hash: {hash, format, width, height, blob, url}. Entries are kept for the page's
 * life (hashes are content addresses, so an entry never goes stale).
 */
/** A texture map's image as a Blob of its MIME type (a `texture` message, or an inline preview or reconstruction). */
/**
 * At most `rate` per second, in bursts of up to `burst`: what the page keeps to so that the server's own limits never
 * have to refuse it (gaze samples, sketch messages). Refilled on the caller's clock in ms (a sample's time, or
 * performance.now()); it starts full. `available(ms)` says whether one may go now, `spend()` takes it.
 */
export class TokenBucket {
  constructor(rate, burst) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.lastMs = null;
  }

  available(ms) {
    if (this.lastMs !== null && ms > this.lastMs) {
      this.tokens = Math.min(this.burst, this.tokens + ((ms - this.lastMs) * this.rate) / 1000);
    }
    if (this.lastMs === null || ms > this.lastMs) this.lastMs = ms;
    return this.tokens >= 1;
  }

  spend() {
    this.tokens -= 1;
  }
}

export function textureBlob(tex) {
  return new Blob([tex.data], { type: MIME[tex.format] || 'application/octet-stream' });
}

export class TextureCache {
  constructor(client) {
    this.client = client;
    this.entries = new Map();
    this.inflight = new Map(); // hash -> promise of entry
  }

  get(hash) {
    return this.entries.get(hash);
  }

  /** Store a texture map (a `texture` message or an inline `reconstruction`). */
  put(tex) {
    const have = this.entries.get(tex.hash);
    if (have) return have;
    const blob = textureBlob(tex);
    const entry = { hash: tex.hash, format: tex.format, width: tex.width, height: tex.height, blob,
      url: URL.createObjectURL(blob) };
    this.entries.set(tex.hash, entry);
    return entry;
  }

  /** Resolve to a Map hash -> entry for every hash, fetching those not cached in as few requests as allowed. */
  async ensure(hashes) {
    const missing = [...new Set(hashes)].filter((h) => !this.entries.has(h) && !this.inflight.has(h));
    const per = (this.client.welcome && this.client.welcome.limits && this.client.welcome.limits.max_hashes_per_request) || 64;
    for (let i = 0; i < missing.length; i += per) {
      const chunk = missing.slice(i, i + per);
      const batch = this.client.fetchTextures(chunk).then((texs) => {
        for (const t of texs) this.put(t);
      });
      for (const h of chunk) {
        const p = batch.then(() => this.entries.get(h)).finally(() => this.inflight.delete(h));
        this.inflight.set(h, p);
      }
    }
    await Promise.all(hashes.map((h) => this.entries.get(h) || this.inflight.get(h)));
    return new Map(hashes.map((h) => [h, this.entries.get(h)]));
  }

  connectionLost() {
    this.inflight.clear();
  }
}

function closeReason(code) {
  switch (code) {
    case 1000: return 'closed';
    case 1001: return 'the server is going away (shutting down)';
    case 1006: return 'no connection (the server is not running or not reachable)';
    case 1008: return 'refused by the server (policy)';
    case 1009: return 'a message was too large';
    case 1011: return 'server error';
    default: return `closed (code ${code})`;
  }
}
