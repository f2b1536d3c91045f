// Live sketch search (protocol v1.3, docs/protocol.md "Sketch") in headless Chromium against a real `omokage serve`
// with a fitted sketch model: the mouse, a pen and a finger draw; strokes leave in pieces while drawn (about 30 Hz,
// never waiting for results); the preview and the nine faces follow; undo and clear; "Pick from these" goes on as a
// normal selection from the drawing's nine; a fast scribble is coalesced by the server; errors in plain words; a
// phone screen; no drawing against a server without a sketch model.
//
// Three screenshots of a drawing session go to test-artifacts/sketch-web-{1,2,3}.png, and to
// docs/images/sketch-web-{1,2,3}.png when OMOKAGE_WRITE_SCREENSHOTS=1.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { artifacts, closeTestPage, gridIds, modelsWith, modelsWithGen, newTestPage, openBrowser, recordFrames, repoRoot,
  screenshot, startServer, waitForGrid } from './helpers.mjs';

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
  await closeTestPage(page, t, 'sketch-');
});

const st = (fn, arg) => page.evaluate(fn, arg);

/** The page, then Draw: the empty drawing's result (revision 0, the average face, no faces yet) on screen. */
async function openDraw() {
  await page.goto(server.url);
  await waitForGrid(page, 1);
  await page.click('#btn-draw');
  await page.waitForSelector('#sketch:not([hidden])');
  await page.waitForFunction(() => {
    const s = window.omokage.sketch;
    return s.latest && s.latest.revision === 0 && !document.getElementById('sketch-preview').hidden;
  });
}

/** Until the faces on screen are the newest drawing's (every message answered), their images decoded. */
async function settled(timeout = 15000) {
  await page.waitForFunction(() => {
    const s = window.omokage.sketch;
    if (s.pad.live || s.shown.gen !== s.pad.gen || s.shown.revision !== s.pad.revision) return false;
    const imgs = [...document.querySelectorAll('#sketch-grid img')];
    return imgs.length === s.shownIds.length && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, null, { timeout });
  return st(() => {
    const s = window.omokage.sketch;
    return { revision: s.latest.revision, strokes: s.latest.strokes, ids: s.shownIds, hash: s.latest.preview.hash,
      url: s.previewUrl };
  });
}

async function canvasBox() {
  return page.locator('#sketch-canvas').boundingBox();
}

/** One stroke with the mouse through canvas points [[x, y], ...] (0..1), `steps` moves between each two. */
async function drawMouse(points, steps = 4) {
  const b = await canvasBox();
  const at = ([x, y]) => [b.x + x * b.width, b.y + y * b.height];
  await page.mouse.move(...at(points[0]));
  await page.mouse.down();
  for (const p of points.slice(1)) await page.mouse.move(...at(p), { steps });
  await page.mouse.up();
}

/** One stroke of synthetic Pointer Events (`pointerType` pen or touch), `delayMs` between moves. */
async function drawPointer(points, { pointerType, pointerId, delayMs = 8 }) {
  await page.evaluate(async ({ points, pointerType, pointerId, delayMs }) => {
    const c = document.getElementById('sketch-canvas');
    const r = c.getBoundingClientRect();
    const fire = (type, [x, y]) => c.dispatchEvent(new PointerEvent(type, { pointerId, pointerType, isPrimary: true,
      bubbles: true, cancelable: true, clientX: r.left + x * r.width, clientY: r.top + y * r.height,
      pressure: type === 'pointerup' ? 0 : 0.6, button: type === 'pointermove' ? -1 : 0, buttons: type === 'pointerup' ? 0 : 1 }));
    fire('pointerdown', points[0]);
    for (const p of points.slice(1)) {
      fire('pointermove', p);
      await new Promise((res) => { setTimeout(res, delayMs); });
    }
    fire('pointerup', points[points.length - 1]);
  }, { points, pointerType, pointerId, delayMs });
}

const ellipse = (cx, cy, rx, ry, n = 36) => Array.from({ length: n + 1 }, (_, i) => {
  const a = (i / n) * Math.PI * 2;
  return [cx + rx * Math.cos(a), cy + ry * Math.sin(a)];
});
const line = (x0, y0, x1, y1, n = 12) => Array.from({ length: n + 1 }, (_, i) => [x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n]);

/** The screenshot, and with OMOKAGE_WRITE_SCREENSHOTS=1 a copy for the docs. */
async function shot(n) {
  await page.waitForTimeout(350); // entrance animations
  await screenshot(page, `sketch-web-${n}`);
  if (process.env.OMOKAGE_WRITE_SCREENSHOTS === '1') {
    const dir = path.join(repoRoot, 'docs/images');
    mkdirSync(dir, { recursive: true });
    copyFileSync(path.join(artifacts, `sketch-web-${n}.png`), path.join(dir, `sketch-web-${n}.png`));
  }
}

/** Move the width slider (0..100) as a user would: its value, then an input event. */
async function setWidthSlider(v) {
  await page.evaluate((x) => {
    const el = document.getElementById('sketch-width');
    el.value = String(x);
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, v);
}

const sketchOut = (frames, type = 'sketch.stroke') => frames.filter((f) => f.dir === 'out' && f.msg.type === type).map((f) => f.msg);

describe('live sketch search', () => {
  it('drawing with the mouse: pieces while drawn, the preview and nine faces follow; Pick from these goes on from them', T, async () => {
    const frames = recordFrames(page);
    await page.addInitScript(() => {
      window.__revoked = [];
      const revoke = URL.revokeObjectURL.bind(URL);
      URL.revokeObjectURL = (u) => { window.__revoked.push(u); revoke(u); };
    });
    await openDraw();
    const hello = frames.find((f) => f.dir === 'out' && f.msg.type === 'hello').msg;
    assert.equal(hello.protocol_minor, 7);
    const limits = await st(() => window.omokage.client.welcome.sketch);
    assert.ok(limits && limits.max_points_per_message > 0, 'welcome.sketch');
    assert.equal(sketchOut(frames, 'sketch.begin').length, 1);
    // the empty drawing: the average face as preview (and as the guide under the canvas), no faces, nothing to pick
    const empty = await settled();
    assert.deepEqual(empty.ids, []);
    assert.equal(await page.isVisible('#sketch-grid'), false);
    assert.equal(await page.isDisabled('#sketch-pick'), true);
    assert.equal(await page.isVisible('#sketch-guide'), true);
    assert.match(await page.textContent('#sketch-status'), /Draw a few lines/);

    // the face's outline, one stroke: it leaves in pieces while drawn, about 30 per second
    await drawMouse(ellipse(0.5, 0.56, 0.3, 0.36), 6);
    const outline = await settled();
    const pieces = sketchOut(frames);
    assert.ok(pieces.length >= 4, `a live stroke goes in pieces (${pieces.length})`);
    assert.equal(pieces[0].append, undefined, 'the first piece opens the stroke');
    for (const m of pieces.slice(1)) assert.equal(m.append, true, 'the next pieces continue it');
    for (const m of pieces) {
      assert.equal(m.tool, 'line');
      assert.ok(m.points.length >= 2 && m.points.length % 2 === 0 && m.points.length <= 2 * limits.max_points_per_message);
      assert.ok(m.width >= limits.min_width && m.width <= limits.max_width);
      assert.ok(m.points.every((v) => v >= -1 && v <= 2));
    }
    const times = await st(() => window.omokage.sketch.stats.sendTimes);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    // every gap but the last (the rest flushed at pointerup) is the throttle's
    assert.ok(gaps.slice(0, -1).every((g) => g >= 25), `about 30 Hz: ${gaps.map((g) => g.toFixed(0)).join(' ')}`);
    assert.equal(outline.strokes, 1);
    assert.equal(outline.revision, pieces.length);
    assert.equal(outline.ids.length, 9);
    assert.notEqual(outline.hash, empty.hash, 'the preview follows the drawing');
    // the old preview's Blob URL was let go
    assert.ok(await st((u) => window.__revoked.includes(u), empty.url));
    assert.equal(await page.isDisabled('#sketch-pick'), false);
    assert.match(await page.textContent('#sketch-status'), /nine faces your drawing fits best/);
    // every face's texture came through the texture cache, as the grid's do
    const cached = await st((ids) => {
      const o = window.omokage;
      return o.sketch.latest.items.every((it) => o.client.textures.get(it.texture));
    });
    assert.ok(cached);

    // eyes and a mouth
    await drawMouse(ellipse(0.38, 0.52, 0.05, 0.035, 16), 2);
    await drawMouse(ellipse(0.62, 0.52, 0.05, 0.035, 16), 2);
    await drawMouse(line(0.44, 0.74, 0.56, 0.74, 6), 2);
    const early = await settled();
    assert.equal(early.strokes, 4);
    await shot(1);

    // paint: hair colour from the palette, wide; blue eyes
    await page.click('#sketch-tool [data-tool=paint]');
    await page.click('#sketch-swatches [aria-label="Pink hair"]');
    assert.equal(await page.getAttribute('#sketch-swatches [aria-label="Pink hair"]', 'aria-checked'), 'true');
    await setWidthSlider(75);
    const paintWidth = await st(() => window.omokage.sketch.pad.width);
    assert.ok(paintWidth > 0.05 && paintWidth <= limits.max_width, `a wide brush (${paintWidth})`);
    await drawMouse([[0.12, 0.5], [0.16, 0.25], [0.3, 0.12], [0.5, 0.08], [0.7, 0.12], [0.84, 0.25], [0.88, 0.5]], 6);
    await drawMouse(line(0.14, 0.3, 0.86, 0.3, 8), 4);
    await page.click('#sketch-swatches [aria-label="Blue eyes"]');
    await setWidthSlider(20);
    await drawMouse(line(0.36, 0.52, 0.4, 0.52, 3), 2);
    await drawMouse(line(0.6, 0.52, 0.64, 0.52, 3), 2);
    const painted = await settled();
    assert.equal(painted.strokes, 8);
    const paint = sketchOut(frames).filter((m) => m.tool === 'paint');
    assert.ok(paint.some((m) => m.colour.join() === '243,154,181'), 'pink hair paint');
    assert.ok(paint.some((m) => m.colour.join() === '59,130,214'), 'blue eye paint');
    await shot(2);

    // Pick from these: a selection whose first grid is the drawing's nine, the drawing beside it
    const policy = await st(() => window.omokage.state.policy);
    await page.click('#sketch-pick');
    await waitForGrid(page, 1);
    await page.waitForSelector('#stage:not([hidden])');
    const start = frames.filter((f) => f.dir === 'out' && f.msg.type === 'start').pop().msg;
    assert.equal(start.init, 'sketch');
    assert.equal(start.algorithm, 'pca');
    assert.equal(start.policy, policy);
    assert.deepEqual(await gridIds(page), painted.ids, "the first grid is the drawing's nine");
    assert.equal(await st(() => window.omokage.state.init), 'sketch');
    assert.equal(await page.isVisible('#sketch'), false);
    assert.equal(await page.textContent('#upload-caption'), 'Your drawing');
    assert.match(await page.textContent('#prompt'), /your drawing fits best/);
    await shot(3);
    // and goes on as any selection
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    assert.equal((await gridIds(page))[0], painted.ids[2]);
    assert.deepEqual(browser.errors, []);
  });

  it('undo (button and Ctrl+Z) and clear change the revision and the faces', T, async () => {
    const frames = recordFrames(page);
    await openDraw();
    const empty = await settled();
    await drawMouse(ellipse(0.5, 0.56, 0.3, 0.36), 3);
    await drawMouse(ellipse(0.38, 0.52, 0.05, 0.035, 12), 2);
    const r1 = await settled();
    assert.equal(r1.strokes, 2);
    // a wide blue stroke over the hair: other faces fit
    await page.click('#sketch-swatches [aria-label="Blue hair"]');
    await setWidthSlider(90);
    await drawMouse(line(0.1, 0.18, 0.9, 0.18, 10), 4);
    const r2 = await settled();
    assert.equal(r2.strokes, 3);
    assert.notDeepEqual(r2.ids, r1.ids, 'the paint moved the faces');

    // Ctrl+Z takes the whole stroke back: the drawing, and so the faces, are what they were
    await page.focus('#sketch-canvas');
    await page.keyboard.press('Control+z');
    const r3 = await settled();
    assert.equal(r3.revision, r2.revision + 1);
    assert.equal(r3.strokes, 2);
    assert.deepEqual(r3.ids, r1.ids);
    assert.equal(sketchOut(frames, 'sketch.undo').length, 1);
    assert.equal(await st(() => window.omokage.sketch.pad.strokes.length), 2);

    // the Undo button
    await page.click('#sketch-undo');
    const r4 = await settled();
    assert.equal(r4.revision, r3.revision + 1);
    assert.equal(r4.strokes, 1);
    assert.notDeepEqual(r4.ids, r3.ids);

    // Clear: an empty drawing, the average face again, nothing to pick
    await page.click('#sketch-clear');
    const r5 = await settled();
    assert.equal(r5.revision, r4.revision + 1);
    assert.equal(r5.strokes, 0);
    assert.deepEqual(r5.ids, []);
    assert.equal(r5.hash, empty.hash);
    assert.equal(await page.isVisible('#sketch-grid'), false);
    assert.equal(await page.isDisabled('#sketch-pick'), true);
    assert.equal(await page.isDisabled('#sketch-undo'), true);
    assert.equal(sketchOut(frames, 'sketch.clear').length, 1);
    assert.deepEqual(browser.errors, []);
  });

  it('a click on one of the nine picks from these and chooses it; switching features starts again from the drawing', T, async () => {
    const frames = recordFrames(page);
    await openDraw();
    await drawMouse(ellipse(0.5, 0.56, 0.3, 0.36), 3);
    await page.click('#sketch-swatches [aria-label="Silver hair"]');
    await setWidthSlider(80);
    await drawMouse(line(0.12, 0.2, 0.88, 0.2, 8), 3);
    const drawn = await settled();
    await page.locator('#sketch-grid .sk-face').nth(4).click();
    await waitForGrid(page, 2);
    assert.equal((await gridIds(page))[0], drawn.ids[4], 'that face is the pick');
    assert.equal(await page.isVisible('#stage'), true);
    // NMF, starting again from the drawing (its nine in NMF are the same faces: the drawing's fit does not depend on
    // the feature space)
    await page.click('#algorithms [data-algorithm=nmf]');
    await page.waitForSelector('#switch:not([hidden])');
    assert.equal(await page.textContent('#switch-fresh'), 'Start again from your drawing');
    await page.click('#switch-fresh');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'nmf' && window.omokage.state.step === 1
      && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    const starts = frames.filter((f) => f.dir === 'out' && f.msg.type === 'start').map((f) => f.msg);
    assert.deepEqual(starts.slice(-2).map((m) => [m.algorithm, m.init]), [['pca', 'sketch'], ['nmf', 'sketch']]);
    assert.deepEqual(await gridIds(page), drawn.ids);
    assert.equal(await page.textContent('#upload-caption'), 'Your drawing');
    assert.deepEqual(browser.errors, []);
  });

  it('a pen and a finger draw too (Pointer Events); a second finger does not', T, async () => {
    const frames = recordFrames(page);
    await openDraw();
    assert.equal(await st(() => getComputedStyle(document.getElementById('sketch-canvas')).touchAction), 'none');
    await drawPointer(ellipse(0.5, 0.56, 0.3, 0.36, 48), { pointerType: 'pen', pointerId: 3 });
    const pen = await settled();
    assert.equal(pen.strokes, 1);
    assert.equal(pen.ids.length, 9);
    assert.ok(sketchOut(frames).length >= 3, 'the pen stroke went in pieces');

    // a finger, and a second finger landing meanwhile (a pinch is not a stroke)
    await page.evaluate(() => {
      const c = document.getElementById('sketch-canvas');
      const r = c.getBoundingClientRect();
      const fire = (type, id, x, y) => c.dispatchEvent(new PointerEvent(type, { pointerId: id, pointerType: 'touch',
        isPrimary: id === 7, bubbles: true, cancelable: true, clientX: r.left + x * r.width, clientY: r.top + y * r.height,
        buttons: type === 'pointerup' ? 0 : 1 }));
      fire('pointerdown', 7, 0.2, 0.3);
      fire('pointermove', 7, 0.3, 0.25);
      fire('pointerdown', 8, 0.7, 0.7);
      fire('pointermove', 8, 0.8, 0.8);
      fire('pointermove', 7, 0.5, 0.2);
      fire('pointerup', 8, 0.8, 0.8);
      fire('pointermove', 7, 0.7, 0.25);
      fire('pointerup', 7, 0.8, 0.3);
    });
    const touch = await settled();
    assert.equal(touch.strokes, 2);
    const last = await st(() => window.omokage.sketch.pad.strokes[1].points);
    assert.ok(last.every((v, i) => (i % 2 ? v <= 0.31 : true)), `only the first finger's points: ${last}`);
    assert.deepEqual(browser.errors, []);
  });

  it('a fast scribble: messages throttled, results coalesced by the server, the newest drawing shown, the page responsive', T, async (t) => {
    await openDraw();
    await settled();
    // watch the main thread: the longest gap between animation frames while scribbling
    await st(() => {
      window.__gap = 0;
      let last = performance.now();
      const tick = (t) => {
        window.__gap = Math.max(window.__gap, t - last);
        last = t;
        if (!window.__stopFrames) requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    const s0 = await st(() => JSON.parse(JSON.stringify(window.omokage.sketch.stats)));
    // hundreds of pen moves as fast as the page takes them (a move every millisecond or two)
    const ms = await st(async () => {
      const c = document.getElementById('sketch-canvas');
      const r = c.getBoundingClientRect();
      const fire = (type, x, y) => c.dispatchEvent(new PointerEvent(type, { pointerId: 9, pointerType: 'pen',
        isPrimary: true, bubbles: true, cancelable: true, clientX: r.left + x * r.width, clientY: r.top + y * r.height }));
      const t0 = performance.now();
      fire('pointerdown', 0.1, 0.1);
      for (let i = 0; i < 600; i++) {
        fire('pointermove', 0.1 + 0.8 * ((i % 40) / 40), 0.1 + 0.8 * (i / 600) + 0.03 * Math.sin(i));
        if (i % 2) await new Promise((res) => { setTimeout(res, 1); });
      }
      fire('pointerup', 0.9, 0.9);
      return performance.now() - t0;
    });
    // and a burst: 80 short strokes at once, faster than any server projects
    await st(() => {
      const c = document.getElementById('sketch-canvas');
      const r = c.getBoundingClientRect();
      const fire = (type, x, y) => c.dispatchEvent(new PointerEvent(type, { pointerId: 11, pointerType: 'pen',
        isPrimary: true, bubbles: true, cancelable: true, clientX: r.left + x * r.width, clientY: r.top + y * r.height }));
      for (let i = 0; i < 80; i++) {
        const x = 0.1 + (i % 10) * 0.08;
        const y = 0.2 + Math.floor(i / 10) * 0.08;
        fire('pointerdown', x, y);
        fire('pointermove', x + 0.02, y + 0.01);
        fire('pointermove', x + 0.04, y);
        fire('pointerup', x + 0.05, y + 0.02);
      }
    });
    const end = await settled(30000);
    await st(() => { window.__stopFrames = true; });
    const s1 = await st(() => window.omokage.sketch.stats);
    const moves = s1.moves - s0.moves;
    const messages = s1.messages['sketch.stroke'] - s0.messages['sketch.stroke'];
    const results = s1.results - s0.results;
    assert.ok(moves >= 600, `moves seen (${moves})`);
    // the scribble's messages: about 30 per second; the burst's strokes: one message each
    const scribble = messages - 80;
    assert.ok(scribble <= Math.ceil(ms / 30) + 2, `throttled: ${scribble} messages for ${moves} moves in ${ms.toFixed(0)} ms`);
    assert.ok(results < messages, `coalesced: ${results} results for ${messages} messages`);
    assert.ok(s1.maxPointsPerMessage <= (await st(() => window.omokage.client.welcome.sketch.max_points_per_message)));
    assert.deepEqual(s1.errors, [], 'nothing refused (no overloaded)');
    assert.equal(end.strokes, 81, 'the newest drawing is the one shown');
    assert.equal(end.revision, await st(() => window.omokage.sketch.pad.revision));
    const gap = await st(() => window.__gap);
    t.diagnostic(`scribble: ${moves} moves in ${ms.toFixed(0)} ms and a burst of 80 strokes -> ${messages} sketch.stroke messages `
      + `-> ${results} sketch.result; longest frame gap ${gap.toFixed(0)} ms`);
    assert.ok(gap < 1000, `the page kept drawing frames (longest gap ${gap.toFixed(0)} ms)`);
    // still answers at once
    const t0 = Date.now();
    await page.click('#sketch-undo');
    const after1 = await settled();
    assert.equal(after1.strokes, 80);
    assert.ok(Date.now() - t0 < 3000, `undo answered in ${Date.now() - t0} ms`);
    assert.deepEqual(browser.errors, []);
  });

  it('errors are told in plain words, the drawing unchanged', T, async () => {
    await openDraw();
    await drawMouse(ellipse(0.5, 0.56, 0.3, 0.36), 2);
    const before1 = await settled();
    const strokes = await st(() => window.omokage.sketch.pad.strokes.length);
    const pieces0 = await st(() => window.omokage.sketch.stats.pieces);

    // bad_field: a width the server does not take
    await st(() => window.omokage.sketch.sendRaw('sketch.stroke', { points: [0.5, 0.5, 0.6, 0.6], colour: [0, 0, 0], width: 0.9 }));
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.textContent('#banner-title'), "The server couldn't use that stroke");
    assert.doesNotMatch(await page.textContent('#banner-text'), /bad_field|sketch\.|\[/);
    assert.match(await page.textContent('#banner-detail'), /width.*\[bad_field\]/);
    await page.click('#banner-close');

    // too_large: more points than a message may hold
    const n = await st(() => window.omokage.client.welcome.sketch.max_points_per_message);
    await st((k) => window.omokage.sketch.sendRaw('sketch.stroke', { points: Array.from({ length: 2 * (k + 1) }, (_, i) => (i % 7) / 10),
      colour: [0, 0, 0], width: 0.02 }), n);
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.textContent('#banner-title'), 'The drawing is full');
    assert.match(await page.textContent('#banner-text'), /Undo a few strokes or Clear/);
    assert.match(await page.textContent('#banner-detail'), /\[too_large\]/);
    await page.click('#banner-close');

    // the drawing is as it was: the next stroke builds on it
    assert.equal(await st(() => window.omokage.sketch.pad.strokes.length), strokes);
    await drawMouse(line(0.4, 0.7, 0.6, 0.7, 4), 2);
    const after1 = await settled();
    assert.equal(after1.strokes, before1.strokes + 1);
    const pieces = (await st(() => window.omokage.sketch.stats.pieces)) - pieces0;
    assert.equal(after1.revision, before1.revision + pieces, 'the refused strokes did not count');

    // wrong_state: picking from an empty drawing (the page's button is off then; forced here)
    await page.click('#sketch-clear');
    await settled();
    assert.equal(await page.isDisabled('#sketch-pick'), true);
    await st(() => window.omokage.sketch.pick(null, { force: true }));
    await page.waitForSelector('#banner:not([hidden])');
    assert.equal(await page.textContent('#banner-title'), 'Draw something first');
    assert.match(await page.textContent('#banner-detail'), /\[wrong_state\]/);
    assert.equal(await page.isVisible('#sketch'), true, 'still drawing');
    assert.deepEqual(browser.errors, []);
  });

  it('at 400×800 the canvas fits the width, the tools and the first faces are on screen; controls are labelled', T, async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    await openDraw();
    await drawPointer(ellipse(0.5, 0.56, 0.3, 0.36, 30), { pointerType: 'touch', pointerId: 5 });
    await settled();
    await page.waitForTimeout(300);
    const r = await st(() => {
      const box = (el) => el.getBoundingClientRect().toJSON();
      return {
        scrollW: document.documentElement.scrollWidth,
        canvas: box(document.getElementById('sketch-canvas')),
        tools: [...document.querySelectorAll('#sketch-tool button, #sketch-width, #sketch-undo, #sketch-clear, #sketch-swatches button, #sketch-colour')].map(box),
        preview: box(document.getElementById('sketch-preview')),
        firstFace: box(document.querySelector('#sketch-grid li')),
        draw: box(document.getElementById('btn-draw')),
        random: box(document.getElementById('btn-random')),
      };
    });
    assert.ok(r.scrollW <= 400, `no sideways scrolling (${r.scrollW})`);
    assert.ok(r.canvas.left >= 0 && r.canvas.right <= 400 && r.canvas.width >= 340, `canvas ${JSON.stringify(r.canvas)}`);
    assert.ok(Math.abs(r.canvas.width - r.canvas.height) < 1, 'square');
    for (const t of r.tools) assert.ok(t.left >= 0 && t.right <= 400 && t.bottom <= 800 && t.top >= 0, `tool ${JSON.stringify(t)}`);
    // a finger's targets: the colours about 32 px, the tools and Undo / Clear 44 px high
    const sizes = await st(() => ({ swatch: document.querySelector('.swatch').getBoundingClientRect().height,
      buttons: [...document.querySelectorAll('#sketch-tool button, #sketch-undo, #sketch-clear')].map((e) => e.getBoundingClientRect().height) }));
    assert.ok(sizes.swatch >= 30, `swatch ${sizes.swatch}`);
    for (const h of sizes.buttons) assert.ok(h >= 44, `button ${h}`);
    assert.ok(r.canvas.bottom <= 800, 'the whole canvas on the first screen');
    assert.ok(r.preview.bottom <= 800 && r.firstFace.bottom <= 800, 'the preview and the first faces too');
    assert.equal(r.draw.top, r.random.top, 'Draw sits beside Random start and Use an image');
    // labels: every control has a name; the canvas says what it does
    const unnamed = await st(() => [...document.querySelectorAll('#sketch button, #sketch input, #btn-draw')]
      .filter((e) => !e.hidden && e.offsetParent !== null)
      .filter((e) => !(e.getAttribute('aria-label') || e.textContent.trim() || (e.labels && e.labels.length && e.labels[0].textContent.trim())))
      .map((e) => e.outerHTML.slice(0, 80)));
    assert.deepEqual(unnamed, []);
    assert.match(await page.getAttribute('#sketch-canvas', 'aria-label'), /draw/i);
    assert.equal(await page.getAttribute('#btn-draw', 'aria-pressed'), 'true');
    // back to the faces: the grid as it was, from the top of the page (not under the header, where the scroll was)
    await st(() => window.scrollTo(0, document.documentElement.scrollHeight));
    assert.ok(await st(() => window.scrollY) > 100);
    await page.click('#sketch-back');
    await page.waitForSelector('#stage:not([hidden])');
    assert.equal(await st(() => window.scrollY), 0);
    assert.equal(await page.getAttribute('#btn-draw', 'aria-pressed'), 'false');
    assert.equal(await st(() => window.omokage.state.step), 1);
    // Escape closes the settings menu first, then leaves the drawing (which stays)
    await page.click('#btn-draw');
    await page.waitForSelector('#sketch:not([hidden])');
    await page.click('#settings summary');
    await page.keyboard.press('Escape');
    assert.equal(await st(() => document.getElementById('settings').open), false);
    assert.equal(await page.isVisible('#sketch'), true);
    await page.keyboard.press('Escape');
    await page.waitForSelector('#stage:not([hidden])');
    assert.equal(await page.isVisible('#sketch'), false);
    assert.deepEqual(browser.errors, []);
  });
});

describe('a dropped connection', () => {
  it('the drawing belongs to the connection: the page sends it again to the new one and goes on drawing', T, async () => {
    const own = await startServer();
    let back = null;
    try {
      const frames = recordFrames(page);
      await page.goto(own.url);
      await waitForGrid(page, 1);
      await page.click('#btn-draw');
      await drawMouse(ellipse(0.5, 0.56, 0.3, 0.36), 3);
      await page.click('#sketch-swatches [aria-label="Blonde hair"]');
      await drawMouse(line(0.15, 0.2, 0.85, 0.2, 8), 3);
      const was = await settled();
      await own.stop();
      await page.waitForFunction(() => document.getElementById('conn-text').textContent === 'Offline', null, { timeout: 15000 });
      assert.equal(await page.isDisabled('#sketch-pick'), true);
      back = await startServer({ port: own.port });
      await page.waitForFunction(() => document.getElementById('conn-text').textContent === 'Connected', null, { timeout: 20000 });
      const again = await settled();
      assert.equal(await page.isVisible('#sketch'), true, 'still drawing');
      assert.equal(again.strokes, 2);
      // the same drawing (sent again in the same pieces) finds the same faces
      assert.deepEqual([...again.ids].sort((a, b) => a - b), [...was.ids].sort((a, b) => a - b));
      assert.equal(again.ids[0], was.ids[0]);
      assert.equal(frames.filter((f) => f.dir === 'out' && f.msg.type === 'sketch.begin').length, 2);
      await drawMouse(line(0.4, 0.74, 0.6, 0.74, 4), 2);
      const more = await settled();
      assert.equal(more.strokes, 3);
      assert.deepEqual(browser.errors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket/i.test(e)), []);
    } finally {
      if (back) await back.stop();
      await own.stop();
    }
  });
});

describe('a long drawing sent again', () => {
  it('goes out paced under the server\'s message rate after a reconnect: nothing dropped, every stroke kept', T, async () => {
    await openDraw();
    const frames = recordFrames(page);
    // six strokes of 120 pieces each, as a 30 Hz mouse leaves them over about 25 s: 720 messages to send again
    await st(() => {
      const pad = window.omokage.sketch.pad;
      pad.strokes = Array.from({ length: 6 }, (_, s) => {
        const points = [];
        for (let k = 0; k <= 240; k++) points.push(0.1 + (0.8 * k) / 240, 0.2 + 0.12 * s + 0.02 * Math.sin(k / 9));
        return { tool: 'line', colour: [40, 30, 20], width: 0.02, points, cuts: Array.from({ length: 120 }, (_, c) => 2 * (c + 1) + 1) };
      });
      pad.replay();
    });
    await settled(30000);
    const mark = frames.length;
    await st(() => window.omokage.client.reconnect());
    await page.waitForFunction(() => window.omokage.client.state === 'open');
    const again = await settled(30000);
    const after = frames.slice(mark);
    const dropped = after.filter((f) => f.dir === 'in' && f.msg.type === 'error');
    assert.deepEqual(dropped.map((f) => f.msg.code), [], 'the server refused nothing');
    assert.equal(sketchOut(after, 'sketch.begin').length, 1, 'one replay');
    assert.equal(sketchOut(after).length, 720);
    assert.equal(again.strokes, 6);
    assert.equal(await st(() => window.omokage.sketch.pad.strokes.length), 6);
    // paced: after the first burst (the server's rate), no more than about the page's half rate per second
    const sent = after.filter((f) => f.dir === 'out' && f.msg.type === 'sketch.stroke').map((f) => f.at);
    const span = (sent[sent.length - 1] - sent[0]) / 1000;
    assert.ok(span >= (720 - 200) / 100 * 0.8, `720 pieces sent over ${span.toFixed(1)} s`);
  });
});

describe('a server whose generator is slow (v1.6)', () => {
  it('shows each result\'s quick preview at once and the sharper one that follows, only for the drawing on screen', T, async () => {
    const models = modelsWithGen();
    const sharp = await startServer({ models, args: ['--preview-backend', 'onnxruntime'] });
    const main = server;
    try {
      server = sharp;
      const frames = recordFrames(page);
      await openDraw();
      assert.equal(await st(() => window.omokage.client.welcome.sketch.sharpens), true);
      await drawMouse(ellipse(0.5, 0.5, 0.3, 0.38));
      const drawn = await settled();
      // the sharper preview of the result on screen replaces its quick one
      await page.waitForFunction((rev) => {
        const s = window.omokage.sketch;
        return s.stats.sharpened > 0 && s.previewSharper && s.latest.revision === rev;
      }, drawn.revision, { timeout: 15000 });
      const previews = frames.filter((f) => f.dir === 'in' && f.msg.type === 'sketch.preview').map((f) => f.msg);
      const results = frames.filter((f) => f.dir === 'in' && f.msg.type === 'sketch.result').map((f) => f.msg);
      const last = previews[previews.length - 1];
      assert.equal(last.revision, drawn.revision);
      assert.equal(last.rid, undefined, 'a sketch.preview answers no request');
      const result = results.find((r) => r.revision === last.revision);
      assert.ok(result && result.preview.hash !== last.preview.hash, 'the sharper face is not the quick one');
      assert.equal(await page.getAttribute('#sketch-preview', 'data-sharper'), 'yes');
      // the next stroke's result shows its quick preview again, until its own sharper one comes
      const before = await st(() => window.omokage.sketch.stats.sharpened);
      await drawMouse(line(0.3, 0.35, 0.45, 0.35));
      const next = await settled();
      assert.ok(next.revision > drawn.revision);
      await page.waitForFunction(([n, rev]) => {
        const s = window.omokage.sketch;
        return s.stats.sharpened > n && s.previewSharper && s.latest.revision === rev;
      }, [before, next.revision], { timeout: 15000 });
      // a sharper preview of an older revision (as one that crossed the next stroke on the way would be) is not shown
      const shownUrl = await st(() => window.omokage.sketch.previewUrl);
      const [was, now] = await st((old) => {
        const s = window.omokage.sketch;
        const n = s.stats.sharpened;
        s.pad._reply({ ...old, revision: s.latest.revision - 1 });
        return [n, s.stats.sharpened];
      }, last);
      assert.equal(now, was, 'the stale preview was not taken');
      assert.equal(await st(() => window.omokage.sketch.previewUrl), shownUrl);
      assert.deepEqual(browser.errors, []);
    } finally {
      server = main;
      await sharp.stop();
      rmSync(models, { recursive: true, force: true });
    }
  });
});

describe('a server without a sketch model', () => {
  it('offers no drawing', T, async () => {
    const models = modelsWith(['pca', 'nmf']);
    const plain = await startServer({ models });
    try {
      const frames = recordFrames(page);
      await page.goto(plain.url);
      await waitForGrid(page, 1);
      assert.equal(frames.find((f) => f.dir === 'out' && f.msg.type === 'hello').msg.protocol_minor, 7);
      assert.equal(await st(() => window.omokage.client.welcome.sketch), undefined);
      assert.equal(await page.isVisible('#btn-draw'), false);
      assert.equal(await page.isVisible('#sketch'), false);
      // the page still works as before
      await page.locator('#grid .face').nth(1).click();
      await waitForGrid(page, 2);
      assert.deepEqual(browser.errors, []);
    } finally {
      await plain.stop();
      rmSync(models, { recursive: true, force: true });
    }
  });
});
