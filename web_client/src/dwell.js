// Dwell time per item per step: how long a pointer (mouse, pen, XR controller ray) or the head gaze
// rested on each face. The gaze work will send these to the server; for now they are kept in
// `window.omokage.dwell` (pointer) and `window.omokage.gazeDwell` (XR head gaze), shaped
//   { [step]: { [itemId]: milliseconds } }
// for the current selection; `history` keeps those of earlier selections (after a new `start`).

export class DwellTracker {
  constructor(now = () => performance.now()) {
    this.now = now;
    this.steps = {};
    this.history = [];
    this.step = 0;
    this.active = new Map(); // id -> since (ms)
  }

  /** A new selection (`start`): archive the old one. */
  reset() {
    this.flush();
    if (Object.keys(this.steps).length) this.history.push(this.steps);
    this.steps = {};
    this.step = 0;
  }

  /** New candidates shown: close open intervals on the previous step, begin counting on `step`. */
  setStep(step) {
    this.flush();
    this.active.clear();
    this.step = step;
    if (!this.steps[step]) this.steps[step] = {};
  }

  /** v1.7 `back`: the selection is at `step` again; what was counted there and after it is dropped (looked at afresh). */
  rewind(step) {
    this.flush();
    this.active.clear();
    for (const k of Object.keys(this.steps)) if (Number(k) >= step) delete this.steps[k];
    this.step = step;
    this.steps[step] = {};
  }

  enter(id) {
    if (!this.active.has(id)) this.active.set(id, this.now());
  }

  leave(id) {
    const since = this.active.get(id);
    if (since === undefined) return;
    this.active.delete(id);
    this.add(id, this.now() - since);
  }

  /** Add `ms` directly (the XR loop accumulates per frame). */
  add(id, ms) {
    if (!this.step || !(ms > 0)) return;
    const row = this.steps[this.step] || (this.steps[this.step] = {});
    row[id] = Math.round(((row[id] || 0) + ms) * 10) / 10;
  }

  /** Book the time of open intervals so far (intervals stay open). */
  flush() {
    const t = this.now();
    for (const [id, since] of this.active) {
      this.add(id, t - since);
      this.active.set(id, t);
    }
  }

  /** Milliseconds on `id` in the current step, open interval included. */
  current(id) {
    const row = this.steps[this.step] || {};
    const since = this.active.get(id);
    return (row[id] || 0) + (since === undefined ? 0 : this.now() - since);
  }

  /** Stop counting everything (page hidden, pointer left the window). */
  pauseAll() {
    for (const id of [...this.active.keys()]) this.leave(id);
  }
}
