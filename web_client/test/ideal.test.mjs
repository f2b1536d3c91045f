// v1.5 ideal face (docs/protocol.md "Ideal face"): the page's "What you seem to want" control against a real
// `omokage serve` (its PCA model generates the face), in headless Chromium. The page's socket goes through a
// playwright route to the real server, so a test can hold the page's `start` and read every frame.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { rmSync } from 'node:fs';
import { decode } from '@msgpack/msgpack';
import { closeTestPage, gridIds, modelsWith, newTestPage, openBrowser, screenshot, startServer, waitForGrid } from './helpers.mjs';

const T = { timeout: 60000 };
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
  await closeTestPage(page, t, 'ideal-');
});

const st = (fn, arg) => page.evaluate(fn, arg);

/**
 * Route the page's socket to the real server, recording what each side sends. While `route.holdStart` is set, the
 * page's `start` messages wait (the page is then connected with no selection); `route.release()` sends them on.
 */
async function routed() {
  const route = { out: [], in: [], holdStart: false, held: [], srv: null };
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const srv = ws.connectToServer();
    route.srv = srv;
    ws.onMessage((m) => {
      const msg = decode(m);
      route.out.push(msg);
      if (msg.type === 'start' && route.holdStart) route.held.push(m);
      else srv.send(m);
    });
    srv.onMessage((m) => {
      route.in.push(decode(m));
      ws.send(m);
    });
  });
  route.release = () => {
    route.holdStart = false;
    for (const m of route.held.splice(0)) route.srv.send(m);
  };
  route.sent = (type) => route.out.filter((m) => m.type === type);
  route.got = (type) => route.in.filter((m) => m.type === type);
  return route;
}

const idealDone = (n) => page.waitForFunction((k) => {
  const v = window.omokage.ideal.view;
  return v.renders >= k && !v.busy;
}, n, { timeout: 20000 });

describe('the ideal face (protocol v1.5)', () => {
  it('is off until a selection is in progress; after a choose it shows the generated face and the nine nearest unseen faces, which open their product pages', T, async () => {
    const route = await routed();
    route.holdStart = true;
    await page.goto(server.url);
    await page.waitForFunction(() => window.omokage.client.state === 'open');
    await page.waitForFunction(() => document.getElementById('btn-ideal') && !document.getElementById('btn-ideal').hidden);
    assert.equal(route.sent('hello')[0].protocol_minor, 7, 'the page says it reads v1.7');
    assert.equal(route.sent('hello')[0].device, undefined, 'no headset model from a browser page');
    const imageSize = (await st(() => window.omokage.client.welcome.ideal)).image_size;
    assert.ok(imageSize > 0, 'welcome.ideal');

    // connected, the start held back: no selection yet, so the control is shown but off, and its key does nothing
    assert.equal(route.held.length, 1);
    assert.equal(await page.isVisible('#btn-ideal'), true);
    assert.equal(await page.isDisabled('#btn-ideal'), true);
    await page.keyboard.press('i');
    await page.waitForTimeout(300);
    assert.equal(route.sent('ideal').length, 0);
    assert.equal(await page.isVisible('#ideal'), false);

    route.release();
    await waitForGrid(page, 1);
    assert.equal(await page.isDisabled('#btn-ideal'), false);
    assert.equal(await page.isVisible('#keys-ideal'), true);
    const ids1 = await gridIds(page);
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    const ids2 = await gridIds(page);
    assert.equal(ids2[0], ids1[4]);

    await page.click('#btn-ideal');
    await idealDone(1);
    assert.equal(await page.isVisible('#ideal'), true);
    const ask = route.sent('ideal');
    assert.equal(ask.length, 1);
    assert.equal(ask[0].near, undefined, 'the server takes the last face chosen');
    const result = route.got('ideal.result')[0];
    assert.equal(result.near, ids1[4], 'near the face just chosen');
    assert.equal(result.items.length, 9);

    // the generated face, with a caption that says what it is
    const preview = await st(() => {
      const img = document.getElementById('ideal-img');
      return { w: img.naturalWidth, h: img.naturalHeight, src: img.src, visible: !img.hidden && img.complete };
    });
    assert.ok(preview.visible && preview.src.startsWith('blob:'), JSON.stringify(preview));
    assert.deepEqual([preview.w, preview.h], [imageSize, imageSize], 'the inline JPEG preview, decoded');
    const caption = await page.textContent('#ideal-caption');
    assert.match(caption, /generated/i);
    assert.match(caption, /not a face from the catalog/i);
    assert.match(caption, /searched from/, 'names the favourite');
    assert.equal(await page.getAttribute('#btn-ideal', 'aria-expanded'), 'true');

    // nine thumbnails, each a link to its product page, their textures fetched with texture.get like the grid's
    const thumbs = await page.$$eval('#ideal-grid a', (els) => els.map((a) => ({ href: a.href, id: Number(a.dataset.id),
      target: a.target, rel: a.rel, img: a.querySelector('img').complete && a.querySelector('img').naturalWidth })));
    assert.equal(thumbs.length, 9);
    assert.deepEqual(thumbs.map((t) => t.id), result.items.map((i) => i.id), 'nearest first, as the server sent them');
    assert.deepEqual(thumbs.map((t) => t.href), result.items.map((i) => new URL(i.url).href));
    for (const t of thumbs) {
      assert.ok(t.img > 0, `thumbnail ${t.id} decoded`);
      assert.equal(t.target, '_blank');
      assert.equal(t.rel, 'noopener');
      assert.ok(!ids1.includes(t.id) && !ids2.includes(t.id), `face ${t.id} was already shown`);
    }
    const fetched = new Set(route.sent('texture.get').flatMap((m) => m.hashes));
    for (const it of result.items) assert.ok(fetched.has(it.texture), `texture of face ${it.id} fetched`);
    await screenshot(page, 'ideal-panel');
    const [popup] = await Promise.all([browser.context.waitForEvent('page'), page.click('#ideal-grid li:nth-child(2) a')]);
    await popup.waitForLoadState('domcontentloaded');
    assert.equal(popup.url(), new URL(result.items[1].url).href);
    await popup.close();

    // the selection goes on with the panel open; the panel then says it is from an earlier step
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 3);
    assert.equal(await page.isVisible('#ideal'), true);
    assert.match(await page.textContent('#ideal-stale'), /step 2/);
    await page.keyboard.press('i');
    await idealDone(2);
    assert.equal(await page.isVisible('#ideal-stale'), false);
    assert.equal(route.got('ideal.result')[1].near, ids2[2]);

    // asking does not block choosing: a pick right behind the request goes through, and both arrive
    await page.keyboard.press('i');
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 4);
    await idealDone(3);
    assert.equal(route.sent('ideal').length, 3);

    // Escape closes it; the selection is untouched
    await page.keyboard.press('Escape');
    assert.equal(await page.isVisible('#ideal'), false);
    assert.equal(await page.getAttribute('#btn-ideal', 'aria-expanded'), 'false');
    assert.equal(await st(() => window.omokage.state.step), 4);

    // after a decision there is no selection in progress: off again
    const [tab] = await Promise.all([browser.context.waitForEvent('page'), page.keyboard.press('d')]);
    await tab.close();
    await page.waitForSelector('#decided[open]');
    assert.equal(await page.isDisabled('#btn-ideal'), true);
    assert.equal(route.got('error').length, 0, JSON.stringify(route.got('error')));
    assert.deepEqual(browser.errors, []);
  });

  it('a new selection closes the panel; the close button closes it too', T, async () => {
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await page.click('#btn-ideal'); // at step 1 the server stays near the most probable face on screen
    await idealDone(1);
    assert.equal(await page.$$eval('#ideal-grid a', (els) => els.length), 9);
    assert.match(await page.textContent('#ideal-caption'), /^Generated by the model from the faces on screen \(no picks yet\)/);
    await page.click('#ideal-close');
    assert.equal(await page.isVisible('#ideal'), false);
    await page.click('#btn-ideal');
    await idealDone(2);
    await page.click('#btn-random'); // at step 1, no pick yet: nothing to lose, nothing asked
    await page.waitForFunction(() => !window.omokage.state.busy && !window.omokage.ideal.view.open);
    await waitForGrid(page, 1);
    assert.equal(await page.isVisible('#ideal'), false);
    assert.equal(await page.isDisabled('#btn-ideal'), false);
    assert.deepEqual(browser.errors, []);
  });

  it("the server's errors are said in plain words (not_found, wrong_state); the page goes on", T, async () => {
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await page.locator('#grid .face').nth(0).click();
    await waitForGrid(page, 2);
    // a favourite never shown in this selection: not_found from the server
    assert.equal(await st(() => window.omokage.ideal.request({ near: 2147483000 })), false);
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.textContent('#banner-title'), /not part of this selection/);
    assert.doesNotMatch(await page.textContent('#banner-text'), /not_found/);
    assert.match(await page.textContent('#banner-detail'), /ideal: .*\[not_found\]/);
    assert.equal(await page.isVisible('#ideal'), false, 'nothing to show');
    assert.equal(await page.isDisabled('#btn-ideal'), false, 'the control works again');
    // the page still works: the control, then a pick
    await page.click('#btn-ideal');
    await idealDone(1);
    await page.locator('#grid .face').nth(3).click();
    await waitForGrid(page, 3);

    // after decide the server has no selection: wrong_state (the control is off; a forced request shows the wording)
    const [tab] = await Promise.all([browser.context.waitForEvent('page'), page.keyboard.press('d')]);
    await tab.close();
    await page.waitForSelector('#decided[open]');
    assert.equal(await st(() => window.omokage.ideal.request({ force: true })), false);
    await page.waitForFunction(() => /\[wrong_state\]/.test(document.getElementById('banner-detail').textContent));
    assert.match(await page.textContent('#banner-title'), /no selection to go on from/);
    // overloaded (the server's image slots all busy) has its own words too
    const busy = await st(() => window.omokage.describeError('overloaded', 'ideal', 'too many images'));
    assert.match(busy.text, /What you seem to want/);
    assert.deepEqual(browser.errors, []);
  });

  it('on a phone (400×800) the control sits under Decide / None of these and the panel opens below, without sideways scrolling', T, async () => {
    await page.setViewportSize({ width: 400, height: 800 });
    await page.goto(server.url);
    await waitForGrid(page, 1);
    await page.locator('#grid .face').nth(1).click();
    await waitForGrid(page, 2);
    await page.click('#btn-ideal');
    await idealDone(1);
    const r = await st(() => {
      const box = (id) => document.getElementById(id).getBoundingClientRect().toJSON();
      return { scrollW: document.documentElement.scrollWidth, ideal: box('ideal'), decide: box('btn-decide'), button: box('btn-ideal') };
    });
    assert.ok(r.scrollW <= 400, `no sideways scrolling (${r.scrollW})`);
    assert.ok(r.button.top >= r.decide.bottom, `the control below Decide ${JSON.stringify(r)}`);
    assert.ok(r.ideal.right <= 400 && r.ideal.left >= 0, `panel ${JSON.stringify(r.ideal)}`);
    assert.equal(await page.$$eval('#ideal-grid a', (els) => els.length), 9);
    // it opens below the grid: the page brings it into view (the press looked as if it did nothing)
    await page.waitForFunction(() => document.getElementById('ideal').getBoundingClientRect().top < window.innerHeight - 100,
      null, { timeout: 3000 });
    await screenshot(page, 'ideal-phone');
    assert.deepEqual(browser.errors, []);
  });
});

describe('a server that cannot generate faces (no PCA model)', () => {
  it('announces no welcome.ideal: the control and its key are not there', T, async () => {
    const models = modelsWith(['nmf']);
    const plain = await startServer({ models });
    try {
      const route = await routed();
      await page.goto(plain.url);
      await waitForGrid(page, 1);
      assert.equal(route.sent('hello')[0].protocol_minor, 7);
      assert.equal(await st(() => window.omokage.client.welcome.ideal), undefined);
      await page.locator('#grid .face').nth(1).click();
      await waitForGrid(page, 2);
      assert.equal(await page.isVisible('#btn-ideal'), false);
      assert.equal(await page.isVisible('#keys-ideal'), false);
      await page.keyboard.press('i');
      await page.waitForTimeout(300);
      assert.equal(route.sent('ideal').length, 0);
      assert.equal(await page.isVisible('#ideal'), false);
      assert.deepEqual(browser.errors, []);
    } finally {
      await plain.stop();
      rmSync(models, { recursive: true, force: true });
    }
  });
});
