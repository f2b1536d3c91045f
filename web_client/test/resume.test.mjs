// Protocol v1.7, resuming a selection (docs/protocol.md "Resuming a selection"), in headless Chromium against real
// `omokage serve` processes: the network under the page drops (a TCP proxy between the page and the server cuts its
// links, or leaves them open and silent), the tab reloads, the server restarts, the user had already decided, and the
// 3D preview. The page presents the last welcome's resume token in its next hello and shows the grid the server sends
// back (same faces, same step), or, when the server has nothing to go on with, starts again as before v1.7. A
// duplicated tab (its sessionStorage a copy of the original's) never presents the original's token.

import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { PYTHON, closeTestPage, freePort, gridIds, newTestPage, openBrowser, recordFrames, screenshot, startServer, waitForGrid } from './helpers.mjs';

const T = { timeout: 90000 };
let server;
let browser;
let page;
const proxies = [];

before(async () => {
  server = await startServer();
  browser = await openBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

beforeEach(async () => {
  page = await newTestPage(browser);
});

afterEach(async (t) => {
  await closeTestPage(page, t, 'resume-');
  for (const p of proxies.splice(0)) p.close();
});

/**
 * A TCP proxy in front of `port` that serves the page and its WebSocket (one origin, as in a headset on Wi-Fi).
 * `cut()` ends every link at once, as a network that drops does (each end sees its connection reset); `silence()`
 * keeps them open but relays nothing more, as a Wi-Fi gone without a FIN (the server does not see it die). Links
 * opened afterwards work.
 */
async function proxyTo(port, { host = '127.0.0.1' } = {}) {
  const listen = await freePort();
  const links = new Set();
  const srv = net.createServer((c) => {
    const s = net.connect(port, '127.0.0.1');
    const link = { c, s, silent: false };
    links.add(link);
    c.on('data', (d) => { if (!link.silent) s.write(d); });
    s.on('data', (d) => { if (!link.silent) c.write(d); });
    c.on('error', () => {});
    s.on('error', () => {});
    c.on('close', () => { links.delete(link); s.destroy(); });
    s.on('close', () => { if (!link.silent) c.destroy(); });
  });
  await new Promise((resolve) => { srv.listen(listen, host, resolve); });
  const end = (sock) => (sock.resetAndDestroy ? sock.resetAndDestroy() : sock.destroy());
  const proxy = {
    url: `http://${host}:${listen}/`,
    cut() {
      for (const l of [...links]) {
        end(l.c);
        end(l.s);
      }
    },
    silence() {
      for (const l of links) l.silent = true;
    },
    close() {
      srv.close();
      for (const l of [...links]) {
        l.c.destroy();
        l.s.destroy();
      }
    },
  };
  proxies.push(proxy);
  return proxy;
}

const st = (fn, arg) => page.evaluate(fn, arg);
const sessionId = () => st(() => window.omokage.client.welcome.session_id);
const out = (frames, type) => frames.filter((f) => f.dir === 'out' && f.msg.type === type);
const got = (frames, type) => frames.filter((f) => f.dir === 'in' && f.msg.type === type);

/** The page at `url`, its first grid shown and its fifth face picked: step 2, a selection to go on with. */
async function pickedOnce(url) {
  await page.goto(url);
  await waitForGrid(page, 1);
  await page.locator('#grid .face').nth(4).click();
  await waitForGrid(page, 2);
}

/** Until the page has lost the connection of session `sid`, said hello on a new one and shown what followed. */
async function reconnected(sid, timeout = 30000) {
  await page.waitForFunction((s) => {
    const o = window.omokage;
    const c = o && o.client;
    return c && c.state === 'open' && c.welcome && c.welcome.session_id !== s && !o.state.resuming && !o.state.busy;
  }, sid, { timeout });
}

/** The page's view of the grid: what a user sees of it. */
function view() {
  return st(() => {
    const o = window.omokage.state;
    const cards = [...document.querySelectorAll('#grid .face')];
    return {
      step: o.step,
      first: o.first,
      cursor: o.cursor,
      moved: o.cursorMoved,
      ring: cards.findIndex((c) => c.classList.contains('is-cursor')),
      badge: cards[0].querySelector('.badge').textContent,
      stepText: document.getElementById('step').textContent.trim(),
      trail: document.querySelectorAll('#trail-list img').length,
      decideOff: document.getElementById('btn-decide').getAttribute('aria-disabled'),
      label: document.getElementById('pick-label').textContent,
      banner: document.getElementById('banner').hidden ? null
        : `${document.getElementById('banner-title').textContent}: ${document.getElementById('banner-text').textContent}`,
    };
  });
}

describe('a dropped connection (v1.7)', () => {
  it('the network drops: the same grid (faces, step, highlight) comes back, and the next pick goes on from it', T, async () => {
    const proxy = await proxyTo(server.port);
    const frames = recordFrames(page);
    await page.goto(proxy.url);
    await waitForGrid(page, 1);
    const ids1 = await gridIds(page);
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    assert.equal(ids2[0], ids1[4]);
    await page.keyboard.press('ArrowRight'); // the highlight on face 2, the focus with it
    const token = await st(() => window.omokage.client.resumeToken);
    assert.match(token, /^[0-9a-f]{32}$/);
    assert.equal(token, got(frames, 'welcome')[0].msg.resume.token);
    const sid = await sessionId();
    const mark = frames.length;
    proxy.cut();
    await page.waitForFunction(() => window.omokage.client.state !== 'open');
    await reconnected(sid);
    await waitForGrid(page, 2);
    const since = frames.slice(mark);
    // the hello presents the token; the server goes on with the selection and sends its grid (no rid)
    assert.equal(out(since, 'hello')[0].msg.resume, token);
    assert.equal(out(since, 'hello')[0].msg.protocol_minor, 7);
    assert.match(out(since, 'hello')[0].msg.client, /^omokage-web\/0\.9\.0 /);
    assert.equal(out(frames, 'hello')[0].msg.resume, undefined, 'a first visit has no token to present');
    const welcome = got(since, 'welcome')[0].msg;
    assert.equal(welcome.resumed, true);
    assert.notEqual(welcome.resume.token, token, 'a spent token is replaced');
    assert.equal(await st(() => window.omokage.client.resumeToken), welcome.resume.token);
    assert.equal(JSON.parse(await st(() => sessionStorage.getItem('omokage.resume'))).token, welcome.resume.token);
    assert.equal(await st(() => localStorage.getItem('omokage.resume')), null, 'never shared with other tabs');
    const resumedGrid = got(since, 'candidates').filter((f) => f.msg.rid == null);
    assert.equal(resumedGrid.length, 1);
    assert.equal(out(since, 'start').length, 0, 'nothing started again');
    // the page as it was: the same faces at the same step, the pick first, the highlight and the focus where they were
    assert.deepEqual(await gridIds(page), ids2);
    const v = await view();
    assert.deepEqual({ step: v.step, first: v.first, cursor: v.cursor, moved: v.moved, ring: v.ring, badge: v.badge,
      stepText: v.stepText, trail: v.trail, decideOff: v.decideOff, label: v.label },
    { step: 2, first: 'pick', cursor: 1, moved: true, ring: 1, badge: 'Your pick', stepText: 'Step 2', trail: 1,
      decideOff: 'false', label: 'Face 2' });
    assert.equal(await st(() => document.activeElement.dataset.index), '1');
    assert.match(v.banner, /^Reconnected: You continue where you were/);
    assert.doesNotMatch(v.banner, /starts again/);
    await screenshot(page, 'resume-reconnected');
    // the news stays put while the user reads and aims: it used to go after 6 s and the faces jumped up under the
    // pointer (a UX review); it goes with the next pick
    const faceTop = () => page.locator('#grid .face').nth(3).evaluate((el) => el.getBoundingClientRect().top);
    const top = await faceTop();
    await page.waitForTimeout(6500);
    assert.equal(await page.isVisible('#banner'), true);
    assert.equal(await faceTop(), top, 'the faces did not move');
    // the next pick goes on from that grid: the face chosen first, then faces not seen before the drop either
    await page.locator('#grid .face').nth(3).click();
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    assert.equal(ids3[0], ids2[3]);
    const seen = new Set([...ids1, ...ids2]);
    assert.deepEqual(ids3.slice(1).filter((id) => seen.has(id)), [], 'the faces seen before the drop count as seen');
    assert.equal((await view()).trail, 2);
    // read and acted on: the news has gone
    assert.equal(await page.isVisible('#banner'), false);
    assert.deepEqual(browser.errors.filter((e) => !/ERR_CONNECTION|WebSocket/i.test(e)), []);
  });

  it('a link gone silent (the server never saw it die): the page notices, resumes, and the old link is closed', T, async () => {
    const proxy = await proxyTo(server.port);
    const frames = recordFrames(page);
    await page.goto(proxy.url);
    await waitForGrid(page, 1);
    await page.keyboard.press('n'); // None of these: no face is anybody's pick on this grid
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    const sid = await sessionId();
    const mark = frames.length;
    proxy.silence();
    await page.waitForFunction(() => window.omokage.client.state !== 'open', null, { timeout: 30000 });
    await reconnected(sid);
    await waitForGrid(page, 2);
    assert.equal(got(frames.slice(mark), 'welcome')[0].msg.resumed, true);
    assert.deepEqual(await gridIds(page), ids2);
    const v = await view();
    // still a grid after None of these: Decide waits for a pick, nothing is highlighted
    assert.deepEqual({ step: v.step, first: v.first, skipped: await st(() => window.omokage.state.skipped), ring: v.ring,
      decideOff: v.decideOff }, { step: 2, first: null, skipped: true, ring: -1, decideOff: 'true' });
    await page.locator('#grid .face').nth(5).click();
    await waitForGrid(page, 3);
    assert.equal((await gridIds(page))[0], ids2[5]);
  });
});

describe('a selection taken over by another connection (v1.7)', () => {
  it('the page says it went on elsewhere, does not reconnect by itself, and starts a new one when asked', T, async () => {
    const frames = recordFrames(page);
    await pickedOnce(server.url);
    const token = await st(() => window.omokage.client.resumeToken);
    // another client presents the page's token (a frozen copy of the tab waking up, say): it takes the selection over,
    // and the server closes the page's link with the documented reason
    const other = spawn(PYTHON, ['-c', `
import asyncio, sys
from omokage.client import OmokageClient
async def main():
    c = await OmokageClient.connect(sys.argv[1], resume=sys.argv[2])
    print("resumed", c.welcome.get("resumed"), flush=True)
    await asyncio.sleep(30)
asyncio.run(main())
`, `ws://127.0.0.1:${server.port}/ws`, token], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const said = await new Promise((resolve) => { // its first line (the pipe may deliver it in pieces)
        let text = '';
        other.stdout.on('data', (d) => { text += String(d); if (text.includes('\n')) resolve(text); });
      });
      assert.match(said, /^resumed True/);
      await page.waitForFunction(() => !document.getElementById('banner').hidden
        && /went on elsewhere/.test(document.getElementById('banner-title').textContent), null, { timeout: 10000 });
      const v = await view();
      assert.equal(v.banner, 'This selection went on elsewhere: Another tab or window took it over, where it carries on. '
        + 'Continue there, or start a new selection here.');
      assert.equal(await page.locator('#banner-action').textContent(), 'Start a new one here');
      assert.equal(await st(() => sessionStorage.getItem('omokage.resume')), null, 'the spent token is not kept');
      await page.waitForTimeout(3500); // past the first two reconnect delays (1 s, 2 s): it does not reconnect unasked
      assert.equal(out(frames, 'hello').length, 1);
      assert.equal(await st(() => window.omokage.client.state), 'offline');
      await screenshot(page, 'resume-went-on-elsewhere');
      // asked: a new selection of its own, and no "starts again" news (the user chose it)
      await page.locator('#banner-action').click();
      await page.waitForFunction(() => window.omokage.client.state === 'open' && window.omokage.state.step === 1
        && !window.omokage.state.busy, null, { timeout: 20000 });
      const hellos = out(frames, 'hello');
      assert.equal(hellos.length, 2);
      assert.equal(hellos[1].msg.resume, undefined, 'the spent token is not presented');
      assert.equal((await view()).banner, null);
      assert.deepEqual(browser.errors.filter((e) => !/WebSocket/i.test(e)), []);
    } finally {
      other.kill();
    }
  });
});

describe('a reload of the tab (v1.7)', () => {
  it('goes on with the same grid, its pick and path; another tab is a selection of its own', T, async () => {
    const frames = recordFrames(page);
    await pickedOnce(server.url);
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    const token = await st(() => window.omokage.client.resumeToken);
    const mark = frames.length;
    await page.reload();
    await page.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming);
    await waitForGrid(page, 3);
    const since = frames.slice(mark);
    assert.equal(out(since, 'hello')[0].msg.resume, token);
    assert.equal(got(since, 'welcome')[0].msg.resumed, true);
    assert.equal(out(since, 'start').length, 0, 'the page did not start a selection of its own');
    assert.deepEqual(await gridIds(page), ids3);
    const v = await view();
    assert.equal(v.step, 3);
    assert.equal(v.first, 'pick');
    assert.equal(v.badge, 'Your pick');
    assert.equal(v.trail, 2, 'the path of picks is kept in the tab');
    await page.waitForFunction(() => [...document.querySelectorAll('#trail-list img')].every((i) => i.complete && i.naturalWidth > 0));
    assert.equal(v.decideOff, 'false');
    assert.match(v.banner, /continues where you were/);
    await screenshot(page, 'resume-reloaded');
    await page.locator('#grid .face').nth(6).click();
    await waitForGrid(page, 4);
    assert.equal((await gridIds(page))[0], ids3[6]);

    // a second tab of the same browser: the token is this tab's (sessionStorage), so it starts its own selection
    const other = await browser.context.newPage();
    try {
      const otherFrames = recordFrames(other);
      await other.goto(server.url);
      await waitForGrid(other, 1);
      assert.equal(out(otherFrames, 'hello')[0].msg.resume, undefined);
      assert.equal(got(otherFrames, 'welcome')[0].msg.resumed, undefined);
    } finally {
      await other.close();
    }
    assert.deepEqual(browser.errors, []);
  });
});

describe('a server that restarted (v1.7)', () => {
  it('on its own event log, goes on with the selection: the same grid, its step and its path, nothing starts again', T, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'omokage-restart-'));
    const args = ['--events', path.join(dir, 'events.jsonl')];   // the log both runs share (a restart, a crash)
    const own = await startServer({ args });
    let back = null;
    try {
      const frames = recordFrames(page);
      await pickedOnce(own.url);
      const ids2 = await gridIds(page);
      const sid = await sessionId();
      const mark = frames.length;
      await own.stop();
      await page.waitForFunction(() => document.getElementById('conn-text').textContent === 'Offline', null, { timeout: 15000 });
      back = await startServer({ port: own.port, args });
      await reconnected(sid);
      const since = frames.slice(mark);
      assert.equal(got(since, 'welcome')[0].msg.resumed, true);
      assert.equal(out(since, 'start').length, 0, 'nothing starts again');
      assert.deepEqual(await gridIds(page), ids2);
      const v = await view();
      assert.equal(v.step, 2);
      assert.equal(v.trail, 1);
      assert.match(v.banner, /^Reconnected: You continue where you were/);
      await page.locator('#grid .face').nth(2).click();   // and it goes on
      await waitForGrid(page, 3);
    } finally {
      if (back) await back.stop();
      await own.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on a new event log, has nothing to go on with (resumed: false): the page starts again, as before, and says so until closed', T, async () => {
    const own = await startServer();
    let back = null;
    try {
      const frames = recordFrames(page);
      await pickedOnce(own.url);
      const token = await st(() => window.omokage.client.resumeToken);
      const sid = await sessionId();
      const mark = frames.length;
      await own.stop();
      await page.waitForFunction(() => document.getElementById('conn-text').textContent === 'Offline', null, { timeout: 15000 });
      back = await startServer({ port: own.port });
      await reconnected(sid);
      await waitForGrid(page, 1);
      const since = frames.slice(mark);
      assert.equal(out(since, 'hello')[0].msg.resume, token);
      const welcome = got(since, 'welcome')[0].msg;
      assert.equal(welcome.resumed, false);
      assert.equal(got(since, 'candidates').filter((f) => f.msg.rid == null).length, 0);
      assert.equal(out(since, 'start').length, 1, 'a new selection, started the way the last one was');
      assert.equal(out(since, 'start')[0].msg.init, 'random');
      // the new connection's token is the one kept now
      assert.equal(await st(() => window.omokage.client.resumeToken), welcome.resume.token);
      const v = await view();
      assert.equal(v.step, 1);
      assert.equal(v.trail, 0);
      assert.match(v.banner, /^Reconnected: The server started a new session, so the selection starts again/);
      await page.waitForTimeout(6500);
      assert.equal(await page.isVisible('#banner'), true, 'the news that the picks are gone stays until closed');
    } finally {
      if (back) await back.stop();
      await own.stop();
    }
  });
});

describe('a decided page (v1.7)', () => {
  it('stays decided across a reconnect: the avatar, its product page and Start again; nothing starts behind it', T, async () => {
    const proxy = await proxyTo(server.port);
    const frames = recordFrames(page);
    await pickedOnce(proxy.url);
    const ids2 = await gridIds(page);
    const [tab] = await Promise.all([browser.context.waitForEvent('page'), page.keyboard.press('d')]);
    await tab.close();
    await page.waitForSelector('#decided[open]');
    await page.keyboard.press('Escape'); // back to the page, the decision beside the grid
    await page.waitForFunction(() => !document.getElementById('decided').open);
    const sid = await sessionId();
    const mark = frames.length;
    proxy.cut();
    await page.waitForFunction(() => window.omokage.client.state !== 'open');
    await reconnected(sid);
    await page.waitForTimeout(500); // a start would be out by now
    const since = frames.slice(mark);
    assert.equal(out(since, 'start').length, 0, 'no selection started behind the decision');
    assert.equal(await st(() => window.omokage.state.decided && window.omokage.state.decided.item.id), ids2[0]);
    assert.equal(out(since, 'hello').length, 1);
    assert.equal(got(since, 'welcome')[0].msg.resumed, false, 'a server keeps no decided selection');
    const v = await view();
    assert.equal(v.label, 'Your avatar');
    assert.deepEqual(await gridIds(page), ids2);
    assert.equal(await page.isVisible('#btn-again'), true);
    assert.equal(await page.isVisible('#decided-open'), true);
    assert.equal(await page.isVisible('#btn-decide'), false);
    assert.match(await page.getAttribute('#grid', 'class'), /\bis-decided\b/);
    assert.match(v.banner, /^Reconnected: Your decision is kept/);
    // Start again begins a new selection on the new connection
    await page.click('#btn-again');
    await page.waitForFunction(() => !window.omokage.state.decided);
    await waitForGrid(page, 1);
    assert.equal(out(frames.slice(mark), 'start').length, 1);
    assert.deepEqual(browser.errors.filter((e) => !/ERR_CONNECTION|WebSocket/i.test(e)), []);
  });
});

describe('the VR scene (v1.7)', () => {
  it('shows the resumed grid too: the same faces at the same step, and Decide takes the pick', T, async () => {
    await page.addInitScript(() => {
      Object.defineProperty(navigator, 'xr', { value: { isSessionSupported: async () => false }, configurable: true });
    });
    const proxy = await proxyTo(server.port);
    await page.goto(`${proxy.url}?vr=preview`);
    await waitForGrid(page, 1);
    await page.click('#btn-vr');
    await page.waitForFunction(() => window.omokage.xr && window.omokage.xr.stats.texturesReady === 9
      && window.omokage.xr.stats.frames > 5, null, { timeout: 30000 });
    const ids1 = await gridIds(page);
    await st(() => window.omokage.xr.select(4));
    await page.waitForFunction(() => window.omokage.xr.stats.step === 2 && window.omokage.xr.stats.texturesReady === 9
      && !window.omokage.state.busy);
    const ids2 = await gridIds(page);
    assert.equal(ids2[0], ids1[4]);
    const swaps = await st(() => window.omokage.xr.stats.swaps);
    const sid = await sessionId();
    proxy.cut();
    await page.waitForFunction(() => window.omokage.client.state !== 'open');
    await reconnected(sid);
    // the scene swapped in the resumed grid's panels
    await page.waitForFunction((n) => window.omokage.xr.stats.swaps > n && window.omokage.xr.stats.texturesReady === 9,
      swaps, { timeout: 15000 });
    assert.equal(await st(() => window.omokage.xr.stats.step), 2);
    assert.deepEqual(await gridIds(page), ids2);
    // the first panel is still the user's pick: Decide in VR takes it
    await st(() => window.omokage.xr.select('decide'));
    await page.waitForFunction(() => window.omokage.state.decided);
    assert.equal(await st(() => window.omokage.state.decided.item.id), ids2[0]);
    await st(() => window.omokage.xr.end());
  });
});

/**
 * A duplicated tab (Chrome's "Duplicate tab", or window.open of the page with an opener): the browser copies this tab's
 * sessionStorage, resume token and all, into the new one. The copy must not present the token: the server would hand
 * it the live selection and close the original's link ("this selection was resumed on another connection").
 */
async function duplicate(of) {
  const [copy] = await Promise.all([browser.context.waitForEvent('page'),
    of.evaluate(() => { window.open(location.href); })]);
  copy.on('pageerror', (e) => browser.errors.push(e.message));
  copy.on('console', (m) => { if (m.type() === 'error') browser.errors.push(m.text()); });
  return copy;
}

/** The original keeps its link, selection and token when it is copied; the copy starts a selection of its own. */
async function copiedTab(base, how) {
  const closed = [];
  page.on('websocket', (ws) => ws.on('close', () => closed.push(ws.url())));
  const frames = recordFrames(page);
  await pickedOnce(base);
  const ids2 = await gridIds(page);
  const sid = await sessionId();
  const token = await st(() => window.omokage.client.resumeToken);
  const tabId = await st(() => sessionStorage.getItem('omokage.tab'));

  const copy = await duplicate(page);
  const copyFrames = recordFrames(copy);
  await copy.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming
    && window.omokage.state.step > 0 && !window.omokage.state.busy, null, { timeout: 20000 });
  await page.waitForTimeout(1000); // a supersede's close would have come by now

  // the original goes on as if nothing happened: the same link, session, grid and token, no news
  assert.deepEqual(closed, [], "the original's link is not closed");
  assert.equal(await st(() => window.omokage.client.state), 'open');
  assert.equal(await sessionId(), sid);
  assert.equal(await st(() => window.omokage.client.resumeToken), token);
  assert.equal(out(frames, 'hello').length, 1);
  assert.deepEqual(await gridIds(page), ids2);
  const v = await view();
  assert.equal(v.banner, null, 'nothing to say: no "Reconnected", no "starts again"');

  // the copy: it never presents the original's token, and starts a selection of its own
  const hellos = out(copyFrames, 'hello');
  assert.equal(hellos.length, 1);
  assert.equal(hellos[0].msg.resume, undefined, "the copy never presents the original's token");
  assert.equal(got(copyFrames, 'welcome')[0].msg.resumed, undefined);
  assert.equal(out(copyFrames, 'start').length, 1, 'the copy starts a selection of its own');
  await waitForGrid(copy, 1);
  const copyToken = await copy.evaluate(() => JSON.parse(sessionStorage.getItem('omokage.resume')).token);
  assert.equal(copyToken, got(copyFrames, 'welcome')[0].msg.resume.token, "the copy keeps its own selection's token");
  assert.notEqual(copyToken, token);
  assert.match(await copy.evaluate(() => `${document.getElementById('banner-title').textContent}: ${document.getElementById('banner-text').textContent}`),
    /^A new selection in this tab: This tab is a copy of another one/);
  await screenshot(copy, `resume-copied-tab-${how}`);
  // how it knew: the browser copied the tab's id (with the token), held by the original's lock or answered by it
  assert.match(tabId, /^[0-9a-f]{24}$/);
  const own = await st(() => window.omokage.tab);
  assert.deepEqual({ id: own.id, copy: own.copy, how: own.how }, { id: tabId, copy: false, how });
  const copied = await copy.evaluate(() => window.omokage.tab);
  assert.equal(copied.copy, true);
  assert.equal(copied.how, how);
  assert.notEqual(copied.id, tabId, 'the copy takes an id of its own');
  assert.equal(await copy.evaluate(() => sessionStorage.getItem('omokage.tab')), copied.id);

  await page.locator('#grid .face').nth(3).click();
  await waitForGrid(page, 3);
  assert.equal((await gridIds(page))[0], ids2[3], "the original's next pick goes on from its grid");

  // each tab reloads into its own selection: the lock (or the owner's answer) went with the page that unloaded
  const mark = frames.length;
  const ids3 = await gridIds(page);
  const token3 = await st(() => window.omokage.client.resumeToken);
  await page.reload();
  await page.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming);
  await waitForGrid(page, 3);
  const t = await st(() => window.omokage.tab);
  assert.deepEqual({ id: t.id, copy: t.copy, how: t.how }, { id: tabId, copy: false, how });
  assert.equal(out(frames.slice(mark), 'hello')[0].msg.resume, token3);
  assert.equal(got(frames.slice(mark), 'welcome')[0].msg.resumed, true);
  assert.deepEqual(await gridIds(page), ids3);
  const copyIds = await gridIds(copy);
  const copyMark = copyFrames.length;
  await copy.reload();
  await copy.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming);
  await waitForGrid(copy, 1);
  assert.equal((await copy.evaluate(() => window.omokage.tab)).copy, false);
  assert.equal(out(copyFrames.slice(copyMark), 'hello')[0].msg.resume, copyToken);
  assert.equal(got(copyFrames.slice(copyMark), 'welcome')[0].msg.resumed, true);
  assert.deepEqual(await gridIds(copy), copyIds);
  await copy.close();
  assert.deepEqual(browser.errors, []);
}

describe('a duplicated tab (v1.7)', () => {
  it('holds a Web Lock: the copy starts its own selection, the original keeps its link and selection', T, async () => {
    await copiedTab(server.url, 'lock');
  });

  it('without navigator.locks (http on a LAN address): the original answers on a BroadcastChannel', T, async (t) => {
    // the page from this machine's own network address over http, as Quest Browser opens http://192.168.x.x: not a
    // secure context, so there is no navigator.locks
    const lan = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
    if (!lan) {
      t.skip('this machine has no non-loopback IPv4 address to serve an insecure origin from');
      return;
    }
    const proxy = await proxyTo(server.port, { host: lan.address });
    // openBrowser answers every other host as a product page: let this one through
    const ours = (u) => u.host === new URL(proxy.url).host;
    await browser.context.route(ours, (route) => route.continue());
    try {
      await copiedTab(proxy.url, 'channel');
      assert.equal(await st(() => window.isSecureContext), false);
    } finally {
      await browser.context.unroute(ours);
    }
  });

  it('where every lock request fails (an opaque origin: SecurityError), a reload still resumes: the page asks on the channel', T, async () => {
    // file:// or a sandboxed iframe: navigator.locks is there, but every request fails at once. That is no other page
    // holding the lock: were it read so, every reload would be a "copy" and forget its selection
    await page.addInitScript(() => {
      navigator.locks.request = () => Promise.reject(new DOMException('Access to the Locks API is denied in this context.',
        'SecurityError'));
    });
    const frames = recordFrames(page);
    await pickedOnce(server.url);
    const ids2 = await gridIds(page);
    const first = await st(() => window.omokage.tab);
    const token = await st(() => window.omokage.client.resumeToken);
    const mark = frames.length;
    await page.reload();
    await page.waitForFunction(() => window.omokage && window.omokage.tab && window.omokage.client.welcome
      && !window.omokage.state.resuming && !window.omokage.state.busy, null, { timeout: 20000 });
    assert.equal(out(frames.slice(mark), 'hello')[0].msg.resume, token, 'the reload presents its token');
    await waitForGrid(page, 2);
    assert.equal(got(frames.slice(mark), 'welcome')[0].msg.resumed, true);
    assert.equal(out(frames.slice(mark), 'start').length, 0);
    assert.deepEqual(await gridIds(page), ids2);
    assert.doesNotMatch((await view()).banner || '', /new selection in this tab/i);
    // how it knew: no lock (they all fail), so the channel, where no other page claims the id
    const t = await st(() => window.omokage.tab);
    assert.deepEqual({ id: t.id, copy: t.copy, how: t.how }, { id: first.id, copy: false, how: 'channel' });
    assert.deepEqual({ copy: first.copy, how: first.how }, { copy: false, how: 'channel' });
    assert.deepEqual(browser.errors, []);
  });

  it('a held lock whose wait the browser does not abort (it ignores the signal): the page still connects after 2.5 s', T, async () => {
    // this tab's lock held by a page that never lets go nor answers, and a lock request that ignores its AbortSignal:
    // the wait's own timer must answer, or the page would never say hello
    await page.addInitScript(() => {
      const real = navigator.locks.request.bind(navigator.locks);
      const kept = sessionStorage.getItem('omokage.tab');
      navigator.locks.request = (name, opts, cb) => {
        if (!kept || name !== `omokage.tab.${kept}`) return real(name, opts, cb);
        if (opts && opts.ifAvailable) return Promise.resolve().then(() => cb(null));
        return new Promise(() => {});
      };
    });
    const frames = recordFrames(page);
    await pickedOnce(server.url);
    const own = await st(() => window.omokage.tab);
    const mark = frames.length;
    await page.reload();
    await page.waitForFunction(() => window.omokage && window.omokage.tab && window.omokage.client.welcome
      && !window.omokage.state.resuming && !window.omokage.state.busy && window.omokage.state.step > 0, null,
    { timeout: 15000 });
    const t = await st(() => window.omokage.tab);
    // held all along: read as a copy (a live page holds it), with an id of its own, after the wait
    assert.equal(t.copy, true);
    assert.notEqual(t.id, own.id);
    assert.ok(t.ms >= 2400 && t.ms < 6000, `it waited for the lock, then went on (${t.ms} ms)`);
    assert.equal(out(frames.slice(mark), 'hello')[0].msg.resume, undefined);
    await waitForGrid(page, 1);
    assert.deepEqual(browser.errors, []);
  });

  it('a reload whose old page still holds the lock for a moment waits for it and resumes', T, async () => {
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    const tabId = await st(() => sessionStorage.getItem('omokage.tab'));
    // a page of the origin (a worker would do as well) holds this tab's lock as the page before a reload would while it
    // lets go, and answers no BroadcastChannel question: it lets go after 600 ms
    const holder = await browser.context.newPage();
    await holder.goto(`${server.url}healthz`);
    await holder.evaluate((id) => {
      navigator.locks.request(`omokage.tab.${id}`, () => new Promise((r) => { window.release = r; }));
    }, tabId);
    const frames = recordFrames(page);
    await page.reload({ waitUntil: 'commit' });
    await holder.waitForTimeout(600);
    await holder.evaluate(() => window.release());
    await page.waitForFunction(() => window.omokage && window.omokage.tab && window.omokage.client.welcome
      && !window.omokage.state.resuming);
    await waitForGrid(page, 2);
    const t = await st(() => window.omokage.tab);
    assert.equal(t.copy, false);
    assert.ok(t.ms >= 400, `it waited for the lock (${t.ms} ms)`);
    assert.equal(got(frames, 'welcome')[0].msg.resumed, true);
    assert.deepEqual(await gridIds(page), ids2);
    await holder.close();
  });
});
