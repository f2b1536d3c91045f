// What a first-time user ran into (issue 11), in headless Chromium against a real `omokage serve`:
// shortcuts right after a tab or button click, switching features mid-selection, a 400×800 phone, errors in
// human words, and models still training (protocol v1.2, played through page.routeWebSocket in front of the
// real server). Screenshots land in web_client/test-artifacts/ (after-1280.png and after-400.png among them).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { decode, encode } from '@msgpack/msgpack';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { closeTestPage, gridIds, makeImage, newTestPage, openBrowser, repoRoot, screenshot, startServer, testData, waitForGrid, writeFile } from './helpers.mjs';

const T = { timeout: 60000 };
let server;
let browser;
let page;
let files;

before(async () => {
  server = await startServer();
  browser = await openBrowser();
  files = mkdtempSync(path.join(tmpdir(), 'omokage-files-'));
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

beforeEach(async () => {
  page = await newTestPage(browser);
  // a switch must ask inline, never with the browser's own dialog; every test starts in the default space
  await page.addInitScript(() => {
    localStorage.removeItem('omokage.algorithm');
    window.__dialogs = 0;
    window.confirm = () => { window.__dialogs += 1; return true; };
  });
});

afterEach(async (t) => {
  await closeTestPage(page, t);
});

async function open(query = '') {
  await page.goto(server.url + query);
  await waitForGrid(page, 1);
}

const st = (fn) => page.evaluate(fn);

describe('first use', () => {
  it('keyboard shortcuts work right after clicking a feature tab or a button, but not while typing', T, async () => {
    await open();
    // a tab click (nothing to lose at step 1: it switches at once) leaves the focus on the tab
    await page.click('#algorithms [data-algorithm=nmf]');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'nmf' && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    assert.equal(await st(() => document.activeElement.dataset.algorithm), 'nmf');
    const ids1 = await gridIds(page);
    await page.keyboard.press('3');
    await waitForGrid(page, 2);
    assert.equal((await gridIds(page))[0], ids1[2]);

    // Random start mid-selection asks first (one click from losing every pick; a UX walkthrough): keeping the
    // selection changes nothing
    await page.click('#btn-random');
    assert.equal(await page.isVisible('#switch'), true);
    assert.equal(await page.textContent('#switch-title'), 'Start a new selection?');
    assert.match(await page.textContent('#switch-text'), /^You are at step 2\. A random start leaves this selection/);
    assert.equal(await page.isVisible('#switch-keep'), false);
    await page.click('#switch-cancel');
    assert.equal(await page.isVisible('#switch'), false);
    assert.equal(await st(() => window.omokage.state.step), 2);
    // a button click, then Start a new one: Random start keeps the focus, and the digits still choose
    await page.click('#btn-random');
    await page.click('#switch-fresh');
    await page.waitForFunction(() => window.omokage.state.step === 1 && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    assert.equal(await st(() => document.activeElement.id), 'btn-random');
    const ids2 = await gridIds(page);
    await page.keyboard.press('2');
    await waitForGrid(page, 2);
    assert.equal((await gridIds(page))[0], ids2[1]);

    // the file picker (after "Start from an image") is no text field either
    await page.focus('#file');
    const ids3 = await gridIds(page);
    await page.keyboard.press('4');
    await waitForGrid(page, 3);
    assert.equal((await gridIds(page))[0], ids3[3]);

    // D right after a tab click (the switch question is open; Escape dismisses it, D decides)
    await page.click('#algorithms [data-algorithm=pca]');
    await page.waitForSelector('#switch:not([hidden])');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#switch', { state: 'hidden' });
    assert.equal(await st(() => document.activeElement.dataset.algorithm), 'pca');
    const target = await st(() => window.omokage.state.items[window.omokage.state.cursor]);
    const [popup] = await Promise.all([browser.context.waitForEvent('page'), page.keyboard.press('d')]);
    assert.equal(popup.url(), target.url);
    await popup.close();
    await page.waitForSelector('#decided[open]');
    await page.click('#decided-again');
    await page.waitForFunction(() => !window.omokage.state.decided && window.omokage.state.step === 1 && !window.omokage.state.busy);
    await waitForGrid(page, 1);

    // typing in a text field types: no choice, no decision
    await page.evaluate(() => {
      const i = document.createElement('input');
      i.id = 'typing';
      i.type = 'text';
      document.querySelector('.toolbar').appendChild(i);
    });
    await page.focus('#typing');
    const pages = browser.context.pages().length;
    await page.keyboard.type('5d n');
    await page.waitForTimeout(400);
    assert.equal(await page.inputValue('#typing'), '5d n');
    assert.equal(await st(() => window.omokage.state.step), 1);
    assert.equal(browser.context.pages().length, pages);
    assert.deepEqual(browser.errors, []);
  });

  it('switching features mid-selection asks inline: cancel keeps it, continue re-projects the pick and keeps the path, or start fresh', T, async () => {
    await open();
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 3);
    const pick = await st(() => window.omokage.state.items[0]);
    const ids3 = await gridIds(page);
    assert.equal(await page.locator('#trail-list img').count(), 2);

    // asks, and nothing changes yet
    await page.click('#algorithms [data-algorithm=nmf]');
    await page.waitForSelector('#switch:not([hidden])');
    assert.equal(await page.textContent('#switch-title'), 'Match by Parts instead?');
    assert.match(await page.textContent('#switch-text'), /step 3/);
    assert.equal(await page.isVisible('#switch-keep'), true);
    assert.equal(await st(() => window.omokage.state.algorithm), 'pca');
    assert.equal(await page.getAttribute('#algorithms [data-algorithm=pca]', 'aria-checked'), 'true');
    await page.waitForTimeout(300);
    assert.equal(await st(() => window.omokage.state.step), 3);

    // cancel keeps the selection
    await page.click('#switch-cancel');
    await page.waitForSelector('#switch', { state: 'hidden' });
    assert.equal(await st(() => window.omokage.state.algorithm), 'pca');
    assert.equal(await st(() => window.omokage.state.step), 3);
    assert.deepEqual(await gridIds(page), ids3);

    // continue from the pick: an image start from its texture in NMF; the path stays, marked where NMF begins
    await page.evaluate(() => {
      const c = window.omokage.client;
      const orig = c.start.bind(c);
      window.__starts = [];
      c.start = (algorithm, opts) => {
        window.__starts.push({ algorithm, image: opts && opts.image ? opts.image.length : 0 });
        return orig(algorithm, opts);
      };
    });
    await page.click('#algorithms [data-algorithm=nmf]');
    await page.click('#switch-keep');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'nmf' && window.omokage.state.init === 'image'
      && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    const starts = await st(() => window.__starts);
    const texBytes = await page.evaluate((h) => window.omokage.client.textures.get(h).blob.size, pick.texture);
    assert.deepEqual(starts, [{ algorithm: 'nmf', image: texBytes }], 'one start, with the pick\'s own texture as the image');
    assert.ok((await gridIds(page)).includes(pick.id), 'the pick is among its nearest faces in the new space');
    assert.equal(await page.isVisible('#source'), true);
    assert.equal(await page.textContent('#upload-caption'), 'Your pick');
    assert.equal(await page.textContent('#recon-caption'), 'Compared by parts');
    assert.equal(await page.locator('#trail-list img').count(), 2, 'the path is kept');
    assert.deepEqual(await page.$$eval('#trail-list li.mark', (els) => els.map((e) => e.textContent)), ['Parts']);
    assert.equal(await page.getAttribute('#algorithms [data-algorithm=nmf]', 'aria-checked'), 'true');
    // and goes on from there
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    assert.equal(await page.locator('#trail-list img').count(), 3);
    const marks = await page.$$eval('#trail-list li', (els) => els.map((e) => (e.classList.contains('mark') ? e.textContent : 'img')));
    assert.deepEqual(marks, ['img', 'img', 'Parts', 'img']);

    // start fresh: a random start in PCA, the path cleared
    await page.click('#algorithms [data-algorithm=pca]');
    await page.waitForSelector('#switch:not([hidden])');
    assert.match(await page.textContent('#switch-fresh'), /Start fresh/);
    await page.click('#switch-fresh');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'pca' && window.omokage.state.init === 'random'
      && !window.omokage.state.busy);
    await waitForGrid(page, 1);
    assert.equal(await page.isVisible('#trail'), false);
    assert.equal(await page.isVisible('#source'), false);
    assert.equal(await st(() => window.__dialogs), 0, 'no window.confirm');
    assert.deepEqual(browser.errors, []);
  });

  it('errors say what happened and what to do; the protocol detail is folded under Details', T, async () => {
    await open();
    const bad = writeFile(path.join(files, 'broken.png'), Buffer.from('this is not a PNG at all'));
    await page.setInputFiles('#file', bad);
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.textContent('#banner-title'), /can't be used/);
    const text = await page.textContent('#banner-text');
    assert.match(text, /JPEG, PNG or WebP/);
    assert.doesNotMatch(text, /bad_field|start\.|\[/);
    assert.equal(await page.isVisible('#banner-details'), true);
    assert.equal(await page.isVisible('#banner-detail'), false, 'details folded');
    await page.click('#banner-details summary');
    assert.match(await page.textContent('#banner-detail'), /\[bad_field\]/);

    // every error code of docs/protocol.md has its own wording, whatever the page was doing
    const doc = readFileSync(path.join(repoRoot, 'docs/protocol.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### `error`'), doc.indexOf('\n## ', doc.indexOf('### `error`')));
    const codes = [...section.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1]).filter((c) => !['code', 'message', 'rid', 'dropped'].includes(c)); // the fields of `error`, not codes
    assert.ok(codes.length >= 9 && codes.includes('overloaded') && codes.includes('internal'), codes.join());
    const fallback = await st(() => window.omokage.describeError('no_such_code', 'start').title);
    for (const code of codes) {
      for (const what of ['hello', 'start', 'upload', 'reproject', 'choose', 'skip', 'decide', 'ideal']) {
        const d = await page.evaluate(([c, w]) => window.omokage.describeError(c, w, 'server words'), [code, what]);
        assert.notEqual(d.title, fallback, `${code} during ${what} has its own wording`);
        for (const s of [d.title, d.text]) {
          assert.ok(s.length > 10, `${code}/${what}: ${s}`);
          assert.doesNotMatch(s, new RegExp(`${code}|server words`), `${code}/${what} leaks jargon: ${s}`);
        }
      }
    }
    // a real one from the server: a face that is not on the grid
    await page.evaluate(async () => {
      try {
        await window.omokage.client.choose(2147483000);
      } catch (err) {
        window.__err = { code: err.code, message: err.message };
      }
    });
    assert.equal(await st(() => window.__err.code), 'not_found');
    assert.deepEqual(browser.errors, []);
  });
});

describe('phone and laptop screens', () => {
  for (const [w, h] of [[400, 800], [1280, 800]]) {
    it(`at ${w}×${h} the grid, an instruction and Decide / None of these fit without scrolling`, T, async () => {
      await page.setViewportSize({ width: w, height: h });
      await open();
      for (const step of [1, 2, 'image']) {
        if (step === 2) {
          await page.locator('#grid .face').nth(4).click();
          await waitForGrid(page, 2);
        }
        if (step === 'image') {
          // an image start adds the image and its reconstruction: they must not push the grid off the screen
          await screenshot(page, `after-${w}`);
          await page.setInputFiles('#file', makeImage(path.join(files, 'me.jpg')));
          // mid-selection it asks first (as Random start does); the question stays on screen too
          await page.waitForSelector('#switch:not([hidden])');
          const ask = await page.evaluate(() => document.getElementById('switch').getBoundingClientRect().toJSON());
          assert.ok(ask.bottom <= h && ask.right <= w && ask.left >= 0, `image question ${JSON.stringify(ask)}`);
          await page.click('#switch-fresh');
          await page.waitForFunction(() => window.omokage.state.init === 'image' && !window.omokage.state.busy);
          await waitForGrid(page, 1);
          assert.equal(await page.isVisible('#source'), true);
        }
        await page.waitForTimeout(400); // the entrance animation
        const r = await page.evaluate(() => {
          const box = (el) => { const b = el.getBoundingClientRect(); return { top: b.top, bottom: b.bottom, left: b.left, right: b.right, h: b.height }; };
          const instr = [...document.querySelectorAll('#instr, #prompt')].find((e) => e.offsetParent !== null);
          return {
            scrollY: window.scrollY,
            scrollW: document.documentElement.scrollWidth,
            cards: [...document.querySelectorAll('#grid .face:not([hidden])')].map(box),
            instr: instr ? { ...box(instr), text: instr.textContent } : null,
            decide: box(document.getElementById('btn-decide')),
            skip: box(document.getElementById('btn-skip')),
            upload: box(document.getElementById('btn-upload')),
          };
        });
        assert.equal(r.scrollY, 0);
        assert.ok(r.scrollW <= w, `no sideways scrolling (${r.scrollW})`);
        assert.equal(r.cards.length, 9);
        for (const c of r.cards) assert.ok(c.bottom <= h && c.right <= w && c.top >= 0, `card ${JSON.stringify(c)}`);
        assert.ok(r.instr && r.instr.bottom <= h && r.instr.text.length > 10, `instruction ${JSON.stringify(r.instr)}`);
        if (w < 560) assert.ok(r.instr.h < 40, `one short line: ${JSON.stringify(r.instr)}`);
        for (const [name, b] of [['decide', r.decide], ['none of these', r.skip]]) {
          assert.ok(b.bottom <= h && b.h >= 36 && b.right <= w, `${name} ${JSON.stringify(b)}`);
        }
        // one line (two would be 60+ px); on a phone a finger's 44 px
        assert.ok(r.upload.h < 56, `the toolbar's buttons stay one line (${r.upload.h})`);
        if (w < 560) {
          const small = await page.evaluate(() => [...document.querySelectorAll('.toolbar .btn, .seg button, #settings summary, .side .btn')]
            .filter((e) => e.offsetParent !== null && e.getBoundingClientRect().height < 44).map((e) => e.id || e.textContent.trim()));
          assert.deepEqual(small, [], 'touch targets under 44 px');
        }
      }
      // the settings menu opens inside the screen
      await page.click('#settings summary');
      const menu = await page.evaluate(() => document.querySelector('#settings .menu').getBoundingClientRect().toJSON());
      assert.ok(menu.left >= 0 && menu.right <= w, `menu ${JSON.stringify(menu)}`);
      // and closes like a menu: Escape, or a click elsewhere
      await page.keyboard.press('Escape');
      assert.equal(await page.getAttribute('#settings', 'open'), null);
      await page.click('#settings summary');
      assert.equal(await page.getAttribute('#settings', 'open'), '');
      await page.mouse.click(w - 5, h - 5);
      assert.equal(await page.getAttribute('#settings', 'open'), null);
      // the switch question stays on screen too
      await page.locator('#grid .face').nth(1).click();
      await waitForGrid(page, 2);
      await page.click('#algorithms [data-algorithm=nmf]');
      await page.waitForSelector('#switch:not([hidden])');
      const q = await page.evaluate(() => document.getElementById('switch').getBoundingClientRect().toJSON());
      assert.ok(q.bottom <= h && q.right <= w && q.left >= 0, `switch question ${JSON.stringify(q)}`);
      await page.click('#switch-cancel');
      assert.deepEqual(browser.errors, []);
    });
  }
});

describe('protocol v1.2: models still training', () => {
  /** Put the page's socket through a route to the real server; `edit(msg)` may change what the server sends. */
  async function routed(edit) {
    const route = { hello: null, ws: null };
    await page.routeWebSocket(/\/ws$/, (ws) => {
      route.ws = ws;
      const srv = ws.connectToServer();
      ws.onMessage((m) => {
        const msg = decode(m);
        if (msg.type === 'hello') route.hello = msg;
        srv.send(m);
      });
      srv.onMessage((m) => {
        const msg = decode(m);
        const out = edit(msg);
        ws.send(Buffer.from(encode(out, { ignoreUndefined: true })));
      });
    });
    route.push = (msg) => route.ws.send(Buffer.from(encode(msg)));
    return route;
  }

  it('a training model is a disabled tab with its progress, enabled when ready, without disturbing the selection', T, async () => {
    const info = [];
    page.on('console', (m) => { if (m.type() === 'info' || m.type() === 'log') info.push(m.text()); });
    const route = await routed((msg) => {
      if (msg.type === 'welcome') {
        return { ...msg, algorithms: msg.algorithms.filter((a) => a !== 'nmf'),
          training: [{ algorithm: 'nmf', progress: 0.4, eta_s: 95 }] };
      }
      return msg;
    });
    await open();
    assert.equal(route.hello.protocol_minor, 7, 'the page says it reads v1.7 (v1.2, the sketch messages, the ideal face, sharper previews, resuming)');
    const nmf = '#algorithms [data-algorithm=nmf]';
    assert.equal((await page.textContent(nmf)).trim(), 'Parts · training 40%');
    assert.equal(await page.isDisabled(nmf), true);
    assert.match(await page.getAttribute(nmf, 'title'), /about 2 min left/);
    assert.equal(await page.isDisabled('#algorithms [data-algorithm=pca]'), false);

    // a selection in progress, the focus on the PCA tab
    await page.locator('#grid .face').nth(3).click();
    await waitForGrid(page, 2);
    const ids = await gridIds(page);

    route.push({ type: 'models', algorithms: ['pca'], training: [{ algorithm: 'nmf', progress: 0.734 }] });
    await page.waitForFunction((s) => document.querySelector(s).textContent.includes('training 73%'), nmf);
    assert.equal(await page.isDisabled(nmf), true);
    // a click on it does nothing
    await page.click(nmf, { force: true });
    await page.waitForTimeout(200);
    assert.equal(await page.isVisible('#switch'), false);
    await page.focus('#algorithms [data-algorithm=pca]');

    // unknown messages without rid are not the user's business
    route.push({ type: 'sparkles', colour: 'pink' });
    await page.waitForTimeout(300);
    assert.equal(await page.isVisible('#banner'), false);
    assert.ok(info.some((t) => /ignoring an unsolicited server message sparkles/.test(t)), info.join('\n'));

    // ready: the tab is enabled; the selection, the grid and the focus are untouched
    route.push({ type: 'models', algorithms: ['pca', 'nmf'], training: [] });
    await page.waitForFunction((s) => !document.querySelector(s).disabled, nmf);
    assert.equal((await page.textContent(nmf)).trim(), 'Parts');
    assert.equal(await st(() => window.omokage.state.step), 2);
    assert.equal(await st(() => window.omokage.state.algorithm), 'pca');
    assert.deepEqual(await gridIds(page), ids);
    assert.equal(await st(() => document.activeElement.dataset.algorithm), 'pca');
    assert.deepEqual(await page.$$eval('#algorithms [role=radio]', (els) => els.map((e) => e.dataset.algorithm)), ['pca', 'nmf']);

    // and usable: the switch question, then NMF for real (the server has it)
    await page.click(nmf);
    await page.click('#switch-keep');
    await page.waitForFunction(() => window.omokage.state.algorithm === 'nmf' && !window.omokage.state.busy
      && window.omokage.state.init === 'image');
    await waitForGrid(page, 1);
    assert.equal(await page.isVisible('#banner'), false);
    assert.deepEqual(browser.errors, []);
  });

  it('against a real server fitting AE in the background: progress, then ready, the selection undisturbed', { timeout: 240000 }, async () => {
    // only PCA is fitted; the server fits the autoencoder (a few tens of seconds here) while it serves
    const models = mkdtempSync(path.join(tmpdir(), 'omokage-bg-models-'));
    cpSync(path.join(testData().models, 'pca'), path.join(models, 'pca'), { recursive: true });
    const bg = await startServer({ args: ['--fit-in-background', 'ae'], models });
    try {
      await page.goto(bg.url);
      await waitForGrid(page, 1);
      const ae = '#algorithms [data-algorithm=ae]';
      assert.deepEqual(await st(() => window.omokage.state.available), ['pca']);
      assert.match(await page.textContent(ae), /^Details · training \d+%$/);
      assert.equal(await page.isDisabled(ae), true);
      await screenshot(page, 'training-tab');
      await page.locator('#grid .face').nth(2).click();
      await waitForGrid(page, 2);
      const ids = await gridIds(page);
      // the progress moves (the server sends `models` about once a second)
      const first = Number(await page.getAttribute(ae, 'data-training'));
      await page.waitForFunction(([s, p]) => {
        const b = document.querySelector(s);
        return !b || b.dataset.training === undefined || Number(b.dataset.training) > p;
      }, [ae, first], { timeout: 60000 });
      // then it is served: enabled, and the selection is where it was
      await page.waitForFunction((s) => {
        const b = document.querySelector(s);
        return b && !b.disabled && b.dataset.training === undefined;
      }, ae, { timeout: 200000 });
      assert.equal((await page.textContent(ae)).trim(), 'Details');
      assert.equal(await st(() => window.omokage.state.step), 2);
      assert.equal(await st(() => window.omokage.state.algorithm), 'pca');
      assert.deepEqual(await gridIds(page), ids);
      assert.equal(await page.isVisible('#banner'), false);
      // and it works: continue from the pick in AE
      await page.click(ae);
      await page.click('#switch-keep');
      await page.waitForFunction(() => window.omokage.state.algorithm === 'ae' && window.omokage.state.init === 'image'
        && !window.omokage.state.busy);
      await waitForGrid(page, 1);
      assert.equal(await page.isVisible('#banner'), false);
      assert.deepEqual(browser.errors, []);
    } finally {
      await bg.stop();
      rmSync(models, { recursive: true, force: true });
    }
  });
});
