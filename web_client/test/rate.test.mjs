// Protocol v1.1 `rate` (docs/protocol.md "rate"): the side panel's five stars rate the face it shows (the user's pick,
// or the face the highlight was moved to), in headless Chromium against a real `omokage serve`. A star sends `rate`
// and the server's belief takes it in (the probabilities of the next grid move); a second star replaces the first; a
// back forgets the ratings given on the grids it leaves, as the server does; a reload keeps them; a server that does
// not offer `rate` (protocol 1.0) shows no stars, and a refused rating is taken back on the page. On a phone (390×844,
// touch), where the side panel is not shown, the stars have a line of their own under Decide, None of these and Back
// (which stay where they were), 44 px targets on the screen, and nothing moves between grids.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { decode, encode } from '@msgpack/msgpack';
import { closeTestPage, gridIds, newTestPage, openBrowser, recordFrames, screenshot, startServer, waitForGrid } from './helpers.mjs';

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

describe('Rating on a phone (390×844, touch: the side panel is not shown)', () => {
  let phone;
  const W = 390;
  const H = 844;

  before(async () => {
    phone = await openBrowser({ viewport: { width: W, height: H }, touch: true });
  });

  after(async () => {
    if (phone) await phone.close();
  });

  /** A phone's page for this test, in place of the desktop one (the file's afterEach takes its screenshot). */
  async function phonePage() {
    await page.close();
    page = await newTestPage(phone);
  }

  /** Where the phone's controls are laid out on the page (a tap may scroll the page a little, and a pressed button moves
   * down a pixel: the page's own coordinates, which at the top of the page are the screen's), and the star row as the
   * eye sees it. */
  const layout = () => st(() => {
    const box = (id) => {
      let e = document.getElementById(id);
      const [w, h] = [e.offsetWidth, e.offsetHeight];
      let [x, y] = [0, 0];
      for (; e; e = e.offsetParent) [x, y] = [x + e.offsetLeft, y + e.offsetTop];
      return { left: x, top: y, right: x + w, bottom: y + h };
    };
    const row = document.getElementById('rate');
    const b = [...document.querySelectorAll('#stars .star')];
    return {
      grid: box('grid'), decide: box('btn-decide'), skip: box('btn-skip'), back: box('btn-back'), rate: box('rate'),
      trail: box('trail'), ideal: box('btn-ideal'),
      stars: b.map((x) => { const r = x.getBoundingClientRect(); return { w: r.width, h: r.height, right: r.right, bottom: r.bottom + scrollY }; }),
      shown: getComputedStyle(row).visibility !== 'hidden' && row.offsetParent !== null,
      // lit to the eye: the star's colour (a finger's tap leaves the pointer "over" the stars; that lights nothing)
      litSeen: b.filter((x) => getComputedStyle(x).color === 'rgb(255, 201, 77)').length,
      label: document.getElementById('rate-label').innerText.replace(/\s+/g, ' ').trim(),
      scrollW: document.documentElement.scrollWidth,
    };
  });
  const place = (l) => ({ grid: l.grid, decide: l.decide, skip: l.skip, back: l.back, rate: l.rate });
  const tapFace = async (n, step) => {
    await page.locator('#grid .face').nth(n).tap();
    await waitForGrid(page, step);
  };

  it('the stars: a line under Decide and Back, 44 px targets on the screen; nothing moves; a 1.0 server leaves no gap', T, async () => {
    await phonePage();
    const frames = recordFrames(page);
    await page.goto(server.url);
    await waitForGrid(page, 1);
    const first = await layout();
    assert.equal(first.shown, false, 'nothing to rate on a random start\'s first grid');
    await tapFace(3, 2);
    const pick = (await gridIds(page))[0];
    let l = await layout();
    assert.equal(l.shown, true, 'the stars for the pick');
    assert.equal(l.label, 'How close is your pick?');
    assert.deepEqual(place(l), place(first), 'nothing moved: the row was kept while there was nothing to rate');
    assert.ok(l.rate.top >= l.back.bottom && l.rate.top - l.back.bottom <= 10 && l.rate.bottom <= H,
      `a line under Decide, None of these and Back, on the screen: ${JSON.stringify(l)}`);
    for (const s of l.stars) {
      assert.ok(s.w >= 44 && s.h >= 44, `a finger's target: ${JSON.stringify(s)}`);
      assert.ok(s.right <= W && s.bottom <= H, `on the screen: ${JSON.stringify(s)}`);
    }
    for (const k of ['grid', 'decide', 'skip', 'back']) {
      assert.ok(l[k].bottom <= H && l[k].top >= 0, `${k} on the screen at the top of the page: ${JSON.stringify(l[k])}`);
    }
    assert.ok(l.scrollW <= W, `no sideways scrolling (${l.scrollW})`);
    await st(() => window.scrollTo(0, 0));
    await screenshot(page, 'rate-phone-pick');

    await page.locator('#stars .star').nth(3).tap();
    await rated(frames, 1);
    assert.deepEqual(out(frames, 'rate').map((m) => [m.id, m.rating]), [[pick, 4]]);
    l = await layout();
    assert.equal(l.litSeen, 4);
    assert.match(await page.textContent('#rate-note'), /Rated 4 of 5/);
    await st(() => window.scrollTo(0, 0));
    await screenshot(page, 'rate-phone-rated');

    // another face: its stars are dark, although the finger last touched the fourth star
    await tapFace(5, 3);
    l = await layout();
    assert.equal(l.shown, true);
    assert.equal(l.litSeen, 0, 'a new pick, not rated yet');
    assert.deepEqual(place(l), place(first));
    // None of these: nothing to rate (no pick), the row kept; Back: the pick's stars again
    await page.locator('#btn-skip').tap();
    await waitForGrid(page, 4);
    l = await layout();
    assert.equal(l.shown, false);
    assert.deepEqual(place(l), place(first));
    await page.locator('#btn-back').tap();
    await waitForGrid(page, 3);
    l = await layout();
    assert.equal(l.shown, true);
    assert.deepEqual(place(l), place(first));
    assert.deepEqual(phone.errors, []);

    // a server that takes no ratings (protocol 1.0): no stars, and no empty line above the path
    await page.close();
    page = await newTestPage(phone);
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const srv = ws.connectToServer();
      ws.onMessage((m) => srv.send(m));
      srv.onMessage((m) => {
        const msg = decode(m);
        if (msg.type === 'welcome') ws.send(Buffer.from(encode({ ...msg, protocol_minor: 0 })));
        else ws.send(m);
      });
    });
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await tapFace(4, 2);
    l = await layout();
    assert.equal(l.shown, false);
    const above = Math.max(...['decide', 'skip', 'back', 'ideal'].map((k) => l[k].bottom));
    assert.ok(l.trail.top > above && l.trail.top - above <= 10, `the path right under the buttons: ${JSON.stringify(l)}`);
    assert.deepEqual(phone.errors, []);
  });
});
