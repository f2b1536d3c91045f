// The omokage page: desktop grid (mouse, touch, keyboard) and, when the browser can, a WebXR mode
// whose three.js code is loaded only when the user enters VR (see xr.js).

import { ConnectionLost, OmokageClient, ServerError } from './protocol.js';
import { DwellTracker } from './dwell.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const WS_URL = params.get('server') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const ALGORITHMS = {
  raw: ['Pixels', 'Raw pixels: faces that look alike pixel by pixel'],
  pca: ['PCA', 'Principal components: broad traits such as colours and shapes'],
  nmf: ['NMF', 'Non-negative parts: faces built from similar parts'],
  ae: ['Autoencoder', 'A learned convolutional encoding of the face'],
  contrastive: ['Learned look', 'A network trained to tell this catalog\'s faces apart: same character, same place'],
};
// names a server may offer (welcome.policies); an unknown name is shown as it is
const POLICIES = {
  infogain: ['Most informative', 'Shows the faces whose pick tells the most about the face you want'],
  thompson: ['Sampled from the belief', 'Likely faces more often, every face sometimes'],
  cover: ['Spread out', 'Likely faces that differ from each other'],
  top: ['Most likely', 'The faces most likely to be the one you want'],
  study: ['Nearest neighbours', 'Your pick and its eight nearest faces (the original study)'],
  random: ['Random', 'Your pick and eight random faces (a baseline)'],
};
const GRID = 9;

const client = new OmokageClient(WS_URL, { token: params.get('token') });
const dwell = new DwellTracker();
const gazeDwell = new DwellTracker();
const listeners = new Set(); // XR mode: called with the state after each new grid

const state = {
  algorithm: null,
  policy: null,        // one of welcome.policies (null: a v1.0 server, which has none)
  step: 0,
  items: [],
  cursor: 0,
  init: 'random',      // how the current selection started
  first: null,         // what the grid's first face is: 'pick' (after choose), 'closest' (image start) or null
  upload: null,        // {bytes, url, name} of the image the selection started from
  reconstruction: null,
  trail: [],           // the faces chosen so far in this selection
  busy: false,
  decided: null,
  seq: 0,              // bumps on every start: replies to abandoned requests are dropped
  sessions: 0,
};

// ------------------------------------------------------------------------------------------------
// Connection status, latency, banner

const conn = $('conn');
const connText = $('conn-text');
const latency = $('latency');
let retryTicker = null;

client.addEventListener('status', (ev) => {
  const d = ev.detail;
  conn.dataset.state = d.state;
  clearInterval(retryTicker);
  if (d.state === 'connecting') {
    connText.textContent = d.everOpened ? 'Reconnecting…' : 'Connecting…';
  } else if (d.state === 'open') {
    connText.textContent = 'Connected';
  } else {
    connText.textContent = 'Offline';
    latency.textContent = '';
    setControlsEnabled(false);
    offlineBanner(d);
  }
});

function offlineBanner(d) {
  const title = d.fatal ? (/unauthorized/.test(d.reason) ? 'The server needs an access token' : 'The server refused this client')
    : d.everOpened ? 'Lost the connection to the omokage server'
      : "Can't reach the omokage server";
  const base = d.fatal ? `${d.reason}.${/unauthorized/.test(d.reason) ? ' Open the page with ?token=YOUR_TOKEN.' : ''}`
    : `${WS_URL}: ${d.reason || 'no connection'}. Is \`omokage serve\` (or \`omokage demo\`) still running?`;
  const tick = () => {
    let text = base;
    if (d.retryAt) {
      const s = Math.max(0, Math.ceil((d.retryAt - performance.now()) / 1000));
      text += s > 0 ? ` Retrying in ${s} s…` : ' Retrying…';
    }
    showBanner('error', title, text, d.fatal ? null : ['Retry now', () => client.retryNow()], { sticky: true });
  };
  tick();
  if (d.retryAt) retryTicker = setInterval(tick, 1000);
}

client.addEventListener('latency', (ev) => {
  latency.textContent = `${Math.max(1, Math.round(ev.detail.rttMs))} ms`;
});

client.addEventListener('welcome', (ev) => {
  const w = ev.detail;
  state.sessions += 1;
  $('server-info').textContent = `${w.server} · protocol ${w.protocol} · ${w.catalog.count} faces · session ${w.session_id}`;
  renderAlgorithms(w.algorithms);
  renderPolicies(client.policies, w.default_policy);
  setControlsEnabled(true);
  if (state.sessions > 1) {
    showBanner('info', 'Reconnected', 'The server started a new session, so the selection starts again.',
      null, { timeout: 6000 });
  } else {
    hideBanner();
  }
  // a fresh session knows nothing of the old selection: start again the way the last one started
  startSelection(state.init === 'image' && state.upload ? state.upload.bytes : null);
});

const banner = $('banner');
let bannerTimer = null;
function showBanner(kind, title, text, action = null, { timeout = 0, sticky = false } = {}) {
  clearTimeout(bannerTimer);
  banner.dataset.kind = kind;
  banner.dataset.sticky = sticky ? '1' : '';
  $('banner-title').textContent = title;
  $('banner-text').textContent = text;
  const btn = $('banner-action');
  btn.hidden = !action;
  if (action) {
    btn.textContent = action[0];
    btn.onclick = action[1];
  }
  banner.hidden = false;
  if (timeout) bannerTimer = setTimeout(hideBanner, timeout);
}
function hideBanner() {
  clearTimeout(bannerTimer);
  banner.hidden = true;
}
$('banner-close').onclick = hideBanner;

function reportError(err, what) {
  if (err instanceof ConnectionLost) return; // the status banner says it
  if (err instanceof ServerError) {
    const titles = {
      bad_field: what === 'upload' ? "That image can't be used" : 'The server rejected the request',
      too_large: what === 'upload' ? 'That image is too large' : 'Too large for the server',
      overloaded: 'The server is busy',
      not_found: 'That face is no longer on offer',
      wrong_state: 'Out of step with the server',
      unauthorized: 'The server needs a token',
      internal: 'The server failed',
    };
    showBanner('error', titles[err.code] || `Server error (${err.code})`, `${err.message} [${err.code}]`, null);
  } else {
    showBanner('error', 'Something went wrong', err && err.message ? err.message : String(err), null);
  }
}

// ------------------------------------------------------------------------------------------------
// Controls

const algoBox = $('algorithms');
function renderAlgorithms(algorithms) {
  const stored = safeStorage('get', 'omokage.algorithm');
  if (!algorithms.includes(state.algorithm)) {
    state.algorithm = algorithms.includes(stored) ? stored : algorithms.includes('pca') ? 'pca' : algorithms[0];
  }
  algoBox.replaceChildren(...algorithms.map((name) => {
    const [label, title] = ALGORITHMS[name] || [name, name];
    const b = document.createElement('button');
    b.type = 'button';
    b.setAttribute('role', 'radio');
    b.dataset.algorithm = name;
    b.textContent = label;
    b.title = title;
    b.setAttribute('aria-checked', String(name === state.algorithm));
    b.tabIndex = name === state.algorithm ? 0 : -1;
    b.onclick = () => selectAlgorithm(name);
    b.onkeydown = (e) => {
      const d = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
      if (!d) return;
      e.preventDefault();
      e.stopPropagation();
      const i = (algorithms.indexOf(name) + d + algorithms.length) % algorithms.length;
      selectAlgorithm(algorithms[i]);
      algoBox.querySelector(`[data-algorithm="${algorithms[i]}"]`).focus();
    };
    return b;
  }));
}

function selectAlgorithm(name) {
  if (name === state.algorithm) return;
  state.algorithm = name;
  safeStorage('set', 'omokage.algorithm', name);
  for (const b of algoBox.children) {
    const on = b.dataset.algorithm === name;
    b.setAttribute('aria-checked', String(on));
    b.tabIndex = on ? 0 : -1;
  }
  // switching the feature space starts the selection again, from the same image if there was one
  startSelection(state.init === 'image' && state.upload ? state.upload.bytes : null);
}

// the selection policy lives in the settings menu: it matters to few people, and changing it starts again
const policySelect = $('policy');
function renderPolicies(policies, fallback) {
  $('policy-row').hidden = policies.length === 0;
  $('policy-none').hidden = policies.length > 0;
  if (!policies.includes(state.policy)) {
    const stored = safeStorage('get', 'omokage.policy');
    state.policy = policies.includes(stored) ? stored : policies.includes(fallback) ? fallback : policies[0] || null;
  }
  policySelect.replaceChildren(...policies.map((name) => {
    const [label, title] = POLICIES[name] || [name, name];
    const o = document.createElement('option');
    o.value = name;
    o.textContent = name === fallback ? `${label} (default)` : label;
    o.title = title;
    return o;
  }));
  if (state.policy) policySelect.value = state.policy;
  describePolicy();
}

function describePolicy() {
  const [, title] = POLICIES[state.policy] || [state.policy, ''];
  $('policy-note').textContent = `${title ? `${title}. ` : ''}Changing it starts again.`;
}

policySelect.onchange = () => {
  if (policySelect.value === state.policy) return;
  state.policy = policySelect.value;
  safeStorage('set', 'omokage.policy', state.policy);
  describePolicy();
  startSelection(state.init === 'image' && state.upload ? state.upload.bytes : null);
};

function setControlsEnabled(on) {
  $('btn-random').disabled = !on;
  policySelect.disabled = !on;
  $('file').disabled = !on;
  $('btn-upload').setAttribute('aria-disabled', String(!on));
  for (const b of algoBox.children) b.disabled = !on;
  updateDecide();
}

$('btn-random').onclick = () => startSelection(null);
$('file').onchange = (e) => {
  const f = e.target.files && e.target.files[0];
  e.target.value = '';
  if (f) uploadFile(f);
};

// drop an image anywhere on the page
document.addEventListener('dragover', (e) => {
  if (![...e.dataTransfer.types].includes('Files')) return;
  e.preventDefault();
  document.body.classList.add('dropping');
});
document.addEventListener('dragleave', (e) => {
  if (e.relatedTarget === null) document.body.classList.remove('dropping');
});
document.addEventListener('drop', (e) => {
  document.body.classList.remove('dropping');
  const f = e.dataTransfer && e.dataTransfer.files[0];
  if (!f) return;
  e.preventDefault();
  uploadFile(f);
});

async function uploadFile(file) {
  if (client.state !== 'open') return;
  const limit = client.welcome.limits.max_image_bytes;
  if (file.size > limit) {
    showBanner('error', 'That image is too large',
      `${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; the server takes up to ${(limit / 1048576).toFixed(1)} MiB.`);
    return;
  }
  if (file.type && !file.type.startsWith('image/')) {
    showBanner('error', "That file isn't an image", `${file.name} is ${file.type}; choose a JPEG, PNG or WebP picture.`);
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (state.upload) URL.revokeObjectURL(state.upload.url);
  state.upload = { bytes, url: URL.createObjectURL(file), name: file.name };
  await startSelection(bytes);
}

// ------------------------------------------------------------------------------------------------
// The selection loop

async function startSelection(image) {
  if (client.state !== 'open') return;
  const seq = ++state.seq;
  state.busy = true;
  state.decided = null;
  grid.setAttribute('aria-busy', 'true');
  try {
    const reply = await client.start(state.algorithm, { image: image || undefined, policy: state.policy });
    if (seq !== state.seq) return;
    state.init = image ? 'image' : 'random';
    state.trail = [];
    renderTrail();
    dwell.reset();
    gazeDwell.reset();
    if (reply.reconstruction) {
      state.reconstruction = client.textures.put(reply.reconstruction);
    } else {
      state.reconstruction = null;
    }
    await showCandidates(reply, seq, image ? 'closest' : null);
    if (!banner.dataset.sticky && banner.dataset.kind === 'error') hideBanner();
  } catch (err) {
    if (seq === state.seq) reportError(err, image ? 'upload' : 'start');
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

async function chooseIndex(index) {
  const item = state.items[index];
  if (item) await chooseId(item.id);
}

async function chooseId(id) {
  if (state.busy || state.decided || client.state !== 'open') return;
  if (!state.items.some((i) => i.id === id)) return;
  const seq = state.seq;
  state.busy = true;
  grid.setAttribute('aria-busy', 'true');
  pressed(id);
  try {
    const reply = await client.choose(id);
    if (seq !== state.seq) return;
    const chosen = state.items.find((i) => i.id === id);
    await showCandidates(reply, seq, 'pick');
    if (seq === state.seq && chosen) {
      state.trail.push(chosen);
      renderTrail();
    }
  } catch (err) {
    if (seq === state.seq) reportError(err, 'choose');
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

/** "None of these": every face shown counts as further than the unseen; the next grid has no pick first. */
async function skipGrid() {
  if (state.busy || state.decided || client.state !== 'open' || state.items.length === 0) return;
  if (!(client.welcome && client.welcome.protocol_minor >= 1)) return; // a v1.0 server has no skip
  const seq = state.seq;
  state.busy = true;
  grid.setAttribute('aria-busy', 'true');
  try {
    const reply = await client.skip();
    if (seq !== state.seq) return;
    await showCandidates(reply, seq, null);
  } catch (err) {
    if (seq === state.seq) reportError(err, 'skip');
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

async function decideId(id, { openTab = true } = {}) {
  if (state.busy || state.decided || client.state !== 'open') return null;
  const seq = state.seq;
  state.busy = true;
  try {
    const reply = await client.decide(id);
    if (seq !== state.seq) return null;
    state.decided = reply;
    dwell.flush();
    const url = safeUrl(reply.item.url);
    if (openTab && url) window.open(url, '_blank', 'noopener');
    showDecided(reply);
    for (const fn of listeners) fn(state, 'decided');
    return reply;
  } catch (err) {
    if (seq === state.seq) reportError(err, 'decide');
    return null;
  } finally {
    if (seq === state.seq) state.busy = false;
  }
}

function decideCursor() {
  const item = state.items[state.cursor];
  if (item) decideId(item.id);
}

/** Show a `candidates` reply; `first` says what its first face is ('pick', 'closest' or null). */
async function showCandidates(reply, seq, first) {
  const items = reply.items || [];
  const textures = await client.textures.ensure(items.map((i) => i.texture));
  if (seq !== state.seq) return;
  const imgs = items.map((it) => {
    const img = new Image();
    img.alt = it.title;
    img.draggable = false;
    const tex = textures.get(it.texture);
    if (tex) {
      img.src = tex.url;
      img.width = tex.width;
      img.height = tex.height;
    }
    return img;
  });
  await Promise.all(imgs.map((img) => (img.src ? img.decode().catch(() => {}) : null)));
  if (seq !== state.seq) return;
  state.items = items;
  state.first = first;
  state.step = reply.step;
  state.servedPolicy = reply.policy || null;
  state.cursor = 0;
  dwell.setStep(reply.step);
  gazeDwell.setStep(reply.step);
  renderGrid(imgs);
  renderSource();
  for (const fn of listeners) fn(state, 'candidates');
}

// ------------------------------------------------------------------------------------------------
// Grid

const grid = $('grid');
const cards = [];
for (let i = 0; i < GRID; i++) {
  const card = document.createElement('button');
  card.type = 'button';
  card.className = 'face';
  card.dataset.index = String(i);
  card.tabIndex = -1;
  card.hidden = true;
  card.innerHTML = `<span class="frame"><span class="ph"></span><span class="num" aria-hidden="true">${i + 1}</span>`
    + '<span class="badge" aria-hidden="true"></span><span class="conf" aria-hidden="true"></span>'
    + '<span class="dwell" aria-hidden="true"></span></span>'
    + '<span class="cap" aria-hidden="true"><span class="name"></span><span class="desc"></span></span>';
  card.addEventListener('click', () => {
    state.cursor = i;
    chooseIndex(i);
  });
  card.addEventListener('pointerenter', () => {
    const it = state.items[i];
    if (it) dwell.enter(it.id);
  });
  card.addEventListener('pointerleave', () => {
    const it = state.items[i];
    if (it) dwell.leave(it.id);
    paintDwell();
  });
  card.addEventListener('focus', () => {
    if (state.cursor !== i) {
      state.cursor = i;
      renderCursor();
    }
  });
  cards.push(card);
  grid.appendChild(card);
}

function splitTitle(title) {
  const at = title.indexOf(' — ');
  return at < 0 ? [title, ''] : [title.slice(0, at), title.slice(at + 3)];
}

function renderGrid(imgs) {
  const focusInGrid = grid.contains(document.activeElement);
  state.items.forEach((it, i) => {
    const card = cards[i];
    const frame = card.firstChild;
    frame.replaceChild(imgs[i], frame.firstChild);
    const [name, desc] = splitTitle(it.title);
    card.querySelector('.name').textContent = name;
    card.querySelector('.desc').textContent = desc;
    card.dataset.id = String(it.id);
    const conf = confidence(it);
    card.title = conf ? `${it.title} (${conf} likely to be the one you want)` : it.title;
    card.hidden = false;
    const pick = i === 0 && state.first !== null;
    const yours = pick && state.first === 'pick';
    card.classList.toggle('is-pick', pick);
    card.querySelector('.badge').textContent = !pick ? '' : yours ? 'Your pick' : 'Closest';
    // below 1 % the hint says nothing (a fresh belief is flat): stay quiet until the belief has an opinion
    card.querySelector('.conf').textContent = conf && it.probability >= 0.01 ? conf : '';
    if (yours) card.setAttribute('aria-current', 'true');
    else card.removeAttribute('aria-current');
    card.classList.remove('fresh');
    void card.offsetWidth; // restart the entrance animation
    if (!yours) card.classList.add('fresh');
    card.style.setProperty('--i', String(i));
    card.style.setProperty('--dwell', '0');
    card.classList.remove('pressed');
  });
  for (let i = state.items.length; i < GRID; i++) cards[i].hidden = true;
  grid.dataset.step = String(state.step);
  $('step').innerHTML = `Step <b>${state.step}</b>`;
  $('prompt').textContent = promptText();
  renderCursor();
  if (focusInGrid) cards[0].focus({ preventScroll: true });
  // a pointer resting on a card now rests on its new face
  for (let i = 0; i < state.items.length; i++) if (cards[i].matches(':hover')) dwell.enter(state.items[i].id);
}

/** The policy's probability as a short percentage, or null when the policy keeps no belief. */
function confidence(item) {
  const p = item.probability;
  if (typeof p !== 'number' || !Number.isFinite(p)) return null;
  return p >= 0.995 ? '99%' : p < 0.01 ? '<1%' : `${Math.round(p * 100)}%`;
}

function promptText() {
  if (state.items.length === 0) return 'No faces left to show.';
  if (state.step > 1 && state.first !== 'pick') {
    return 'Nine faces you have not seen yet. Choose the closest one, or None of these again.';
  }
  if (state.step > 1) {
    return state.items.length > 1 ? 'Your pick stays first. Choose it again for more like it, or another face to steer. Decide when it is the one.'
      : 'You have seen every face in the catalog. Decide on your pick.';
  }
  if (state.init === 'image') return 'The faces nearest to your image. Choose the closest one to see eight more like it.';
  return 'Choose the face closest to the one you want: you will see eight more like it.';
}

function renderCursor() {
  cards.forEach((c, i) => {
    c.classList.toggle('is-cursor', i === state.cursor);
    c.tabIndex = i === state.cursor ? 0 : -1;
  });
  updateDecide();
}

function pressed(id) {
  const i = state.items.findIndex((it) => it.id === id);
  if (i >= 0) cards[i].classList.add('pressed');
}

function updateDecide() {
  const it = state.items[state.cursor];
  const btn = $('btn-decide');
  btn.disabled = !it || client.state !== 'open' || !!state.decided;
  // a v1.0 server has no skip (it would answer unknown_type)
  $('btn-skip').disabled = state.items.length === 0 || client.state !== 'open' || !!state.decided
    || !(client.welcome && client.welcome.protocol_minor >= 1);
  const img = $('pick-img');
  // not for the user's own pick: it is shown again but was not decided on, so the belief has moved past it and a
  // "<1%" beside "Your pick" reads as the server disagreeing; and, as on the tiles, nothing below 1 %
  const ownPick = state.cursor === 0 && state.first === 'pick';
  const conf = it && !ownPick && it.probability >= 0.01 ? confidence(it) : null;
  $('pick-conf').hidden = !conf;
  $('pick-conf').textContent = conf ? `The server's belief that this is the one: ${conf}` : '';
  if (!it) {
    $('pick-name').textContent = '–';
    $('pick-desc').textContent = '';
    img.removeAttribute('src');
    img.alt = '';
    return;
  }
  const tex = client.textures.get(it.texture);
  if (tex) img.src = tex.url;
  img.alt = it.title;
  const [name, desc] = splitTitle(it.title);
  $('pick-name').textContent = name;
  $('pick-desc').textContent = desc;
  const isPick = state.cursor === 0 && state.first === 'pick';
  $('pick-label').textContent = isPick ? 'Your pick' : `Face ${state.cursor + 1}`;
  btn.querySelector('span').textContent = `Decide on ${name}`;
  btn.setAttribute('aria-label', `Decide on ${it.title}`);
}

function renderTrail() {
  const box = $('trail');
  box.hidden = state.trail.length === 0;
  $('trail-list').replaceChildren(...state.trail.slice(-12).map((it, n, shown) => {
    const li = document.createElement('li');
    const img = new Image();
    const tex = client.textures.get(it.texture);
    if (tex) img.src = tex.url;
    img.alt = it.title;
    img.title = `Step ${state.trail.length - shown.length + n + 1}: ${it.title}`;
    li.appendChild(img);
    return li;
  }));
}

function renderSource() {
  const src = $('source');
  if (state.init === 'image' && state.upload && state.reconstruction) {
    $('upload-img').src = state.upload.url;
    $('recon-img').src = state.reconstruction.url;
    const [label] = ALGORITHMS[state.algorithm] || [state.algorithm];
    $('recon-caption').textContent = `As ${label} sees it`;
    src.hidden = false;
  } else if (state.init !== 'image') {
    src.hidden = true;
  }
  $('main').classList.toggle('with-source', !src.hidden);
}

// a thin bar under each face grows with how long the pointer rested on it (this step)
function paintDwell() {
  state.items.forEach((it, i) => {
    cards[i].style.setProperty('--dwell', String(Math.min(1, dwell.current(it.id) / 4000).toFixed(3)));
  });
}
setInterval(() => { if (dwell.active.size) paintDwell(); }, 200);
document.addEventListener('visibilitychange', () => { if (document.hidden) dwell.pauseAll(); });
window.addEventListener('blur', () => dwell.pauseAll());

// ------------------------------------------------------------------------------------------------
// Keyboard: 1-9 choose, arrows move, Enter choose, D decide

document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
  const t = e.target;
  if (t instanceof HTMLElement && t.closest('input, select, textarea, dialog[open], [role="radiogroup"]')) return;
  if ($('decided').open) return;
  if (/^[1-9]$/.test(e.key)) {
    const i = Number(e.key) - 1;
    if (i < state.items.length) {
      e.preventDefault();
      state.cursor = i;
      renderCursor();
      chooseIndex(i);
    }
    return;
  }
  const move = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
  if (move && state.items.length) {
    e.preventDefault();
    const col = state.cursor % 3;
    const row = Math.floor(state.cursor / 3);
    const ncol = Math.min(2, Math.max(0, col + move[0]));
    const nrow = Math.min(2, Math.max(0, row + move[1]));
    const next = Math.min(state.items.length - 1, nrow * 3 + ncol);
    state.cursor = next;
    renderCursor();
    if (document.activeElement === document.body || grid.contains(document.activeElement)) {
      cards[next].focus({ preventScroll: false });
    }
    return;
  }
  if (e.key === 'Enter' || e.key === ' ') {
    if (t instanceof HTMLElement && t.closest('button, a, label')) return; // their own activation
    e.preventDefault();
    chooseIndex(state.cursor);
    return;
  }
  if (e.key === 'd' || e.key === 'D') {
    e.preventDefault();
    decideCursor();
    return;
  }
  if (e.key === 'n' || e.key === 'N') {
    e.preventDefault();
    skipGrid();
  }
});

$('btn-decide').onclick = decideCursor;
$('btn-skip').onclick = skipGrid;

// ------------------------------------------------------------------------------------------------
// Decided

const decided = $('decided');
function showDecided(reply) {
  const it = reply.item;
  const tex = client.textures.get(it.texture);
  const img = $('decided-img');
  if (tex) img.src = tex.url;
  img.alt = it.title;
  $('decided-title').textContent = it.title;
  const policy = state.servedPolicy ? `, ${((POLICIES[state.servedPolicy] || [state.servedPolicy])[0]).toLowerCase()}` : '';
  $('decided-steps').textContent = `Chosen in ${reply.steps} ${reply.steps === 1 ? 'step' : 'steps'} with ${(ALGORITHMS[state.algorithm] || [state.algorithm])[0]}${policy}.`;
  const link = $('decided-link');
  const url = safeUrl(it.url);
  link.hidden = !url;
  if (url) link.href = url;
  $('decided-url').textContent = it.url;
  updateDecide();
  if (!xrActive) decided.showModal();
}
decided.addEventListener('close', () => {
  if (state.decided) startSelection(null);
});

// ------------------------------------------------------------------------------------------------
// WebXR (lazy)

let xrActive = false;
const vrPreview = params.get('vr') === 'preview';

async function setupVR() {
  const btn = $('btn-vr');
  let supported = false;
  if (navigator.xr && navigator.xr.isSessionSupported) {
    try {
      supported = await navigator.xr.isSessionSupported('immersive-vr');
    } catch {
      supported = false;
    }
  }
  if (!supported && !navigator.xr && !window.isSecureContext && /OculusBrowser|Quest/i.test(navigator.userAgent)) {
    showBanner('info', 'VR needs a secure page',
      'The headset browser offers WebXR only on https:// or http://localhost pages. Open this page through '
      + '`adb reverse tcp:PORT tcp:PORT` and http://localhost:PORT/, or serve it over https.', null);
  }
  if (!supported && !vrPreview) return;
  btn.hidden = false;
  btn.lastChild.textContent = supported ? ' Enter VR' : ' 3D preview';
  btn.onclick = () => enterVR(supported ? 'immersive' : 'preview');
}

async function enterVR(mode) {
  if (xrActive) return;
  const btn = $('btn-vr');
  btn.disabled = true;
  try {
    // ask for the session inside the click (user activation) while the three.js chunk loads
    const sessionP = mode === 'immersive'
      ? navigator.xr.requestSession('immersive-vr', { optionalFeatures: ['local-floor', 'bounded-floor', 'hand-tracking'] })
      : Promise.resolve(null);
    const [mod, session] = await Promise.all([import('./xr.js'), sessionP]);
    xrActive = true;
    document.body.classList.add('in-xr');
    await mod.startXR(xrApi, session);
  } catch (err) {
    xrActive = false;
    document.body.classList.remove('in-xr');
    showBanner('error', "Couldn't enter VR", err && err.message ? err.message : String(err));
  } finally {
    btn.disabled = false;
  }
}

const xrApi = {
  get state() { return state; },
  textures: client.textures,
  pointerDwell: dwell,
  gazeDwell,
  choose: (id) => chooseId(id),
  skip: () => skipGrid(),
  decide: (id) => decideId(id, { openTab: false }),
  restart: () => startSelection(null),
  safeUrl,
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  ended() {
    xrActive = false;
    document.body.classList.remove('in-xr');
    if (state.decided && !decided.open) decided.showModal();
  },
};

// ------------------------------------------------------------------------------------------------

/** Only http(s) product URLs are opened: a catalog's URL column must not run script in this page. */
function safeUrl(url) {
  try {
    const u = new URL(url, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

function safeStorage(op, key, value) {
  try {
    return op === 'get' ? localStorage.getItem(key) : localStorage.setItem(key, value);
  } catch {
    return null;
  }
}

// for tests and the gaze work to come
window.omokage = {
  client,
  state,
  get dwell() { return dwell.steps; },
  get gazeDwell() { return gazeDwell.steps; },
  dwellTracker: dwell,
  gazeTracker: gazeDwell,
  enterVR,
};

renderCursor();
setupVR();
client.connect();
