// Test harness: a real `omokage serve` on a free loopback port, and Debian's Chromium driven by playwright-core.
//
// Environment:
//   OMOKAGE_PYTHON         python with omokage installed (default: ../.venv/bin/python if present, else python3)
//   OMOKAGE_TEST_HOME      folder holding a prepared test catalog (catalog/) and models (models/); made if missing
//   CHROMIUM               browser executable (default /usr/bin/chromium)

import { spawn, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { decode } from '@msgpack/msgpack';

const here = path.dirname(fileURLToPath(import.meta.url));
export const clientRoot = path.resolve(here, '..');
export const repoRoot = path.resolve(clientRoot, '..');
export const artifacts = path.join(clientRoot, 'test-artifacts');

export const PYTHON = process.env.OMOKAGE_PYTHON
  || (existsSync(path.join(repoRoot, '.venv/bin/python')) ? path.join(repoRoot, '.venv/bin/python') : 'python3');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

const children = new Set();
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ } });

function py(args, opts = {}) {
  return execFileSync(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });
}

/** A small catalog (200 faces, 64 px) and pca+nmf models and a sketch model (v1.3), made once and reused. */
export function testData() {
  const home = process.env.OMOKAGE_TEST_HOME || path.join(tmpdir(), 'omokage-web-test');
  const catalog = path.join(home, 'catalog');
  const models = path.join(home, 'models');
  if (!existsSync(path.join(catalog, 'catalog.json'))) {
    mkdirSync(home, { recursive: true });
    rmSync(catalog, { recursive: true, force: true });
    try {
      py(['-m', 'omokage', 'catalog', 'generate', '--count', '200', '--size', '64', '--out', catalog, '--seed', '1']);
    } catch (err) {
      // fallback while the generator is unavailable: random coloured squares through CatalogWriter
      console.error(`catalog generate failed (${String(err.stderr || err.message).trim().split('\n').pop()}); writing a plain catalog`);
      rmSync(catalog, { recursive: true, force: true });
      py(['-c', `
import numpy as np, sys
from omokage.catalog.store import CatalogWriter
rng = np.random.default_rng(1)
with CatalogWriter(sys.argv[1], image_size=64) as w:
    for i in range(200):
        img = np.zeros((64, 64, 3), np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
        img[16:48, 16:48] = rng.integers(0, 256, 3, dtype=np.uint8)
        w.add(img, f"Face {i} — test colour", f"https://avatars.example/items/{i}")
    w.commit()
`, catalog]);
    }
  }
  if (!existsSync(path.join(models, 'pca')) || !existsSync(path.join(models, 'nmf'))) {
    rmSync(models, { recursive: true, force: true });
    py(['-m', 'omokage', 'fit', catalog, '--models', 'pca,nmf', '--out', models]);
  }
  if (!existsSync(path.join(models, 'sketch'))) {
    // the live sketch search's model (`omokage fit CATALOG --models sketch`); through the library where the command
    // does not offer it yet
    try {
      py(['-m', 'omokage', 'fit', catalog, '--models', 'sketch', '--out', models]);
    } catch {
      py(['-c', 'import sys; from omokage.features.fitting import fit_models; '
        + 'fit_models(sys.argv[1], sys.argv[2], ["sketch"], progress=False)', catalog, models]);
    }
  }
  return { home, catalog, models };
}

/** A temporary model folder with only `names` of the prepared models (e.g. a server without a sketch model); remove
 * it with rmSync when done. */
export function modelsWith(names) {
  const { models } = testData();
  const dir = mkdtempSync(path.join(tmpdir(), 'omokage-models-'));
  for (const n of names) cpSync(path.join(models, n), path.join(dir, n), { recursive: true });
  return dir;
}

/** v1.6: the prepared models plus a small `gen` decoder (fitted once, a few seconds: two epochs of a narrow net, enough
 * to serve), for a server with `--preview-backend onnxruntime` that sends sharper previews. Remove it when done. */
export function modelsWithGen() {
  const { catalog, models } = testData();
  const gen = path.join(path.dirname(models), 'models-gen');
  if (!existsSync(path.join(gen, 'gen'))) {
    rmSync(gen, { recursive: true, force: true });
    py(['-c', 'import sys; from omokage.catalog.store import Catalog; from omokage.features import make_model; '
      + 'make_model("gen", n_components=30, random_state=0, residual_size=32, width=8, epochs=2, batch_size=32, '
      + 'n_threads=1, progress=False).fit(Catalog(sys.argv[1]).matrix()).save(sys.argv[2])', catalog, gen]);
  }
  const dir = modelsWith(['pca', 'nmf', 'sketch']);
  cpSync(path.join(gen, 'gen'), path.join(dir, 'gen'), { recursive: true });
  return dir;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Start `omokage serve` (on the prepared catalog and models, or `catalog` and `models`) and wait for /healthz. */
export async function startServer({ port, args = [], models: modelsDir = null, catalog: catalogDir = null } = {}) {
  const { catalog, models } = catalogDir && modelsDir ? { catalog: catalogDir, models: modelsDir }
    : { catalog: catalogDir || testData().catalog, models: modelsDir || testData().models };
  port = port || await freePort();
  const cwd = mkdtempSync(path.join(tmpdir(), 'omokage-serve-')); // its var/events go here
  const proc = spawn(PYTHON, ['-m', 'omokage', 'serve', '--catalog', catalog, '--models', models,
    '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warning', ...args], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(proc);
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => proc.on('exit', (code) => { children.delete(proc); resolve(code); }));
  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + 60000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`omokage serve exited with ${proc.exitCode}:\n${stderr}`);
    try {
      const r = await fetch(`${url}healthz`);
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) throw new Error(`omokage serve did not answer /healthz within 60 s:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 150));
  }
  return {
    url, port, proc,
    get stderr() { return stderr; },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(cwd, { recursive: true, force: true });
    },
  };
}

/** A fresh Chromium profile; returns {context, page, errors, requests, close()}. `touch`: a phone's browser (a touch
 * screen, no hover: `(hover: none)` matches). */
export async function openBrowser({ viewport = { width: 1280, height: 860 }, touch = false } = {}) {
  const userData = mkdtempSync(path.join(tmpdir(), 'omokage-chromium-'));
  const context = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, viewport,
    ...(touch ? { hasTouch: true, isMobile: true } : {}),
  });
  // product URLs point at the catalog's shop; there is no network here, so answer them locally
  await context.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.fulfill({
    status: 200, contentType: 'text/html', body: '<!doctype html><title>product</title><h1>product page</h1>' }));
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  const requests = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('request', (r) => requests.push(r.url()));
  return {
    context, page, errors, requests,
    async close() {
      await context.close();
      rmSync(userData, { recursive: true, force: true });
    },
  };
}

/** A fresh page for one test: page errors and console errors (with `warnings`, console warnings too) are collected
 * in `browser.errors`, emptied first. */
export async function newTestPage(browser, { warnings = false } = {}) {
  const page = await browser.context.newPage();
  page.on('pageerror', (e) => browser.errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' || (warnings && m.type() === 'warning')) browser.errors.push(m.text());
  });
  browser.errors.length = 0;
  return page;
}

/** The test's screenshot (named after the test, after `prefix`), then the page closed. */
export async function closeTestPage(page, t, prefix = '') {
  if (!page) return;
  const name = (t && t.name ? t.name : 'test').replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
  await screenshot(page, `${prefix}${name}`).catch(() => {});
  await page.close();
}

export async function screenshot(page, name) {
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), animations: 'disabled' });
}

/** Every frame `page` sends and receives on its WebSockets, decoded: [{dir: 'out'|'in', at, msg}]. */
export function recordFrames(page) {
  const frames = [];
  const t0 = Date.now();
  page.on('websocket', (ws) => {
    const add = (dirn) => ({ payload }) => {
      if (typeof payload === 'string') return;
      try {
        frames.push({ dir: dirn, at: Date.now() - t0, msg: decode(payload) });
      } catch { /* not msgpack */ }
    };
    ws.on('framesent', add('out'));
    ws.on('framereceived', add('in'));
  });
  return frames;
}

/** Wait until the page shows candidates of `step` with all their images decoded. */
export async function waitForGrid(page, step, timeout = 15000) {
  await page.waitForFunction((s) => {
    const o = window.omokage;
    if (!o || o.state.step !== s || o.state.busy) return false;
    const imgs = [...document.querySelectorAll('#grid .face:not([hidden]) img')];
    return imgs.length === o.state.items.length && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, step, { timeout });
}

export const gridIds = (page) => page.evaluate(() => window.omokage.state.items.map((i) => i.id));

/** A real JPEG (a drawn face) made by Pillow. */
export function makeImage(file, format = 'JPEG') {
  py(['-c', `
import sys
from PIL import Image, ImageDraw
im = Image.new("RGB", (320, 240), (250, 232, 240))
d = ImageDraw.Draw(im)
d.ellipse((90, 30, 230, 200), fill=(255, 224, 200))
d.rectangle((80, 20, 240, 80), fill=(40, 30, 60))
d.ellipse((125, 100, 145, 125), fill=(60, 90, 200)); d.ellipse((175, 100, 195, 125), fill=(60, 90, 200))
d.arc((135, 140, 185, 175), 20, 160, fill=(180, 60, 80), width=4)
im.save(sys.argv[1], sys.argv[2])
`, file, format]);
  return file;
}

export function writeFile(file, data) {
  writeFileSync(file, data);
  return file;
}
