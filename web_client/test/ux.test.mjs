// A UX walkthrough's findings, in headless Chromium against a real `omokage serve`: an image mid-selection asks first
// (as Random start does; on the Draw view too, and so does Random start there), the step count of a path carried across a feature switch, a highlight kept across a reload,
// a page opened while the server is down, side panels that leave the grid where it is, and plain words for the feature
// spaces, the policies and the belief's percentages. Screenshots land in web_client/test-artifacts/ (ux-*.png).

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { closeTestPage, freePort, gridIds, makeImage, newTestPage, openBrowser, recordFrames, screenshot, startServer,
  waitForGrid } from './helpers.mjs';

const T = { timeout: 60000 };
let server;
let browser;
let page;
let files;
let image;

before(async () => {
  server = await startServer();
  browser = await openBrowser();
  files = mkdtempSync(path.join(tmpdir(), 'omokage-ux-'));
  image = makeImage(path.join(files, 'me.jpg'));
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  if (files) rmSync(files, { recursive: true, force: true });
});

beforeEach(async () => {
  page = await newTestPage(browser);
  await page.addInitScript(() => {
    localStorage.removeItem('omokage.algorithm');
    localStorage.removeItem('omokage.policy');
  });
});

afterEach(async (t) => {
  await closeTestPage(page, t, 'ux-');
});

const st = (fn, arg) => page.evaluate(fn, arg);

async function open(query = '') {
  await page.goto(server.url + query);
  await waitForGrid(page, 1);
}

/** Wait until `fn()` (in this process) is true. */
async function until(fn, timeout = 10000) {
  const end = Date.now() + timeout;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${fn}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Two picks: the grid of step 3 on screen. */
async function twoPicks() {
  await page.locator('#grid .face').nth(4).click();
  await waitForGrid(page, 2);
  await page.locator('#grid .face').nth(1).click();
  await waitForGrid(page, 3);
}

/** Drop `file` (a path) on the page, as a file dragged from the desktop. */
async function dropFile(file, name) {
  const bytes = [...readFileSync(file)];
  await page.evaluate(([b, n]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(b)], n, { type: 'image/jpeg' }));
    document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [bytes, name]);
}

describe('an image mid-selection', () => {
  it('asks first, as Random start does: Keep this one keeps the selection, Start from the image starts from it', T, async () => {
    const all = recordFrames(page);
    await open();
    await twoPicks();
    const ids = await gridIds(page);
    const frames = { from: all.length, filter: (fn) => all.slice(frames.from).filter(fn) };
    await page.setInputFiles('#file', image);
    await page.waitForSelector('#switch:not([hidden])');
    assert.equal(await page.textContent('#switch-title'), 'Start again from this image?');
    assert.match(await page.textContent('#switch-text'), /^You are at step 3\. Starting from me\.jpg leaves this selection/);
    assert.equal(await page.isVisible('#switch-keep'), false);
    assert.equal((await page.textContent('#switch-fresh')).trim(), 'Start from the image');
    assert.equal((await page.textContent('#switch-cancel')).trim(), 'Keep this one');
    assert.equal(await st(() => document.activeElement.id), 'switch-fresh');
    await screenshot(page, 'ux-upload-asks');
    await page.waitForTimeout(300);
    assert.deepEqual(frames.filter((f) => f.dir === 'out' && f.msg.type === 'start'), [], 'nothing sent before the answer');
    assert.equal(await st(() => window.omokage.state.step), 3);

    // Keep this one: nothing changes, the file is forgotten
    await page.click('#switch-cancel');
    await page.waitForSelector('#switch', { state: 'hidden' });
    assert.equal(await st(() => window.omokage.state.pendingFile), null);
    assert.equal(await st(() => window.omokage.state.step), 3);
    assert.deepEqual(await gridIds(page), ids);
    assert.equal(await page.isVisible('#source'), false);
    assert.equal(await page.locator('#trail-list img').count(), 2);

    // Escape dismisses it too (a dropped image)
    await dropFile(image, 'dropped.jpg');
    await page.waitForSelector('#switch:not([hidden])');
    assert.match(await page.textContent('#switch-text'), /Starting from dropped\.jpg/);
    await page.keyboard.press('Escape');
    await page.waitForSelector('#switch', { state: 'hidden' });
    await page.waitForTimeout(300);
    assert.equal(await st(() => window.omokage.state.step), 3);
    assert.deepEqual(frames.filter((f) => f.dir === 'out' && f.msg.type === 'start'), []);

    // Start from the image: the file chosen before the question is the one sent
    await page.setInputFiles('#file', image);
    await page.waitForSelector('#switch:not([hidden])');
    await page.click('#switch-fresh');
    await page.waitForFunction(() => window.omokage.state.init === 'image' && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    const starts = frames.filter((f) => f.dir === 'out' && f.msg.type === 'start');
    assert.equal(starts.length, 1);
    assert.equal(starts[0].msg.image.length, readFileSync(image).length);
    assert.equal(await page.isVisible('#switch'), false);
    assert.equal(await page.isVisible('#source'), true);
    assert.equal(await page.textContent('#upload-caption'), 'Your image');
    assert.equal(await page.isVisible('#trail'), false, 'a new selection');

    // at step 1 with nothing to lose, an image starts at once
    await page.setInputFiles('#file', image);
    await until(() => frames.filter((f) => f.dir === 'out' && f.msg.type === 'start').length === 2);
    await waitForGrid(page, 1);
    assert.equal(await page.isVisible('#switch'), false);
    assert.deepEqual(browser.errors, []);
  });
});

describe('the Draw view mid-selection', () => {
  const starts = (all, from) => all.slice(from).filter((f) => f.dir === 'out' && f.msg.type === 'start').map((f) => f.msg);
  /** What the user would lose, and where the page is. */
  const kept = () => st(() => ({
    step: window.omokage.state.step,
    ids: window.omokage.state.items.map((i) => i.id),
    trail: document.querySelectorAll('#trail-list img').length,
    view: window.omokage.state.view,
    drawing: !document.getElementById('sketch').hidden,
    strokes: window.omokage.sketch.pad.strokes.length,
    pendingFile: window.omokage.state.pendingFile,
  }));
  /** One line drawn with the mouse across the canvas. */
  async function stroke() {
    const b = await page.locator('#sketch-canvas').boundingBox();
    await page.mouse.move(b.x + b.width * 0.3, b.y + b.height * 0.4);
    await page.mouse.down();
    await page.mouse.move(b.x + b.width * 0.7, b.y + b.height * 0.45, { steps: 8 });
    await page.mouse.up();
  }

  it('an image dropped or Random start asks first, as on the faces; Keep this one (or Escape) leaves all as it was', T, async () => {
    const all = recordFrames(page);
    await open();
    await twoPicks();
    await page.click('#btn-draw');
    await page.waitForSelector('#sketch:not([hidden])');
    await stroke();
    await page.waitForFunction(() => window.omokage.sketch.pad.strokes.length === 1);
    const before = await kept();
    assert.deepEqual([before.step, before.trail, before.view, before.drawing], [3, 2, 'sketch', true]);
    const from = all.length;

    // a dropped image: the same question as on the faces; nothing sent before the answer
    await dropFile(image, 'dropped.jpg');
    await page.waitForSelector('#switch:not([hidden])');
    assert.equal(await page.textContent('#switch-title'), 'Start again from this image?');
    assert.match(await page.textContent('#switch-text'), /^You are at step 3\. Starting from dropped\.jpg leaves this selection/);
    assert.equal((await page.textContent('#switch-fresh')).trim(), 'Start from the image');
    assert.equal(await st(() => document.activeElement.id), 'switch-fresh');
    await screenshot(page, 'ux-draw-drop-asks');
    await page.waitForTimeout(300);
    assert.deepEqual(starts(all, from), [], 'nothing sent before the answer');
    await page.click('#switch-cancel');
    await page.waitForSelector('#switch', { state: 'hidden' });
    assert.deepEqual(await kept(), before, 'Keep this one: the selection, the drawing and the Draw view as they were');

    // Escape answers the question (Keep this one), and the Draw view stays
    await dropFile(image, 'dropped.jpg');
    await page.waitForSelector('#switch:not([hidden])');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#switch', { state: 'hidden' });
    assert.deepEqual(await kept(), before);

    // Random start on the Draw view: asked too
    await page.click('#btn-random');
    await page.waitForSelector('#switch:not([hidden])');
    assert.equal(await page.textContent('#switch-title'), 'Start a new selection?');
    assert.match(await page.textContent('#switch-text'), /^You are at step 3\. A random start leaves this selection/);
    await screenshot(page, 'ux-draw-random-asks');
    await page.waitForTimeout(300);
    assert.deepEqual(starts(all, from), []);
    await page.click('#switch-cancel');
    await page.waitForSelector('#switch', { state: 'hidden' });
    assert.deepEqual(await kept(), before);

    // Start from the image: the dropped file is the one sent, and the faces come back
    await dropFile(image, 'dropped.jpg');
    await page.waitForSelector('#switch:not([hidden])');
    await page.click('#switch-fresh');
    await page.waitForFunction(() => window.omokage.state.init === 'image' && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    let sent = starts(all, from);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].image.length, readFileSync(image).length);
    const now = await kept();
    assert.deepEqual([now.view, now.drawing, now.trail], ['grid', false, 0]);
    assert.equal(await page.isVisible('#source'), true);

    // and Start a new one: a random start from the Draw view
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    await page.click('#btn-draw');
    await page.waitForSelector('#sketch:not([hidden])');
    await page.click('#btn-random');
    await page.waitForSelector('#switch:not([hidden])');
    await page.click('#switch-fresh');
    await page.waitForFunction(() => window.omokage.state.init === 'random' && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    sent = starts(all, from);
    assert.equal(sent.length, 2);
    assert.equal(sent[1].image, undefined);
    assert.equal(await st(() => window.omokage.state.view), 'grid');

    // with nothing to lose (step 1, no pick) the Draw view's Random start goes ahead at once, as on the faces
    await page.click('#btn-draw');
    await page.waitForSelector('#sketch:not([hidden])');
    await page.click('#btn-random');
    await until(() => starts(all, from).length === 3);
    await waitForGrid(page, 1);
    assert.equal(await page.isVisible('#switch'), false);
    assert.deepEqual(browser.errors, []);
  });
});

describe('a reload', () => {
  /** The highlight as the page shows it: the index of the highlighted card, and the side panel's face. */
  const shown = () => page.evaluate(() => ({
    cursor: window.omokage.state.cursor,
    highlighted: [...document.querySelectorAll('#grid .face')].findIndex((c) => c.classList.contains('is-cursor')),
    label: document.getElementById('pick-label').textContent,
    name: document.getElementById('pick-name').textContent,
    decideOff: document.getElementById('btn-decide').getAttribute('aria-disabled'),
  }));
  const nameOf = (i) => page.evaluate((k) => window.omokage.state.items[k].title.split(' — ')[0], i);

  it('keeps the highlight moved with the arrow keys (a random start\'s first grid, and after a pick)', T, async () => {
    await open();
    // a random start's first grid: nothing highlighted until the user moves the highlight
    assert.equal((await shown()).highlighted, -1);
    await page.keyboard.press('ArrowRight');
    const first = await shown();
    assert.deepEqual(first, { cursor: 1, highlighted: 1, label: 'Face 2', name: await nameOf(1), decideOff: 'false' });
    await page.reload();
    await waitForGrid(page, 1);
    assert.deepEqual(await shown(), first, 'the highlight the user moved, and Decide offers it');

    // after a pick: the highlight moved off the pick stays where it was moved
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    assert.equal((await shown()).label, 'Your pick');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowRight');
    const later = await shown();
    assert.deepEqual(later, { cursor: 4, highlighted: 4, label: 'Face 5', name: await nameOf(4), decideOff: 'false' });
    await page.reload();
    await waitForGrid(page, 2);
    assert.deepEqual(await shown(), later);
    assert.equal(await page.getAttribute('#grid .face >> nth=0', 'aria-current'), 'true', 'the pick is still the pick');
    // and the arrow keys go on from there
    await page.keyboard.press('ArrowLeft');
    assert.equal((await shown()).cursor, 3);
    assert.deepEqual(browser.errors, []);
  });
});

describe('a feature switch that keeps the path', () => {
  const stepText = async () => (await page.textContent('#step')).trim();

  it('goes on counting the user\'s steps (the server starts its count again): after picks, Back, a reload and Decide', T, async () => {
    const all = recordFrames(page);
    await open();
    await twoPicks();
    assert.equal(await stepText(), 'Step 3');
    const from = all.length;
    await page.click('#algorithms [data-algorithm=nmf]');
    await page.waitForSelector('#switch:not([hidden])');
    await page.click('#switch-keep');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'nmf' && window.omokage.state.init === 'image'
      && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    assert.equal(await stepText(), 'Step 3', 'the grid that takes the place of step 3 is step 3 of the path');
    assert.match(await page.getAttribute('#step', 'title'), /^Step 3 of your path; step 1 since you switched to /);
    // what goes to the server is as before: a start in the new space from the pick's picture, no step of the page's
    const starts = all.slice(from).filter((f) => f.dir === 'out' && f.msg.type === 'start');
    assert.equal(starts.length, 1);
    assert.deepEqual(Object.keys(starts[0].msg).sort(), ['algorithm', 'image', 'init', 'policy', 'rid', 'type']);
    assert.equal(await st(() => window.omokage.state.step), 1, 'the server\'s count');

    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    assert.equal(await stepText(), 'Step 4');
    assert.equal(await page.getAttribute('#btn-back', 'aria-label'), 'Back to step 3: undo your last pick');
    await page.keyboard.press('b');
    await waitForGrid(page, 1);
    assert.equal(await stepText(), 'Step 3');
    await page.waitForFunction(() => /^Back at step 3: your pick of .+ is undone\.$/.test(document.getElementById('notice').textContent));
    await page.locator('#grid .face').nth(3).click();
    await waitForGrid(page, 2);
    assert.equal(await stepText(), 'Step 4');

    // a reload goes on with the same count
    await page.reload();
    await waitForGrid(page, 2);
    assert.equal(await stepText(), 'Step 4');
    assert.equal(await page.locator('#trail-list img').count(), 3);

    // the switch question says the path's step, and a second switch goes on from it
    await page.click('#algorithms [data-algorithm=pca]');
    await page.waitForSelector('#switch:not([hidden])');
    assert.match(await page.textContent('#switch-text'), /^You are at step 4\./);
    await page.click('#switch-keep');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'pca' && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    assert.equal(await stepText(), 'Step 4');
    await screenshot(page, 'ux-step-after-switch');
    // Decide says the path's steps too
    const [popup] = await Promise.all([browser.context.waitForEvent('page'), page.click('#btn-decide')]);
    await popup.close();
    await page.waitForSelector('#decided[open]');
    assert.match(await page.textContent('#decided-steps'), /^Chosen in 4 steps, matched by overall look/);
    await page.click('#decided-again');
    await page.waitForFunction(() => !window.omokage.state.decided && window.omokage.state.step === 1 && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    assert.equal(await stepText(), 'Step 1', 'a new selection counts from 1');
    assert.equal(await page.getAttribute('#step', 'title'), '');
    assert.deepEqual(browser.errors, []);
  });
});

describe('the server down when the page opens', () => {
  /** What the page says and offers, all at once. */
  const look = () => page.evaluate(() => {
    const vis = (id) => { const e = document.getElementById(id); return !!e && e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden'; };
    const off = (id) => {
      const e = document.getElementById(id);
      return { disabled: e.disabled === true || e.getAttribute('aria-disabled') === 'true', opacity: Number(getComputedStyle(e).opacity) };
    };
    return {
      conn: document.getElementById('conn-text').textContent,
      title: vis('banner') ? document.getElementById('banner-title').textContent : null,
      retry: vis('banner-action') ? document.getElementById('banner-action').textContent : null,
      closable: vis('banner-close'),
      placeholder: vis('grid-empty') ? document.getElementById('grid-empty-text').textContent : null,
      text: document.body.innerText,
      shown: ['prompt', 'pick', 'decide-hint', 'keys-help', 'step', 'algo-group', 'trail'].filter(vis),
      controls: Object.fromEntries(['btn-random', 'btn-upload', 'btn-decide', 'btn-skip'].map((id) => [id, off(id)])),
    };
  });

  for (const [w, h] of [[1280, 800], [400, 800]]) {
    it(`at ${w}×${h}: one message saying what to do, the faces' place empty, every control off; then the faces`, T, async () => {
      await page.setViewportSize({ width: w, height: h });
      const port = await freePort();
      // the page comes from the running server; the server it talks to is not up yet
      await page.goto(`${server.url}?server=ws://127.0.0.1:${port}/ws`);
      await page.waitForSelector('#banner:not([hidden])', { timeout: 15000 });
      await page.waitForFunction(() => document.getElementById('conn-text').textContent === 'Offline');
      const down = await look();
      assert.equal(down.title, "Can't reach the server");
      assert.equal(down.retry, 'Retry now');
      assert.equal(down.closable, false, 'the one message cannot be dismissed into a page that says nothing');
      assert.equal(down.placeholder, 'The faces appear here once the page reaches the server.');
      // nothing else contradicts it or speaks of faces that are not there
      assert.doesNotMatch(down.text, /Connecting|Selected|Opens its product page|Step|choose|Features/, down.text);
      assert.deepEqual(down.shown, []);
      for (const [id, c] of Object.entries(down.controls)) {
        assert.equal(c.disabled, true, `${id} is off`);
        assert.ok(c.opacity <= 0.5, `${id} looks off (opacity ${c.opacity})`);
      }
      await screenshot(page, `ux-server-down-${w}`);

      // the server comes up: Retry now brings the faces, and the page is itself again
      const late = await startServer({ port, args: ['--allow-origin', new URL(server.url).origin] });
      try {
        await page.click('#banner-action');
        await waitForGrid(page, 1, 20000);
        const up = await look();
        assert.equal(up.conn, 'Connected');
        assert.equal(up.title, null);
        assert.equal(up.placeholder, null);
        assert.deepEqual(up.shown.filter((x) => x !== 'keys-help' && x !== 'trail'),
          w < 560 ? ['step', 'algo-group'] : ['prompt', 'pick', 'decide-hint', 'step', 'algo-group']);
        assert.equal(up.controls['btn-random'].disabled, false);
        assert.equal(up.controls['btn-random'].opacity, 1);
        assert.equal(up.controls['btn-skip'].disabled, false);
        assert.deepEqual(browser.errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e)), []);
      } finally {
        await page.close();
        page = null;
        await late.stop();
      }
    });
  }
});

describe('side panels', () => {
  /** Where things are across the page (x only: a panel opening may scroll the page, never sideways). */
  const where = () => page.evaluate(() => {
    const r = (sel) => {
      const e = document.querySelector(sel);
      if (!e || e.offsetParent === null) return null;
      const b = e.getBoundingClientRect();
      return { left: Math.round(b.left), right: Math.round(b.right) };
    };
    return { grid: r('#grid'), side: r('.side'), step: r('#step'), random: r('#btn-random'), source: r('#source'),
      ideal: r('#ideal'), scrollW: document.documentElement.scrollWidth };
  });

  for (const [w, h] of [[1280, 800], [1366, 768], [1920, 1080], [400, 800]]) {
    // (on a phone they always opened under the grid: that case guards the narrow layout, unchanged)
    it(`at ${w}×${h} your image and What you seem to want open ${w > 1080 ? 'beside' : 'under'} the grid without moving it or the toolbar`, T, async () => {
      await page.setViewportSize({ width: w, height: h });
      await open();
      await page.locator('#grid .face').nth(2).click();
      await waitForGrid(page, 2);
      const before = await where();
      const still = (now, what) => {
        for (const k of ['grid', 'side', 'step', 'random']) assert.deepEqual(now[k], before[k], `${what}: ${k} moved`);
        assert.ok(now.scrollW <= w, `${what}: no sideways scrolling (${now.scrollW})`);
      };
      const beside = (now, what) => {
        if (w <= 1080) return; // a narrow screen puts them under the grid
        if (now.source) assert.ok(now.source.left >= 0 && now.source.right <= now.grid.left - 12, `${what}: source ${JSON.stringify(now)}`);
        if (now.ideal) assert.ok(now.ideal.left >= now.side.right + 12 && now.ideal.right <= w, `${what}: ideal ${JSON.stringify(now)}`);
      };
      const openIdeal = async () => {
        const n = await st(() => window.omokage.ideal.view.renders);
        await page.click('#btn-ideal');
        await page.waitForFunction((k) => window.omokage.ideal.view.renders > k, n);
      };

      await openIdeal();
      let now = await where();
      assert.ok(now.ideal);
      still(now, 'What you seem to want');
      beside(now, 'What you seem to want');
      await page.click('#ideal-close');
      still(await where(), 'closed again');

      // an image start: the image and its reconstruction on the left
      await page.setInputFiles('#file', image);
      await page.click('#switch-fresh');
      await page.waitForFunction(() => window.omokage.state.init === 'image' && !window.omokage.state.busy);
      await waitForGrid(page, 1);
      now = await where();
      assert.ok(now.source);
      still(now, 'your image');
      beside(now, 'your image');
      // and both
      await page.locator('#grid .face').nth(1).click();
      await waitForGrid(page, 2);
      await openIdeal();
      now = await where();
      still(now, 'both');
      beside(now, 'both');
      await page.evaluate(() => window.scrollTo(0, 0));
      await screenshot(page, `ux-panels-${w}`);
      assert.deepEqual(browser.errors, []);
    });
  }

  it('at 1280×1024 (too little room beside the grid) the grid gets smaller about the same centre while one is open', T, async () => {
    await page.setViewportSize({ width: 1280, height: 1024 });
    await open();
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    const before = await where();
    await page.click('#btn-ideal');
    await page.waitForFunction(() => window.omokage.ideal.view.renders > 0);
    const now = await where();
    const mid = (b) => (b.left + b.right) / 2;
    assert.ok(Math.abs(mid(now.grid) - mid(before.grid)) <= 1, `the grid's centre ${JSON.stringify([before.grid, now.grid])}`);
    assert.deepEqual(now.step, before.step);
    assert.ok(now.ideal.left >= now.side.right + 12 && now.ideal.right <= 1280, JSON.stringify(now));
    assert.ok(now.scrollW <= 1280);
    await page.click('#ideal-close');
    assert.deepEqual((await where()).grid, before.grid, 'closed: the grid as it was');
    assert.deepEqual(browser.errors, []);
  });
});

describe('plain words', () => {
  it('feature spaces and policies have plain names (the technical ones in tooltips and the settings), and a % says what it is', T, async () => {
    await open();
    // the tabs: what makes two faces alike, not the model's name
    assert.equal(await page.textContent('#algo-label'), 'Match by');
    const tabs = await page.$$eval('#algorithms [role=radio]', (els) => els.map((e) => ({ text: e.textContent.trim(), title: e.title })));
    assert.deepEqual(tabs.map((t) => t.text), ['Overall look', 'Parts']);
    assert.match(tabs[0].title, /\(PCA, principal components\)$/);
    assert.match(tabs[1].title, /\(NMF, non-negative parts\)$/);
    const jargon = /\b(PCA|NMF|AE|autoencoder|infogain|thompson|Sampled from the belief|Nearest neighbours|belief|policy)\b/i;
    assert.doesNotMatch(await page.evaluate(() => document.body.innerText), jargon);

    // the settings: plain names for the ways of choosing faces, the technical ones for experts
    await page.click('#settings summary');
    assert.equal(await page.textContent('label[for=policy]'), 'How the next faces are chosen');
    const welcome = await st(() => window.omokage.client.welcome);
    const options = await page.$$eval('#policy option', (els) => els.map((o) => ({ value: o.value, text: o.textContent, title: o.title })));
    const plain = { infogain: 'Learn fastest', thompson: 'Likely, with surprises', cover: 'Varied', top: 'Most likely',
      study: 'Closest to your pick', random: 'Random' };
    for (const o of options) {
      const base = o.value.replace(/\+gaze$/, '');
      if (!plain[base]) continue;
      assert.equal(o.text.replace(/ \(default\)$/, '').replace(/, with gaze$/, ''), plain[base], o.value);
      assert.match(o.title, /\([^)]+\)$/, `${o.value}: the technical name in its tooltip`);
    }
    const tech = await page.textContent('#tech-note');
    assert.equal(await page.isVisible('#tech-note'), true);
    assert.match(tech, /^For experts: Overall look is PCA, Parts is NMF; the choice of faces is /);
    assert.ok(tech.includes(welcome.default_policy === 'infogain' ? 'information gain' : ''), tech);
    await screenshot(page, 'ux-settings-plain');
    await page.keyboard.press('Escape');

    // a percentage on a face says what it is: its tooltip, and the card's name for a screen reader
    // (the belief is flat at first: a few picks of the same face until some face has 1 % or more)
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    for (let step = 3; step <= 6; step++) {
      if (await page.$$eval('#grid .face:not([hidden]) .conf', (els) => els.some((e) => e.textContent))) break;
      await page.locator('#grid .face').nth(0).click();
      await waitForGrid(page, step);
    }
    const confs = await page.$$eval('#grid .face:not([hidden])', (els) => els.map((e) => {
      const c = e.querySelector('.conf');
      return { text: c.textContent, title: c.title };
    }));
    const shownConfs = confs.filter((c) => c.text);
    assert.ok(shownConfs.length > 0, 'some faces have a percentage after a pick');
    for (const c of shownConfs) {
      assert.equal(c.title, `${c.text} likely to be the face you want, from your picks so far`);
      const named = page.getByRole('button', { name: new RegExp(`${c.text.replace(/[<%]/g, (m) => `\\${m}`)} likely to be the one you want$`) });
      assert.ok(await named.count() >= 1, `a card named with ${c.text}`);
    }
    for (const c of confs.filter((x) => !x.text)) assert.equal(c.title, '');
    // the side panel's line says it in words too
    for (let i = 0; i < 8; i++) {
      await page.keyboard.press(i < 2 ? 'ArrowRight' : i < 4 ? 'ArrowDown' : 'ArrowLeft');
      if (await page.isVisible('#pick-conf')) break;
    }
    if (await page.isVisible('#pick-conf')) {
      assert.match(await page.textContent('#pick-conf'), /^Chance it's the one you want: \d+%$/);
      assert.equal(await page.getAttribute('#pick-conf', 'title'), 'How likely this face is the one you want, from your picks so far');
    }
    // the switch question and the decision say the plain name too
    await page.click('#algorithms [data-algorithm=nmf]');
    await page.waitForSelector('#switch:not([hidden])');
    assert.equal(await page.textContent('#switch-title'), 'Match by Parts instead?');
    assert.match(await page.textContent('#switch-text'), /the faces nearest to it by parts/);
    await page.click('#switch-cancel');
    assert.doesNotMatch(await page.evaluate(() => document.body.innerText), jargon);
    assert.deepEqual(browser.errors, []);
  });
});
