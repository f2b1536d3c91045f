// WebXR mode (three.js), loaded with a dynamic import only when the user enters VR.
//
// The nine faces hang on panels in an arc in front of the user. A controller ray (or a pinch with
// hand tracking) selects; a head-gaze reticle fills while the user looks at a face and, after DWELL_MS,
// marks it (armed): a trigger press then chooses it. Gaze never chooses on its own — it is a signal
// (logged as dwell, and sent to the server as gaze), the selection is the user's — and a new grid arms nothing until
// the gaze moves. The render loop does no network or image-decode work: when candidates arrive, textures are decoded
// off the loop (createImageBitmap), uploaded, and only swapped in by the loop.
//
// Gaze (protocol v1.2, docs/gaze.md): every frame the head ray (the WebXR viewer pose; in the 3D preview the mouse
// ray, or a scripted viewer pose) and its hit on the panels go into api.gaze (a preallocated buffer: nothing is
// allocated for it per frame); the page sends them as `gaze.batch` every 100 ms. Each new grid, and each re-centring,
// sends `layout`: panel k is the card (face and label) showing candidates.items[k], in the scene frame (the XR
// reference space).

import {
  BufferGeometry, CanvasTexture, CircleGeometry, Color, Float32BufferAttribute, Fog, GridHelper, Group, Line,
  LineBasicMaterial, Matrix4, Mesh, MeshBasicMaterial, PerspectiveCamera, PlaneGeometry, Quaternion, Raycaster,
  RingGeometry, SRGBColorSpace, Scene, Texture, Vector2, Vector3, WebGLRenderer,
} from 'three';

const DWELL_MS = 1800;          // head-gaze dwell that arms a face (a press then chooses it)
const RADIUS = 1.4;             // metres from the user to the panels
const FACE = 0.30;              // face side in metres
const COL_ANGLE = 0.265;        // radians between columns
const ROW_STEP = 0.475;         // metres between rows
const BUTTON_H = 0.085;         // button height in metres
const PLATE_W = FACE + 0.04;    // a card (face and label): what a gaze panel is
const PLATE_H = FACE + 0.12;
const ACCENT = 0xff8fab;
const HOVER = 0x8c7bff;

export async function startXR(api, session) {
  const mode = session ? 'immersive' : 'preview';
  const renderer = new WebGLRenderer({ antialias: true, powerPreference: 'high-performance' });
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
  renderer.setSize(window.innerWidth, window.innerHeight);
  renderer.outputColorSpace = SRGBColorSpace;
  const canvas = renderer.domElement;
  canvas.className = 'xr-canvas';
  canvas.setAttribute('aria-label', 'VR view of the nine faces');
  document.body.appendChild(canvas);

  const scene = new Scene();
  scene.background = new Color(0x0d0f15);
  scene.fog = new Fog(0x0d0f15, 4, 14);
  const camera = new PerspectiveCamera(76, window.innerWidth / window.innerHeight, 0.05, 50);
  camera.position.set(0, 1.6, 0);
  scene.add(camera);

  const floor = new GridHelper(24, 48, 0x3a3350, 0x1c1f2a);
  scene.add(floor);
  const glow = new Mesh(new CircleGeometry(1.2, 48), new MeshBasicMaterial({ color: 0x1c1830, transparent: true, opacity: 0.9 }));
  glow.rotation.x = -Math.PI / 2;
  glow.position.y = 0.002;
  scene.add(glow);

  // -- panels -------------------------------------------------------------------------------------
  const ui = new Group();
  ui.visible = false;
  scene.add(ui);
  const gridGroup = new Group();
  ui.add(gridGroup);
  const targets = []; // meshes a ray can hit

  const placeholder = makeCanvasTexture(64, 64, (g) => {
    g.fillStyle = '#1e222c';
    g.fillRect(0, 0, 64, 64);
  });
  const faceGeo = new PlaneGeometry(FACE, FACE);
  const labelGeo = new PlaneGeometry(FACE + 0.04, (FACE + 0.04) * 112 / 512);
  const plateGeo = new PlaneGeometry(PLATE_W, PLATE_H);
  const ringGeo = new PlaneGeometry(FACE + 0.065, FACE + 0.145);

  const panels = [];
  for (let i = 0; i < 9; i++) {
    const col = i % 3;
    const row = Math.floor(i / 3);
    const a = (col - 1) * COL_ANGLE;
    const g = new Group();
    g.position.set(Math.sin(a) * RADIUS, (1 - row) * ROW_STEP, -Math.cos(a) * RADIUS);
    g.rotation.y = -a;
    const ring = new Mesh(ringGeo, new MeshBasicMaterial({ color: HOVER, transparent: true, opacity: 0.95 }));
    ring.position.set(0, -0.04, -0.01);
    ring.visible = false;
    const plate = new Mesh(plateGeo, new MeshBasicMaterial({ color: 0x1a1d26 }));
    plate.position.set(0, -0.04, -0.004);
    const face = new Mesh(faceGeo, new MeshBasicMaterial({ map: placeholder }));
    face.position.y = 0.0;
    const label = new Mesh(labelGeo, new MeshBasicMaterial({ map: placeholder, transparent: true }));
    label.position.set(0, -FACE / 2 - 0.043, 0.001);
    face.userData = { kind: 'face', index: i };
    plate.userData = face.userData;
    g.add(ring, plate, face, label);
    gridGroup.add(g);
    targets.push(face, plate);
    panels.push({ group: g, ring, plate, face, label, item: null, hover: 0 });
  }

  const buttons = {};
  const buttonRow = new Group();
  buttonRow.position.set(0, -ROW_STEP - 0.33, -RADIUS + 0.03);
  gridGroup.add(buttonRow);
  function makeButton(action, text, x, w, primary = false) {
    const mat = new MeshBasicMaterial({ map: buttonTexture(text, primary, w / BUTTON_H), transparent: true });
    const mesh = new Mesh(new PlaneGeometry(w, BUTTON_H), mat);
    mesh.position.x = x;
    mesh.userData = { kind: 'button', action };
    buttonRow.add(mesh);
    targets.push(mesh);
    buttons[action] = { mesh, w, primary, text };
    return mesh;
  }
  makeButton('restart', '↻  New start', -0.66, 0.32);
  // v1.7: undo the last pick or None of these (a slipped ray); dimmed where it cannot act, hidden where the server
  // has no `back` or in a study. Both looks are made here: the loop only swaps them
  const backMats = { on: makeButton('back', '←  Back', -0.32, 0.26).material,
    off: new MeshBasicMaterial({ map: buttonTexture('←  Back', false, 0.26 / BUTTON_H, true), transparent: true }) };
  makeButton('decide', '✓  Decide', 0.16, 0.6, true);
  makeButton('exit', mode === 'immersive' ? '✕  Exit VR' : '✕  Exit', 0.66, 0.32);

  // status line above the grid: step and hints
  const status = new Mesh(new PlaneGeometry(1.2, 0.075), new MeshBasicMaterial({ map: placeholder, transparent: true }));
  status.position.set(0, ROW_STEP + 0.27, -RADIUS + 0.03);
  gridGroup.add(status);

  // decided view
  const decidedGroup = new Group();
  decidedGroup.visible = false;
  ui.add(decidedGroup);
  const decidedFace = new Mesh(new PlaneGeometry(0.5, 0.5), new MeshBasicMaterial({ map: placeholder }));
  decidedFace.position.set(0, 0.12, -RADIUS);
  const decidedLabel = new Mesh(new PlaneGeometry(1.0, 0.1), new MeshBasicMaterial({ map: placeholder, transparent: true }));
  decidedLabel.position.set(0, -0.22, -RADIUS);
  decidedGroup.add(decidedFace, decidedLabel);
  const decidedButtons = new Group();
  decidedButtons.position.set(0, -0.38, -RADIUS + 0.03);
  decidedGroup.add(decidedButtons);
  for (const [action, text, x, w, primary] of [['open', 'Open product page', -0.2, 0.38, true], ['restart', '↻  Start again', 0.2, 0.32, false]]) {
    const mesh = new Mesh(new PlaneGeometry(w, BUTTON_H), new MeshBasicMaterial({ map: buttonTexture(text, primary, w / BUTTON_H), transparent: true }));
    mesh.position.x = x;
    mesh.userData = { kind: 'button', action };
    mesh.visible = true;
    decidedButtons.add(mesh);
    targets.push(mesh);
  }

  // -- head-gaze reticle: a ring that fills (drawRange over its segments) --------------------------
  const SEG = 48;
  const reticleBase = new Mesh(new RingGeometry(0.011, 0.016, SEG), new MeshBasicMaterial({
    color: 0xffffff, transparent: true, opacity: 0.55, depthTest: false }));
  const fillGeo = new RingGeometry(0.011, 0.016, SEG, 1, Math.PI / 2, -Math.PI * 2);
  const reticleFill = new Mesh(fillGeo, new MeshBasicMaterial({ color: ACCENT, depthTest: false }));
  fillGeo.setDrawRange(0, 0);
  const reticle = new Group();
  reticle.add(reticleBase, reticleFill);
  reticle.renderOrder = 10;
  reticleBase.renderOrder = 10;
  reticleFill.renderOrder = 11;
  scene.add(reticle);
  const fillIndexCount = fillGeo.index.count;

  // -- controllers ---------------------------------------------------------------------------------
  const rayGeo = new BufferGeometry();
  rayGeo.setAttribute('position', new Float32BufferAttribute([0, 0, 0, 0, 0, -1], 3));
  const controllers = [];
  if (mode === 'immersive') {
    for (let i = 0; i < 2; i++) {
      const c = renderer.xr.getController(i);
      const line = new Line(rayGeo, new LineBasicMaterial({ color: 0xffffff, transparent: true, opacity: 0.6 }));
      line.scale.z = 2;
      line.visible = false;
      c.add(line);
      c.userData = { line, connected: false, hit: null };
      c.addEventListener('connected', (e) => {
        c.userData.connected = true;
        line.visible = e.data && e.data.targetRayMode === 'tracked-pointer';
      });
      c.addEventListener('disconnected', () => {
        c.userData.connected = false;
        line.visible = false;
      });
      c.addEventListener('select', () => select(c.userData.hit));
      c.addEventListener('squeeze', () => { placed = false; });
      scene.add(c);
      controllers.push(c);
    }
  }

  // preview: the mouse is both the controller ray and the "head gaze"
  const mouse = new Vector2(0, 0);
  let mouseIn = false;
  const onMove = (e) => {
    const r = canvas.getBoundingClientRect();
    mouse.set(((e.clientX - r.left) / r.width) * 2 - 1, -((e.clientY - r.top) / r.height) * 2 + 1);
    mouseIn = true;
  };
  const onLeave = () => { mouseIn = false; };
  const onClick = () => select(previewHit);
  let previewHit = null;
  let exitButton = null;
  const onKey = (e) => { if (e.key === 'Escape') end(); };
  const onResize = () => {
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(window.innerWidth, window.innerHeight);
  };
  if (mode === 'preview') {
    canvas.addEventListener('pointermove', onMove);
    canvas.addEventListener('pointerleave', onLeave);
    canvas.addEventListener('click', onClick);
    window.addEventListener('keydown', onKey);
    window.addEventListener('resize', onResize);
    exitButton = document.createElement('button');
    exitButton.type = 'button';
    exitButton.className = 'btn xr-exit';
    exitButton.textContent = 'Exit 3D preview (Esc)';
    exitButton.onclick = () => end();
    document.body.appendChild(exitButton);
  }

  // -- state shared with the loop --------------------------------------------------------------------
  let placed = false;
  let pending = null;       // prepared materials waiting for the loop to swap them in
  let pendingDecided = null;
  let locked = false;       // a choose is in flight: no further selection until the next grid
  let gazeTarget = null;
  let gazeMs = 0;
  let armed = null;         // the panel the gaze has rested on for DWELL_MS: a press with no ray hit chooses it
  let gazeHeldOver = null;  // the panel under the gaze when a new grid came: it arms only once the gaze moves
  let last = 0;
  let ended = false;
  let prepGen = 0;
  const stats = { mode, frames: 0, swaps: 0, maxFrameMs: 0, slowFrames: 0, texturesReady: 0, step: 0, lastSelect: null,
    armed: -1, back: 'hidden' };

  const raycaster = new Raycaster();
  raycaster.far = 10;
  const hits = [];
  const tmpMat = new Matrix4();
  const headPos = new Vector3();
  const headDir = new Vector3();
  const headQuat = new Quaternion();
  const local = new Vector3();
  const hovered = new Set();
  let scriptedPose = false;  // preview: a viewer pose set by setViewerPose (tests, demos) instead of the mouse
  let layoutDirty = false;   // send `layout` after this frame (a new grid, or the panels moved)
  let shownStep = 0;         // the step whose faces the panels show (the page's state may be ahead of it)

  function intersect() {
    hits.length = 0;
    raycaster.intersectObjects(targets, false, hits);
    for (const h of hits) if (isVisible(h.object)) return h;
    return null;
  }

  function select(hit) {
    if (!hit && armed && armed.item) hit = { object: armed.face }; // a press while gazing at an armed face
    if (!hit || ended) return;
    const d = hit.object.userData;
    stats.lastSelect = d.kind === 'face' ? `face:${d.index}` : `button:${d.action}`;
    if (d.kind === 'face') {
      const p = panels[d.index];
      if (p.item && !locked && !api.state.decided) {
        locked = true;
        Promise.resolve(api.choose(p.item.id)).finally(() => { locked = false; });
      }
    } else if (d.action === 'decide') {
      // only the user's pick, or the face closest to their picture or drawing: not whatever a random or
      // "none of these" grid lists first (the 2D page waits for a pick there too)
      const first = api.state.items[0];
      if (first && !locked && decidable(api.state)) api.decide(first.id);
    } else if (d.action === 'back') {
      if (backOn()) {
        locked = true;
        Promise.resolve(api.back()).finally(() => { locked = false; });
      }
    } else if (d.action === 'restart') {
      api.restart();
    } else if (d.action === 'exit') {
      end();
    } else if (d.action === 'open') {
      const url = api.state.decided && api.safeUrl(api.state.decided.item.url);
      end();
      if (url) window.open(url, '_blank', 'noopener'); // the select event is a user activation
    }
  }

  /** Back can act: the page says so, no press is in flight here, and the panels show the page's grid. */
  function backOn() {
    return !locked && !ended && api.backState === 'on' && shownStep === api.state.step;
  }

  // -- preparing textures off the loop ------------------------------------------------------------
  async function prepare(st) {
    const gen = ++prepGen;
    const items = st.items.slice();
    const built = await Promise.all(items.map(async (it, i) => ({
      item: it,
      face: new MeshBasicMaterial({ map: await faceTexture(api.textures.get(it.texture)) }),
      label: new MeshBasicMaterial({ map: labelTexture(i, it.title, i === 0 && st.first === 'pick'), transparent: true }),
    })));
    const first = items[0];
    const decideTex = buttonTexture(first && decidable(st) ? `✓  Decide on ${first.title.split(' — ')[0]}`
      : 'Pick a face first', true, buttons.decide.w / BUTTON_H);
    const statusTex = statusTexture(api.shownStep ?? st.step, api.label); // the user's path's step (main.js shownStep)
    if (gen !== prepGen || ended) {
      for (const b of built) disposeMaterial(b.face, b.label);
      decideTex.dispose();
      statusTex.dispose();
      return;
    }
    for (const b of built) {
      renderer.initTexture(b.face.map); // upload now, not in a frame
      renderer.initTexture(b.label.map);
    }
    renderer.initTexture(decideTex);
    renderer.initTexture(statusTex);
    if (pending) discard(pending);
    pending = { built, step: st.step, pick: st.first === 'pick', decideTex, statusTex };
  }

  async function prepareDecided(st) {
    const it = st.decided.item;
    const faceMap = await faceTexture(api.textures.get(it.texture));
    const labelMap = makeCanvasTexture(1024, 100, (g) => {
      g.fillStyle = '#e9ebf1';
      g.font = '600 46px system-ui, sans-serif';
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText(fit(g, it.title, 1000), 512, 50);
    });
    renderer.initTexture(faceMap);
    renderer.initTexture(labelMap);
    pendingDecided = { faceMap, labelMap };
  }

  async function faceTexture(entry) {
    if (!entry) return placeholder;
    let tex;
    if (typeof createImageBitmap === 'function') {
      const bmp = await createImageBitmap(entry.blob, { imageOrientation: 'flipY' });
      tex = new Texture(bmp);
      tex.flipY = false;
    } else {
      const img = new Image();
      img.src = entry.url;
      await img.decode();
      tex = new Texture(img);
    }
    tex.colorSpace = SRGBColorSpace;
    tex.anisotropy = 4;
    tex.needsUpdate = true;
    return tex;
  }

  const unsubscribe = api.subscribe((st, what) => {
    if (what === 'candidates') {
      prepare(st).catch((err) => console.error('omokage xr: could not prepare textures', err));
    } else if (what === 'decided') {
      prepareDecided(st).catch((err) => console.error('omokage xr: could not prepare the decision', err));
    }
  });

  // -- the loop: ray casts, dwell, material swaps, render. Nothing else. -----------------------------
  function frame(time, xrFrame) {
    const dt = last ? Math.min(100, time - last) : 0;
    last = time;
    stats.frames += 1;
    if (dt > stats.maxFrameMs && stats.frames > 30) stats.maxFrameMs = dt;
    if (dt > 1000 / 50 && stats.frames > 30) stats.slowFrames += 1;

    if (!placed && stats.frames > 2) place();
    if (pending) swap();
    if (pendingDecided) swapDecided();

    hovered.clear();
    let gazeHit = null;
    let headTracked = false;
    if (mode === 'immersive') {
      for (const c of controllers) {
        c.userData.hit = null;
        if (!c.userData.connected) continue;
        tmpMat.identity().extractRotation(c.matrixWorld);
        raycaster.ray.origin.setFromMatrixPosition(c.matrixWorld);
        raycaster.ray.direction.set(0, 0, -1).applyMatrix4(tmpMat);
        const hit = intersect();
        c.userData.hit = hit;
        c.userData.line.scale.z = hit ? hit.distance : 2;
        if (hit) hovered.add(hit.object.userData);
      }
      headTracked = viewerRay(xrFrame);
      raycaster.ray.origin.copy(headPos);
      raycaster.ray.direction.copy(headDir);
      gazeHit = intersect();
    } else {
      previewHit = null;
      camera.getWorldPosition(headPos);
      if (scriptedPose) {
        camera.getWorldDirection(headDir);
        raycaster.ray.origin.copy(headPos);
        raycaster.ray.direction.copy(headDir);
        gazeHit = intersect();
        headTracked = true;
      }
      if (mouseIn) {
        raycaster.setFromCamera(mouse, camera);
        previewHit = intersect();
        if (previewHit) hovered.add(previewHit.object.userData);
        if (!scriptedPose) {
          gazeHit = previewHit;
          headDir.copy(raycaster.ray.direction);
          headTracked = true;
        }
      }
      if (!headTracked) headDir.copy(raycaster.ray.direction);
    }

    // highlight what a pointer rests on; count pointer dwell
    for (let i = 0; i < 9; i++) {
      const p = panels[i];
      const on = hovered.has(p.face.userData);
      p.ring.visible = (on || p === armed) && !!p.item;
      if (on && p.item) api.pointerDwell.add(p.item.id, dt);
    }
    // Back: shown where the server takes it, dimmed while it cannot act (the first grid, a request out, offline)
    const backMesh = buttons.back.mesh;
    const backShown = api.backState !== 'hidden';
    const backLive = backShown && backOn();
    backMesh.visible = backShown;
    const backMat = backLive ? backMats.on : backMats.off;
    if (backMesh.material !== backMat) backMesh.material = backMat;
    stats.back = !backShown ? 'hidden' : backLive ? 'on' : 'off';
    for (const key in buttons) {
      const b = buttons[key];
      b.mesh.scale.setScalar(hovered.has(b.mesh.userData) && (b.mesh !== backMesh || backLive) ? 1.06 : 1);
    }

    // head gaze: reticle on the hit, dwell fills it, a full ring arms the face (a press chooses it)
    let progress = 0;
    const gd = gazeHit && gazeHit.object.userData;
    const gazePanel = gd && gd.kind === 'face' ? panels[gd.index] : null;
    armed = null;
    if (gazePanel && gazePanel.item) {
      api.gazeDwell.add(gazePanel.item.id, dt);
      if (gazePanel !== gazeHeldOver) gazeHeldOver = null;
      gazeMs = gazeTarget === gazePanel ? gazeMs + dt : 0;
      gazeTarget = gazePanel;
      const isPick = gd.index === 0 && api.state.first === 'pick'; // your pick stays chosen; nothing to arm
      if (!isPick && !locked && !api.state.decided && gazeHeldOver === null) {
        progress = Math.min(1, gazeMs / DWELL_MS);
        if (progress >= 1) armed = gazePanel;
      }
    } else {
      gazeTarget = null;
      gazeHeldOver = null;
      gazeMs = 0;
    }
    stats.armed = armed ? panels.indexOf(armed) : -1;
    if (gazeHit) {
      reticle.position.copy(gazeHit.point);
      reticle.position.addScaledVector(headDir, -0.01);
    } else {
      reticle.position.copy(headPos).addScaledVector(headDir, 1.5);
    }
    reticle.quaternion.copy(camera.quaternion);
    reticle.visible = mode === 'immersive' || mouseIn || scriptedPose;
    fillGeo.setDrawRange(0, Math.round(progress * SEG) * 6);

    // gaze to the server: the head ray and the card it rests on, while the grid on screen is the page's
    if (headTracked && placed && gridGroup.visible && shownStep === api.state.step && api.gazeOpen()) {
      let panel = -1;
      let u = 0;
      let v = 0;
      if (gazePanel && gazePanel.item) {
        panel = gd.index;
        gazePanel.plate.worldToLocal(local.copy(gazeHit.point));
        u = Math.min(1, Math.max(0, local.x / PLATE_W + 0.5));
        v = Math.min(1, Math.max(0, local.y / PLATE_H + 0.5));
      }
      api.gaze.push(time, headPos.x, headPos.y, headPos.z, headDir.x, headDir.y, headDir.z, panel, u, v);
    }

    renderer.render(scene, camera);
    if (layoutDirty && placed) {
      layoutDirty = false;
      setTimeout(sendLayout, 0); // after this frame's matrices are updated; messages are built outside the loop
    }
  }

  /** The WebXR viewer pose (the head) into headPos / headDir, in the reference space (the scene frame). */
  function viewerRay(xrFrame) {
    const space = renderer.xr.getReferenceSpace();
    const pose = xrFrame && space ? xrFrame.getViewerPose(space) : null;
    if (!pose) {
      camera.getWorldPosition(headPos);
      camera.getWorldDirection(headDir);
      return false;
    }
    const p = pose.transform.position;
    const o = pose.transform.orientation;
    headPos.set(p.x, p.y, p.z);
    headQuat.set(o.x, o.y, o.z, o.w);
    headDir.set(0, 0, -1).applyQuaternion(headQuat).normalize();
    return true;
  }

  /** `layout`: panel k is the card showing candidates.items[k] (position, rotation, size in the scene frame). */
  function sendLayout() {
    if (ended) return;
    scene.updateMatrixWorld();
    const out = [];
    const pos = new Vector3();
    const rot = new Quaternion();
    for (const p of panels) {
      if (!p.item) break;
      p.plate.getWorldPosition(pos);
      p.plate.getWorldQuaternion(rot);
      out.push({ position: [r5(pos.x), r5(pos.y), r5(pos.z)], rotation: [r5(rot.x), r5(rot.y), r5(rot.z), r5(rot.w)],
        size: [r5(PLATE_W), r5(PLATE_H)] });
    }
    api.gaze.layout(out);
  }

  function place() {
    if (mode === 'immersive') {
      camera.getWorldPosition(headPos);
      camera.getWorldDirection(headDir);
      if (headPos.lengthSq() === 0 && headDir.z === -1 && stats.frames < 10) return; // no pose yet
    } else {
      headPos.set(0, 1.6, 0);
      headDir.set(0, 0, -1);
    }
    ui.position.set(headPos.x, headPos.y - 0.1, headPos.z);
    ui.rotation.set(0, Math.atan2(-headDir.x, -headDir.z), 0);
    if (refSpace === 'local') floor.position.y = glow.position.y = headPos.y - 1.6;
    ui.visible = true;
    placed = true;
    layoutDirty = true;
  }

  function swap() {
    const p = pending;
    pending = null;
    const old = [];
    p.built.forEach((b, i) => {
      const panel = panels[i];
      old.push(panel.face.material, panel.label.material);
      panel.face.material = b.face;
      panel.label.material = b.label;
      panel.item = b.item;
      panel.group.visible = true;
      panel.plate.material.color.setHex(i === 0 && p.pick ? 0x3a2433 : 0x1a1d26);
    });
    for (let i = p.built.length; i < 9; i++) {
      panels[i].item = null;
      panels[i].group.visible = false;
    }
    old.push(buttons.decide.mesh.material, status.material);
    buttons.decide.mesh.material = new MeshBasicMaterial({ map: p.decideTex, transparent: true });
    status.material = new MeshBasicMaterial({ map: p.statusTex, transparent: true });
    gridGroup.visible = true;
    decidedGroup.visible = false;
    gazeHeldOver = gazeTarget; // staring on: the new face there is not armed until the gaze leaves it
    gazeTarget = null;
    gazeMs = 0;
    armed = null;
    stats.swaps += 1;
    stats.step = p.step;
    shownStep = p.step;
    layoutDirty = true;
    stats.texturesReady = p.built.filter((b) => b.face.map !== placeholder).length;
    setTimeout(() => disposeMaterial(...old), 0); // GL deletes outside the frame
  }

  function swapDecided() {
    const d = pendingDecided;
    pendingDecided = null;
    const old = [decidedFace.material, decidedLabel.material];
    decidedFace.material = new MeshBasicMaterial({ map: d.faceMap });
    decidedLabel.material = new MeshBasicMaterial({ map: d.labelMap, transparent: true });
    gridGroup.visible = false;
    decidedGroup.visible = true;
    setTimeout(() => disposeMaterial(...old), 0);
  }

  function disposeMaterial(...mats) {
    for (const m of mats) {
      if (!m) continue;
      if (m.map && m.map !== placeholder && !Object.values(buttons).some((b) => b.mesh.material.map === m.map)) {
        if (m.map.image && typeof m.map.image.close === 'function') m.map.image.close();
        m.map.dispose();
      }
      m.dispose();
    }
  }

  function discard(p) {
    for (const b of p.built) disposeMaterial(b.face, b.label);
    p.decideTex.dispose();
    p.statusTex.dispose();
  }

  function isVisible(obj) {
    for (let o = obj; o; o = o.parent) if (!o.visible) return false;
    return true;
  }

  // -- session ------------------------------------------------------------------------------------
  let refSpace = 'local-floor';
  async function end() {
    if (ended) return;
    ended = true;
    if (session) {
      try { await session.end(); } catch { /* already ended */ }
    }
    cleanup();
  }

  function cleanup() {
    renderer.setAnimationLoop(null);
    unsubscribe();
    if (mode === 'preview') {
      canvas.removeEventListener('pointermove', onMove);
      canvas.removeEventListener('pointerleave', onLeave);
      canvas.removeEventListener('click', onClick);
      window.removeEventListener('keydown', onKey);
      window.removeEventListener('resize', onResize);
      exitButton.remove();
    }
    for (const m of [backMats.on, backMats.off]) {
      m.map.dispose();
      m.dispose();
    }
    scene.traverse((o) => {
      if (o.geometry) o.geometry.dispose();
      if (o.material) disposeMaterial(o.material);
    });
    placeholder.dispose();
    renderer.dispose();
    canvas.remove();
    if (window.omokage) delete window.omokage.xr;
    api.ended();
  }

  if (session) {
    renderer.xr.enabled = true;
    const features = session.enabledFeatures;
    refSpace = !features || features.includes('local-floor') ? 'local-floor' : 'local';
    renderer.xr.setReferenceSpaceType(refSpace);
    try {
      await renderer.xr.setSession(session);
    } catch (err) {
      if (refSpace !== 'local') {
        refSpace = 'local';
        renderer.xr.setReferenceSpaceType('local');
        await renderer.xr.setSession(session);
      } else {
        throw err;
      }
    }
    session.addEventListener('end', () => {
      if (!ended) {
        ended = true;
        cleanup();
      }
    });
    // the highest refresh rate up to 90 Hz the headset offers (Quest: 72 by default)
    if (session.supportedFrameRates && session.updateTargetFrameRate) {
      const rates = [...session.supportedFrameRates].filter((r) => r <= 90);
      if (rates.length) session.updateTargetFrameRate(Math.max(...rates)).catch(() => {});
    }
  }

  if (window.omokage) {
    window.omokage.xr = {
      stats,
      end,
      // for tests: what a select on face i or a button would do
      select: (kindOrIndex) => select({ object: typeof kindOrIndex === 'number' ? panels[kindOrIndex].face : (buttons[kindOrIndex] || {}).mesh }),
      // for tests: a trigger press whose controller ray hits nothing (chooses the armed face, if any)
      press: () => select(null),
      // preview, for tests and demos: a scripted viewer pose, the head at `position` looking along `direction`
      // (scene frame; null: the mouse again). The head ray is then the gaze, as in a headset.
      setViewerPose(position, direction) {
        if (mode !== 'preview') return;
        if (!position) {
          scriptedPose = false;
          camera.position.set(0, 1.6, 0);
          camera.quaternion.identity();
          return;
        }
        scriptedPose = true;
        camera.position.set(position[0], position[1], position[2]);
        local.set(position[0] + direction[0], position[1] + direction[1], position[2] + direction[2]);
        camera.lookAt(local);
        camera.updateMatrixWorld();
      },
      // where panel i's card centre is (scene frame), to aim a scripted pose at it
      panelCentre(i) {
        const v = new Vector3();
        panels[i].plate.getWorldPosition(v);
        return [v.x, v.y, v.z];
      },
    };
  }
  if (api.state.items.length) await prepare(api.state);
  if (api.state.decided) await prepareDecided(api.state);
  renderer.setAnimationLoop(frame);
}

// -- canvas textures (drawn when candidates arrive, never in the loop) ----------------------------

function makeCanvasTexture(w, h, draw) {
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  draw(c.getContext('2d'), w, h);
  const t = new CanvasTexture(c);
  t.colorSpace = SRGBColorSpace;
  t.anisotropy = 4;
  return t;
}

function fit(g, text, width) {
  if (g.measureText(text).width <= width) return text;
  let s = text;
  while (s.length > 1 && g.measureText(`${s}…`).width > width) s = s.slice(0, -1);
  return `${s}…`;
}

function labelTexture(i, title, isPick) {
  const [name, desc = ''] = title.split(' — ');
  return makeCanvasTexture(512, 112, (g) => {
    g.fillStyle = isPick ? '#ff8fab' : '#2a2f3b';
    g.beginPath();
    g.arc(40, 56, 26, 0, Math.PI * 2);
    g.fill();
    g.fillStyle = isPick ? '#101218' : '#e9ebf1';
    g.font = '700 30px system-ui, sans-serif';
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(String(i + 1), 40, 57);
    g.textAlign = 'left';
    g.fillStyle = '#e9ebf1';
    g.font = '600 36px system-ui, sans-serif';
    g.fillText(fit(g, name, 420), 80, 38);
    g.fillStyle = '#9aa1b2';
    g.font = '28px system-ui, sans-serif';
    g.fillText(fit(g, desc, 420), 80, 82);
  });
}

/** Whether the grid's first face is one the user can decide on: their pick, or the closest to their picture. */
function decidable(st) {
  return st.first === 'pick' || st.first === 'closest';
}

/** A button's face; `dim`: a button that cannot act now (the 2D page's disabled look). */
function buttonTexture(text, primary, aspect, dim = false) {
  return makeCanvasTexture(Math.round(112 * aspect), 112, (g, w, h) => {
    if (dim) g.globalAlpha = 0.45;
    g.fillStyle = primary ? '#ff8fab' : '#232734';
    roundRect(g, 2, 2, w - 4, h - 4, h / 2 - 4);
    g.fill();
    g.fillStyle = primary ? '#101218' : '#e9ebf1';
    g.font = `600 ${Math.round(h * 0.38)}px system-ui, sans-serif`;
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(fit(g, text, w - h * 0.6), w / 2, h / 2 + 2);
  });
}

function statusTexture(step, label) {
  return makeCanvasTexture(1024, 64, (g, w, h) => {
    g.fillStyle = '#9aa1b2';
    g.font = '30px system-ui, sans-serif';
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    const text = `Step ${step}  ·  ${String(label || '').toUpperCase()}  ·  trigger to choose; or rest your gaze on a face, then press`;
    g.fillText(fit(g, text, w - 24), w / 2, h / 2);
  });
}

function r5(x) {
  return Math.round(x * 1e5) / 1e5;
}

function roundRect(g, x, y, w, h, r) {
  g.beginPath();
  g.moveTo(x + r, y);
  g.arcTo(x + w, y, x + w, y + h, r);
  g.arcTo(x + w, y + h, x, y + h, r);
  g.arcTo(x, y + h, x, y, r);
  g.arcTo(x, y, x + w, y, r);
  g.closePath();
}
