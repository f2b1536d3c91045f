// Protocol v1.7 `back` (docs/protocol.md "back"): the page's Back control (and B, and the VR scene's Back) undoes the
// last pick or None of these, in headless Chromium against a real `omokage serve`. The grid before it comes back as it
// was (the same faces at its step) and so does the page's own view of it: its first face ("Your pick", the closest,
// or none), whether Decide waits for a pick, the path of picks, and the tab's sessionStorage view a reload resumes from.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { decode, encode } from '@msgpack/msgpack';
import { PYTHON, closeTestPage, gridIds, newTestPage, openBrowser, recordFrames, screenshot, startServer, testData,
  waitForGrid } from './helpers.mjs';

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
  await closeTestPage(page, t, 'back-');
});

const st = (fn, arg) => page.evaluate(fn, arg);
const out = (frames, type) => frames.filter((f) => f.dir === 'out' && f.msg.type === type);
const got = (frames, type) => frames.filter((f) => f.dir === 'in' && f.msg.type === type);

async function open(query = '') {
  await page.goto(server.url + query);
  await waitForGrid(page, 1);
}

/** What a user sees of the grid and the side panel (and the page's own state of it). */
function view() {
  return st(() => {
    const o = window.omokage.state;
    const cards = [...document.querySelectorAll('#grid .face')];
    const back = document.getElementById('btn-back');
    return {
      step: o.step,
      first: o.first,
      skipped: o.skipped,
      ring: cards.findIndex((c) => c.classList.contains('is-cursor')),
      badge: cards[0].querySelector('.badge').textContent,
      stepText: document.getElementById('step').textContent.trim(),
      trail: [...document.querySelectorAll('#trail-list img')].map((i) => i.alt),
      trailIds: o.trail.map((i) => i.id),
      history: o.history.length,
      decideOff: document.getElementById('btn-decide').getAttribute('aria-disabled'),
      label: document.getElementById('pick-label').textContent,
      backShown: !back.hidden && back.offsetParent !== null,
      backOff: back.getAttribute('aria-disabled'),
      backLabel: back.getAttribute('aria-label'),
    };
  });
}

const notice = () => page.waitForFunction(() => document.getElementById('notice').textContent)
  .then(() => page.textContent('#notice'));
const clearNotice = () => st(() => { document.getElementById('notice').textContent = ''; });

/**
 * Route the page's socket to the real server, recording what it sends. `route.hold` (a type): those messages wait until
 * `route.release()`; `route.minor`: the welcome says this protocol_minor (an older server); `route.answer(type, msg)`:
 * the route answers that type itself (e.g. an older server's unknown_type); `route.refuse`: new connections close at once;
 * `route.cutAfter` (a type): the server's answer to the next such message never arrives, the link drops instead;
 * `route.swallow` (a type): the server takes the next such message, its answer never arrives and the link stays
 * (`route.swallowed` once it was kept back: the page can then be reloaded); `route.holdGrid`: a resumed selection's grid
 * (a candidates without rid) waits until `route.releaseGrid()`, its welcome goes ahead.
 */
async function routed() {
  const route = { out: [], hold: null, held: [], srv: null, ws: null, minor: null, answers: new Map(), refuse: false,
    cutAfter: null, cutRid: null, swallow: null, swallowRid: null, swallowed: false, holdGrid: false, heldIn: [] };
  await page.routeWebSocket(/\/ws$/, (ws) => {
    if (route.refuse) {
      ws.close();
      return;
    }
    const srv = ws.connectToServer();
    route.srv = srv;
    route.ws = ws;
    ws.onMessage((m) => {
      const msg = decode(m);
      route.out.push(msg);
      if (msg.type === route.cutAfter) route.cutRid = msg.rid;
      if (msg.type === route.swallow) {
        route.swallowRid = msg.rid;
        route.swallow = null;
      }
      if (route.answers.has(msg.type)) ws.send(Buffer.from(encode({ ...route.answers.get(msg.type), rid: msg.rid })));
      else if (msg.type === route.hold) route.held.push(m);
      else srv.send(m);
    });
    srv.onMessage((m) => {
      const msg = decode(m);
      if (route.cutRid != null && msg.rid === route.cutRid) { // the server took it; its answer is lost with the link
        route.cutRid = null;
        route.cutAfter = null;
        ws.close();
        return;
      }
      if (route.swallowRid != null && msg.rid === route.swallowRid) { // taken by the server; its answer goes nowhere
        route.swallowRid = null;
        route.swallowed = true;
        return;
      }
      if (route.holdGrid && msg.type === 'candidates' && msg.rid == null) {
        route.heldIn.push({ ws, m });
        return;
      }
      if (msg.type === 'welcome' && route.minor != null) ws.send(Buffer.from(encode({ ...msg, protocol_minor: route.minor })));
      else ws.send(m);
    });
  });
  route.release = () => {
    route.hold = null;
    for (const m of route.held.splice(0)) route.srv.send(m);
  };
  route.releaseGrid = () => {
    route.holdGrid = false;
    for (const { ws, m } of route.heldIn.splice(0)) ws.send(m);
  };
  route.sent = (type) => route.out.filter((m) => m.type === type);
  return route;
}

describe('Back (protocol v1.7)', () => {
  it('after two picks, Back shows the grid before (same faces and step), its pick and path; the next pick goes on from it', T, async () => {
    const frames = recordFrames(page);
    await open();
    const ids1 = await gridIds(page);
    let v = await view();
    assert.equal(v.backShown, true, 'Back beside None of these');
    assert.equal(v.backOff, 'true', 'nothing to go back to on the first grid');
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    const title2 = await st(() => window.omokage.state.items[0].title);
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    assert.equal(ids3[0], ids2[2]);
    v = await view();
    assert.equal(v.backOff, 'false');
    assert.equal(v.backLabel, 'Back to step 2: undo your last pick');
    assert.equal(v.trail.length, 2);

    await page.click('#btn-back');
    await waitForGrid(page, 2);
    assert.equal(out(frames, 'back').length, 1);
    const reply = got(frames, 'candidates').find((f) => f.msg.rid === out(frames, 'back')[0].msg.rid).msg;
    assert.equal(reply.step, 2);
    // the same faces in the same order at step 2, and the page's view of that grid as it was
    assert.deepEqual(await gridIds(page), ids2);
    v = await view();
    assert.deepEqual({ step: v.step, first: v.first, skipped: v.skipped, ring: v.ring, badge: v.badge, stepText: v.stepText,
      trailIds: v.trailIds, history: v.history, decideOff: v.decideOff, label: v.label, backOff: v.backOff },
    { step: 2, first: 'pick', skipped: false, ring: 0, badge: 'Your pick', stepText: 'Step 2', trailIds: [ids1[4]],
      history: 1, decideOff: 'false', label: 'Your pick', backOff: 'false' });
    assert.deepEqual(v.trail, [title2], 'the path of picks one shorter');
    assert.equal((await page.textContent('#btn-decide')).trim(), `Decide on ${title2.split(' — ')[0]}`);
    assert.equal(await page.locator('#grid .face.is-pick').count(), 1);
    // said for screen readers (the notice is a polite live region; the step is one too)
    const undone = (await st((i) => window.omokage.state.trail.concat(window.omokage.state.items).find((x) => x.id === i)
      .title, ids3[0])).split(' — ')[0];
    assert.equal(await notice(), `Back at step 2: your pick of ${undone} is undone.`);
    await screenshot(page, 'back-after-back');

    // the next pick goes on from this grid: the face chosen first, the undone grid's faces unseen again
    await page.locator('#grid .face').nth(5).click();
    await waitForGrid(page, 3);
    const ids3b = await gridIds(page);
    assert.equal(ids3b[0], ids2[5]);
    const seen = new Set([...ids1, ...ids2]);
    assert.deepEqual(ids3b.slice(1).filter((id) => seen.has(id)), [], 'no face seen on the grids that stay');
    v = await view();
    assert.deepEqual(v.trailIds, [ids1[4], ids2[5]]);
    assert.equal(v.history, 2);

    // back twice: the random start's first grid, where no face is anybody's pick (Decide waits), and no path
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    await page.click('#btn-back');
    await waitForGrid(page, 1);
    assert.deepEqual(await gridIds(page), ids1);
    v = await view();
    assert.deepEqual({ step: v.step, first: v.first, skipped: v.skipped, ring: v.ring, badge: v.badge, trail: v.trail.length,
      history: v.history, decideOff: v.decideOff, label: v.label, backOff: v.backOff },
    { step: 1, first: null, skipped: false, ring: -1, badge: '', trail: 0, history: 0, decideOff: 'true',
      label: 'No pick yet', backOff: 'true' });
    assert.equal(await page.isVisible('#trail'), false);
    assert.equal(v.backLabel, 'Back (these are the first faces)');
    assert.equal(out(frames, 'back').length, 3);
    assert.deepEqual(browser.errors, []);
  });

  it('Back after None of these: the grid of the pick before it (Decide offers it), or a random first grid (Decide waits)', T, async () => {
    const frames = recordFrames(page);
    await open();
    const ids1 = await gridIds(page);
    await page.locator('#grid .face').nth(3).click();
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    await page.click('#btn-skip');
    await waitForGrid(page, 3);
    let v = await view();
    assert.equal(v.skipped, true);
    assert.equal(v.decideOff, 'true');
    assert.equal(v.backLabel, 'Back to step 2: undo your None of these');
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    assert.deepEqual(await gridIds(page), ids2);
    v = await view();
    // the grid that returns had a pick first: Decide offers it at once
    assert.deepEqual({ first: v.first, skipped: v.skipped, ring: v.ring, badge: v.badge, label: v.label, decideOff: v.decideOff,
      trailIds: v.trailIds }, { first: 'pick', skipped: false, ring: 0, badge: 'Your pick', label: 'Your pick',
      decideOff: 'false', trailIds: [ids1[3]] });
    assert.equal(await notice(), 'Back at step 2: None of these is undone.');

    // two None of these in a row, then back once: a grid after None of these again (no pick on it yet)
    await page.keyboard.press('n');
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    await page.keyboard.press('ArrowRight'); // a highlight moved on the grid that will return
    await page.keyboard.press('n');
    await waitForGrid(page, 4);
    await page.click('#btn-back');
    await waitForGrid(page, 3);
    assert.deepEqual(await gridIds(page), ids3);
    v = await view();
    assert.deepEqual({ first: v.first, skipped: v.skipped, ring: v.ring, decideOff: v.decideOff, label: v.label, trailIds: v.trailIds },
      { first: null, skipped: true, ring: -1, decideOff: 'true', label: 'No pick on these yet', trailIds: [ids1[3]] },
      'the grid as it was first shown: Decide waits for a pick');

    // a random start (asked first, mid-selection), None of these, Back: the first grid again, where Decide waits too
    await page.click('#btn-random');
    await page.click('#switch-fresh');
    await waitForGrid(page, 1);
    const r1 = await gridIds(page);
    await page.keyboard.press('n');
    await waitForGrid(page, 2);
    await page.keyboard.press('b');
    await waitForGrid(page, 1);
    assert.deepEqual(await gridIds(page), r1);
    v = await view();
    assert.deepEqual({ first: v.first, skipped: v.skipped, ring: v.ring, decideOff: v.decideOff, label: v.label, trail: v.trail.length },
      { first: null, skipped: false, ring: -1, decideOff: 'true', label: 'No pick yet', trail: 0 });
    assert.equal(out(frames, 'back').length, 3);
    assert.deepEqual(browser.errors, []);
  });

  it('is off on the first grid, while a request is out, offline and after a decision, and says why', T, async () => {
    const route = await routed();
    await open();
    // the first grid: the press says why, and nothing is sent
    assert.equal(await page.isDisabled('#btn-back'), true);
    assert.match(await page.getAttribute('#btn-back', 'title'), /first faces of this selection/);
    await page.click('#btn-back', { force: true });
    assert.equal(await notice(), 'These are the first faces of this selection: there is nothing to go back to.');
    await clearNotice();
    await page.keyboard.press('b');
    assert.equal(await notice(), 'These are the first faces of this selection: there is nothing to go back to.');
    assert.equal(route.sent('back').length, 0);

    // in flight: the back held on its way, the control is off and a second press sends nothing
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 2);
    assert.equal(await page.isDisabled('#btn-back'), false);
    route.hold = 'back';
    await page.click('#btn-back');
    await page.waitForFunction(() => window.omokage.state.busy);
    assert.equal(await page.isDisabled('#btn-back'), true);
    assert.equal(await page.getAttribute('#btn-back', 'aria-label'), 'Back (wait for the faces)');
    await page.click('#btn-back', { force: true });
    await page.keyboard.press('b');
    await page.waitForTimeout(200);
    assert.equal(route.sent('back').length, 1);
    route.release();
    await waitForGrid(page, 1);
    assert.equal(await page.isDisabled('#btn-back'), true);

    // offline: shown (the server takes back), off, and a press says it was not sent
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    route.refuse = true;
    route.ws.close();
    await page.waitForFunction(() => window.omokage.client.state !== 'open');
    assert.equal(await page.isVisible('#btn-back'), true);
    assert.equal(await page.isDisabled('#btn-back'), true);
    assert.equal(await page.getAttribute('#btn-back', 'aria-label'), 'Back (offline)');
    await clearNotice();
    await page.keyboard.press('b');
    assert.match(await notice(), /^Offline: your choice wasn't sent/);
    route.refuse = false;
    await page.waitForFunction(() => window.omokage.client.state === 'open' && !window.omokage.state.busy
      && !window.omokage.state.resuming, null, { timeout: 20000 });
    await waitForGrid(page, 2); // resumed (v1.7): the same grid
    assert.equal(await page.isDisabled('#btn-back'), false);

    // after a decision: Start again takes the place of Decide, None of these and Back; B says why it does nothing
    const [tab] = await Promise.all([browser.context.waitForEvent('page'), page.keyboard.press('d')]);
    await tab.close();
    await page.waitForSelector('#decided[open]');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('decided').open);
    assert.equal(await page.isVisible('#btn-back'), false);
    assert.equal(await page.isVisible('#btn-skip'), false);
    assert.equal(await page.getAttribute('#btn-back', 'aria-disabled'), 'true');
    await clearNotice();
    await page.keyboard.press('b');
    assert.match(await notice(), /^You have decided on .*Start again/);
    assert.equal(route.sent('back').length, 1, 'no back after a decision');
    assert.equal(await st(() => window.omokage.state.step), 2);
    // the server refuses it too, in plain words
    await st(() => window.omokage.back({ force: true }));
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.textContent('#banner-title'), 'You have already decided');
    assert.match(await page.textContent('#banner-detail'), /\[wrong_state\]/);
  });

  it('the key is B (in the shortcut help), never Backspace, and not while typing in a field', T, async () => {
    const frames = recordFrames(page);
    await open();
    assert.equal(await page.isVisible('#keys-back'), true);
    assert.equal((await page.textContent('#keys-back')).trim(), '·B back');
    assert.equal(await page.getAttribute('#btn-back', 'aria-keyshortcuts'), 'B');
    const ids1 = await gridIds(page);
    await page.keyboard.press('3');
    await waitForGrid(page, 2);
    await page.keyboard.press('Backspace');
    await page.waitForTimeout(200);
    assert.equal(out(frames, 'back').length, 0, 'Backspace is not Back');
    // in a text field, B is a letter
    await page.click('#settings summary');
    await page.click('#btn-join-open');
    await page.waitForSelector('#join-code:focus');
    await page.keyboard.type('Bb');
    assert.equal(await page.inputValue('#join-code'), 'Bb');
    await page.click('#join-cancel');
    assert.equal(out(frames, 'back').length, 0);
    // Shift+B as well as b
    await page.keyboard.press('Shift+B');
    await waitForGrid(page, 1);
    assert.deepEqual(await gridIds(page), ids1);
    assert.equal(out(frames, 'back').length, 1);
    assert.equal(await st(() => window.omokage.state.step), 1);
    // the focus did not move: the keys go on
    await page.keyboard.press('5');
    await waitForGrid(page, 2);
    await page.keyboard.press('b');
    await waitForGrid(page, 1);
    assert.equal(out(frames, 'back').length, 2);
    assert.deepEqual(browser.errors, []);
  });

  it('after Back, a reload resumes at the grid Back returned to, with its path; Back goes on from there', T, async () => {
    const frames = recordFrames(page);
    await open();
    const ids1 = await gridIds(page);
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    await page.keyboard.press('n');
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    await page.locator('#grid .face').nth(6).click();
    await waitForGrid(page, 4);
    await page.click('#btn-back');
    await waitForGrid(page, 3);
    const kept = JSON.parse(await st(() => sessionStorage.getItem('omokage.view')));
    assert.equal(kept.step, 3);
    assert.deepEqual(kept.ids, ids3);
    assert.equal(kept.skipped, true);
    assert.deepEqual(kept.trail.map((i) => i.id), [ids1[4]]);
    assert.deepEqual(kept.history.map((h) => h.step), [1, 2]);

    const mark = frames.length;
    await page.reload();
    await page.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming);
    await waitForGrid(page, 3);
    assert.equal(got(frames.slice(mark), 'welcome')[0].msg.resumed, true);
    assert.equal(out(frames.slice(mark), 'start').length, 0);
    assert.deepEqual(await gridIds(page), ids3);
    let v = await view();
    assert.deepEqual({ step: v.step, first: v.first, skipped: v.skipped, decideOff: v.decideOff, trailIds: v.trailIds,
      history: v.history, backOff: v.backOff },
    { step: 3, first: null, skipped: true, decideOff: 'true', trailIds: [ids1[4]], history: 2, backOff: 'false' });

    // Back after the reload: the grid of the pick, then the random first grid, each as it was
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    v = await view();
    assert.deepEqual({ first: v.first, skipped: v.skipped, badge: v.badge, decideOff: v.decideOff, trailIds: v.trailIds },
      { first: 'pick', skipped: false, badge: 'Your pick', decideOff: 'false', trailIds: [ids1[4]] });
    await page.click('#btn-back');
    await waitForGrid(page, 1);
    assert.deepEqual(await gridIds(page), ids1);
    v = await view();
    assert.deepEqual({ first: v.first, decideOff: v.decideOff, trail: v.trail.length, backOff: v.backOff },
      { first: null, decideOff: 'true', trail: 0, backOff: 'true' });
    // and a reload here is the first grid again
    await page.reload();
    await page.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming);
    await waitForGrid(page, 1);
    assert.deepEqual(await gridIds(page), ids1);
    assert.equal((await view()).backOff, 'true');
    assert.deepEqual(browser.errors, []);
  });

  it('a Back the server took when the link dropped before its answer: the resumed grid is read as its answer', T, async () => {
    const route = await routed();
    await open();
    const ids1 = await gridIds(page);
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    await page.keyboard.press('n');
    await waitForGrid(page, 3);
    const sid = await st(() => window.omokage.client.welcome.session_id);
    route.cutAfter = 'back';
    await page.keyboard.press('b');
    await page.waitForFunction((s) => {
      const o = window.omokage;
      return o.client.state === 'open' && o.client.welcome.session_id !== s && !o.state.resuming && !o.state.busy;
    }, sid, { timeout: 20000 });
    await waitForGrid(page, 2);
    assert.equal(route.sent('back').length, 1, 'sent once, not again');
    assert.equal(route.sent('hello').length, 2);
    assert.deepEqual(await gridIds(page), ids2);
    const v = await view();
    // the grid of the pick, as it was, not a grid after None of these
    assert.deepEqual({ first: v.first, skipped: v.skipped, badge: v.badge, decideOff: v.decideOff, trailIds: v.trailIds,
      history: v.history, backOff: v.backOff },
    { first: 'pick', skipped: false, badge: 'Your pick', decideOff: 'false', trailIds: [ids1[4]], history: 1, backOff: 'false' });
    await page.click('#btn-back');
    await waitForGrid(page, 1);
    assert.deepEqual(await gridIds(page), ids1);
  });

  it('a press between a resumed welcome and its grid sends nothing: Back, a face, a digit and N wait for the grid', T, async () => {
    const route = await routed();
    await open();
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    const sent = () => ({ back: route.sent('back').length, choose: route.sent('choose').length,
      skip: route.sent('skip').length });
    const before = sent();
    // the link drops; on the next one the welcome (resumed) comes, its grid is held back: the page's grid is the old
    // link's, which the server may be a step past
    route.holdGrid = true;
    route.ws.close();
    await page.waitForFunction(() => window.omokage.state.resuming && window.omokage.client.state === 'open', null,
      { timeout: 20000 });
    await page.keyboard.press('b');
    await page.click('#btn-back', { force: true });
    await page.locator('#grid .face').nth(3).click();
    await page.keyboard.press('5');
    await page.keyboard.press('n');
    await page.click('#btn-skip');
    await page.waitForTimeout(300);
    assert.deepEqual(sent(), before, 'nothing went out against the grid on screen');
    assert.equal(await st(() => window.omokage.state.resuming), true, 'the grid was still held back');
    assert.equal(await page.getAttribute('#btn-back', 'aria-disabled'), 'true');
    assert.equal(await page.getAttribute('#btn-back', 'aria-label'), 'Back (wait for the faces)');
    route.releaseGrid();
    await page.waitForFunction(() => !window.omokage.state.resuming && !window.omokage.state.busy);
    await waitForGrid(page, 3);
    assert.deepEqual(await gridIds(page), ids3);
    assert.equal(await page.getAttribute('#btn-back', 'aria-disabled'), 'false');
    // the grid shown, the page and the server are at the same step: Back goes on from it
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    assert.equal(route.sent('back').length, 1);
    assert.deepEqual(browser.errors.filter((e) => !/WebSocket/i.test(e)), []);
  });

  it('a held B (or N) is one press: its auto-repeat goes back (or skips) once', T, async () => {
    const frames = recordFrames(page);
    await open();
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 3);
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 4);
    await page.keyboard.down('b');
    await waitForGrid(page, 3);
    // the key is still down: the keyboard repeats it (keydown with repeat set) while the grid before is shown
    await page.keyboard.down('b');
    await page.keyboard.down('b');
    await page.waitForTimeout(300);
    await page.keyboard.up('b');
    assert.equal(out(frames, 'back').length, 1);
    assert.equal(await st(() => window.omokage.state.step), 3);
    await page.keyboard.down('n');
    await waitForGrid(page, 4);
    await page.keyboard.down('n');
    await page.keyboard.down('n');
    await page.waitForTimeout(300);
    await page.keyboard.up('n');
    assert.equal(out(frames, 'skip').length, 1);
    assert.equal(await st(() => window.omokage.state.step), 4);
    assert.deepEqual(browser.errors, []);
  });

  it('a reload while a pick, None of these or Back was unanswered: the resumed grid is read as its answer, the path kept', T, async () => {
    const route = await routed();
    await open();
    const ids1 = await gridIds(page);
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    await page.keyboard.press('n');
    await waitForGrid(page, 3);
    const ids3 = await gridIds(page);
    const reload = async () => {
      await page.waitForFunction(() => window.omokage.state.busy); // the request is out
      for (let i = 0; i < 100 && !route.swallowed; i++) await page.waitForTimeout(50);
      assert.equal(route.swallowed, true, 'the server took it, its answer is kept back');
      route.swallowed = false;
      await page.reload();
      await page.waitForFunction(() => window.omokage && window.omokage.client.welcome && !window.omokage.state.resuming
        && !window.omokage.state.busy, null, { timeout: 20000 });
    };

    // a pick the server took: its grid, the pick first and on the path, the grid it was made on in the history
    route.swallow = 'choose';
    await page.locator('#grid .face').nth(5).click();
    await reload();
    await waitForGrid(page, 4);
    const ids4 = await gridIds(page);
    assert.equal(ids4[0], ids3[5]);
    let v = await view();
    assert.deepEqual({ first: v.first, skipped: v.skipped, badge: v.badge, decideOff: v.decideOff, trailIds: v.trailIds,
      history: v.history }, { first: 'pick', skipped: false, badge: 'Your pick', decideOff: 'false',
      trailIds: [ids1[4], ids3[5]], history: 3 });

    // None of these the server took: no face is the user's, Decide waits, the path as it was
    route.swallow = 'skip';
    await page.keyboard.press('n');
    await reload();
    await waitForGrid(page, 5);
    const ids5 = await gridIds(page);
    v = await view();
    assert.deepEqual({ first: v.first, skipped: v.skipped, ring: v.ring, badge: v.badge, decideOff: v.decideOff,
      trailIds: v.trailIds, history: v.history }, { first: null, skipped: true, ring: -1, badge: '', decideOff: 'true',
      trailIds: [ids1[4], ids3[5]], history: 4 });

    // a Back the server took: the grid before, as the tab kept it (the pick's grid)
    route.swallow = 'back';
    await page.keyboard.press('b');
    await reload();
    await waitForGrid(page, 4);
    assert.deepEqual(await gridIds(page), ids4);
    v = await view();
    assert.deepEqual({ first: v.first, skipped: v.skipped, badge: v.badge, decideOff: v.decideOff, trailIds: v.trailIds,
      history: v.history }, { first: 'pick', skipped: false, badge: 'Your pick', decideOff: 'false',
      trailIds: [ids1[4], ids3[5]], history: 3 });

    // a view that does not say what was out (an older page's): one step on is a pick or None of these, the page cannot
    // tell which, so it claims no pick: nothing highlighted, Decide waits for one; the path and the grids before stay
    route.swallow = 'skip';
    await page.keyboard.press('n');
    await page.waitForFunction(() => window.omokage.state.busy);
    await st(() => {
      const kept = JSON.parse(sessionStorage.getItem('omokage.view'));
      if (!kept.pending || kept.pending.kind !== 'skip') throw new Error(`no pending skip kept: ${JSON.stringify(kept.pending)}`);
      delete kept.pending;
      sessionStorage.setItem('omokage.view', JSON.stringify(kept));
    });
    await reload();
    await waitForGrid(page, 5);
    v = await view();
    assert.deepEqual({ first: v.first, ring: v.ring, badge: v.badge, decideOff: v.decideOff, trailIds: v.trailIds,
      history: v.history, backOff: v.backOff, backLabel: v.backLabel },
    { first: null, ring: -1, badge: '', decideOff: 'true', trailIds: [ids1[4], ids3[5]], history: 4, backOff: 'false',
      backLabel: 'Back to step 4: undo your last step' });
    await clearNotice();
    await page.click('#btn-decide', { force: true });
    assert.match(await notice(), /^Choose a face first/);
    // Back from it: the pick's grid as it was
    await page.click('#btn-back');
    await waitForGrid(page, 4);
    assert.deepEqual(await gridIds(page), ids4);
    v = await view();
    assert.deepEqual({ first: v.first, badge: v.badge, decideOff: v.decideOff, trailIds: v.trailIds },
      { first: 'pick', badge: 'Your pick', decideOff: 'false', trailIds: [ids1[4], ids3[5]] });
    assert.deepEqual(browser.errors, []);
  });

  it('the ideal face made before a Back says so after a pick at its step again; a pick and its Back leave it current', T, async () => {
    await open();
    assert.ok(await st(() => !!window.omokage.client.ideal), 'the test server generates ideal faces');
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    await page.keyboard.press('i');
    await page.waitForFunction(() => window.omokage.ideal.view.renders >= 1 && !window.omokage.ideal.view.busy, null,
      { timeout: 20000 });
    const stale = () => st(() => {
      const el = document.getElementById('ideal-stale');
      return el.hidden ? null : el.textContent;
    });
    assert.equal(await stale(), null);
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 3);
    assert.match(await stale(), /^Made at step 2; your choices since are not in it/);
    // Back to the grid it was made at: the same path, so it is current again
    await page.click('#btn-back');
    await waitForGrid(page, 2);
    assert.equal(await stale(), null);
    // further back and another pick: step 2 again, but not the path it was made from
    await page.click('#btn-back');
    await waitForGrid(page, 1);
    assert.match(await stale(), /^Made at step 2; you went back since, so it counts a step you undid/);
    await page.locator('#grid .face').nth(3).click();
    await waitForGrid(page, 2);
    assert.match(await stale(), /^Made at step 2; you went back since, so it counts a step you undid/);
    // asked again, it is current
    await page.keyboard.press('i');
    await page.waitForFunction(() => window.omokage.ideal.view.renders >= 2 && !window.omokage.ideal.view.busy, null,
      { timeout: 20000 });
    assert.equal(await stale(), null);
    assert.deepEqual(browser.errors, []);
  });

  it('a server without back (v1.6) shows no Back; its refusals are said in plain words', T, async () => {
    const route = await routed();
    route.minor = 6;
    await open();
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 2);
    assert.equal(await page.isVisible('#btn-back'), false);
    assert.equal(await page.isVisible('#keys-back'), false);
    await page.keyboard.press('b');
    await page.waitForTimeout(200);
    assert.equal(route.sent('back').length, 0);
    // were it sent, a v1.6 server answers unknown_type
    route.answers.set('back', { type: 'error', code: 'unknown_type', message: 'unknown message type: back' });
    await st(() => window.omokage.back({ force: true }));
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.textContent('#banner-title'), "This server can't go back");
    assert.match(await page.textContent('#banner-text'), /older than this page/);
    assert.match(await page.textContent('#banner-detail'), /\[unknown_type\]/);
    assert.equal(await st(() => window.omokage.state.step), 2, 'the grid stays');
  });

  it("the server's wrong_state on the first grid is said in plain words", T, async () => {
    await open();
    await st(() => window.omokage.back({ force: true }));
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.textContent('#banner-title'), 'There is nothing to go back to');
    assert.match(await page.textContent('#banner-text'), /first faces/);
    assert.match(await page.textContent('#banner-detail'), /back: .*first grid.*\[wrong_state\]/);
    assert.equal(await st(() => window.omokage.state.step), 1);
    assert.equal(await page.isDisabled('#btn-back'), true);
  });

  it('at 400×800 Decide and None of these keep their line and Back is under None of these, a 44 px target', T, async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    await open();
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    const r = await st(() => {
      const box = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
      return { decide: box('btn-decide'), skip: box('btn-skip'), back: box('btn-back'), w: document.documentElement.scrollWidth };
    });
    assert.ok(r.w <= 400, `no sideways scrolling (${r.w})`);
    const mid = (b) => b.top + b.height / 2;
    assert.ok(Math.abs(mid(r.skip) - mid(r.decide)) <= 2, `Decide and None of these on one line: ${JSON.stringify(r)}`);
    assert.ok(r.decide.width >= 180, `Decide keeps room for its label (${r.decide.width})`);
    // the next line (beside What you seem to want), right under None of these
    assert.ok(r.back.top >= r.skip.bottom && r.back.top - r.skip.bottom <= 10 && Math.abs(r.back.right - r.skip.right) <= 1,
      `Back under None of these: ${JSON.stringify(r)}`);
    assert.ok(r.back.height >= 44 && r.back.width >= 44 && r.back.right <= 400, JSON.stringify(r.back));
    assert.ok(r.back.bottom <= 800, `Back above the fold (${r.back.bottom})`);
    assert.equal(await page.getAttribute('#btn-back', 'aria-label'), 'Back to step 1: undo your last pick');
    await page.click('#btn-back');
    await waitForGrid(page, 1);
  });
});

describe('Back on a laptop screen (v1.7)', () => {
  for (const [w, h] of [[1280, 800], [1366, 768]]) {
    it(`at ${w}×${h} Decide, None of these, Back and What you seem to want are above the fold, nothing cut`, T, async () => {
      await page.setViewportSize({ width: w, height: h });
      await open();
      await page.locator('#grid .face').nth(4).click();
      await waitForGrid(page, 2);
      await page.waitForFunction(() => !document.getElementById('btn-ideal').hidden);
      const r = await st(() => {
        const box = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
        const cut = (id) => { const s = document.querySelector(`#${id} span`); return s.scrollWidth > s.clientWidth + 1; };
        return { scrollY: window.scrollY, grid: box('grid'), pick: box('pick-img'),
          buttons: ['btn-decide', 'btn-skip', 'btn-back', 'btn-ideal'].map((id) => ({ id, ...box(id), cut: cut(id) })) };
      });
      assert.equal(r.scrollY, 0);
      assert.ok(r.grid.bottom <= h, `the grid ${JSON.stringify(r.grid)}`);
      for (const b of r.buttons) {
        assert.ok(b.bottom <= h && b.right <= w && b.height >= 36 && !b.cut, `${b.id} ${JSON.stringify(b)}`);
      }
      // the pick's picture gives way on a short screen, and stays a recognisable face
      assert.ok(r.pick.width >= 120 && r.pick.bottom < r.buttons[0].top, `the pick ${JSON.stringify(r.pick)}`);
      await screenshot(page, `back-${w}x${h}`);
    });
  }
});

describe('Back in the VR scene (v1.7)', () => {
  it('the 3D preview has a Back button beside the others: off on the first grid, on after a pick, and it goes back', T, async () => {
    await page.addInitScript(() => {
      Object.defineProperty(navigator, 'xr', { value: { isSessionSupported: async () => false }, configurable: true });
    });
    const frames = recordFrames(page);
    await open('?vr=preview');
    await page.click('#btn-vr');
    await page.waitForFunction(() => window.omokage.xr && window.omokage.xr.stats.texturesReady === 9
      && window.omokage.xr.stats.frames > 5, null, { timeout: 30000 });
    const ids1 = await gridIds(page);
    assert.equal(await st(() => window.omokage.xr.stats.back), 'off');
    await st(() => window.omokage.xr.select('back'));
    await page.waitForTimeout(200);
    assert.equal(out(frames, 'back').length, 0, 'off on the first grid');
    await st(() => window.omokage.xr.select(4));
    await page.waitForFunction(() => window.omokage.xr.stats.step === 2 && window.omokage.xr.stats.texturesReady === 9
      && !window.omokage.state.busy);
    await page.waitForFunction(() => window.omokage.xr.stats.back === 'on');
    const swaps = await st(() => window.omokage.xr.stats.swaps);
    await st(() => window.omokage.xr.select('back'));
    await page.waitForFunction((n) => window.omokage.xr.stats.swaps > n && window.omokage.xr.stats.step === 1
      && window.omokage.xr.stats.texturesReady === 9 && !window.omokage.state.busy, swaps);
    assert.equal(out(frames, 'back').length, 1);
    assert.equal(await st(() => window.omokage.xr.stats.lastSelect), 'button:back');
    assert.deepEqual(await gridIds(page), ids1);
    await page.waitForFunction(() => window.omokage.xr.stats.back === 'off');
    // the first grid of a random start again: the scene's Decide waits for a pick
    await st(() => window.omokage.xr.select('decide'));
    await page.waitForTimeout(200);
    assert.equal(await st(() => window.omokage.state.decided), null);
    await screenshot(page, 'back-vr-preview');
    await st(() => window.omokage.xr.end());
    assert.deepEqual(browser.errors, []);
  });
});

describe('Back in a study (v1.7)', () => {
  it('is hidden in a study trial (the server refuses it: its steps are what the study measures)', T, async () => {
    testData();
    const dir = mkdtempSync(path.join(tmpdir(), 'omokage-study-'));
    const db = path.join(dir, 'omokage.db');
    writeFileSync(path.join(dir, 'study.toml'), `
name = "backtest"
title = "Back test study"
participants = ["p-back"]
trials_per_condition = 1

[[conditions]]
label = "System A"
model = "pca"
policy = "study"
`);
    execFileSync(PYTHON, ['-m', 'omokage', 'study', 'create', path.join(dir, 'study.toml'), '--db', db],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const study = await startServer({ args: ['--study', 'backtest', '--db', db] });
    try {
      const frames = recordFrames(page);
      await page.goto(`${study.url}?participant=p-back`);
      await page.waitForFunction(() => window.omokage.state.trial && !window.omokage.state.busy, null, { timeout: 20000 });
      await waitForGrid(page, 1);
      await page.locator('#grid .face').nth(2).click();
      await waitForGrid(page, 2);
      assert.equal(await st(() => window.omokage.client.welcome.protocol_minor), 7);
      assert.equal(await page.isVisible('#btn-back'), false);
      assert.equal(await page.isVisible('#keys-back'), false);
      await page.keyboard.press('b');
      await page.waitForTimeout(200);
      assert.equal(out(frames, 'back').length, 0);
      await st(() => window.omokage.back({ force: true }));
      await page.waitForSelector('#banner:not([hidden])');
      assert.equal(await page.textContent('#banner-title'), "A study trial can't go back");
      assert.equal(await st(() => window.omokage.state.step), 2);
    } finally {
      await study.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
