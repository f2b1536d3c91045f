// The omokage page: desktop grid (mouse, touch, keyboard) and, when the browser can, a WebXR mode
// whose three.js code is loaded only when the user enters VR (see xr.js).

import { CLIENT_NAME, ConnectionLost, OmokageClient, ServerError, textureBlob } from './protocol.js';
import { DwellTracker } from './dwell.js';
import { GazeSender, PointerProxy } from './gaze.js';
import { renderQuestionnaire } from './study.js';
import { SketchPad } from './sketch.js';
import { claimTab } from './tab.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const WS_URL = params.get('server') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
// The feature spaces, as a shopper would say what makes two faces alike: [label, what it compares, the technical name
// (for experts: the tabs' tooltips and the settings menu)]. A UX walkthrough found PCA, NMF, AE meant nothing to a
// shopper. The tabs keep this order (a server's unknown names follow, as it lists them, and are shown as they are)
const ALGORITHMS = {
  raw: ['Pixels', 'Compares the pictures pixel by pixel', 'raw pixels'],
  pca: ['Overall look', "Broad traits: colours, hair and the face's shape", 'PCA, principal components'],
  nmf: ['Parts', 'Faces made of similar parts: eyes, hair, outline', 'NMF, non-negative parts'],
  ae: ['Details', "A network's encoding of the face: finer than Overall look", 'AE, a convolutional autoencoder'],
  contrastive: ['Learned look', "A network trained to tell this catalog's faces apart: same character, same place",
    'contrastive'],
};
const algoLabel = (name) => (ALGORITHMS[name] || [name])[0];
/** How a feature space reads in a sentence ("by overall look"); a server's own name as it is. */
const algoPhrase = (name) => (ALGORITHMS[name] ? ALGORITHMS[name][0].toLowerCase() : name);
/** The technical name of a feature space (PCA, …), for experts. */
const algoTech = (name) => (ALGORITHMS[name] ? ALGORITHMS[name][2].split(',')[0] : name);
// names a server may offer (welcome.policies): [label, description, technical name]; an unknown name is shown as it is
const POLICIES = {
  infogain: ['Learn fastest', 'Shows the faces whose pick tells the most about the face you want', 'information gain'],
  thompson: ['Likely, with surprises', 'Likely faces more often, every face sometimes', 'Thompson sampling'],
  cover: ['Varied', 'Likely faces that differ from each other', 'cover'],
  top: ['Most likely', 'The faces most likely to be the one you want', 'top'],
  study: ['Closest to your pick', 'Your pick and its eight nearest faces (the original study)', 'nearest neighbours'],
  random: ['Random', 'Your pick and eight random faces (for comparison)', 'random'],
};
/** [label, description, technical name] of a policy; `X+gaze` (v1.2) is X that also reads where you look. */
function policyInfo(name) {
  if (POLICIES[name]) return POLICIES[name];
  const m = /^(.+)\+gaze$/.exec(name || '');
  if (m) {
    const [label, title, tech] = POLICIES[m[1]] || [m[1], m[1], m[1]];
    return [`${label}, with gaze`, `${title}; where you look counts too (head gaze in VR; on this page, where the mouse rests, as a stand-in for gaze)`,
      `${tech} + gaze`];
  }
  return [name, name, name];
}
const GRID = 9;

// Gaze (v1.2, docs/gaze.md): a browser with immersive VR sends head gaze (in VR only); any other sends where the
// mouse rests (the 2D grid, the 3D preview) as a stand-in. hello.client says which, for every connection: the
// protocol's sample `source` has no word for a proxy.
let xrSupported = false;
const gazeLabel = () => (xrSupported ? 'head' : 'pointer proxy');
const client = new OmokageClient(WS_URL, {
  token: params.get('token'),
  participant: params.get('participant') || null,
  clientName: () => `${CLIENT_NAME} (gaze: ${gazeLabel()})`,
});
// v1.7: whether this tab owns the resume token in its sessionStorage, or copied it from a live tab (tab.js): known
// before the first hello
let tab = null;
const gaze = new GazeSender(client);
const dwell = new DwellTracker();
const gazeDwell = new DwellTracker();
const listeners = new Set(); // XR mode: called with the state after each new grid
// the protocol minor of the last welcome (kept while offline, so a control the server offers stays, off, until it is
// back): v1.7 offers `back`
let serverMinor = 0;

const state = {
  algorithm: null,
  policy: null,        // one of welcome.policies (null: a v1.0 server, which has none)
  step: 0,
  stepBase: 0,         // the steps of the user's path before this selection began (a feature switch that kept the path
                       // starts a new one at step 1 on the server): the page counts stepBase + step (shownStep)
  items: [],
  cursor: 0,
  cursorMoved: false, // the user moved the highlight on this grid (arrow keys, Tab)
  skipped: false, // this grid answers the user's "None of these"
  waitPick: false, // v1.7: a grid resumed after a reload that answers a pick or None of these, the page cannot tell
                   // which: its first face is not claimed as the user's pick, and Decide waits for one
  shownAt: -Infinity, // when the grid on screen was shown (performance.now())
  init: 'random',      // how the current selection started
  first: null,         // what the grid's first face is: 'pick' (after choose), 'closest' (image start) or null
  upload: null,        // {bytes, url, name} of the image the selection started from
  reconstruction: null,
  trail: [],           // the faces chosen so far in this selection (kept across a re-projection)
  trailMarks: [],      // {at, label}: a feature switch that kept the path, before trail[at]
  history: [],         // v1.7 back: the grids before the one on screen in this selection, oldest first, each
                       // {step, ids, first, skipped, waitPick, trail: the path's length then}: `back` restores them
  available: [],       // the algorithms the server can start with now
  training: [],        // v1.2: [{algorithm, progress, eta_s?}] still being fitted (shown as disabled tabs)
  switchTo: null,      // the algorithm the switch question (mid-selection) is about; 'random': Random start's question;
                       // 'upload': an image's (the file waits in pendingFile until the answer)
  pendingFile: null,
  _busy: false,
  // a request of the selection is out: the Back control follows every change (it is off while one is in flight)
  get busy() { return this._busy; },
  set busy(on) {
    this._busy = on;
    updateBack();
    renderRating();
  },
  decided: null,
  seq: 0,              // bumps on every start: replies to abandoned requests are dropped
  sessions: 0,
  study: null,         // v1.2: welcome.study when this page is a study participant's
  trial: null,         // v1.2: candidates.trial of the trial on screen
  view: 'grid',        // 'grid', 'sketch' (v1.3: drawing), 'questionnaire' (a study's) or 'done' (the study is over)
  needImage: false,    // a study trial that starts from an image is waiting for one
  sketchSource: null,  // v1.3: {drawing, preview} (blob URLs) of the drawing the selection started from
  _resuming: false,
  // v1.7: the welcome said resumed: the selection's grid follows (a candidates without rid). Until it is shown, the grid
  // on screen may not be the server's: no press acts (a click can run between the two messages)
  get resuming() { return this._resuming; },
  set resuming(on) {
    this._resuming = on;
    updateBack();
  },
  freshStart: false,   // v1.7: the user asked for a new selection here after theirs went on in another tab
  // v1.1: every rating given in this selection, in order, {id, rating 1..5, step}: the server keeps them as evidence,
  // each face's latest counting; a back forgets those given on the grids it leaves, so a face rated again on a later
  // grid has its earlier rating back, as on the server
  ratingLog: [],
  /** Each rated face's rating now: id -> {rating, step}. */
  get ratings() {
    return new Map(this.ratingLog.map((r) => [r.id, { rating: r.rating, step: r.step }]));
  },
  inflight: null,      // the request out for the selection ({kind: 'choose'|'skip'|'start', ...}); a lost connection
                       // leaves it here, so a resumed grid that already answers it is read as its answer
};

// ------------------------------------------------------------------------------------------------
// Connection status, latency, banner

const conn = $('conn');
const connText = $('conn-text');
const latency = $('latency');

client.addEventListener('status', (ev) => {
  const d = ev.detail;
  conn.dataset.state = d.state;
  if (d.state === 'offline') noFaces.failed = d.fatal ? 'refused' : 'unreachable';
  if (d.state === 'connecting') {
    connText.textContent = d.everOpened ? 'Reconnecting…' : 'Connecting…';
    if (countdownTimer) setCountdown(-1); // the retry has begun: the banner says so until its result replaces it
  } else if (d.state === 'open') {
    connText.textContent = 'Connected';
  } else {
    connText.textContent = 'Offline';
    latency.textContent = '';
    setControlsEnabled(false);
    offlineBanner(d);
  }
  renderNoFaces();
});

// No faces on screen and no server to get them from (the page opened while the server is down, or refused it): the
// banner is the one message, saying what happened and what to do; the grid's place says only where the faces will be,
// and the rest (the path, the side panel's face and prompt, the key help, the step) stays out of the way; the controls
// show off (a UX walkthrough found "Connecting to the server…" beside "Can't reach the server", and an empty face ready
// to be decided on)
const noFaces = { failed: null }; // since the last welcome: null, 'unreachable' or 'refused'
function renderNoFaces() {
  const on = state.items.length === 0 && client.state !== 'open' && !state.study;
  document.body.classList.toggle('no-faces', on);
  $('grid-empty').hidden = !on;
  if (!on) return;
  const text = noFaces.failed === 'refused' ? 'No faces yet: see the message above.'
    : noFaces.failed ? 'The faces appear here once the page reaches the server.' : 'Connecting to the server…';
  if ($('grid-empty-text').textContent !== text) $('grid-empty-text').textContent = text;
}

function offlineBanner(d) {
  if (d.fatal && isStudyRefusal(d.code, d.message)) {
    showJoin(d.message);
    return;
  }
  if (d.superseded) {
    // v1.7: another tab or window presented this page's resume token and goes on with the selection: this page does
    // not reconnect on its own (it would start another selection over the user's head)
    showBanner('info', 'This selection went on elsewhere',
      'Another tab or window took it over, where it carries on. Continue there, or start a new selection here.',
      ['Start a new one here', () => { state.freshStart = true; client.retryNow(); }], { sticky: true });
    return;
  }
  let title;
  let text;
  let details;
  if (d.fatal) {
    ({ title, text } = describeError(d.code, 'hello', d.message));
    details = `${WS_URL}: hello refused: ${d.reason}`;
  } else {
    let where = WS_URL;
    try {
      where = new URL(WS_URL).host;
    } catch { /* keep the URL as it is */ }
    // plain words for whoever uses the page; the commands are for whoever runs the server, under Details
    title = d.everOpened ? 'Lost the connection to the server' : "Can't reach the server";
    text = d.everOpened
      ? 'Your choices are not sent until it is back; the page reconnects on its own.'
      : `Nothing answers at ${where}. Check the page's address, or ask whoever runs the server to start it.`;
    details = `${WS_URL}: ${d.reason || 'no connection'}\n`
      + (d.everOpened ? 'Is omokage serve (or omokage demo) still running?' : 'Start it with: omokage demo (or omokage serve)');
  }
  showBanner('error', title, text, d.fatal ? null : ['Retry now', () => client.retryNow()],
    { sticky: true, details, retryAt: d.retryAt || 0 });
}

client.addEventListener('latency', (ev) => {
  latency.textContent = `${Math.max(1, Math.round(ev.detail.rttMs))} ms`;
});

client.addEventListener('welcome', (ev) => {
  const w = ev.detail;
  state.sessions += 1;
  noFaces.failed = null;
  renderNoFaces();
  serverMinor = Number.isInteger(w.protocol_minor) ? w.protocol_minor : 0;
  gaze.configure(w);
  $('server-info').textContent = `${w.server} · protocol ${w.protocol} · ${w.catalog.count} faces · session ${w.session_id}`;
  $('join').hidden = true;
  const gazeNote = $('gaze-note');
  gazeNote.hidden = !w.gaze;
  gazeNote.textContent = xrSupported ? 'Gaze: your head direction in VR is sent to the server (it never chooses for you).'
    : 'Gaze: no eye or head tracking here, so where the mouse rests is sent instead, marked as a stand-in.';
  if (w.study) {
    sketchWelcome();
    enterStudy(w.study);
    idealWelcome();
    setControlsEnabled(true);
    if (state.sessions > 1) showBanner('info', 'Reconnected', 'You continue where you were.', null, { timeout: 6000 });
    else hideBanner();
    studyNext();
    return;
  }
  leaveStudy();
  sketchWelcome();
  idealWelcome();
  renderAlgorithms(w.algorithms, client.training, { pickDefault: true });
  hideSwitch();
  renderPolicies(client.policies, w.default_policy);
  setControlsEnabled(true);
  const again = state.sessions > 1;
  if (w.resumed === true) {
    // v1.7: the selection goes on on this connection; its grid follows at once (resumeGrid). Nothing starts again
    state.resuming = true;
    if (again) showBanner('info', 'Reconnected', 'You continue where you were.', null, { timeout: 6000 });
    else showBanner('info', 'Welcome back', 'Your selection continues where you were.', null, { timeout: 6000 });
    // a grid that never comes (it always follows at once) must not leave the page waiting
    setTimeout(() => {
      if (state.resuming && client.welcome === w) {
        state.resuming = false;
        startSelection(null);
      }
    }, 8000);
    return;
  }
  state.resuming = false;
  if (again && state.decided) {
    // the selection was decided (a server keeps no decided selection): the decision stays on screen, and a new one
    // starts only when the user asks for it (Start again)
    state.inflight = null;
    showBanner('info', 'Reconnected', 'Your decision is kept.', null, { timeout: 6000 });
    return;
  }
  const kept = again ? null : loadView();
  if (state.freshStart) {
    state.freshStart = false; // asked for (after the selection went on elsewhere): nothing to announce
    hideBanner();
  } else if (again) {
    // the picks so far are gone: this stays until the user has read it and closed it
    showBanner('info', 'Reconnected', 'The server started a new session, so the selection starts again.');
  } else if (w.resumed === false && kept && !kept.decided && kept.step > 0) {
    // this tab was reloaded mid-selection, and the server no longer has it (restarted, or too long ago)
    showBanner('info', 'Your selection could not be continued',
      'The server no longer has it (it was restarted, or too much time has passed), so a new one starts.');
  } else if (tab && tab.copy && state.sessions === 1) {
    // a duplicated tab: the tab it copies keeps its selection (and its token); this one starts its own
    showBanner('info', 'A new selection in this tab',
      'This tab is a copy of another one, which goes on with its selection: this one starts its own.', null, { timeout: 8000 });
  } else {
    hideBanner();
  }
  state.inflight = null;
  // a fresh session knows nothing of the old selection (nor of the drawing a sketch start came from): start again the
  // way the last one started, or at random
  startSelection(state.init === 'image' && state.upload ? state.upload.bytes : null);
});

// v1.7: a resumed selection's grid (a candidates without rid, right after a welcome with resumed: true)
client.addEventListener('candidates', (ev) => {
  if (!state.resuming || state.study) {
    console.info('omokage: ignoring a candidates that answers nothing', ev.detail);
    return;
  }
  resumeGrid(ev.detail);
});

// v1.2: the server tells, on its own, which models are ready and how far the others are; anything else it may
// send unasked (a newer server's additions) is not this page's business
client.addEventListener('message', (ev) => {
  const m = ev.detail;
  if (m && m.type === 'models' && m.rid == null && Array.isArray(m.algorithms)) {
    renderAlgorithms(m.algorithms, Array.isArray(m.training) ? m.training : []);
    return;
  }
  if (m && m.type === 'error' && m.rid == null) {
    // only gaze.batch and layout go without a rid: this is about them (samples dropped, over the rate)
    gaze.serverError(m);
    console.warn(`omokage: the server dropped gaze samples: ${m.message} [${m.code}]`);
    return;
  }
  console.info('omokage: ignoring an unsolicited server message', m && m.type, m);
});

// the banner (and the skip link's target) sit below the sticky header, whose height depends on the screen
const header = document.querySelector('.top');
const measureHeader = () => document.documentElement.style.setProperty('--header-h', `${header.offsetHeight}px`);
if (window.ResizeObserver) new ResizeObserver(measureHeader).observe(header);
measureHeader();

const banner = $('banner');
let countdownTimer = null;
/** A banner; `retryAt` (performance.now() time) adds a countdown to it, updated outside the alert's text. */
function showBanner(kind, title, text, action = null, { timeout = 0, sticky = false, details = '', retryAt = 0 } = {}) {
  banner.dataset.kind = kind;
  banner.dataset.sticky = sticky ? '1' : '';
  $('banner-title').textContent = title;
  $('banner-text').textContent = text;
  // the technical detail (the server's own words and the error code) is for developers: folded away
  const box = $('banner-details');
  if ($('banner-detail').textContent !== details) {
    $('banner-detail').textContent = details;
    box.open = false;
  }
  box.hidden = !details;
  const btn = $('banner-action');
  btn.hidden = !action;
  if (action) {
    btn.textContent = action[0];
    btn.onclick = action[1];
  }
  banner.hidden = false;
  // short news ("Reconnected") used to go by itself after `timeout` ms: the faces below then jumped up under a
  // pointer about to click. It now goes with the user's next pick, None of these, Back or Decide (or its ×)
  banner.dataset.transient = timeout ? '1' : '';
  setCountdown(retryAt);
}
/** The user acted: short news (shown with a `timeout`) has been read, and goes while the grid changes anyway. */
function settleNews() {
  if (!banner.hidden && banner.dataset.transient === '1') hideBanner();
}
/** The banner's countdown to the next connection attempt (`retryAt`, a performance.now() time; 0: none; -1: under
 * way). Its own element, outside the alert: an alert whose text changed every second would be read out every second. */
function setCountdown(retryAt) {
  clearInterval(countdownTimer);
  countdownTimer = null;
  const el = $('banner-retry');
  el.hidden = !retryAt;
  if (!retryAt) {
    el.textContent = '';
    return;
  }
  const tick = () => {
    const s = retryAt < 0 ? 0 : Math.max(0, Math.ceil((retryAt - performance.now()) / 1000));
    el.textContent = s > 0 ? `Trying again in ${s} s…` : 'Trying again…';
    if (s === 0) {
      clearInterval(countdownTimer);
      countdownTimer = null;
    }
  };
  tick();
  if (el.textContent !== 'Trying again…') countdownTimer = setInterval(tick, 1000);
}
function hideBanner() {
  setCountdown(0);
  banner.hidden = true;
}
$('banner-close').onclick = hideBanner;

/**
 * Human wording for an `error` reply: what happened and what to do. Every code of docs/protocol.md (`error`)
 * has one; `what` is what the page was doing ('upload', 'reproject', 'start', 'choose', 'skip', 'decide',
 * 'hello', 'sketch', 'ideal', ...), `message` the server's own text (shown only under "Details").
 */
function describeError(code, what, message = '') {
  const image = what === 'upload' || what === 'reproject';
  const sk = (client.welcome && client.welcome.sketch) || {};
  const mb = (n) => `${(n / 1048576).toFixed(n < 10485760 ? 1 : 0)} MB`;
  const limits = (client.welcome && client.welcome.limits) || {};
  switch (code) {
    case 'bad_frame':
      return { title: 'The page and the server misunderstood each other',
        text: 'The server could not read a message from this page. Reload the page; if it keeps happening, the page and the server are probably from different omokage versions.' };
    case 'unknown_type':
      if (what === 'back') {
        return { title: "This server can't go back",
          text: 'It is older than this page (protocol 1.6 or earlier) and does not know Back. Carry on choosing; whoever runs it can update omokage.' };
      }
      return { title: "This server doesn't offer that",
        text: 'The server is older than this page and does not know this request. Carry on without it, or update omokage on the server.' };
    case 'bad_field':
      if (what === 'upload') {
        return { title: "That image can't be used",
          text: "The server couldn't read it as a picture: it may be damaged or in a format it doesn't take. Try a JPEG, PNG or WebP photo." };
      }
      if (what === 'reproject') {
        return { title: "Couldn't continue from your pick in that feature space",
          text: 'The server could not place your pick there. Choose Start fresh instead, or stay in the current feature space.' };
      }
      if (what === 'hello' && /participant/i.test(message)) {
        return { title: 'This server runs no study',
          text: 'It does not take participant codes. Continue without one, or check the page address you were given.' };
      }
      if (what === 'sketch') {
        return { title: "The server couldn't use that stroke",
          text: 'It was left out; the rest of your drawing is unchanged. Draw it again; if it keeps happening, report it with the details below.' };
      }
      if (what === 'hello') {
        return { title: 'The page and the server are from different omokage versions',
          text: 'Reload the page (it may be an old copy); if that does not help, update omokage so the server and the page match.' };
      }
      return { title: 'The server turned that request down',
        text: 'Something in it was not what the server expects. Reload the page and try again; if it keeps happening, report it with the details below.' };
    case 'too_large':
      if (image) {
        const px = limits.max_image_pixels ? ` and ${Math.round(limits.max_image_pixels / 1e6)} megapixels` : '';
        return { title: 'That image is too large',
          text: `Try a smaller picture${limits.max_image_bytes ? ` (up to ${mb(limits.max_image_bytes)}${px})` : ''}: a cropped photo of the face is enough.` };
      }
      if (what === 'sketch') {
        const most = sk.max_strokes ? ` (up to ${sk.max_strokes} strokes${sk.max_points_per_stroke ? ` of up to ${sk.max_points_per_stroke} points` : ''})` : '';
        return { title: 'The drawing is full',
          text: `A drawing holds only so much${most}. Undo a few strokes or Clear to go on drawing.` };
      }
      return { title: 'That request was too large for the server', text: 'Try again with a smaller image or fewer faces.' };
    case 'unauthorized':
      if (/participant code is not in the study/i.test(message)) {
        return { title: 'That participant code is not in this study',
          text: 'Check the code you were given (letters, digits, - and _) and enter it again.' };
      }
      if (/runs a user study/i.test(message)) {
        return { title: 'This server runs a study', text: 'Enter the participant code you were given.' };
      }
      if (/retry in/i.test(message)) {
        return { title: 'Too many wrong access tokens',
          text: 'The server refuses this computer for a minute after repeated wrong tokens. Wait, then open the page with the right ?token=YOUR_TOKEN.' };
      }
      return { title: 'The server needs an access token',
        text: 'Open the page with ?token=YOUR_TOKEN added to its address (ask whoever runs the server for the token).' };
    case 'not_found':
      if (what === 'ideal') {
        return { title: 'That face is not part of this selection',
          text: 'The picture is made near a face you were shown in this selection. Choose a face, then try again.' };
      }
      if (what === 'choose' || what === 'decide') {
        return { title: 'That face is no longer on offer',
          text: 'The grid changed before your click arrived. Choose from the faces shown now.' };
      }
      return { title: "The server doesn't have that any more",
        text: 'It may have been restarted with another catalog. Reload the page to start again.' };
    case 'wrong_state':
      if (what === 'sketch' && /no sketch model/i.test(message)) {
        return { title: "This server can't search by drawing",
          text: 'It has no sketch model (whoever runs it can fit one). Choose from the faces instead.' };
      }
      if (what === 'sketch') {
        return { title: 'The drawing and the server got out of step',
          text: 'The page has sent your drawing again: carry on. If the faces beside it stop following, press Clear.' };
      }
      if (what === 'ideal' && /cannot generate|no PCA/i.test(message)) {
        return { title: "This server can't make that picture",
          text: 'It has no PCA model to generate faces with (whoever runs it can fit one). Choose from the faces instead.' };
      }
      if (what === 'ideal' && /already being generated/i.test(message)) {
        return { title: 'The picture is still being made',
          text: 'It will appear in a moment; carry on choosing meanwhile.' };
      }
      if (what === 'ideal') {
        return { title: 'There is no selection to go on from',
          text: 'What you seem to want needs a selection in progress: choose a face (or press Random start), then try again.' };
      }
      if (what === 'sketch-start') {
        return { title: 'Draw something first',
          text: 'Pick from these needs faces found from your drawing: draw a few lines, wait for the faces to appear beside it, then pick.' };
      }
      if (what === 'back' && /first grid/i.test(message)) {
        return { title: 'There is nothing to go back to',
          text: 'These are the first faces of this selection. Choose the closest one, or None of these.' };
      }
      if (what === 'back' && /decided/i.test(message)) {
        return { title: 'You have already decided',
          text: 'A decided selection cannot go back. Press Start again for a new one.' };
      }
      if (what === 'back' && /study/i.test(message)) {
        return { title: "A study trial can't go back",
          text: 'Its steps are what the study measures: choose from the faces shown, or decide.' };
      }
      if (what === 'back') {
        return { title: 'There is no selection to go back in',
          text: 'Press Random start to begin one (or reload the page).' };
      }
      if (state.study) {
        return { title: 'This page is out of step with the study',
          text: 'Perhaps your code was entered on another page too. Reload this page: the study continues where you were.' };
      }
      if (what === 'skip' && state.step > 0) {
        return { title: 'You have seen every face',
          text: 'There are no faces left that you have not seen. Choose one from this grid, or decide.' };
      }
      return { title: 'The page and the server got out of step',
        text: 'Press Random start to begin a new selection (or reload the page).' };
    case 'overloaded':
      if (what === 'ideal') {
        return { title: 'The server is busy', text: 'It is making other pictures right now. Wait a moment, then press What you seem to want again.' };
      }
      return { title: 'The server is busy', text: 'Too many requests at once. Wait a moment and try again.' };
    case 'internal':
      return { title: 'The server ran into a problem',
        text: "It's not something you did, and the connection still works: try again. If it keeps happening, tell whoever runs the server (the details below help)." };
    case 'calibration_failed': // v1.4: this page does not calibrate (no eye tracker), but a headset on the same code may
      return { title: "The eye-tracking calibration didn't work",
        text: 'The previous calibration is still in use. Look steadily at each dot while it is shown, then calibrate again.' };
    default:
      return { title: 'The server reported a problem',
        text: 'Try again; if it keeps happening, reload the page or report it with the details below.' };
  }
}

function reportError(err, what) {
  if (err instanceof ConnectionLost) return; // the status banner says it
  const raw = err && err.message ? err.message : String(err);
  if (err instanceof ServerError) {
    const { title, text } = describeError(err.code, what, raw);
    showBanner('error', title, text, null, { details: `${what}: ${raw} [${err.code}]` });
  } else if (/^no reply to /.test(raw)) {
    showBanner('error', "The server didn't answer in time",
      'It may be busy or stuck. Try again; if nothing happens, reload the page.', null, { details: `${what}: ${raw}` });
  } else {
    showBanner('error', 'Something went wrong', 'Try again; if it keeps happening, reload the page.', null,
      { details: `${what}: ${raw}` });
  }
}

// ------------------------------------------------------------------------------------------------
// Controls

const algoBox = $('algorithms');
const ALGO_ORDER = Object.keys(ALGORITHMS);

/**
 * The feature tabs: one per ready algorithm, and a disabled "AE · training 40%" tab per model still being
 * fitted (v1.2). Updated in place (a focused tab keeps its focus) and never restarts the selection;
 * `pickDefault` (on welcome) chooses the algorithm when the current one is not offered.
 */
function renderAlgorithms(algorithms, training = [], { pickDefault = false } = {}) {
  const ready = algorithms.filter((a) => typeof a === 'string');
  const busy = training.filter((t) => t && typeof t.algorithm === 'string' && !ready.includes(t.algorithm));
  state.available = ready;
  state.training = busy;
  if (pickDefault && !ready.includes(state.algorithm)) {
    const stored = safeStorage('get', 'omokage.algorithm');
    state.algorithm = ready.includes(stored) ? stored : ready.includes('pca') ? 'pca' : ready[0] || null;
  }
  const rank = (n) => { const i = ALGO_ORDER.indexOf(n); return i < 0 ? ALGO_ORDER.length : i; };
  const names = [...ready, ...busy.map((t) => t.algorithm)];
  names.sort((a, b) => rank(a) - rank(b)); // stable: unknown names keep the server's order
  const have = new Map([...algoBox.children].map((b) => [b.dataset.algorithm, b]));
  const buttons = names.map((name) => {
    let b = have.get(name);
    if (!b) {
      b = document.createElement('button');
      b.type = 'button';
      b.setAttribute('role', 'radio');
      b.dataset.algorithm = name;
      b.onclick = () => selectAlgorithm(name);
      b.onkeydown = (e) => {
        const d = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
        if (!d) return;
        e.preventDefault();
        e.stopPropagation();
        const order = [...algoBox.children].filter((x) => !x.disabled).map((x) => x.dataset.algorithm);
        if (order.length === 0) return;
        const at = order.indexOf(name);
        const next = order[((at < 0 ? 0 : at + d) + order.length) % order.length];
        algoBox.querySelector(`[data-algorithm="${next}"]`).focus();
        selectAlgorithm(next);
      };
    }
    const t = busy.find((x) => x.algorithm === name);
    const [label, what, tech] = ALGORITHMS[name] || [name, name, ''];
    const title = tech ? `${what} (${tech})` : what;
    if (t) {
      const pct = Math.max(0, Math.min(99, Math.floor((Number(t.progress) || 0) * 100)));
      const eta = Number.isFinite(t.eta_s) && t.eta_s > 0 ? `, about ${formatEta(t.eta_s)} left` : '';
      b.textContent = `${label} · training ${pct}%`;
      b.title = `${title}. Still being trained (${pct}%${eta}): it can be chosen when it is ready.`;
      b.dataset.training = String(pct);
    } else {
      b.textContent = label;
      b.title = title;
      delete b.dataset.training;
    }
    return b;
  });
  // reorder only when the order changed: moving a focused tab would drop its focus
  const same = buttons.length === algoBox.children.length && buttons.every((b, i) => algoBox.children[i] === b);
  if (!same) algoBox.replaceChildren(...buttons);
  $('algo-group').hidden = buttons.length === 0; // no label over an empty box (before the first welcome)
  paintAlgorithms();
  renderTechNote();
  if (switchingSpace() && !ready.includes(state.switchTo)) hideSwitch();
}

function formatEta(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** aria-checked, roving tabindex and enabled state of the tabs. */
function paintAlgorithms() {
  const on = client.state === 'open';
  const tabs = [...algoBox.children];
  const current = tabs.some((b) => b.dataset.algorithm === state.algorithm && !b.dataset.training);
  tabs.forEach((b, i) => {
    const name = b.dataset.algorithm;
    const training = b.dataset.training !== undefined;
    b.disabled = !on || training;
    b.setAttribute('aria-checked', String(name === state.algorithm));
    b.classList.toggle('pending', name === state.switchTo);
    b.tabIndex = (current ? name === state.algorithm : i === 0) && !training ? 0 : -1;
  });
}

/** The step of the user's path that a grid of this selection at `step` is (the server counts from this selection's
 * start; a feature switch that keeps the path keeps counting where it was). */
function shownStep(step = state.step) {
  return state.stepBase + step;
}

/** The switch question is about a feature space (not Random start's or an image's). */
function switchingSpace() {
  return !!state.switchTo && state.switchTo !== 'random' && state.switchTo !== 'upload';
}

/** A selection with something to lose: picks made, or grids moved past. */
function hasProgress() {
  return !state.decided && (state.trail.length > 0 || state.step > 1);
}

/** The face the user last picked in this selection (what a switch re-projects), or null. */
function currentPick() {
  if (state.first === 'pick' && state.items[0]) return state.items[0];
  return state.trail.length ? state.trail[state.trail.length - 1] : null;
}

function selectAlgorithm(name) {
  if (!state.available.includes(name)) return; // still training
  if (name === state.algorithm) {
    hideSwitch();
    return;
  }
  if (hasProgress()) {
    askSwitch(name);
    return;
  }
  switchAlgorithm(name, 'fresh');
}

/** Inline question (not window.confirm): switching mid-selection keeps the pick or starts fresh; cancel keeps all. */
function askSwitch(name) {
  state.switchTo = name;
  state.pendingFile = null;
  const pick = currentPick();
  const label = algoBox.querySelector(`[data-algorithm="${name}"]`) ? algoLabel(name) : name;
  const fromImage = state.init === 'image' && state.upload && !state.upload.pick;
  $('switch-title').textContent = `Match by ${label} instead?`;
  $('switch-text').textContent = pick
    ? `You are at step ${shownStep()}. Continue from your pick (${splitTitle(pick.title)[0]}) with the faces nearest to it by ${algoPhrase(name)}, or start fresh.`
    : `You are at step ${shownStep()}. Switching starts a new selection, matched by ${algoPhrase(name)}.`;
  $('switch-cancel').textContent = 'Cancel';
  const keep = $('switch-keep');
  keep.hidden = !pick;
  keep.textContent = 'Continue from your pick';
  $('switch-fresh').textContent = fromImage ? 'Start again from your image'
    : sketchRestartable() ? 'Start again from your drawing' : 'Start fresh';
  $('switch').hidden = false;
  paintAlgorithms();
}

function hideSwitch() {
  if (!state.switchTo && $('switch').hidden) return;
  const hadFocus = $('switch').contains(document.activeElement);
  state.switchTo = null;
  state.pendingFile = null; // an image asked about and not taken: forgotten
  $('switch').hidden = true;
  paintAlgorithms();
  if (hadFocus) {
    const tab = algoBox.querySelector('[tabindex="0"]');
    if (tab) tab.focus();
  }
}

/** Switch the feature space: 'fresh' starts again (from the uploaded image, if any); 'pick' re-projects the pick. */
async function switchAlgorithm(name, how) {
  const previous = state.algorithm;
  const pick = how === 'pick' ? currentPick() : null;
  state.switchTo = null;
  $('switch').hidden = true;
  state.algorithm = name;
  safeStorage('set', 'omokage.algorithm', name);
  paintAlgorithms();
  let ok;
  if (pick) {
    // an image start from the pick's own texture: the nearest faces to it in the new space, the path kept
    const tex = client.textures.get(pick.texture);
    const bytes = tex ? new Uint8Array(await tex.blob.arrayBuffer()) : null;
    ok = bytes ? await startSelection(bytes, { from: { pick, url: tex.url }, keepTrail: true, mark: algoLabel(name) }) : false;
  } else if (sketchRestartable()) {
    ok = await startSelection(null, { sketch: true });
  } else {
    ok = await startSelection(state.init === 'image' && state.upload && !state.upload.pick ? state.upload.bytes : null);
  }
  if (!ok && state.algorithm === name && previous) {
    // the server kept the old selection (or none came): the tabs say what is on screen
    state.algorithm = previous;
    paintAlgorithms();
  }
}

$('switch-keep').onclick = () => { if (switchingSpace()) switchAlgorithm(state.switchTo, 'pick'); };
$('switch-fresh').onclick = () => {
  if (state.switchTo === 'random') { // asked and answered: the start goes ahead, the focus where it was asked from
    $('btn-random').focus();
    $('btn-random').click();
  } else if (state.switchTo === 'upload') {
    const file = state.pendingFile;
    hideSwitch();
    $('file').focus();
    if (file) uploadFile(file, { asked: true });
  }
  else if (state.switchTo) switchAlgorithm(state.switchTo, 'fresh');
};
$('switch-cancel').onclick = () => hideSwitch();

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
    const [label, title, tech] = policyInfo(name);
    const o = document.createElement('option');
    o.value = name;
    o.textContent = name === fallback ? `${label} (default)` : label;
    o.title = `${title} (${tech})`;
    return o;
  }));
  if (state.policy) policySelect.value = state.policy;
  describePolicy();
}

function describePolicy() {
  const [, title] = state.policy ? policyInfo(state.policy) : [null, ''];
  $('policy-note').textContent = `${title ? `${title}. ` : ''}Changing it starts again.`;
  renderTechNote();
}

/** The settings menu's line for experts: the technical names behind the plain ones. */
function renderTechNote() {
  const spaces = [...algoBox.children].map((b) => b.dataset.algorithm).filter((n) => ALGORITHMS[n])
    .map((n) => `${algoLabel(n)} is ${algoTech(n)}`);
  const policy = state.policy ? `the choice of faces is ${policyInfo(state.policy)[2]}` : '';
  const parts = [spaces.join(', '), policy].filter(Boolean);
  $('tech-note').hidden = parts.length === 0;
  $('tech-note').textContent = parts.length ? `For experts: ${parts.join('; ')}.` : '';
}

policySelect.onchange = () => {
  if (policySelect.value === state.policy) return;
  state.policy = policySelect.value;
  safeStorage('set', 'omokage.policy', state.policy);
  describePolicy();
  if (sketchRestartable()) startSelection(null, { sketch: true });
  else startSelection(state.init === 'image' && state.upload ? state.upload.bytes : null);
};

function setControlsEnabled(on) {
  // offline, the faces stay on screen (dimmed) but a press cannot reach the server: it says so (chooseId)
  grid.classList.toggle('offline', !on);
  grid.setAttribute('aria-disabled', String(!on));
  if (on) clearNotice();
  $('btn-random').disabled = !on;
  policySelect.disabled = !on;
  $('file').disabled = !on;
  $('btn-upload').setAttribute('aria-disabled', String(!on));
  for (const id of ['switch-keep', 'switch-fresh']) $(id).disabled = !on;
  $('btn-draw').disabled = !on;
  for (const id of ['sketch-undo', 'sketch-clear']) $(id).disabled = !on;
  paintAlgorithms();
  renderSketchStatus();
  updateDecide();
}

$('btn-random').onclick = () => {
  if (hasProgress() && state.switchTo !== 'random') {
    // one click away from losing every pick (Back cannot bring a selection back): asked, as a switch of space is; from
    // the Draw view too (the selection is still there, a click on Back to the faces away)
    askRestart();
    return;
  }
  hideSwitch();
  leaveSketch();
  startSelection(null);
};

/** Random start mid-selection: the switch question's box, with Start new / Keep this one. */
function askRestart() {
  state.switchTo = 'random';
  state.pendingFile = null;
  $('switch-title').textContent = 'Start a new selection?';
  $('switch-text').textContent = `You are at step ${shownStep()}. A random start leaves this selection, and Back cannot `
    + 'bring it back.';
  $('switch-keep').hidden = true;
  $('switch-fresh').textContent = 'Start a new one';
  $('switch-cancel').textContent = 'Keep this one';
  $('switch').hidden = false;
  $('switch-fresh').focus();
}
/** An image (the file picker or a drop) mid-selection: asked as Random start is; the file waits for the answer. */
function askUpload(file) {
  state.switchTo = 'upload';
  state.pendingFile = file;
  $('switch-title').textContent = 'Start again from this image?';
  $('switch-text').textContent = `You are at step ${shownStep()}. Starting from ${file.name || 'the image'} leaves this `
    + 'selection, and Back cannot bring it back.';
  $('switch-keep').hidden = true;
  $('switch-fresh').textContent = 'Start from the image';
  $('switch-cancel').textContent = 'Keep this one';
  $('switch').hidden = false;
  paintAlgorithms();
  $('switch-fresh').focus();
}
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

/** Start from an image file; mid-selection (`asked` false) the user is asked first (askUpload). */
async function uploadFile(file, { asked = false } = {}) {
  if (client.state !== 'open') return;
  if (state.study && !state.needImage) return; // a study takes an image only when its trial starts from one
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
  if (!asked && !state.study && hasProgress()) {
    // one drop away from losing every pick, as Random start is: asked first (a UX walkthrough); on the Draw view too
    askUpload(file);
    return;
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  leaveSketch();
  if (state.study) {
    await studyNext(bytes);
    return;
  }
  if (state.upload && !state.upload.pick) URL.revokeObjectURL(state.upload.url); // a pick's URL is the cache's
  state.upload = { bytes, url: URL.createObjectURL(file), name: file.name };
  await startSelection(bytes);
}

// ------------------------------------------------------------------------------------------------
// The selection loop

/**
 * Start a new selection (random, or from `image`); resolves true when its first grid is shown.
 * `from` {pick, url}: the image is that face's texture (a feature switch that keeps the pick), and with
 * `keepTrail` the path so far stays, marked `mark` where the new feature space begins. `sketch` (v1.3): start from the
 * drawing (its latest result's faces first; the drawing stays evidence), `image` is then null.
 */
async function startSelection(image, { from = null, keepTrail = false, mark = null, sketch = false } = {}) {
  if (client.state !== 'open') return false;
  if (state.study) return false; // the study decides what starts
  const seq = ++state.seq;
  const fromStep = shownStep(); // where the user's path is: a switch that keeps it counts on from there
  state.busy = true;
  state.resuming = false; // the user's own start wins over a resumed grid still on its way
  state.decided = null;
  updateDecide();
  hideSwitch();
  grid.setAttribute('aria-busy', 'true');
  const out = state.inflight = { kind: 'start', init: sketch ? 'sketch' : image ? 'image' : 'random' };
  try {
    gaze.flush();
    const reply = await client.start(state.algorithm, { image: image || undefined, policy: state.policy,
      init: sketch ? 'sketch' : null });
    settle(out);
    if (seq !== state.seq) return false;
    state.init = sketch ? 'sketch' : image ? 'image' : 'random';
    state.history = []; // a new selection: `back` goes no further than its first grid
    state.ratingLog = []; // the server's new selection starts without them (a feature switch too)
    if (from) {
      if (state.upload && !state.upload.pick) URL.revokeObjectURL(state.upload.url);
      state.upload = { bytes: image, url: from.url, name: from.pick.title, pick: from.pick };
    }
    // the new selection's first grid takes the place of the one the user was at: the count goes on from there
    state.stepBase = keepTrail && state.trail.length ? Math.max(0, fromStep - 1) : 0;
    if (keepTrail && state.trail.length) {
      const last = state.trailMarks[state.trailMarks.length - 1];
      if (mark && last && last.at === state.trail.length) last.label = mark; // switched again before a pick
      else if (mark) state.trailMarks.push({ at: state.trail.length, label: mark });
    } else {
      state.trail = [];
      state.trailMarks = [];
    }
    renderTrail();
    dwell.reset();
    gazeDwell.reset();
    if (reply.reconstruction) {
      state.reconstruction = client.textures.put(reply.reconstruction);
    } else {
      state.reconstruction = null;
    }
    // a re-projected pick that comes back nearest (as it should) stays "Your pick"
    const same = from && reply.items && reply.items[0] && reply.items[0].id === from.pick.id;
    await showCandidates(reply, seq, same ? 'pick' : image || sketch ? 'closest' : null);
    if (!banner.dataset.sticky && banner.dataset.kind === 'error') hideBanner();
    return seq === state.seq;
  } catch (err) {
    settle(out, err);
    if (seq === state.seq) reportError(err, from ? 'reproject' : image ? 'upload' : sketch ? 'sketch-start' : 'start');
    return false;
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

/** A request of the selection was answered (or failed): it is out no more. A lost connection keeps it, so that a
 * resumed grid can be read as its answer (the server may have taken it before the link died). */
function settle(out, err = null) {
  if (state.inflight === out && !(err instanceof ConnectionLost)) state.inflight = null;
}

// v1.7: what the page knows of the grid on screen, in this tab's sessionStorage, so that after a reload the resumed
// grid is shown as it was (its pick, "None of these", how the selection started, the path of picks)
const VIEW_KEY = 'omokage.view';

function saveView() {
  if (state.study) return; // a study resumes by the participant's code, from the server's store
  const view = { server: WS_URL, step: state.step, ids: state.items.map((i) => i.id), first: state.first,
    skipped: state.skipped, waitPick: state.waitPick, init: state.init, trail: state.trail, marks: state.trailMarks,
    base: state.stepBase, history: state.history, decided: !!state.decided, pending: pendingOf(state.inflight),
    cursor: state.cursor, cursorMoved: state.cursorMoved,
    ratings: state.ratingLog.map((r) => [r.id, r.rating, r.step]) };
  try {
    sessionStorage.setItem(VIEW_KEY, JSON.stringify(view));
  } catch { /* storage off or full: a reload resumes the grid without its path */ }
}

/** The request of the grid on screen that is out (a choose, None of these, a back), as the tab's view keeps it: after a
 * reload, a resumed grid one step on (or back) is read as its answer, which the server took before the page went. */
function pendingOf(out) {
  if (!out || out.step !== state.step) return null;
  if (out.kind === 'choose') return { kind: 'choose', step: out.step, item: out.item };
  return out.kind === 'skip' || out.kind === 'back' ? { kind: out.kind, step: out.step } : null;
}

function loadView() {
  try {
    const v = JSON.parse(sessionStorage.getItem(VIEW_KEY) || 'null');
    return v && v.server === WS_URL && Array.isArray(v.ids) && Array.isArray(v.trail) ? v : null;
  } catch {
    return null;
  }
}

const sameIds = (a, b) => a.length === b.length && a.every((id, i) => id === b[i]);

/**
 * v1.7: show a resumed selection's grid. It is the grid that was on screen (this page's, or before a reload the one
 * kept in sessionStorage): everything stays as it was, the highlight too. Or the server had already taken the
 * request that was out when the link died (a choose, None of these, a start, a back): the grid is its answer; after a
 * reload, the tab's view says which request was out (the grid one step on, or its last history entry: a back). Where
 * the page cannot tell a pick from None of these, or kept nothing, no face is claimed as the user's pick.
 */
async function resumeGrid(reply) {
  state.resuming = false;
  const seq = ++state.seq; // whatever was still being shown from the old connection is not shown now
  state.busy = true;
  grid.setAttribute('aria-busy', 'true');
  const items = Array.isArray(reply.items) ? reply.items : [];
  const ids = items.map((i) => i.id);
  const out = state.inflight;
  state.inflight = null;
  const onScreen = state.items.length > 0;
  const known = onScreen ? { step: state.step, ids: state.items.map((i) => i.id), first: state.first,
    skipped: state.skipped, waitPick: state.waitPick, init: state.init, trail: state.trail, marks: state.trailMarks,
    base: state.stepBase, history: state.history }
    : loadView();
  // after a reload: the grid before the saved one (a back the server took), and the request that was out then
  const kept = !onScreen && known && Array.isArray(known.history) ? known : null;
  const top = kept && kept.history[kept.history.length - 1];
  const pending = kept && kept.pending && kept.pending.step === kept.step ? kept.pending : null;
  let first = null;
  let skipped = false;
  let waitPick = false;
  let cursor = null;
  let init = state.init;
  let trail = state.trail;
  let marks = state.trailMarks;
  let history = state.history;
  let base = state.stepBase;
  let back = false;
  const keptBase = (v) => (Number.isInteger(v.base) && v.base > 0 ? v.base : 0);
  if (known && known.step === reply.step && sameIds(known.ids, ids)) {
    ({ first, skipped, init, trail, marks, history } = known);
    waitPick = !!known.waitPick;
    base = keptBase(known);
    if (onScreen) cursor = { at: state.cursor, moved: state.cursorMoved };
    else if (Number.isInteger(known.cursor) && known.cursor >= 0) {
      cursor = { at: known.cursor, moved: !!known.cursorMoved }; // after a reload: the highlight the user left there
    }
  } else if (out && out.kind === 'choose' && reply.step === out.step + 1 && out.item && ids[0] === out.item.id) {
    first = 'pick';
    trail = [...state.trail, out.item];
    history = [...state.history, out.from];
  } else if (out && out.kind === 'skip' && reply.step === out.step + 1) {
    skipped = true;
    history = [...state.history, out.from];
  } else if (out && out.kind === 'back' && reply.step === out.step - 1) {
    ({ first, skipped, trail, history } = backPath(reply)); // the server had taken the back: the grid before, as kept
    back = true;
  } else if (top && Array.isArray(top.ids) && top.step === reply.step && sameIds(top.ids, ids) && (!pending || pending.kind === 'back')) {
    // a reload while a back was out, which the server took: the grid before, as the tab kept it
    ({ first, skipped } = top);
    waitPick = !!top.waitPick;
    init = kept.init;
    trail = kept.trail.slice(0, top.trail);
    marks = kept.marks;
    base = keptBase(kept);
    history = kept.history.slice(0, -1);
    back = true;
  } else if (kept && reply.step === kept.step + 1 && (!pending || pending.kind !== 'back')) {
    // a reload while a pick or None of these was out, which the server took: the grid is its answer, after the path kept
    init = kept.init;
    trail = kept.trail;
    marks = kept.marks;
    base = keptBase(kept);
    history = [...kept.history, { step: kept.step, ids: kept.ids, first: kept.first, skipped: !!kept.skipped,
      waitPick: !!kept.waitPick, trail: kept.trail.length }];
    if (pending && pending.kind === 'choose' && pending.item && ids[0] === pending.item.id) {
      first = 'pick';
      trail = [...kept.trail, pending.item];
    } else if (pending && pending.kind === 'skip') {
      skipped = true;
    } else {
      waitPick = true; // which it answered is not known: no face is claimed as the user's pick
    }
  } else if (reply.step === 1) {
    init = reply.reconstruction ? 'image' : out && out.kind === 'start' ? out.init : 'random';
    first = init === 'random' ? null : 'closest';
    trail = [];
    marks = [];
    history = [];
    base = 0;
  } else if (onScreen) {
    first = 'pick'; // a later grid most often follows a pick: its first face is it, and Decide offers it
    history = []; // the grids before it are not known: a back reads them from the grid that returns (backPath)
  } else {
    // a reload that kept nothing this grid follows from: no face is claimed as the user's pick (after None of these
    // none is), and Decide waits for one; a back reads the grids before it from the grid that returns (backPath)
    waitPick = true;
    trail = [];
    marks = [];
    history = [];
    base = 0;
  }
  state.decided = null; // a decided selection is never resumed
  // the ratings the server kept with the selection: this page's, or after a reload the tab's (none when the grid
  // answers a start the server took: a new selection), less those on grids a back it took has left
  if (!onScreen) {
    const saved = known && Array.isArray(known.ratings) ? known.ratings : [];
    state.ratingLog = saved.filter((r) => Array.isArray(r) && r.length === 3 && r.every(Number.isInteger))
      .map(([id, rating, step]) => ({ id, rating, step }));
  }
  if (out && out.kind === 'start' && reply.step === 1) state.ratingLog = [];
  keepRatingsUpTo(reply.step);
  state.init = init;
  state.trail = Array.isArray(trail) ? trail : [];
  state.trailMarks = Array.isArray(marks) ? marks : [];
  state.history = Array.isArray(history) ? history : [];
  state.stepBase = base;
  if (init !== 'image') state.reconstruction = null;
  if (reply.reconstruction) state.reconstruction = client.textures.put(reply.reconstruction);
  // the tabs and the settings menu say what the resumed selection is (not what this page would start with)
  if (reply.algorithm && reply.algorithm !== state.algorithm) {
    hideSwitch();
    state.algorithm = reply.algorithm;
    paintAlgorithms();
  }
  if (reply.policy && client.policies.includes(reply.policy) && reply.policy !== state.policy) {
    state.policy = reply.policy;
    policySelect.value = reply.policy;
    describePolicy();
  }
  try {
    // a reload's path of picks: their pictures come like the grid's
    const hashes = state.trail.map((i) => i.texture).filter((h) => typeof h === 'string' && !client.textures.get(h));
    if (hashes.length) await client.textures.ensure(hashes).catch(() => {});
    if (seq !== state.seq) return;
    if (!onScreen) {
      dwell.reset();
      gazeDwell.reset();
    }
    renderTrail();
    await showCandidates(reply, seq, first, { skipped, waitPick, cursor, back });
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
  if (cannotAct()) return;
  if (!state.items.some((i) => i.id === id)) return;
  const seq = state.seq;
  state.busy = true;
  grid.setAttribute('aria-busy', 'true');
  pressed(id);
  const chosen = state.items.find((i) => i.id === id);
  settleNews();
  const out = state.inflight = { kind: 'choose', step: state.step, item: chosen, from: gridEntry() };
  saveView(); // a reload before the answer reads the grid that follows as its answer
  try {
    gaze.flush(); // the grid's gaze goes ahead of the pick that closes it
    const reply = await client.choose(id);
    settle(out);
    if (seq !== state.seq) return;
    const path = { trail: [...state.trail, chosen], history: [...state.history, out.from] };
    await showCandidates(reply, seq, 'pick', { path });
  } catch (err) {
    settle(out, err);
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
  if (cannotAct() || state.items.length === 0) return;
  if (!(client.welcome && client.welcome.protocol_minor >= 1)) return; // a v1.0 server has no skip
  const seq = state.seq;
  state.busy = true;
  grid.setAttribute('aria-busy', 'true');
  settleNews();
  const out = state.inflight = { kind: 'skip', step: state.step, from: gridEntry() };
  saveView();
  try {
    gaze.flush();
    const reply = await client.skip();
    settle(out);
    if (seq !== state.seq) return;
    const path = { trail: state.trail, history: [...state.history, out.from] };
    await showCandidates(reply, seq, null, { skipped: true, path });
  } catch (err) {
    settle(out, err);
    if (seq === state.seq) reportError(err, 'skip');
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

/** The grid on screen as this selection's history keeps it: what a `back` from the next grid returns to. */
function gridEntry() {
  return { step: state.step, ids: state.items.map((i) => i.id), first: state.first, skipped: state.skipped,
    waitPick: state.waitPick, trail: state.trail.length };
}

/**
 * v1.7 `back`: what the grid it returns to was, from this selection's history: its first face (the pick, the closest
 * to a picture or drawing, or none), whether it answered None of these, and the path of picks then. A grid the page did
 * not keep (after a resumed grid it could not place) is read from the grid itself and the path.
 */
function backPath(reply) {
  const ids = (Array.isArray(reply.items) ? reply.items : []).map((i) => i.id);
  const h = state.history;
  const top = h[h.length - 1];
  if (top && top.step === reply.step && sameIds(top.ids, ids)) {
    return { first: top.first, skipped: top.skipped, waitPick: !!top.waitPick, trail: state.trail.slice(0, top.trail),
      history: h.slice(0, -1) };
  }
  let trail = state.trail;
  const last = trail[trail.length - 1];
  // the grid left answered a pick when its first face is the path's last: that pick is undone
  if (state.first === 'pick' && last && state.items[0] && last.id === state.items[0].id) trail = trail.slice(0, -1);
  let first = null;
  let skipped = false;
  if (reply.step === 1) {
    // the selection's first grid: the path as it was when it started (kept across a feature switch, up to its mark)
    const mark = state.trailMarks[state.trailMarks.length - 1];
    trail = trail.slice(0, mark ? mark.at : 0);
    const pick = state.init === 'image' && state.upload && state.upload.pick;
    first = pick && ids[0] === pick.id ? 'pick' : state.init === 'random' ? null : 'closest';
  } else if (trail.length && ids[0] === trail[trail.length - 1].id) {
    first = 'pick'; // a grid after a pick shows it first; one after None of these holds only faces not seen before
  } else {
    skipped = true;
  }
  return { first, skipped, trail, history: [] };
}

/** The server takes `back` (v1.7) and this is no study (its steps are what it measures): the control is shown. */
function backOffered() {
  return serverMinor >= 7 && !state.study;
}

// why Back cannot act: [a few words for its label, the sentence its tooltip (and, on the first grid, a press) says]
const BACK_WHY = {
  offline: ['offline', 'Offline: the page reconnects on its own; then you can go back.'],
  decided: ['you have decided', 'You have decided. Press Start again for a new selection.'],
  first: ['these are the first faces', 'These are the first faces of this selection: there is nothing to go back to.'],
  busy: ['wait for the faces', ''],
};

/** Why Back cannot act now: a key of BACK_WHY, or null when it can (the VR scene asks every frame: no allocation). */
function backBlocked() {
  if (client.state !== 'open') return 'offline';
  if (state.decided) return 'decided';
  if (state.resuming) return 'busy'; // the resumed grid is on its way: the one on screen may be a step off
  if (state.items.length === 0 || state.step <= 1) return 'first';
  if (state.busy) return 'busy';
  return null;
}

function backWhy() {
  const k = backBlocked();
  return k ? BACK_WHY[k] : null;
}

/** The Back control: shown where the server takes `back`, off (aria-disabled: a press says why) where it cannot act. */
function updateBack() {
  const btn = $('btn-back');
  const offered = backOffered();
  btn.hidden = !offered || !!state.decided; // after a decision, Start again takes its place (as for None of these)
  $('keys-back').hidden = !offered;
  const why = offered ? backWhy() : ['not offered', ''];
  btn.setAttribute('aria-disabled', String(!!why));
  btn.setAttribute('aria-label', why ? `Back (${why[0]})`
    : `Back to step ${shownStep(state.step - 1)}: undo your ${state.skipped ? 'None of these' : state.waitPick ? 'last step' : 'last pick'}`);
  btn.title = why && why[1] ? why[1] : 'Undo your last pick or None of these: the faces before it come back (B)';
}

/** The VR scene's Back: 'hidden', 'off' or 'on' (read every frame: no allocation). */
function backState() {
  if (!backOffered()) return 'hidden';
  return backBlocked() || state.view !== 'grid' ? 'off' : 'on';
}

/**
 * v1.7 `back` (the control, B, the VR scene's Back): undo the last pick or None of these. The grid before it comes back
 * as it was (the same faces, its step, its first face, the path of picks then); `force` sends it even where the control
 * is off (tests: the server's wrong_state). Resolves true when the grid is shown.
 */
async function goBack({ force = false } = {}) {
  if (!force) {
    if (!backOffered() || state.view !== 'grid' || cannotAct()) return false;
    if (state.step <= 1) {
      announce(backWhy()[1]);
      return false;
    }
  }
  if (client.state !== 'open') return false;
  const seq = state.seq;
  const pick = state.first === 'pick' && state.items[0] ? splitTitle(state.items[0].title)[0] : null;
  const undone = state.skipped ? 'None of these' : pick ? `your pick of ${pick}` : 'your last step';
  state.busy = true;
  grid.setAttribute('aria-busy', 'true');
  settleNews();
  const out = state.inflight = { kind: 'back', step: state.step };
  saveView();
  try {
    gaze.flush(); // the samples of the grid it leaves go ahead of it (the server then forgets them with it)
    const reply = await client.back();
    settle(out);
    if (seq !== state.seq) return false;
    const path = backPath(reply);
    await showCandidates(reply, seq, path.first, { skipped: path.skipped, waitPick: !!path.waitPick, path, back: true });
    if (seq !== state.seq) return false;
    announce(`Back at step ${shownStep()}: ${undone} is undone.`);
    return true;
  } catch (err) {
    settle(out, err);
    if (seq === state.seq) reportError(err, 'back');
    return false;
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

async function decideId(id, { openTab = !state.study } = {}) {
  if (state.busy || state.resuming || state.decided || client.state !== 'open') return null;
  const seq = state.seq;
  settleNews();
  state.busy = true;
  try {
    gaze.flush();
    const reply = await client.decide(id);
    if (seq !== state.seq) return null;
    state.decided = reply;
    saveView();
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

/** Decide (the button or D) on the highlighted face; when it cannot, the notice under the grid says why. */
function decideCursor() {
  if (cannotAct()) return;
  const item = state.items[state.cursor];
  if (!item) return;
  if (awaitingPick()) {
    announce(window.matchMedia('(hover: none)').matches ? 'Choose a face first: tap the one closest to what you want.'
      : 'Choose a face first, or move the highlight onto one with the arrow keys.');
    return;
  }
  decideId(item.id);
}

/**
 * Whether a press on the grid (choose, None of these, Decide) cannot act now; where the user could not tell why, the
 * notice under the grid says it (offline, already decided). A pick in flight is a moment: nothing to say.
 */
function cannotAct() {
  if (client.state !== 'open') {
    if (state.items.length) announce("Offline: your choice wasn't sent; the page reconnects on its own.");
    return true;
  }
  if (state.decided) {
    const name = splitTitle(state.decided.item.title)[0];
    announce(state.study ? `You have decided on ${name}. Press Continue to go on.`
      : `You have decided on ${name}. Press Start again for a new selection.`);
    return true;
  }
  // a resumed selection's grid is on its way (v1.7): a press against the grid on screen could reach the server a step
  // off from it; it comes at once, so nothing to say
  return state.busy || state.resuming;
}

/**
 * No face on the grid is the user's yet: after "None of these", and on the first grid of a random start (its first
 * face is just the one the server listed first). Decide waits until they choose one (it becomes their pick) or move the
 * highlight onto one; until then no face is highlighted. An image or drawing start's first face is the closest to the
 * user's picture: it is offered at once.
 */
function awaitingPick() {
  if (state.cursorMoved || state.items.length === 0) return false;
  return state.skipped || state.waitPick || (state.step === 1 && state.first === null && state.init === 'random');
}

/** Show a `candidates` reply; `first` says what its first face is ('pick', 'closest' or null); `skipped`: it answers
 * "None of these"; `waitPick`: it answers one of the two, the page cannot tell which (Decide waits); `cursor` {at, moved}: the highlight to keep (a resumed grid that is the one on screen); `path`
 * {trail, history}: the path of picks and the grids before this one, set with it (so the tab's view is never half
 * updated); `back`: it is an earlier grid again (v1.7), looked at afresh. */
async function showCandidates(reply, seq, first, { skipped = false, waitPick = false, cursor = null, path = null,
  back = false } = {}) {
  const items = reply.items || [];
  let textures;
  try {
    textures = await client.textures.ensure(items.map((i) => i.texture));
  } catch (err) {
    // the server has moved on to this grid: show it (a picture that did not come stays blank, its title shown) rather
    // than keep the old grid, whose faces the server would no longer take
    textures = new Map(items.map((it) => [it.texture, client.textures.get(it.texture)]));
    if (seq === state.seq) reportError(err, 'textures');
  }
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
  const keep = cursor && cursor.at < items.length;
  state.cursor = keep ? cursor.at : 0;
  state.cursorMoved = keep ? cursor.moved : false;
  state.skipped = skipped;
  state.waitPick = waitPick && first !== 'pick';
  state.shownAt = performance.now();
  if (path) {
    state.trail = path.trail;
    state.history = path.history;
  }
  if (back) {
    keepRatingsUpTo(reply.step); // the server forgot those given on the grids it left
    // the dwell on the grid left and on this one's first look are history the server forgot too
    dwell.rewind(reply.step);
    gazeDwell.rewind(reply.step);
  }
  dwell.setStep(reply.step);
  gazeDwell.setStep(reply.step);
  renderGrid(imgs, { still: !!cursor });
  renderSource();
  if (path) renderTrail();
  saveView();
  if (idealView.seq !== seq) {
    // the panel belonged to an earlier selection
    if (idealView.open) closeIdeal();
    clearIdeal();
  } else {
    for (const m of [idealView.made, idealView.asked]) if (m) m.low = Math.min(m.low, reply.step);
    renderIdealCaption();
  }
  updateIdealButton();
  if (pointerProxy) pointerProxy.gridShown();
  for (const fn of listeners) fn(state, 'candidates');
}

// ------------------------------------------------------------------------------------------------
// Grid

const grid = $('grid');
const cards = [];

// the notice under the grid (a polite live region): why a press did nothing
const notice = $('notice');
let noticeTimer = null;
function announce(text) {
  clearTimeout(noticeTimer);
  notice.textContent = ''; // emptied first, so the same words again are read again
  noticeTimer = setTimeout(() => {
    notice.textContent = text;
    noticeTimer = setTimeout(clearNotice, 8000);
  }, 50);
}
function clearNotice() {
  clearTimeout(noticeTimer);
  noticeTimer = null;
  if (notice.textContent) notice.textContent = '';
}
notice.addEventListener('click', clearNotice);
for (let i = 0; i < GRID; i++) {
  const card = document.createElement('button');
  card.type = 'button';
  card.className = 'face';
  card.dataset.index = String(i);
  card.tabIndex = -1;
  card.hidden = true;
  card.innerHTML = `<span class="frame"><span class="ph"></span><span class="num" aria-hidden="true">${i + 1}</span>`
    + '<span class="badge" aria-hidden="true"></span><span class="conf" aria-hidden="true"></span>'
    + '<span class="visually-hidden sr-conf"></span>'
    + '<span class="dwell" aria-hidden="true"></span></span>'
    + '<span class="cap" aria-hidden="true"><span class="name"></span><span class="desc"></span></span>';
  let pressedAt = -Infinity;
  card.addEventListener('pointerdown', () => { pressedAt = performance.now(); });
  card.addEventListener('click', (e) => {
    // the second click of a double click, or a press that began on the grid this one replaced: the face under the
    // pointer now is one the user has not seen yet (detail 0: a key or a script, which aim at what is shown)
    if (e.detail > 1 || (e.detail === 1 && pressedAt < state.shownAt)) return;
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
    // a card the user moved to (Tab, a click) is highlighted, also where no face was highlighted yet
    if (state.cursor !== i || awaitingPick()) {
      state.cursor = i;
      state.cursorMoved = true;
      renderCursor();
      saveView(); // a reload keeps the highlight
    }
  });
  cards.push(card);
  grid.appendChild(card);
}

function splitTitle(title) {
  const at = title.indexOf(' — ');
  return at < 0 ? [title, ''] : [title.slice(0, at), title.slice(at + 3)];
}

/** `still`: the faces are those already on screen (a resumed grid): no entrance animation. */
function renderGrid(imgs, { still = false } = {}) {
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
    const shownConf = conf && it.probability >= 0.01 ? conf : '';
    card.hidden = false;
    const pick = i === 0 && state.first !== null;
    const yours = pick && state.first === 'pick';
    card.classList.toggle('is-pick', pick);
    card.querySelector('.badge').textContent = !pick ? '' : yours ? 'Your pick' : 'Closest';
    // below 1 % the hint says nothing (a fresh belief is flat): stay quiet until the belief has an opinion
    // what the bare number is: its tooltip, and for a screen reader a sentence in the card's name (a UX walkthrough)
    const confEl = card.querySelector('.conf');
    confEl.textContent = shownConf;
    confEl.title = shownConf ? `${shownConf} likely to be the face you want, from your picks so far` : '';
    card.querySelector('.sr-conf').textContent = shownConf ? `, ${shownConf} likely to be the one you want` : '';
    if (yours) card.setAttribute('aria-current', 'true');
    else card.removeAttribute('aria-current');
    card.classList.remove('fresh');
    if (!still) {
      void card.offsetWidth; // restart the entrance animation
      if (!yours) card.classList.add('fresh');
    }
    card.style.setProperty('--i', String(i));
    card.style.setProperty('--dwell', '0');
    card.classList.remove('pressed');
  });
  for (let i = state.items.length; i < GRID; i++) cards[i].hidden = true;
  grid.dataset.step = String(state.step);
  $('rate-note').dataset.id = ''; // a new grid: the note says where the panel's face stands, not what was just sent
  renderNoFaces();
  $('step').innerHTML = `Step <b>${shownStep()}</b>`;
  // after a feature switch that kept the path, the count goes on; the tooltip says where the new space began
  $('step').title = state.stepBase ? `Step ${shownStep()} of your path; step ${state.step} since you switched to `
    + `matching by ${algoPhrase(state.algorithm)}` : '';
  $('prompt').textContent = promptText();
  $('instr').textContent = shortPrompt();
  renderCursor();
  // the focus stays in the grid: on the highlighted face (the first), or where no face is highlighted yet, on the grid
  if (focusInGrid) (awaitingPick() ? grid : cards[state.cursor]).focus({ preventScroll: true });
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
  if (state.waitPick) return 'Choose the face closest to the one you want for more like it, or None of these.';
  if (state.step > 1 && state.first !== 'pick') {
    return 'Nine faces you have not seen yet. Choose the closest one, or None of these again.';
  }
  if (state.step > 1) {
    return state.items.length > 1 ? 'Your pick stays first. Choose it again for more like it, or another face to steer. Decide when it is the one.'
      : 'You have seen every face in the catalog. Decide on your pick.';
  }
  if (state.init === 'image' && state.upload && state.upload.pick) {
    return `The faces nearest to your pick by ${algoPhrase(state.algorithm)}. Choose the closest one to see eight more like it.`;
  }
  if (state.init === 'image') return 'The faces nearest to your image. Choose the closest one to see eight more like it.';
  if (state.init === 'sketch') return 'The faces your drawing fits best. Choose the closest one to see eight more like it.';
  return 'Choose the face closest to the one you want: you will see eight more like it.';
}

/** One line above the grid (on small screens, where the side panel's prompt is not shown). */
function shortPrompt() {
  if (state.items.length === 0) return 'No faces left to show.';
  if (state.waitPick) return 'Tap the closest face, or None of these.';
  if (state.step > 1 && state.first !== 'pick') return 'New faces: tap the closest, or None of these.';
  if (state.step > 1) return 'Tap a face for more like it, or Decide.';
  return 'Tap the face closest to the one you want.';
}

function renderCursor() {
  const none = awaitingPick(); // no highlight until the user moves it (Tab still reaches the grid's first face)
  cards.forEach((c, i) => {
    c.classList.toggle('is-cursor', i === state.cursor && !none);
    c.tabIndex = i === state.cursor ? 0 : -1;
  });
  clearNotice(); // what it said was about the grid as it was
  updateDecide();
}

function pressed(id) {
  const i = state.items.findIndex((it) => it.id === id);
  if (i >= 0) cards[i].classList.add('pressed');
}

function updateDecide() {
  const it = state.items[state.cursor];
  const btn = $('btn-decide');
  const waiting = awaitingPick();
  // aria-disabled, not disabled: a press still reaches decideCursor, which says why nothing happens
  btn.setAttribute('aria-disabled', String(!it || waiting || client.state !== 'open' || !!state.decided));
  // a v1.0 server has no skip (it would answer unknown_type)
  $('btn-skip').disabled = state.items.length === 0 || client.state !== 'open' || !!state.decided
    || !(client.welcome && client.welcome.protocol_minor >= 1);
  updateIdealButton();
  updateBack();
  if (renderDecidedSide()) return;
  const img = $('pick-img');
  // not for the user's own pick: it is shown again but was not decided on, so the belief has moved past it and a
  // "<1%" beside "Your pick" reads as the server disagreeing; and, as on the tiles, nothing below 1 %
  const ownPick = state.cursor === 0 && state.first === 'pick';
  // and not while the panel waits for a pick ("No pick on these yet"): no face is on it to have a belief about
  const conf = it && !waiting && !ownPick && it.probability >= 0.01 ? confidence(it) : null;
  $('pick-conf').hidden = !conf;
  $('pick-conf').textContent = conf ? `Chance it's the one you want: ${conf}` : '';
  $('pick-conf').title = conf ? 'How likely this face is the one you want, from your picks so far' : '';
  renderRating();
  if (!it || waiting) {
    $('pick-label').textContent = !waiting ? $('pick-label').textContent
      : state.skipped ? 'No pick on these yet' : 'No pick yet';
    $('pick-name').textContent = '–';
    // one line, as a face's description is: a longer hint here pushed Decide and None of these down after None of
    // these, and a second press on the same spot hit the hint (a UX walkthrough); the prompt above says the rest
    $('pick-desc').textContent = waiting ? 'Choose the closest face.' : '';
    img.removeAttribute('src');
    img.alt = '';
    btn.querySelector('span').textContent = 'Decide';
    btn.setAttribute('aria-label', 'Decide (choose a face first)');
    btn.removeAttribute('title');
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
  btn.title = `Decide on ${it.title}`; // where the label is ellipsised (a phone), the whole title
}

// ------------------------------------------------------------------------------------------------
// Rating (v1.1 `rate`): how close the face on the panel is to what the user wants. Evidence for the server's belief
// (an ordinal model of what each star says: docs/preference-model.md); the grid stays, the next one takes it in.

const RATING_WORDS = ['Not at all', 'A little', 'Somewhat', 'Close', 'Exactly it'];
const stars = $('stars');
stars.replaceChildren(...RATING_WORDS.map((words, i) => {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'star';
  b.setAttribute('role', 'radio');
  b.setAttribute('aria-checked', 'false');
  b.setAttribute('aria-label', `${i + 1} of 5: ${words}`);
  b.title = `${i + 1} of 5: ${words}`;
  b.dataset.rating = String(i + 1);
  b.textContent = '★';
  b.tabIndex = -1;
  b.onclick = () => rateShown(i + 1);
  b.onkeydown = starKeys;
  return b;
}));

/**
 * The stars' own keys: arrows move up and down the scale without wrapping round (5 → 1 would send a 1), Home / End
 * go to its ends, and a digit 1-5 gives that rating (it would otherwise choose a face: the grid's shortcut).
 */
function starKeys(e) {
  const now = Number(e.currentTarget.dataset.rating);
  const to = { ArrowRight: now + 1, ArrowUp: now + 1, ArrowLeft: now - 1, ArrowDown: now - 1, Home: 1, End: 5 }[e.key]
    ?? (/^[1-5]$/.test(e.key) ? Number(e.key) : null);
  if (to === null && !/^[6-9]$/.test(e.key)) return;
  e.preventDefault();
  e.stopPropagation();
  if (to === null) return; // 6-9: no such rating, and no face chosen from the stars either
  const r = Math.min(5, Math.max(1, to));
  stars.children[r - 1].focus();
  rateShown(r);
}

/**
 * The face the rating row is about: the panel's, while it shows one the user may still rate, and only under a policy
 * that keeps a belief (its faces come with probabilities): `study` and `random` ignore ratings.
 */
function ratable() {
  const it = state.items[state.cursor];
  const offered = !!(client.welcome && client.welcome.protocol_minor >= 1) && client.state === 'open';
  const heard = state.items.some((i) => typeof i.probability === 'number');
  return it && offered && heard && !awaitingPick() && !state.decided && !state.study && state.view === 'grid'
    ? it : null;
}

function renderRating() {
  const it = ratable();
  $('rate').classList.toggle('off', !it);
  // a server without `rate` (1.0): a phone keeps no empty line for the stars (beside the grid the line stays)
  $('rate').classList.toggle('unoffered', !!client.welcome && !(client.welcome.protocol_minor >= 1));
  if (!it) return;
  const isPick = state.cursor === 0 && state.first === 'pick';
  $('rate-face').textContent = isPick ? 'your pick' : splitTitle(it.title)[0];
  // while a pick, None of these or Back is out, a star would reach the server after it, on a grid the page has not
  // shown yet: the stars wait for the answer
  $('rate').classList.toggle('waiting', state.busy);
  const r = ratingOf(it.id);
  const value = r ? r.rating : 0;
  [...stars.children].forEach((b, i) => {
    b.classList.toggle('on', i < value);
    b.setAttribute('aria-checked', String(i + 1 === value));
    b.tabIndex = (value ? i + 1 === value : i === 0) ? 0 : -1; // one stop in the tab order, as a radio group has
  });
  const note = $('rate-note');
  if (note.dataset.id !== String(it.id)) {
    note.dataset.id = String(it.id);
    note.textContent = r ? `You rated it ${r.rating} of 5.` : '';
  }
}

async function rateShown(rating) {
  const it = ratable();
  if (!it || state.busy || state.resuming) return;
  const before = ratingOf(it.id);
  if (before && before.rating === rating) return;
  const seq = state.seq;
  const entry = { id: it.id, rating, step: state.step };
  // one entry per face and grid: a re-rating on the same grid replaces it (a back never splits the two)
  const replaced = state.ratingLog.filter((r) => r.id === it.id && r.step === state.step);
  state.ratingLog = state.ratingLog.filter((r) => !replaced.includes(r));
  state.ratingLog.push(entry);
  $('rate-note').dataset.id = String(it.id);
  $('rate-note').textContent = `Rated ${rating} of 5 (${RATING_WORDS[rating - 1].toLowerCase()}): the next faces take it into account.`;
  renderRating();
  saveView();
  try {
    await client.rate(it.id, rating);
  } catch (err) {
    if (seq !== state.seq) return; // a new selection: the rating went with the old one
    const at = state.ratingLog.indexOf(entry); // the server kept what the face had before
    if (at >= 0) state.ratingLog.splice(at, 1, ...replaced);
    $('rate-note').textContent = '';
    renderRating();
    saveView();
    reportError(err, 'rate');
  }
}

/** The face's rating now ({rating, step}: its latest), or undefined. */
function ratingOf(id) {
  for (let i = state.ratingLog.length - 1; i >= 0; i--) if (state.ratingLog[i].id === id) return state.ratingLog[i];
  return undefined;
}

/** A selection's ratings as the server keeps them after a grid at `step` is shown: a back forgets later ones. */
function keepRatingsUpTo(step) {
  state.ratingLog = state.ratingLog.filter((r) => r.step <= step);
}

/**
 * After a decision the side panel shows it (also once its dialog is closed): the face, its product page and the way on
 * (Start again; in a study, Continue), instead of Decide and None of these. Returns whether a decision is shown.
 */
function renderDecidedSide() {
  const d = state.decided;
  const url = d && !state.study ? safeUrl(d.item.url) : null;
  for (const id of ['btn-decide', 'decide-hint', 'side-row']) $(id).hidden = !!d;
  $('decided-open').hidden = !url;
  if (url) $('decided-open').href = url;
  $('btn-again').hidden = !d;
  $('btn-again').textContent = state.study ? 'Continue' : 'Start again';
  if (!d && grid.classList.contains('is-decided')) { // the decision is over: the grid's own words again
    $('prompt').textContent = promptText();
    $('instr').textContent = shortPrompt();
  }
  grid.classList.toggle('is-decided', !!d);
  cards.forEach((c, i) => c.classList.toggle('is-avatar', !!d && !!state.items[i] && state.items[i].id === d.item.id));
  if (!d) return false;
  const tex = client.textures.get(d.item.texture);
  const img = $('pick-img');
  if (tex) img.src = tex.url;
  img.alt = d.item.title;
  const [name, desc] = splitTitle(d.item.title);
  $('pick-label').textContent = 'Your avatar';
  $('pick-name').textContent = name;
  $('pick-desc').textContent = desc;
  $('pick-conf').hidden = true;
  renderRating();
  $('prompt').textContent = state.study ? `You decided on ${name}. Press Continue to go on.`
    : `You decided on ${name}. Open its product page, or start again.`;
  $('instr').textContent = `You decided on ${name}.`;
  return true;
}

function renderTrail() {
  saveView();
  const box = $('trail');
  box.hidden = state.trail.length === 0;
  // the picks, with a small label where a feature switch carried the path into another space
  const entries = [];
  state.trail.forEach((it, n) => {
    for (const m of state.trailMarks) if (m.at === n) entries.push({ mark: m.label });
    entries.push({ it, n });
  });
  for (const m of state.trailMarks) if (m.at === state.trail.length) entries.push({ mark: m.label });
  $('trail-list').replaceChildren(...entries.slice(-14).map((e) => {
    const li = document.createElement('li');
    if (e.mark) {
      li.className = 'mark';
      li.textContent = e.mark;
      li.title = `From here on: matched by ${e.mark.toLowerCase()}`;
      return li;
    }
    const img = new Image();
    const tex = client.textures.get(e.it.texture);
    if (tex) img.src = tex.url;
    img.alt = e.it.title;
    img.title = `Pick ${e.n + 1}: ${e.it.title}`;
    li.appendChild(img);
    return li;
  }));
}

function renderSource() {
  const src = $('source');
  if (state.init === 'image' && state.upload && state.reconstruction) {
    const pick = state.upload.pick;
    $('upload-img').src = state.upload.url;
    $('upload-img').alt = pick ? `Your pick: ${pick.title}` : 'Your uploaded image';
    $('upload-caption').textContent = pick ? 'Your pick' : 'Your image';
    $('recon-img').src = state.reconstruction.url;
    $('recon-caption').textContent = `Compared by ${algoPhrase(state.algorithm)}`;
    $('recon-img').title = `${pick ? 'Your pick' : 'Your image'} as ${algoTech(state.algorithm)} reconstructs it`;
    $('source-note').textContent = `The grid starts from the faces closest to ${pick ? 'your pick' : 'your image'} by ${algoPhrase(state.algorithm)}.`;
    src.hidden = false;
  } else if (state.init === 'sketch' && state.sketchSource) {
    $('upload-img').src = state.sketchSource.drawing;
    $('upload-img').alt = 'Your drawing';
    $('upload-caption').textContent = 'Your drawing';
    $('recon-img').src = state.sketchSource.preview;
    $('recon-caption').textContent = 'A face from your drawing';
    $('source-note').textContent = 'The grid started from the faces your drawing fits best; the drawing keeps counting as you pick.';
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
// Keyboard: 1-9 choose, arrows move, Enter choose, D decide, N none of these, B back (v1.7), I what you seem to want

// inputs where keys are text: the shortcuts stay out of them
const TEXT_INPUTS = new Set(['text', 'search', 'email', 'url', 'tel', 'password', 'number', 'date', 'time',
  'datetime-local', 'month', 'week']);
function isTyping(t) {
  if (!(t instanceof HTMLElement)) return false;
  if (t.isContentEditable || t.closest('textarea, select, dialog[open]')) return true;
  return t instanceof HTMLInputElement && TEXT_INPUTS.has(t.type);
}

// The shortcuts work wherever the focus is (a feature tab, a button just clicked, the file picker) except in
// text fields; arrows, Enter and space stay with the control that has its own use for them.
document.addEventListener('keydown', (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
  const t = e.target;
  // a closed <select> (the policy) takes letters to jump between its options, but not Escape: that closes the menu
  if (isTyping(t) && !(e.key === 'Escape' && t instanceof HTMLSelectElement && $('settings').contains(t))) return;
  if ($('decided').open) return;
  if (e.key === 'Escape' && $('settings').open) {
    e.preventDefault();
    $('settings').open = false;
    $('settings').querySelector('summary').focus();
    return;
  }
  // a question first (asked on the Draw view too): Escape answers it as Cancel / Keep this one does, and stays
  if (e.key === 'Escape' && state.switchTo && (state.view === 'grid' || state.view === 'sketch')) {
    e.preventDefault();
    hideSwitch();
    return;
  }
  if (e.key === 'Escape' && state.view === 'sketch') { // back to the faces; the drawing stays
    e.preventDefault();
    leaveSketch();
    return;
  }
  if (state.view !== 'grid') return; // a questionnaire or the end of a study: no faces to key
  if (e.key === 'Escape' && idealView.open) {
    e.preventDefault();
    closeIdeal();
    return;
  }
  const ownKeys = t instanceof HTMLElement && t.closest('[role="radiogroup"], input, summary, .settings');
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
  if (move && state.items.length && !ownKeys) {
    e.preventDefault();
    const col = state.cursor % 3;
    const row = Math.floor(state.cursor / 3);
    const ncol = Math.min(2, Math.max(0, col + move[0]));
    const nrow = Math.min(2, Math.max(0, row + move[1]));
    const next = Math.min(state.items.length - 1, nrow * 3 + ncol);
    state.cursor = next;
    state.cursorMoved = true;
    renderCursor();
    saveView(); // a reload keeps the highlight
    if (document.activeElement === document.body || grid.contains(document.activeElement)) {
      cards[next].focus({ preventScroll: false });
    }
    return;
  }
  if (e.key === 'Enter' || e.key === ' ') {
    if (ownKeys || (t instanceof HTMLElement && t.closest('button, a, label'))) return; // their own activation
    e.preventDefault();
    if (awaitingPick()) { // no face highlighted: Enter shows the highlight first, rather than choose an unseen one
      state.cursorMoved = true;
      renderCursor();
      saveView();
      if (document.activeElement === document.body || grid.contains(document.activeElement)) cards[state.cursor].focus();
      return;
    }
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
    if (!e.repeat) skipGrid(); // a held key is one press: auto-repeat would skip grid after grid
    return;
  }
  // B, a letter like the others (Backspace stays the key that deletes, in a field or not)
  if ((e.key === 'b' || e.key === 'B') && backOffered()) {
    e.preventDefault();
    if (!e.repeat) goBack(); // a held B goes back one step, not down the whole path
    return;
  }
  if ((e.key === 'i' || e.key === 'I') && client.ideal && !state.study) {
    e.preventDefault();
    requestIdeal();
  }
});

// the settings menu closes on a click elsewhere, like any menu (it sits over the faces on a small screen)
document.addEventListener('pointerdown', (e) => {
  const menu = $('settings');
  if (menu.open && !menu.contains(e.target)) menu.open = false;
});

$('btn-decide').onclick = decideCursor;
$('btn-skip').onclick = skipGrid;
$('btn-back').onclick = () => goBack();

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
  const n = Number.isInteger(reply.steps) ? shownStep(reply.steps) : reply.steps; // the user's whole path (shownStep)
  const steps = `${n} ${n === 1 ? 'step' : 'steps'}`;
  if (state.study) {
    // a study shows the condition's label, never its model or policy
    const t = state.trial;
    $('decided-steps').textContent = t ? `Trial ${t.index} of ${t.count} (${t.label}) done in ${steps}.` : `Done in ${steps}.`;
  } else {
    const policy = state.servedPolicy ? ` (${policyInfo(state.servedPolicy)[0].toLowerCase()})` : '';
    $('decided-steps').textContent = `Chosen in ${steps}, matched by ${algoPhrase(state.algorithm)}${policy}.`;
  }
  $('decided-again').textContent = state.study ? 'Continue' : 'Start again';
  const link = $('decided-link');
  const url = state.study ? null : safeUrl(it.url);
  link.hidden = !url;
  if (url) link.href = url;
  $('decided-url').textContent = it.url || 'This face has no product page.';
  updateDecide();
  decided.returnValue = ''; // what the last close said is not this one's answer
  if (!xrActive) decided.showModal();
}
decided.addEventListener('close', () => {
  if (!state.decided) return;
  if (decided.returnValue === 'again') {
    nextSelection();
    return;
  }
  // Esc (or any other close): back to the page, the decision and its product page still shown beside the grid
  $('btn-again').focus();
});
$('btn-again').onclick = () => { if (state.decided) nextSelection(); };

/** After a decision: a new selection, or in a study whatever comes next. */
function nextSelection() {
  return state.study ? studyNext() : startSelection(null);
}

// ------------------------------------------------------------------------------------------------
// The ideal face (v1.5, docs/protocol.md "Ideal face"): a face the server generates from what its preference model has
// learned of the picks, near the last one, and the unseen catalog faces nearest to it. A panel beside the selection,
// never over it: picking goes on while it is open (and while it is being made), and it says which step it shows.

const idealBox = $('ideal');
const idealView = {
  open: false,
  busy: false,     // an `ideal` in flight (the server takes one at a time)
  seq: -1,         // the selection (state.seq) the panel shows
  step: 0,         // the step it was made at
  // {step, low} of the result on screen (`made`) and of the request out (`asked`): the step it was made at and the
  // lowest step shown since. Back at its step without going lower, the path is the one it was made from (a pick and
  // its Back cancel out); lower, the grids after it were undone, and a later grid at its step counts another path
  made: null,
  asked: null,
  result: null,    // the `ideal.result` on screen
  previewUrl: null, // its preview's Blob URL (revoked when the next one comes)
  renders: 0,
};

/** The server generates ideal faces (welcome.ideal) and this is no study (whose conditions must not show a model). */
function idealOffered() {
  return client.state === 'open' && !!client.ideal && !state.study;
}

/** A selection in progress on screen: what `ideal` needs (after start, before decide). */
function idealReady() {
  return idealOffered() && state.view === 'grid' && state.step > 0 && !state.decided && state.items.length > 0;
}

function updateIdealButton() {
  const btn = $('btn-ideal');
  const offered = !!client.ideal && !state.study;
  btn.hidden = !offered;
  $('keys-ideal').hidden = !offered;
  btn.disabled = !idealReady() || idealView.busy;
  btn.setAttribute('aria-expanded', String(idealView.open));
  btn.setAttribute('aria-busy', String(idealView.busy));
}

/** Ask for the ideal face (near `near`, or the server's choice: the last face chosen) and show it in the panel. */
async function requestIdeal({ near = null, force = false } = {}) {
  if (!force && (!idealReady() || idealView.busy)) return false;
  const seq = state.seq;
  const made = { step: state.step, low: state.step };
  if (idealView.seq !== seq) clearIdeal();
  idealView.seq = seq;
  idealView.asked = made;
  idealView.busy = true;
  showIdealPanel();
  updateIdealButton();
  try {
    const r = await client.requestIdeal(near);
    const items = Array.isArray(r.items) ? r.items : [];
    // the thumbnails come like the grid's: texture.get through the page's cache
    const textures = await client.textures.ensure(items.map((i) => i.texture));
    if (seq !== state.seq || !idealView.open) return false; // a new selection, or closed meanwhile
    await renderIdeal(r, items, textures, made);
    return true;
  } catch (err) {
    if (seq === state.seq) {
      reportError(err, 'ideal');
      if (!idealView.result) closeIdeal(); // nothing to show: the error says why
    }
    return false;
  } finally {
    idealView.busy = false;
    idealBox.setAttribute('aria-busy', 'false');
    renderIdealCaption();
    updateIdealButton();
  }
}

function showIdealPanel() {
  const opening = idealBox.hidden;
  idealView.open = true;
  idealBox.hidden = false;
  if (opening && idealBox.getBoundingClientRect().top > window.innerHeight - 80) {
    // on a phone it opens below the grid, out of sight: the press looked as if it did nothing (a UX walkthrough)
    idealBox.scrollIntoView({ block: 'start', behavior: 'smooth' });
  }
  idealBox.setAttribute('aria-busy', String(idealView.busy));
  $('main').classList.add('with-ideal');
  renderIdealCaption();
  updateIdealButton();
}

function closeIdeal() {
  const hadFocus = idealBox.contains(document.activeElement);
  idealView.open = false;
  idealBox.hidden = true;
  $('main').classList.remove('with-ideal');
  updateIdealButton();
  if (hadFocus && !$('btn-ideal').disabled) $('btn-ideal').focus();
}

/** Forget the panel's picture (a new selection: the old one's picture no longer says anything about it). */
function clearIdeal() {
  idealView.result = null;
  idealView.step = 0;
  idealView.made = null;
  idealView.asked = null;
  if (idealView.previewUrl) URL.revokeObjectURL(idealView.previewUrl);
  idealView.previewUrl = null;
  const img = $('ideal-img');
  img.hidden = true;
  img.removeAttribute('src');
  $('ideal-grid').replaceChildren();
  $('ideal-near').hidden = true;
}

/** The face a result stayed near, as the page knows it (on screen or on the path), or null. */
function idealFavourite(id) {
  return state.items.find((i) => i.id === id) || state.trail.find((i) => i.id === id) || null;
}

async function renderIdeal(r, items, textures, made) {
  const p = r.preview;
  if (p && p.data) {
    const blob = textureBlob(p);
    const url = URL.createObjectURL(blob);
    const img = $('ideal-img');
    img.src = url;
    await img.decode().catch(() => {});
    if (idealView.previewUrl) URL.revokeObjectURL(idealView.previewUrl);
    idealView.previewUrl = url;
    img.hidden = false;
  }
  idealView.result = r;
  idealView.step = made.step;
  idealView.made = made;
  idealView.renders += 1;
  $('ideal-grid').replaceChildren(...items.map((it, i) => {
    const li = document.createElement('li');
    const url = safeUrl(it.url);
    // a product page, like a decided face's: a plain link (these faces are not on the grid, so not for decide)
    const el = document.createElement(url ? 'a' : 'span');
    if (url) {
      el.href = url;
      el.target = '_blank';
      el.rel = 'noopener';
      el.title = `${it.title}: open its product page`;
      el.setAttribute('aria-label', `${i + 1}. ${it.title}: open its product page (new tab)`);
    } else {
      el.className = 'nolink';
      el.title = it.title;
    }
    el.dataset.id = String(it.id);
    const img = new Image();
    img.draggable = false;
    img.alt = url ? '' : it.title;
    const tex = textures.get(it.texture);
    if (tex) img.src = tex.url;
    el.append(img);
    li.append(el);
    return li;
  }));
  $('ideal-near').hidden = items.length === 0;
  renderIdealCaption();
}

/** The caption says what the picture is (generated, not a catalog face) and whether the picks moved on since. */
function renderIdealCaption() {
  const r = idealView.result;
  let text;
  if (!r) {
    text = idealView.busy ? 'Making a picture of the face your picks point to…' : '';
  } else {
    const fav = idealFavourite(r.near);
    // the search starts at the favourite and stays within reach of it in the model's space, which the picture (the
    // model's decoding) may not resemble closely: say where it started, not that it looks like it
    const near = fav ? `, searched from ${splitTitle(fav.title)[0]}` : '';
    // made on a first grid with no pick: there are no choices to speak of (a UX walkthrough read it as a claim)
    const first = idealView.made && idealView.made.step <= 1;
    const start = state.init === 'image' ? 'your image' : state.init === 'sketch' ? 'your drawing' : 'the faces on screen';
    const from = first ? `from ${start} (no picks yet)` : 'from your choices so far';
    text = `Generated by the model ${from}${near}: its guess at the face you want, not a face from the catalog.`;
  }
  const cap = $('ideal-caption');
  if (cap.textContent !== text) cap.textContent = text;
  const stale = $('ideal-stale');
  const made = idealView.made;
  // not by the step alone: made at step 5, Back to 4 and a pick is step 5 again, but not the path it was made from
  const undone = !!made && made.low < made.step;
  const moved = !!r && !!made && !idealView.busy && idealView.seq === state.seq && (state.step !== made.step || undone);
  stale.hidden = !moved;
  const since = undone ? 'you went back since, so it counts a step you undid' : 'your choices since are not in it';
  stale.textContent = moved
    ? `Made at step ${shownStep(idealView.step)}; ${since}. Press What you seem to want (I) again to update.` : '';
}

$('btn-ideal').onclick = () => requestIdeal();
$('ideal-close').onclick = () => closeIdeal();

/** A welcome: the control only where the server generates ideal faces; a new session has no selection yet. */
function idealWelcome() {
  closeIdeal();
  clearIdeal();
  idealView.seq = -1;
  updateIdealButton();
}

// ------------------------------------------------------------------------------------------------
// WebXR (lazy)

let xrActive = false;
const vrPreview = params.get('vr') === 'preview';

async function setupVR() {
  const btn = $('btn-vr');
  let supported = false;
  if (navigator.xr && navigator.xr.isSessionSupported) {
    try {
      // the connection waits for this answer (hello says which gaze the page sends): not forever
      supported = await Promise.race([navigator.xr.isSessionSupported('immersive-vr'),
        new Promise((resolve) => { setTimeout(() => resolve(false), 2000); })]);
    } catch {
      supported = false;
    }
  }
  xrSupported = !!supported;
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
  back: () => goBack(),
  /** v1.7: the scene's Back: 'hidden' (the server has no `back`, or a study), 'off' (it cannot act now) or 'on'. */
  get backState() { return backState(); },
  decide: (id) => decideId(id, { openTab: false }),
  restart: () => nextSelection(),
  safeUrl,
  gaze,
  /** Whether gaze may be taken now: a grid on screen, no pick in flight. */
  gazeOpen: () => gazeOpen(),
  /** The step the page shows: the user's path's, which a feature switch that keeps the path does not restart. */
  get shownStep() { return shownStep(); },
  /** What the status line above the grid names: a study's condition label, never its model. */
  get label() { return state.study ? (state.trial ? state.trial.label : '') : algoLabel(state.algorithm); },
  subscribe(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
  ended() {
    xrActive = false;
    document.body.classList.remove('in-xr');
    if (pointerProxy) pointerProxy.gridShown(); // the 2D grid's layout again
    if (state.decided && !decided.open) decided.showModal();
  },
};

// ------------------------------------------------------------------------------------------------
// Live sketch search (v1.3, docs/protocol.md "Sketch"): draw, and the faces the drawing fits best and a face
// generated from it follow as you draw; "Pick from these" goes on as a normal selection from those nine.

// a few colours faces are made of; the free picker has the rest
const PALETTE = [
  ['Black hair', '#1f1b24'], ['Brown hair', '#5c3a26'], ['Blonde hair', '#e6c378'], ['Silver hair', '#c9cbd6'],
  ['Pink hair', '#f39ab5'], ['Blue hair', '#4a6cc9'], ['Fair skin', '#f7dcc8'], ['Tan skin', '#d6a27c'],
  ['Deep skin', '#8a5a3c'], ['Blue eyes', '#3b82d6'], ['Green eyes', '#3f9e62'], ['Red eyes', '#c8413b'],
];
const hexRgb = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
const rgbHex = (c) => `#${c.map((v) => v.toString(16).padStart(2, '0')).join('')}`;

const sketchCanvas = $('sketch-canvas');
const sketchGrid = $('sketch-grid');
const sketchView = {
  widths: { line: 0.02, paint: 0.08 }, // per tool, a fraction of the canvas side
  previewUrl: null,     // the preview on screen (revoked when the next one comes)
  previewBlob: null,
  guideUrl: null,       // the average face (the empty drawing's preview), under the drawing
  shown: { gen: 0, revision: -1 }, // the result whose faces are on screen
  items: [],
  renders: 0,
};
const pad = new SketchPad(client, sketchCanvas, {
  onResult: (r) => renderSketchResult(r, pad.gen),
  onSharper: (m) => showSketchPreview(m.preview, true),
  onError: (msg) => reportError(new ServerError(msg.code, msg.message), 'sketch'),
  onChange: () => renderSketchStatus(),
  onFull: () => reportError(new ServerError('too_large', 'the drawing holds its most strokes'), 'sketch'),
});

/** A welcome: show the Draw button when the server sketches (and this is no study); send the drawing again. */
function sketchWelcome() {
  const sk = client.sketch;
  const on = !!sk && !(client.welcome && client.welcome.study);
  pad.configure(sk);
  $('btn-draw').hidden = !on;
  if (!on) {
    if (state.view === 'sketch') showView('grid');
    return;
  }
  const tools = Array.isArray(sk.tools) ? sk.tools : ['line', 'paint'];
  for (const b of $('sketch-tool').children) b.hidden = !tools.includes(b.dataset.tool);
  if (!tools.includes(pad.tool)) setTool(tools[0]);
  for (const t of Object.keys(sketchView.widths)) sketchView.widths[t] = pad.clampWidth(sketchView.widths[t]);
  setWidth(sketchView.widths[pad.tool]);
  sketchView.shown = { gen: 0, revision: -1 };
  // the drawing belonged to the old connection: this one gets it again
  if (pad.strokes.length || state.view === 'sketch') {
    try {
      pad.replay();
    } catch (err) {
      reportError(err, 'sketch');
    }
  }
  renderSketchStatus();
}

function enterSketch() {
  if (!client.sketch || state.study || client.state !== 'open') return;
  hideSwitch();
  showView('sketch');
  if (!pad.begun) {
    try {
      pad.begin();
    } catch (err) {
      reportError(err, 'sketch');
    }
  }
  pad.redraw();
  renderSketchStatus();
}

function leaveSketch() {
  if (state.view !== 'sketch') return;
  showView('grid');
  if (pointerProxy) pointerProxy.gridShown(); // the grid is on screen again: its layout
}

$('btn-draw').onclick = () => (state.view === 'sketch' ? leaveSketch() : enterSketch());
$('sketch-back').onclick = () => leaveSketch();
$('sketch-undo').onclick = () => sketchEdit('undo');
$('sketch-clear').onclick = () => sketchEdit('clear');
$('sketch-pick').onclick = () => pickFromSketch();

function sketchEdit(what) {
  try {
    if (what === 'undo') pad.undo();
    else pad.clear();
  } catch (err) {
    reportError(err, 'sketch');
  }
}

// tools: a radio group (arrows move between them, as the feature tabs)
function setTool(tool) {
  pad.tool = tool;
  for (const b of $('sketch-tool').children) {
    const on = b.dataset.tool === tool;
    b.setAttribute('aria-checked', String(on));
    b.tabIndex = on ? 0 : -1;
  }
  $('sketch').dataset.tool = tool;
  setWidth(sketchView.widths[tool]);
}
for (const b of $('sketch-tool').children) {
  b.onclick = () => setTool(b.dataset.tool);
  b.onkeydown = (e) => radioKeys(e, $('sketch-tool'), (x) => setTool(x.dataset.tool));
}

/** Arrow keys within a radio group of buttons: move the focus and pick. */
function radioKeys(e, group, pick) {
  const d = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
  if (!d) return;
  e.preventDefault();
  e.stopPropagation();
  const all = [...group.children].filter((x) => !x.hidden);
  const at = all.indexOf(e.currentTarget);
  const next = all[(at + d + all.length) % all.length];
  next.focus();
  pick(next);
}

const swatches = $('sketch-swatches');
swatches.replaceChildren(...PALETTE.map(([name, hex]) => {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = 'swatch';
  b.setAttribute('role', 'radio');
  b.setAttribute('aria-label', name);
  b.title = `${name} (paint)`;
  b.dataset.colour = hex;
  b.style.setProperty('--c', hex);
  b.onclick = () => setColour(hex);
  b.onkeydown = (e) => radioKeys(e, swatches, (x) => setColour(x.dataset.colour));
  return b;
}));
/** A paint colour (#rrggbb): choosing one means painting with it. */
function setColour(hex) {
  pad.colour = hexRgb(hex);
  $('sketch-colour').value = hex;
  $('sketch').style.setProperty('--paint', hex);
  const match = [...swatches.children].find((b) => b.dataset.colour === hex);
  [...swatches.children].forEach((b, i) => {
    b.setAttribute('aria-checked', String(b === match));
    b.tabIndex = b === match || (!match && i === 0) ? 0 : -1;
  });
  if (pad.tool !== 'paint') setTool('paint');
}
$('sketch-colour').oninput = (e) => setColour(e.target.value);

// width: a slider on a log scale over the useful part of welcome.sketch's min_width .. max_width
function widthRange() {
  const lo = Math.max(pad.limits.min_width, 0.004);
  const hi = Math.min(pad.limits.max_width, 0.2);
  return hi > lo ? [lo, hi] : [pad.limits.min_width, pad.limits.max_width];
}
function setWidth(w) {
  const [lo, hi] = widthRange();
  w = Math.min(hi, Math.max(lo, pad.clampWidth(w)));
  pad.width = w;
  sketchView.widths[pad.tool] = w;
  const slider = $('sketch-width');
  slider.value = String(Math.round((100 * Math.log(w / lo)) / Math.log(hi / lo)));
  slider.setAttribute('aria-valuetext', `${(w * 100).toFixed(1)}% of the drawing's width`);
  const px = w * (sketchCanvas.clientWidth || 300);
  const dot = $('sketch-width-dot');
  dot.style.width = dot.style.height = `${Math.max(2, Math.min(34, px)).toFixed(1)}px`;
}
$('sketch-width').oninput = (e) => {
  const [lo, hi] = widthRange();
  setWidth(lo * (hi / lo) ** (Number(e.target.value) / 100));
};
$('sketch-guide-on').onchange = () => renderGuide();
setTool('line');
setColour(PALETTE[1][1]);
setTool('line');

function renderGuide() {
  const img = $('sketch-guide');
  img.hidden = !(sketchView.guideUrl && $('sketch-guide-on').checked);
  if (sketchView.guideUrl && img.getAttribute('src') !== sketchView.guideUrl) img.src = sketchView.guideUrl;
}

/** Put a preview texture on screen (a result's, or v1.6 the sharper one that followed it); returns its blob. */
function showSketchPreview(p, sharper = false) {
  if (!(p && p.data)) return null;
  const blob = textureBlob(p);
  const url = URL.createObjectURL(blob);
  const img = $('sketch-preview');
  if (sketchView.previewUrl) URL.revokeObjectURL(sketchView.previewUrl);
  sketchView.previewUrl = url;
  sketchView.previewBlob = blob;
  sketchView.sharper = sharper;
  img.src = url;
  img.hidden = false;
  img.dataset.sharper = sharper ? 'yes' : 'no';
  return blob;
}

/** A newer result of the drawing: the preview at once, the faces when their textures are here. */
async function renderSketchResult(r, gen) {
  const blob = showSketchPreview(r.preview);
  if (blob && !sketchView.guideUrl && r.strokes === 0) {
    // the empty drawing's face is the average face: a guide to where eyes and hair go
    sketchView.guideUrl = URL.createObjectURL(blob);
    renderGuide();
  }
  const items = Array.isArray(r.items) ? r.items : [];
  let textures;
  try {
    textures = await client.textures.ensure(items.map((i) => i.texture));
  } catch (err) {
    reportError(err, 'sketch');
    return;
  }
  // results may finish out of order here: only a newer one than the faces on screen replaces them
  const shown = sketchView.shown;
  if (gen !== pad.gen || (gen === shown.gen && r.revision <= shown.revision)) return;
  sketchView.shown = { gen, revision: r.revision };
  sketchView.items = items;
  sketchView.renders += 1;
  const have = new Map([...sketchGrid.children].map((li) => [li.dataset.id, li]));
  sketchGrid.replaceChildren(...items.map((it, i) => {
    let li = have.get(String(it.id));
    if (!li) {
      li = document.createElement('li');
      li.dataset.id = String(it.id);
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'sk-face';
      const img = new Image();
      img.draggable = false;
      const tex = textures.get(it.texture);
      if (tex) img.src = tex.url;
      img.alt = '';
      b.append(img);
      b.onclick = () => pickFromSketch(it.id);
      li.append(b);
    }
    const b = li.firstChild;
    b.title = `${it.title}: pick from these, starting with this face`;
    b.setAttribute('aria-label', `${i + 1}. ${it.title}: pick from these, starting with this face`);
    return li;
  }));
  renderSketchStatus();
}

function renderSketchStatus() {
  const r = pad.latest;
  const n = sketchView.items.length;
  const open = client.state === 'open';
  let text;
  if (!open) text = 'Waiting for the server…';
  else if (pad.empty && !pad.live) text = 'Draw a few lines: the faces that fit appear here.';
  else if (!n) text = 'Looking for faces that fit…';
  else text = `The ${n === 9 ? 'nine' : n} faces your drawing fits best. Keep drawing, or pick from these.`;
  const status = $('sketch-status');
  if (status.textContent !== text) status.textContent = text;
  $('sketch').dataset.pending = open && pad.pending ? '1' : '';
  $('sketch-pick').disabled = !open || !(r && Array.isArray(r.items) && r.items.length) || n === 0 || pad.empty;
  $('sketch-undo').disabled = !open || pad.empty;
  $('sketch-clear').disabled = !open || pad.empty;
  $('sketch-grid').hidden = n === 0;
}

/** Whether a start from the drawing is possible now (a feature switch or policy change starts again from it). */
function sketchRestartable() {
  return state.init === 'sketch' && !!client.sketch && pad.begun && !!pad.latest && pad.latest.items.length > 0
    && !pad.empty;
}

/**
 * "Pick from these": a selection from the drawing (start init `sketch`), its first grid the drawing's nine faces;
 * `firstId`: a face among them to choose at once.
 */
async function pickFromSketch(firstId = null, { force = false } = {}) {
  if (!force && (pad.empty || !pad.latest || !pad.latest.items.length)) return false;
  if (client.state !== 'open') return false;
  pad._endLive(); // a stroke in progress goes out first
  const drawing = await pad.snapshot(256);
  const previewBlob = sketchView.previewBlob;
  const ok = await startSelection(null, { sketch: true });
  if (!ok) return false;
  if (state.sketchSource) {
    URL.revokeObjectURL(state.sketchSource.drawing);
    URL.revokeObjectURL(state.sketchSource.preview);
  }
  state.sketchSource = { drawing: drawing ? URL.createObjectURL(drawing) : '',
    preview: previewBlob ? URL.createObjectURL(previewBlob) : '' };
  renderSource();
  leaveSketch();
  if (firstId != null && state.items.some((i) => i.id === firstId)) await chooseId(firstId);
  return true;
}

// Ctrl+Z (Cmd+Z) undoes the last stroke while drawing
document.addEventListener('keydown', (e) => {
  if (state.view !== 'sketch' || !(e.ctrlKey || e.metaKey) || e.altKey || e.shiftKey || e.defaultPrevented) return;
  if (e.key !== 'z' && e.key !== 'Z') return;
  if (isTyping(e.target)) return;
  e.preventDefault();
  sketchEdit('undo');
});
window.addEventListener('resize', () => { if (state.view === 'sketch') setWidth(pad.width); });

// ------------------------------------------------------------------------------------------------

/** Only http(s) product URLs are opened: a catalog's URL column must not run script in this page. */
function safeUrl(url) {
  if (!url) return null; // "": no product page (a catalog ingested without one); not this page's own address
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

/** A grid on screen, taking input, and no pick in flight (its gaze belongs to it). */
function gazeOpen() {
  return client.state === 'open' && state.view === 'grid' && state.step > 0 && !state.busy && !state.decided
    && state.items.length > 0;
}

// for tests
window.omokage = {
  client,
  state,
  gaze,
  get pointerProxy() { return pointerProxy; },
  get dwell() { return dwell.steps; },
  get gazeDwell() { return gazeDwell.steps; },
  dwellTracker: dwell,
  gazeTracker: gazeDwell,
  enterVR,
  describeError,
  /** v1.7: {id, copy, how: 'lock' | 'channel' | 'none', ms} (tab.js), once known */
  get tab() { return tab; },
  /** v1.7: Back as the control does; `force` sends it even where the control is off (tests: the server's answer). */
  back: (opts = {}) => goBack(opts),
  // v1.5 ideal face
  ideal: {
    get view() { return { open: idealView.open, busy: idealView.busy, step: idealView.step, renders: idealView.renders,
      result: idealView.result, previewUrl: idealView.previewUrl }; },
    /** Ask as the control does; `force` sends even when the control is off (tests: the server's wrong_state). */
    request: (opts = {}) => requestIdeal(opts),
    close: () => closeIdeal(),
  },
  // v1.3 sketch
  sketch: {
    pad,
    get stats() { return pad.stats; },
    get latest() { return pad.latest; },
    get shownIds() { return sketchView.items.map((i) => i.id); },
    get shown() { return sketchView.shown; },
    get renders() { return sketchView.renders; },
    get previewUrl() { return sketchView.previewUrl; },
    get previewSharper() { return !!sketchView.sharper; },
    /** Send a sketch message as it is (tests: messages the page itself never sends). */
    sendRaw: (type, fields) => pad._send(type, fields),
    pick: (id = null, opts = {}) => pickFromSketch(id, opts),
  },
};

// ------------------------------------------------------------------------------------------------
// Studies (v1.2, docs/studies.md): a participant code in hello; the server walks the participant through the
// trials (its model, policy and start: the page offers none of those), questionnaires and the end.

function isStudyRefusal(code, message = '') {
  return (code === 'unauthorized' && /participant code|runs a user study/i.test(message))
    || (code === 'bad_field' && /participant/i.test(message));
}

function showJoin(message = '') {
  const form = $('join');
  const noStudy = /runs no study/i.test(message);
  const wrong = /not in the study/i.test(message);
  $('join-title').textContent = noStudy ? 'This server runs no study' : wrong ? 'That code is not in this study'
    : message ? 'This server runs a study' : 'Join a study';
  $('join-text').textContent = noStudy ? 'It takes no participant codes: continue without one.'
    : wrong ? 'Check the code you were given and enter it again.'
      : 'Enter the participant code you were given.';
  $('join-code').hidden = noStudy;
  $('join-submit').textContent = noStudy ? 'Continue without a code' : 'Join';
  $('join-cancel').hidden = !!message; // nothing to go back to when the server refused the page
  form.dataset.mode = noStudy ? 'drop' : 'join';
  form.hidden = false;
  hideBanner();
  if (!noStudy) {
    $('join-code').value = client.participant || '';
    $('join-code').focus();
  }
}

$('btn-join-open').onclick = () => {
  $('settings').open = false;
  showJoin();
};
$('join-cancel').onclick = () => { $('join').hidden = true; };
$('join').onsubmit = (e) => {
  e.preventDefault();
  const drop = $('join').dataset.mode === 'drop';
  const code = drop ? '' : $('join-code').value.trim();
  if (!drop && !code) {
    $('join-code').focus();
    return;
  }
  client.participant = code || null;
  const url = new URL(location.href);
  if (code) url.searchParams.set('participant', code);
  else url.searchParams.delete('participant');
  history.replaceState(null, '', url);
  $('join').hidden = true;
  state.sessions = 0; // a new hello: not a reconnect
  client.reconnect();
};

function enterStudy(study) {
  state.study = study;
  document.body.classList.add('in-study');
  $('study-bar').hidden = false;
  $('study-title').textContent = study.title || study.name || 'Study';
  $('settings').open = false;
}

function leaveStudy() {
  if (!state.study && !document.body.classList.contains('in-study')) return;
  state.study = null;
  state.trial = null;
  state.needImage = false;
  document.body.classList.remove('in-study', 'need-image');
  $('study-bar').hidden = true;
  showView('grid');
}

/** Which of the grid, the questionnaire and the end of the study is on screen. */
function showView(view) {
  // another view starts at the top: the Draw view's scroll would leave the faces' first row under the header
  if (view !== state.view) window.scrollTo(0, 0);
  state.view = view;
  $('stage').hidden = view !== 'grid';
  $('sketch').hidden = view !== 'sketch';
  $('main').classList.toggle('sketching', view === 'sketch');
  $('btn-draw').setAttribute('aria-pressed', String(view === 'sketch'));
  $('questionnaire').hidden = view !== 'questionnaire';
  $('study-done').hidden = view !== 'done';
  $('keys-help').hidden = view !== 'grid';
  updateIdealButton();
}

function renderStudyBar() {
  const t = state.trial;
  const trialText = t ? `Trial ${t.index} of ${t.count} · ${t.label}` : '';
  $('study-trial').textContent = state.view === 'grid' ? trialText : '';
  $('study-practice').hidden = !(t && t.practice && state.view === 'grid');
  $('study-task').textContent = state.view !== 'grid' || !t ? ''
    : t.task === 'target' ? 'Find the face shown here, then decide on it.' : 'Pick the face you like best, then decide on it.';
  const target = t && t.task === 'target' && t.target && state.view === 'grid' ? t.target : null;
  $('study-target').hidden = !target;
  if (target) {
    const tex = client.textures.get(target.texture);
    if (tex) $('study-target-img').src = tex.url;
    $('study-target-img').alt = `The face to find: ${target.title}`;
  }
}

/** study.next: the next (or resumed) trial, a questionnaire, or the end; `image` for a trial that starts from one. */
async function studyNext(image = null) {
  if (client.state !== 'open' || !state.study) return;
  const seq = ++state.seq;
  state.busy = true;
  state.decided = null;
  updateDecide();
  if (decided.open) decided.close();
  grid.setAttribute('aria-busy', 'true');
  try {
    gaze.flush();
    const reply = await client.studyNext(image);
    if (seq !== state.seq) return;
    state.needImage = false;
    document.body.classList.remove('need-image');
    if (reply.type === 'candidates') {
      state.trial = reply.trial || null;
      state.algorithm = reply.algorithm; // kept for the protocol; never shown in a study
      state.init = image ? 'image' : 'random';
      state.trail = [];
      state.trailMarks = [];
      state.stepBase = 0;
      state.history = [];
      state.ratingLog = [];
      renderTrail();
      dwell.reset();
      gazeDwell.reset();
      state.reconstruction = null;
      if (state.trial && state.trial.target) await client.textures.ensure([state.trial.target.texture]);
      showView('grid');
      await showCandidates(reply, seq, null);
      renderStudyBar();
      hideBanner();
    } else if (reply.type === 'questionnaire') {
      state.items = [];
      state.step = 0;
      showView('questionnaire');
      renderStudyBar();
      $('q-title').textContent = reply.title || 'A few questions';
      renderQuestionnaire($('q-box'), reply, async (answers) => {
        try {
          await client.answer(reply.id, answers);
          await studyNext();
        } catch (err) {
          reportError(err, 'answers');
        }
      });
    } else if (reply.type === 'study.done') {
      state.items = [];
      state.step = 0;
      state.trial = null;
      showView('done');
      renderStudyBar();
      $('study-done-text').textContent = `You have finished the study (${reply.trials} ${reply.trials === 1 ? 'trial' : 'trials'}). You can close this page.`;
    }
  } catch (err) {
    if (seq !== state.seq) return;
    if (err instanceof ServerError && err.code === 'bad_field' && /image/i.test(err.message)) {
      state.needImage = true;
      document.body.classList.add('need-image');
      showBanner('info', 'This trial starts from a picture',
        'Choose a photo of a face (Use an image, or drop it on the page): the trial starts from the faces nearest to it.', null);
    } else {
      reportError(err, 'study');
    }
  } finally {
    if (seq === state.seq) {
      state.busy = false;
      grid.setAttribute('aria-busy', 'false');
    }
  }
}

renderCursor();
showView('grid');
renderNoFaces();
let pointerProxy = null;
(async () => {
  const owning = claimTab({ hasToken: !!client.resumeToken }).then((t) => {
    tab = t;
    if (t.copy) {
      // the tab copied from presents this token: presenting it here would take its selection away
      client.forgetResume();
      try {
        sessionStorage.removeItem(VIEW_KEY);
      } catch { /* storage off */ }
    }
  }, (err) => console.warn('omokage: could not tell whether this tab is a copy', err));
  await setupVR();
  await owning;
  // no head tracking here: the mouse over the grid stands in for gaze (labelled so in hello.client)
  if (!xrSupported) {
    pointerProxy = new PointerProxy(gaze, { cards, count: () => state.items.length,
      active: () => gazeOpen() && !xrActive, shown: () => !xrActive && state.view === 'grid' && client.state === 'open' });
    pointerProxy.start();
  }
  client.connect();
})();
