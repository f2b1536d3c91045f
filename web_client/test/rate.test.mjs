// Protocol v1.1 `rate` (docs/protocol.md "rate"): the side panel's five stars rate the face it shows (the user's pick,
// or the face the highlight was moved to), in headless Chromium against a real `omokage serve`. A star sends `rate`
// and the server's belief takes it in (the probabilities of the next grid move); a second star replaces the first; a
// back forgets the ratings given on the grids it leaves, as the server does; a reload keeps them; a server that does
// not offer `rate` (protocol 1.0) shows no stars, and a refused rating is taken back on the page.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { decode, encode } from '@msgpack/msgpack';
import { closeTestPage, gridIds, newTestPage, openBrowser, recordFrames, startServer, waitForGrid } from './helpers.mjs';

const T = { timeout: 90000 };
let server;
let browser;
let page;

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
  await closeTestPage(page, t, 'rate-');
});

const st = (fn, arg) => page.evaluate(fn, arg);
const out = (frames, type) => frames.filter((f) => f.dir === 'out' && f.msg.type === type).map((f) => f.msg);
const got = (frames, type) => frames.filter((f) => f.dir === 'in' && f.msg.type === type).map((f) => f.msg);

/** What a user sees of the rating row. */
function stars() {
  return st(() => {
    const row = document.getElementById('rate');
    const b = [...document.querySelectorAll('#stars .star')];
    return {
      shown: getComputedStyle(row).visibility !== 'hidden' && row.offsetParent !== null,
      lit: b.filter((x) => x.classList.contains('on')).length,
      checked: b.findIndex((x) => x.getAttribute('aria-checked') === 'true') + 1,
      note: document.getElementById('rate-note').textContent,
      panelId: window.omokage.state.items[window.omokage.state.cursor].id,
    };
  });
}

async function pickFace(n, step) {
  await page.locator('#grid .face').nth(n).click();
  await waitForGrid(page, step);
}

async function rated(frames, n) {
  for (let i = 0; i < 100 && got(frames, 'rated').length < n; i++) await page.waitForTimeout(50);
  assert.equal(got(frames, 'rated').length, n, `${n} rated replies`);
}

describe('Rating a face (protocol v1.1 rate)', () => {
  it('rates the pick on the panel: rate goes out, the stars stay lit, a second rating replaces it, the belief moves', T, async () => {
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    let s = await stars();
    assert.equal(s.shown, false, 'no stars before a face is on the panel (nothing highlighted on a random start)');
    await pickFace(3, 2);
    const pick = (await gridIds(page))[0];
    s = await stars();
    assert.equal(s.shown, true, 'the stars under the pick');
    assert.equal(s.lit, 0);
    assert.equal(s.panelId, pick);

    await page.locator('#stars .star').nth(3).click();
    await rated(frames, 1);
    assert.deepEqual(out(frames, 'rate').map((m) => [m.id, m.rating]), [[pick, 4]]);
    s = await stars();
    assert.deepEqual([s.lit, s.checked], [4, 4]);
    assert.match(s.note, /Rated 4 of 5/);

    // the same star again sends nothing; another replaces the rating
    await page.locator('#stars .star').nth(3).click();
    await page.locator('#stars .star').nth(0).click();
    await rated(frames, 2);
    assert.deepEqual(out(frames, 'rate').map((m) => [m.id, m.rating]), [[pick, 4], [pick, 1]]);
    s = await stars();
    assert.deepEqual([s.lit, s.checked], [1, 1]);
  });

  it('a rating is evidence: the pick chosen again after a 5 is more probable than after a 1 (same selection, Back between)', T, async () => {
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await pickFace(2, 2);
    const pick = (await gridIds(page))[0];
    const pOf = () => st((id) => window.omokage.state.items.find((i) => i.id === id).probability, pick);
    await page.locator('#stars .star').nth(0).click();
    await rated(frames, 1);
    await pickFace(0, 3); // the pick again: more like it
    const afterOne = await pOf();
    assert.equal((await stars()).note, 'You rated it 1 of 5.', 'on the next grid the note says where the face stands');
    // Back replays the selection with its seed: the grid of step 2 returns and keeps the rating given on it; a 5
    // replaces the 1, and the same pick leads to a grid that differs only by that rating
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    assert.deepEqual(await st(() => [...window.omokage.state.ratings].map(([id, r]) => [id, r.rating])), [[pick, 1]]);
    assert.equal((await stars()).lit, 1, 'the stars of the grid Back returned to');
    await page.locator('#stars .star').nth(4).click();
    await rated(frames, 2);
    await pickFace(0, 3);
    const afterFive = await pOf();
    assert.equal(typeof afterOne, 'number', 'the default policy keeps a belief');
    assert.ok(afterFive > 3 * afterOne, `P(pick) after a 5 (${afterFive}) well above after a 1 (${afterOne})`);
  });

  it('rates a face the highlight was moved to; Back forgets the ratings of the grid it leaves; a reload keeps the rest', T, async () => {
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await page.focus('#grid');
    await page.keyboard.press('ArrowRight'); // highlight face 2 on the first grid
    let s = await stars();
    assert.equal(s.shown, true);
    const first = (await gridIds(page))[1];
    assert.equal(s.panelId, first);
    await page.locator('#stars .star').nth(4).click();
    await rated(frames, 1);
    await pickFace(5, 2);
    await page.locator('#stars .star').nth(1).click(); // the pick, on step 2
    await rated(frames, 2);
    assert.deepEqual(await st(() => [...window.omokage.state.ratings.keys()].length), 2);

    await page.click('#btn-back');
    await waitForGrid(page, 1);
    const kept = await st(() => [...window.omokage.state.ratings].map(([id, r]) => [id, r.rating]));
    assert.deepEqual(kept, [[first, 5]], 'the rating given on step 2 went with it');

    await page.reload();
    await waitForGrid(page, 1);
    assert.deepEqual(await st(() => [...window.omokage.state.ratings].map(([id, r]) => [id, r.rating])), [[first, 5]],
      'a reload keeps the selection and its ratings');
    await page.focus('#grid');
    await page.keyboard.press('ArrowRight');
    s = await stars();
    assert.deepEqual([s.shown, s.lit, s.panelId], [true, 5, first]);
    assert.match(s.note, /You rated it 5 of 5/);
  });

  it('a face rated on a grid and again on a later one has its earlier rating back after Back, as on the server', T, async () => {
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await pickFace(6, 2);
    const pick = (await gridIds(page))[0];
    await page.locator('#stars .star').nth(1).click(); // 2 on step 2
    await page.locator('#stars .star').nth(2).click(); // 3 on step 2: replaces the 2
    await rated(frames, 2);
    await pickFace(0, 3); // the same face again: first on step 3
    await page.locator('#stars .star').nth(4).click(); // 5 on step 3
    await rated(frames, 3);
    assert.equal((await stars()).lit, 5);
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    const s = await stars();
    assert.deepEqual([s.panelId, s.lit, s.checked], [pick, 3, 3], 'the rating given on step 2, which the server kept');
    assert.deepEqual(await st(() => window.omokage.state.ratingLog.map((r) => [r.rating, r.step])), [[3, 2]]);
  });

  it('arrow keys move between the stars (a radio group) and rate, without moving the grid highlight', T, async () => {
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await pickFace(1, 2);
    await page.locator('#stars .star').nth(2).click();
    await rated(frames, 1);
    await page.keyboard.press('ArrowRight');
    await rated(frames, 2);
    assert.deepEqual(out(frames, 'rate').map((m) => m.rating), [3, 4]);
    assert.equal(await st(() => window.omokage.state.cursor), 0, 'the highlight stays on the pick');
    assert.equal(await st(() => document.activeElement.dataset.rating), '4');
  });

  it('while a pick is out the stars wait: a press sends nothing (it would land on a grid the page has not shown)', T, async () => {
    const frames = recordFrames(page);
    const route = { hold: false, held: [], ws: null };
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const srv = ws.connectToServer();
      route.ws = ws;
      ws.onMessage((m) => srv.send(m));
      srv.onMessage((m) => {
        if (route.hold && decode(m).type === 'candidates') route.held.push(m); // a slow answer to the pick
        else ws.send(m);
      });
    });
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await pickFace(2, 2);
    route.hold = true;
    await page.locator('#grid .face').nth(4).click();
    await page.waitForFunction(() => window.omokage.state.busy);
    assert.equal(await st(() => document.getElementById('rate').classList.contains('waiting')), true);
    await page.locator('#stars .star').nth(3).click();
    await page.waitForTimeout(300);
    assert.equal(out(frames, 'rate').length, 0, 'no rate while the pick is out');
    assert.equal(await st(() => window.omokage.state.ratingLog.length), 0);
    route.hold = false;
    for (const m of route.held) route.ws.send(m);
    await waitForGrid(page, 3);
    assert.equal(await st(() => document.getElementById('rate').classList.contains('waiting')), false);
    await page.locator('#stars .star').nth(3).click();
    await rated(frames, 1);
  });

  it('a digit typed on the stars rates (1-5) and never chooses a face; the arrows do not wrap round', T, async () => {
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await pickFace(2, 2);
    await page.locator('#stars .star').nth(2).click();
    await rated(frames, 1);
    await page.keyboard.press('5');
    await rated(frames, 2);
    await page.keyboard.press('ArrowRight'); // at 5 already: stays (it wrapped round to a 1)
    await page.keyboard.press('7');           // no such rating: nothing
    await page.waitForTimeout(300);
    assert.deepEqual(out(frames, 'rate').map((m) => m.rating), [3, 5]);
    assert.equal(out(frames, 'choose').length, 1, 'only the click chose a face');
    assert.equal((await stars()).lit, 5);
  });

  it('a policy that keeps no belief (the study\'s) shows no stars: it ignores ratings', T, async () => {
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await page.evaluate(() => { document.getElementById('settings').open = true; });
    await page.selectOption('#policy', 'study');
    await page.waitForFunction(() => window.omokage.state.policy === 'study' && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    await page.evaluate(() => { document.getElementById('settings').open = false; });
    await pickFace(2, 2);
    assert.equal((await stars()).shown, false);
    await st(() => localStorage.removeItem('omokage.policy')); // the next tests' pages: the server's default again
  });

  it('a refused rating is taken back on the page; a protocol 1.0 server shows no stars', T, async () => {
    let minor = null;
    let refuse = false;
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const srv = ws.connectToServer();
      ws.onMessage((m) => {
        const msg = decode(m);
        if (refuse && msg.type === 'rate') {
          ws.send(Buffer.from(encode({ type: 'error', rid: msg.rid, code: 'wrong_state', message: 'rate needs a started, undecided session' })));
        } else srv.send(m);
      });
      srv.onMessage((m) => {
        const msg = decode(m);
        if (msg.type === 'welcome' && minor != null) ws.send(Buffer.from(encode({ ...msg, protocol_minor: minor })));
        else ws.send(m);
      });
    });
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await pickFace(4, 2);
    refuse = true;
    await page.locator('#stars .star').nth(4).click();
    await page.waitForFunction(() => !document.getElementById('banner').hidden);
    const s = await stars();
    assert.deepEqual([s.lit, s.checked, s.note], [0, 0, ''], 'the stars are off again: the server kept no rating');
    assert.equal(await st(() => window.omokage.state.ratings.size), 0);

    minor = 0;
    await st(() => sessionStorage.clear());
    await page.reload();
    await waitForGrid(page, 1);
    await pickFace(4, 2);
    assert.equal((await stars()).shown, false, 'a 1.0 server takes no rate');
  });
});
