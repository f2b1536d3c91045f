// v1.7 resume: one tab, one selection. The resume token lives in this tab's sessionStorage, but a browser copies
// sessionStorage into a duplicated tab (Chrome's "Duplicate tab", window.open of the page with an opener): the copy
// would present the original's token while the original is still connected, and the server would hand the live
// selection to the copy (closing the original's link: the original then starts again). So each tab has an id, kept in
// sessionStorage beside the token, and holds a Web Lock named after it for the page's life (the browser lets go when
// the page unloads, so a reload gets it back). A page that finds its id's lock held by another live page is a copy:
// it takes a new id and must not present the copied token. The id is random, not the token: lock names are visible
// to any code of the origin.
//
// navigator.locks needs a secure context: over http on a LAN address (Quest Browser at http://192.168.x.x) it is
// missing. There a BroadcastChannel asks "who owns this id?" and the owner answers. A tab frozen in the background
// (no script runs) cannot answer, so a copy made of a frozen tab may still take its selection: the lock has no such
// gap. An opaque origin (file://, a sandboxed iframe) has navigator.locks, but every request there fails with a
// SecurityError: that is no other page holding the lock, so such a page asks on the channel too. Without either (very
// old browsers) every page owns its id, as before.

export const TAB_KEY = 'omokage.tab';
const CHANNEL = 'omokage.tab';
const FOREVER = new Promise(() => {});

function newId() {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

function keptId() {
  try {
    const id = sessionStorage.getItem(TAB_KEY);
    return id && /^[0-9a-f]{24}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}

function keepId(id) {
  try {
    sessionStorage.setItem(TAB_KEY, id);
  } catch { /* storage off: no token is kept either */ }
}

const lockName = (id) => `omokage.tab.${id}`;

/**
 * Hold the lock of `id` for the page's life. Resolves true once held, false when another page holds it (or, with
 * `waitMs`, still holds it after that long: a page letting go after a reload is quick, a live one never lets go), and
 * null when the page cannot take locks at all (an opaque origin, file:// or a sandboxed iframe, where every request
 * fails at once with a SecurityError): that says nothing about another page.
 */
function holdLock(id, waitMs = 0) {
  return new Promise((resolve) => {
    let done = false;
    const settle = (v) => {
      done = true;
      resolve(v);
    };
    let timer = null;
    const granted = (lock) => {
      clearTimeout(timer);
      if (done || !lock) { // not available; or granted after the wait was given up (a browser that ignores `signal`)
        if (!done) settle(false);
        return null; // let go at once: this page took another id
      }
      settle(true);
      return FOREVER; // released by the browser when this page goes
    };
    const failed = (err) => {
      clearTimeout(timer);
      if (!done) settle(err && err.name === 'AbortError' ? false : null); // aborted by the wait's timer: still held
    };
    try {
      if (!waitMs) {
        navigator.locks.request(lockName(id), { ifAvailable: true }, granted).catch(failed);
        return;
      }
      const abort = new AbortController();
      // the timer itself answers too: a browser that ignores `signal` must not keep the page from connecting
      timer = setTimeout(() => {
        abort.abort();
        if (!done) settle(false);
      }, waitMs);
      navigator.locks.request(lockName(id), { signal: abort.signal }, granted).catch(failed);
    } catch (err) { // thrown rather than rejected
      failed(err);
    }
  });
}

/**
 * Decide whether this page owns the tab's id (and so the resume token kept beside it). `hasToken`: a token is kept
 * for this page's server (without one there is nothing to protect: the page just takes a fresh id). Resolves
 * {id, copy: true when the kept id belongs to another live page (do not present its token), how: 'lock' | 'channel'
 * | 'none', ms}. `askMs`: how long a BroadcastChannel question waits for the owner's answer; `waitMs`: how long a held
 * lock is waited for when no page answers (this tab's own page before a reload, letting go).
 */
export async function claimTab({ hasToken = true, askMs = 400, waitMs = 2500 } = {}) {
  const t0 = performance.now();
  let locks = typeof navigator !== 'undefined' && navigator.locks && typeof navigator.locks.request === 'function'
    ? navigator.locks : null;
  let channel = null;
  try {
    channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(CHANNEL) : null;
  } catch { /* an origin that may not have one */ }
  let how = locks ? 'lock' : channel ? 'channel' : 'none';
  // locks that fail whatever the name (an opaque origin): the page asks on the channel instead, as without them
  const noLocks = () => {
    locks = null;
    how = channel ? 'channel' : 'none';
  };
  const nonce = Math.random();
  let id = keptId();
  let asking = null; // {id, answered()} while this page asks who owns id
  let owned = null;
  if (channel) {
    channel.onmessage = (ev) => {
      const m = ev.data;
      if (!m || typeof m !== 'object' || typeof m.id !== 'string') return;
      if (m.kind === 'who' && m.id === owned) {
        channel.postMessage({ kind: 'mine', id: owned });
      } else if (asking && m.id === asking.id) {
        if (m.kind === 'mine') asking.answered();
        // two pages asking about the same id at once (a copy made while the original was loading): the lower nonce
        // owns it and says so; the other hears 'mine' and steps aside
        else if (m.kind === 'who' && m.nonce !== nonce && nonce < m.nonce) channel.postMessage({ kind: 'mine', id: asking.id });
      }
    };
  }
  const ask = (of) => new Promise((resolve) => {
    const timer = setTimeout(() => {
      asking = null;
      resolve(false);
    }, askMs);
    asking = { id: of, answered: () => { clearTimeout(timer); asking = null; resolve(true); } };
    channel.postMessage({ kind: 'who', id: of, nonce });
  });

  let copy = false;
  let held = false;
  if (!id || !hasToken) {
    id = newId(); // nothing to protect: a fresh id is never held by another page
  } else {
    if (locks) {
      const got = await holdLock(id);
      if (got === null) {
        noLocks();
      } else if (got) {
        held = true;
      } else if (channel && await ask(id)) {
        // held: by the tab this one was copied from, or by this tab's own page before a reload, still letting go. A
        // live page answers at once; otherwise wait for the lock a little
        copy = true;
      } else {
        const waited = await holdLock(id, waitMs);
        held = waited === true;
        copy = waited === false; // null: the lock failed, not held; and no page answered: the id is this tab's
      }
    }
    if (!locks && channel) copy = await ask(id);
  }
  if (copy) id = newId();
  if (locks && !held && (await holdLock(id)) === null) noLocks(); // a fresh id: free
  keepId(id);
  owned = id;
  return { id, copy, how, ms: Math.round(performance.now() - t0) };
}
