// Long unbroken titles: a catalog ingested without a manifest titles each face by its file name, e.g.
// `bae_1280d04f9a7c3e5b2d1f0a8c6e4b2d9f7a5c3e1b-1`. Wherever the page shows a face's title (grid captions, the side
// panel, Decide, the switch question, the ideal face's caption, the decided dialog, the notice) it wraps, or is
// ellipsised with the full title in a `title` attribute: it never overflows its box, the dialog or the page. Against a
// real `omokage serve` on a catalog made by `omokage catalog ingest` (no manifest), in headless Chromium.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PYTHON, closeTestPage, newTestPage, openBrowser, screenshot, startServer, waitForGrid } from './helpers.mjs';

const T = { timeout: 90000 };
const MARKER = 'bae_1280d04f9a7c3e5b2d1f0a8c6e4b2d9f7a5c3e1b'; // every title starts with it (58 characters, no break)
let server;
let browser;
let page;

/** 30 distinct face-sized images named like a scraper's files, ingested without a manifest, and raw + pca fitted. */
function titlesData() {
  const home = path.join(process.env.OMOKAGE_TEST_HOME || path.join(tmpdir(), 'omokage-web-test'), 'long-titles');
  const catalog = path.join(home, 'catalog');
  const models = path.join(home, 'models');
  const run = (args) => execFileSync(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (!existsSync(path.join(catalog, 'catalog.json'))) {
    const faces = path.join(home, 'faces');
    rmSync(home, { recursive: true, force: true });
    mkdirSync(faces, { recursive: true });
    run(['-c', `
import sys
import numpy as np
from PIL import Image
rng = np.random.default_rng(3)
for i in range(30):
    a = np.zeros((96, 96, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
    a[20:76, 20:76] = rng.integers(0, 256, 3, dtype=np.uint8)
    y, x = rng.integers(0, 70, 2)
    a[y:y + 24, x:x + 24] = rng.integers(0, 256, 3, dtype=np.uint8)
    Image.fromarray(a).save(f"{sys.argv[1]}/{sys.argv[2]}{i:02d}-{i}.png")
`, faces, MARKER]);
    run(['-m', 'omokage', 'catalog', 'ingest', faces, '--out', catalog, '--detector', 'none', '--size', '64',
      '--dedup-threshold', '-1']);
  }
  if (!existsSync(path.join(models, 'pca')) || !existsSync(path.join(models, 'raw'))) {
    rmSync(models, { recursive: true, force: true });
    run(['-m', 'omokage', 'fit', catalog, '--models', 'raw,pca', '--out', models]);
  }
  return { catalog, models };
}

before(async () => {
  server = await startServer(titlesData());
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
  await closeTestPage(page, t, 'titles-');
});

/**
 * Every visible text showing a title (it holds MARKER) stays inside its own box, the window and (when in it) the
 * decided dialog, or is ellipsised with the whole title in a `title` attribute on it or around it; and neither the
 * page nor the dialog scrolls sideways. Returns {problems, checked}: checked names each element looked at.
 */
function layoutOf(marker) {
  const problems = [];
  const checked = [];
  const de = document.documentElement;
  const vw = de.clientWidth;
  if (de.scrollWidth > vw) problems.push(`the page scrolls sideways: scrollWidth ${de.scrollWidth} > ${vw}`);
  const dlg = document.getElementById('decided');
  if (dlg.open && dlg.scrollWidth > dlg.clientWidth) {
    problems.push(`the dialog scrolls sideways: scrollWidth ${dlg.scrollWidth} > ${dlg.clientWidth}`);
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.data.includes(marker)) continue;
    const el = n.parentElement;
    if (!el.checkVisibility({ visibilityProperty: true }) || el.closest('.visually-hidden')) continue;
    const owner = el.closest('[id]');
    const tag = `${el.tagName.toLowerCase()}${el.classList.length ? `.${[...el.classList].join('.')}` : ''}`;
    const where = el.id ? `#${el.id}` : `${owner ? `#${owner.id} ` : ''}${tag}`;
    checked.push(where);
    const range = document.createRange();
    range.selectNodeContents(n);
    const text = range.getBoundingClientRect();
    const box = el.getBoundingClientRect();
    const px = (r) => `${Math.round(r.left)}..${Math.round(r.right)}`;
    const cs = getComputedStyle(el);
    const ellipsised = cs.textOverflow === 'ellipsis' && cs.overflowX === 'hidden' && cs.whiteSpace === 'nowrap';
    // what the reader sees: the text, or (ellipsised) the box that clips it
    const seen = ellipsised ? box : text;
    if (ellipsised) {
      const word = n.data.match(new RegExp(`\\S*${marker}\\S*`))[0];
      const titled = el.closest('[title]');
      if (!titled || !titled.title.includes(word)) problems.push(`${where}: ellipsised without the full title in a title attribute`);
    } else if (text.left < box.left - 1 || text.right > box.right + 1) {
      problems.push(`${where}: its text (${px(text)}) overflows its box (${px(box)})`);
    }
    if (seen.left < -1 || seen.right > vw + 1) problems.push(`${where}: (${px(seen)}) leaves the window (0..${vw})`);
    const d = el.closest('dialog');
    if (d) {
      const r = d.getBoundingClientRect();
      if (seen.left < r.left - 1 || seen.right > r.right + 1) problems.push(`${where}: (${px(seen)}) leaves the dialog (${px(r)})`);
    }
  }
  return { problems, checked };
}

/** Checks the page now (`expect`: elements that must be among those checked); the problems gather in `found`, so that
 * a failure lists every place at once. */
async function checkFits(found, stage, expect) {
  const { problems, checked } = await page.evaluate(layoutOf, MARKER);
  for (const e of expect) assert.ok(checked.includes(e), `${stage}: ${e} shows a title (checked: ${checked.join(', ')})`);
  found.push(...problems.map((p) => `${stage}: ${p}`));
}

/** The whole way through a selection at one window size, checking every place a title shows on the way. */
async function walkThrough(viewport, phone) {
  const found = [];
  await page.setViewportSize(viewport);
  await page.goto(server.url);
  await waitForGrid(page, 1);
  const titles = await page.evaluate(() => window.omokage.state.items.map((i) => i.title));
  assert.ok(titles.every((t) => t.startsWith(MARKER) && !/\s/.test(t)), `titles from file names: ${titles[0]}`);
  await checkFits(found, 'the first grid', ['#grid span.name']);
  await page.locator('#grid .face').nth(2).click();
  await waitForGrid(page, 2);
  const pick = await page.evaluate(() => window.omokage.state.items[0]);
  // the side panel (on a phone only Decide shows the name: ellipsised, the full title its tooltip)
  await checkFits(found, 'a pick', phone ? ['#grid span.name', '#btn-decide span'] : ['#pick-name', '#btn-decide span']);
  // the switch question names the pick
  await page.click('#algorithms [data-algorithm=raw]');
  await page.waitForSelector('#switch:not([hidden])');
  await checkFits(found, 'the switch question', ['#switch-text']);
  await page.click('#switch-cancel');
  await page.waitForSelector('#switch', { state: 'hidden' });
  // the ideal face's caption names the face its search started from
  await page.click('#btn-ideal');
  await page.waitForFunction(() => window.omokage.ideal.view.renders >= 1 && !window.omokage.ideal.view.busy, null, { timeout: 20000 });
  await page.waitForFunction((m) => document.getElementById('ideal-caption').textContent.includes(m), MARKER);
  await checkFits(found, 'the ideal face', ['#ideal-caption']);
  await page.click('#ideal-close');
  // Decide: the dialog with the whole title
  await page.click('#btn-decide');
  await page.waitForSelector('#decided[open]');
  assert.equal(await page.textContent('#decided-title'), pick.title);
  // ingested without a manifest, a face has no product page: the server sends "" for its file:// URL (never this
  // machine's folders), and the dialog offers no link (not the page's own address)
  assert.equal(await page.isHidden('#decided-link'), true);
  assert.equal(await page.textContent('#decided-url'), 'This face has no product page.');
  await checkFits(found, 'the decided dialog', ['#decided-title']);
  const d = await page.evaluate(() => {
    const dlg = document.getElementById('decided').getBoundingClientRect();
    const h2 = document.getElementById('decided-title').getBoundingClientRect();
    return { dlg: dlg.toJSON(), h2: h2.toJSON(), vw: document.documentElement.clientWidth };
  });
  if (d.h2.left < d.dlg.left - 1 || d.h2.right > d.dlg.right + 1) found.push(`the title's box leaves the dialog: ${JSON.stringify(d)}`);
  if (d.dlg.left < 0 || d.dlg.right > d.vw) found.push(`the dialog leaves the window: ${JSON.stringify(d)}`);
  await screenshot(page, `titles-dialog-${viewport.width}`);
  // closed: the decision beside the grid, and a press on the grid says why it does nothing
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => !document.getElementById('decided').open);
  await page.locator('#grid .face').nth(4).click();
  await page.waitForFunction(() => /You have decided on/.test(document.getElementById('notice').textContent));
  await checkFits(found, 'decided, the dialog closed', phone ? ['#instr', '#notice'] : ['#pick-name', '#prompt', '#notice']);
  assert.deepEqual(found, []);
  assert.deepEqual(browser.errors, []);
}

describe('long unbroken titles (a catalog ingested without a manifest)', () => {
  it('on a desktop (1280×860) every title wraps or is ellipsised with a tooltip; nothing scrolls sideways', T, async () => {
    await walkThrough({ width: 1280, height: 860 }, false);
  });

  it('at 900 px (the side panel below the grid) every title fits', T, async () => {
    await walkThrough({ width: 900, height: 800 }, false);
  });

  it('on a phone (400×800) every title fits; nothing scrolls sideways', T, async () => {
    await walkThrough({ width: 400, height: 800 }, true);
  });
});
