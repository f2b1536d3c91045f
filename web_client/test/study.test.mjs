// Studies (protocol v1.2, docs/studies.md): a tiny study made with `omokage study create`, served by a real
// `omokage serve --study`, walked through by the page: participant code, trials with their condition label (never
// the model), practice hint, resume after a reload, questionnaires (Likert, best / worst, free text), the end.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PYTHON, closeTestPage, gridIds, newTestPage, openBrowser, screenshot, startServer, testData, waitForGrid } from './helpers.mjs';

const T = { timeout: 90000 };
const STUDY = `
name = "webtest"
title = "Web client test study"
order = "latin"
seed = 3
practice_trials = 1
trials_per_condition = 1
participants = ["p-aa01", "p-bb02"]

[[conditions]]
label = "System A"
model = "pca"
policy = "study"

[[conditions]]
label = "System B"
model = "nmf"
policy = "thompson"

[[questions]]
id = "Q1"
kind = "likert"
text = "The faces shown came closer to the face I wanted."
labels = ["not at all", "completely"]

[[questions]]
id = "best"
kind = "best"
text = "Which system was the best?"

[[questions]]
id = "worst"
kind = "worst"
text = "Which system was the worst?"

[[questions]]
id = "comments"
kind = "text"
text = "Anything else?"
after = "study"
`;

let server;
let browser;
let page;
let dir;
let db;

before(async () => {
  testData();
  dir = mkdtempSync(path.join(tmpdir(), 'omokage-study-'));
  db = path.join(dir, 'omokage.db');
  writeFileSync(path.join(dir, 'study.toml'), STUDY);
  execFileSync(PYTHON, ['-m', 'omokage', 'study', 'create', path.join(dir, 'study.toml'), '--db', db],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  server = await startServer({ args: ['--study', 'webtest', '--db', db] });
  browser = await openBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  page = await newTestPage(browser);
});

afterEach(async (t) => {
  await closeTestPage(page, t, 'study-');
});

const view = (p) => p.evaluate(() => window.omokage.state.view);

/** Wait for the trial `index` to be on screen. */
async function waitTrial(p, index) {
  await p.waitForFunction((i) => {
    const s = window.omokage.state;
    return s.view === 'grid' && s.trial && s.trial.index === i && !s.busy;
  }, index, { timeout: 20000 });
  await waitForGrid(p, await p.evaluate(() => window.omokage.state.step));
}

/** Decide on the highlighted face (D) and press Continue in the dialog. On a trial's first grid no face is highlighted
 * (nothing says face 1 is the one): ArrowLeft puts the highlight on face 1 first. */
async function decideAndContinue(p) {
  await p.keyboard.press('ArrowLeft');
  await p.keyboard.press('d');
  await p.waitForSelector('#decided[open]');
  assert.match(await p.textContent('#decided-steps'), /^Trial \d of 3 \(System [AB]\) done in \d+ steps?\.$/);
  assert.equal(await p.isVisible('#decided-link'), false, 'no product page in a study');
  assert.equal((await p.textContent('#decided-again')).trim(), 'Continue');
  await p.click('#decided-again');
}

/** Nothing on screen names a model (the page's visible text, the VR-free page). */
async function assertNoModelShown(p) {
  const text = await p.evaluate(() => document.body.innerText);
  for (const word of ['PCA', 'NMF', 'Pixels', 'Autoencoder', 'pca', 'nmf', 'thompson', 'Nearest neighbours', 'Overall look',
    'Match by', 'For experts']) {
    assert.ok(!text.includes(word), `the page shows "${word}"`);
  }
  assert.equal(await p.isVisible('#algorithms'), false);
  assert.equal(await p.isVisible('#btn-random'), false);
  assert.equal(await p.isVisible('#btn-upload'), false);
}

/** Answer the questionnaire on screen: Likert `likert`, best/worst the first/last choice, text when asked. */
async function answerQuestionnaire(p, likert) {
  await p.waitForFunction(() => window.omokage.state.view === 'questionnaire' && !window.omokage.state.busy);
  // no grid behind a questionnaire (it hides asynchronously; checked while the questionnaire waits for its answers:
  // once they are sent the next trial's grid may already be showing)
  await p.waitForSelector('#grid', { state: 'hidden', timeout: 5000 });
  const id = await p.evaluate(() => document.querySelector('#q-box form') && document.getElementById('q-title').textContent);
  const items = await p.$$eval('.q-item', (els) => els.map((e) => ({ id: e.dataset.item, kind: [...e.classList].find((c) => c.startsWith('q-') && c !== 'q-item').slice(2) })));
  assert.ok(items.length >= 1);
  assert.equal(await p.isDisabled('#q-submit'), !items.every((i) => i.kind === 'text'), 'waits for the required answers');
  for (const it of items) {
    const li = p.locator(`.q-item[data-item="${it.id}"]`);
    if (it.kind === 'likert') {
      assert.equal(await li.locator('.opt').count(), 5);
      assert.deepEqual(await li.locator('.anchors span').allTextContents(), ['not at all', 'completely']);
      await li.locator(`.opt[data-value="${likert}"]`).click();
      assert.equal(await li.locator(`.opt[data-value="${likert}"]`).getAttribute('aria-checked'), 'true');
    } else if (it.kind === 'best' || it.kind === 'worst') {
      const choices = await li.locator('.opt').allTextContents();
      assert.deepEqual([...choices].sort(), ['System A', 'System B'], 'the conditions by their labels');
      await li.locator('.opt').nth(it.kind === 'best' ? 0 : choices.length - 1).click();
    } else if (it.kind === 'text') {
      await li.locator('textarea').fill('The second one felt quicker.');
    }
  }
  assert.equal(await p.isDisabled('#q-submit'), false);
  await p.click('#q-submit');
  return { title: id, items };
}

describe('a study participant', () => {
  it('walks through practice, trials, questionnaires and the end; resumes after a reload; never sees a model', T, async () => {
    await page.goto(`${server.url}?participant=p-aa01`);
    await waitTrial(page, 1);
    const hello = await page.evaluate(() => window.omokage.client.welcome.study);
    assert.equal(hello.name, 'webtest');
    assert.equal(hello.trials, 3);
    assert.equal(await page.textContent('#study-title'), 'Web client test study');
    assert.equal(await page.textContent('#study-trial'), 'Trial 1 of 3 · System A');
    assert.equal(await page.isVisible('#study-practice'), true, 'the practice trial says so');
    await assertNoModelShown(page);
    await screenshot(page, 'study-trial-1');
    await page.locator('#grid .face').nth(2).click();
    await waitForGrid(page, 2);
    await decideAndContinue(page);

    // trial 2: a pick, then the page reloads: the same grid continues
    await waitTrial(page, 2);
    assert.equal(await page.textContent('#study-trial'), 'Trial 2 of 3 · System A');
    assert.equal(await page.isVisible('#study-practice'), false);
    await page.locator('#grid .face').nth(4).click();
    await waitForGrid(page, 2);
    const before = await gridIds(page);
    await page.reload();
    await waitTrial(page, 2);
    assert.deepEqual(await gridIds(page), before, 'resumed at the grid last seen');
    await decideAndContinue(page);

    // after System A's trials: its questionnaire, a Likert item
    const q1 = await answerQuestionnaire(page, 4);
    assert.match(q1.title, /System A/);
    await waitTrial(page, 3);
    assert.equal(await page.textContent('#study-trial'), 'Trial 3 of 3 · System B');
    await assertNoModelShown(page);
    // its first grid: D before any pick or highlight decides nothing and says why
    await page.keyboard.press('d');
    await page.waitForFunction(() => /^Choose a face first/.test(document.getElementById('notice').textContent));
    assert.equal(await page.evaluate(() => window.omokage.state.decided), null);
    // Escape on the dialog: the participant is not stuck, Continue stays beside the grid
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('d');
    await page.waitForSelector('#decided[open]');
    await page.keyboard.press('Escape');
    await page.waitForFunction(() => !document.getElementById('decided').open);
    assert.equal(await page.evaluate(() => window.omokage.state.trial.index), 3, 'still on the trial just decided');
    assert.equal((await page.textContent('#btn-again')).trim(), 'Continue');
    assert.equal(await page.isVisible('#decided-open'), false, 'no product page in a study');
    await page.click('#btn-again');
    // System B's questionnaire, then the final one (best / worst / free text): answer until the end
    const seen = [q1];
    while (await page.evaluate(() => window.omokage.state.view) !== 'done') {
      await page.waitForFunction(() => ['questionnaire', 'done'].includes(window.omokage.state.view) && !window.omokage.state.busy);
      if (await view(page) === 'done') break;
      seen.push(await answerQuestionnaire(page, 2));
      await page.waitForFunction((n) => window.omokage.state.view === 'done'
        || (window.omokage.state.view === 'questionnaire' && document.getElementById('q-title').textContent !== n),
      seen[seen.length - 1].title);
    }
    const kinds = seen.flatMap((q) => q.items.map((i) => i.kind));
    for (const k of ['likert', 'best', 'worst', 'text']) assert.ok(kinds.includes(k), `a ${k} question: ${kinds}`);
    await page.waitForSelector('#study-done:not([hidden])');
    assert.match(await page.textContent('#study-done-text'), /finished the study \(3 trials\)/);
    await screenshot(page, 'study-done');
    // the answers are in the store
    const n = execFileSync(PYTHON, ['-c', `import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("SELECT count(*) FROM answers").fetchone()[0])`, db], { encoding: 'utf8' }).trim();
    assert.equal(Number(n), kinds.length);
    assert.deepEqual(browser.errors, []);
  });

  it('asks for the participant code when the page has none, and says when a code is wrong', T, async () => {
    await page.goto(server.url);
    await page.waitForSelector('#join:not([hidden])', { timeout: 15000 });
    assert.equal(await page.textContent('#join-title'), 'This server runs a study');
    assert.equal(await page.isVisible('#banner'), false, 'not the access-token banner');
    await page.fill('#join-code', 'p-nope');
    await page.click('#join-submit');
    await page.waitForFunction(() => document.getElementById('join-title').textContent.includes('not in this study'),
      null, { timeout: 15000 });
    await page.fill('#join-code', 'p-bb02');
    await page.click('#join-submit');
    await waitTrial(page, 1);
    assert.equal(await page.textContent('#study-trial'), 'Trial 1 of 3 · System B', 'the second row of the Latin square');
    assert.match(page.url(), /participant=p-bb02/);
    assert.equal(await page.isVisible('#join'), false);
    assert.deepEqual(browser.errors.filter((e) => !/WebSocket/.test(e)), []);
  });
});
