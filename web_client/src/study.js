// v1.2 studies (docs/studies.md, docs/protocol.md "Studies"): the questionnaire form.
//
// renderQuestionnaire(box, q, onSubmit) fills `box` with the items of a `questionnaire` message: Likert items as
// five buttons with their anchors at the ends, best / worst as a choice among `choices` (the conditions' labels,
// never the models), free text as a text field; the submit button waits for every required item and hands
// [{item, value}] to `onSubmit`.

let seq = 0;

export function renderQuestionnaire(box, q, onSubmit) {
  const values = new Map(); // item id -> value
  const items = Array.isArray(q.items) ? q.items : [];
  const form = document.createElement('form');
  form.className = 'q-form';
  form.noValidate = true;
  const list = document.createElement('ol');
  list.className = 'q-items';
  const submit = document.createElement('button');
  submit.type = 'submit';
  submit.className = 'btn primary';
  submit.id = 'q-submit';
  submit.textContent = 'Send answers';
  const note = document.createElement('p');
  note.className = 'note';
  note.id = 'q-note';
  note.setAttribute('aria-live', 'polite');

  const missing = () => items.filter((it) => it.required && !values.has(it.id));
  const refresh = () => {
    const m = missing();
    submit.disabled = m.length > 0;
    note.textContent = m.length ? `${m.length === 1 ? 'One question needs' : `${m.length} questions need`} an answer.` : '';
  };

  for (const it of items) {
    const li = document.createElement('li');
    li.className = `q-item q-${it.kind}`;
    li.dataset.item = it.id;
    const id = `q${++seq}`;
    const text = document.createElement('p');
    text.className = 'q-text';
    text.id = id;
    text.textContent = it.text + (it.required ? '' : ' (optional)');
    li.appendChild(text);
    if (it.kind === 'likert' || it.kind === 'best' || it.kind === 'worst') {
      const options = it.kind === 'likert'
        ? range(Number.isInteger(it.min) ? it.min : 1, Number.isInteger(it.max) ? it.max : 5)
        : (Array.isArray(it.choices) ? it.choices : []);
      const row = document.createElement('div');
      row.className = it.kind === 'likert' ? 'likert' : 'choices';
      row.setAttribute('role', 'radiogroup');
      row.setAttribute('aria-labelledby', id);
      const buttons = options.map((value, k) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'btn opt';
        b.setAttribute('role', 'radio');
        b.setAttribute('aria-checked', 'false');
        b.dataset.value = String(value);
        b.textContent = String(value);
        if (it.kind === 'likert' && Array.isArray(it.labels) && it.labels.length === 2) {
          if (k === 0) b.setAttribute('aria-label', `${value}: ${it.labels[0]}`);
          if (k === options.length - 1) b.setAttribute('aria-label', `${value}: ${it.labels[1]}`);
        }
        b.onclick = () => {
          values.set(it.id, value);
          for (const o of buttons) o.setAttribute('aria-checked', String(o === b));
          refresh();
        };
        return b;
      });
      row.append(...buttons);
      li.appendChild(row);
      if (it.kind === 'likert' && Array.isArray(it.labels) && it.labels.length === 2) {
        const anchors = document.createElement('div');
        anchors.className = 'anchors';
        anchors.setAttribute('aria-hidden', 'true');
        for (const a of it.labels) {
          const s = document.createElement('span');
          s.textContent = a;
          anchors.appendChild(s);
        }
        li.appendChild(anchors);
      }
    } else if (it.kind === 'text') {
      const area = document.createElement('textarea');
      area.rows = 3;
      area.maxLength = 2000;
      area.setAttribute('aria-labelledby', id);
      area.oninput = () => {
        const v = area.value.trim();
        if (v) values.set(it.id, area.value.slice(0, 2000));
        else values.delete(it.id);
        refresh();
      };
      li.appendChild(area);
    } else {
      const p = document.createElement('p');
      p.className = 'note';
      p.textContent = `(This page cannot show a "${it.kind}" question; the others are sent.)`;
      li.appendChild(p);
    }
    list.appendChild(li);
  }

  form.append(list, note, submit);
  form.onsubmit = async (e) => {
    e.preventDefault();
    if (missing().length) return;
    submit.disabled = true;
    const answers = items.filter((it) => values.has(it.id)).map((it) => ({ item: it.id, value: values.get(it.id) }));
    try {
      await onSubmit(answers);
    } finally {
      if (form.isConnected) refresh();
    }
  };
  box.replaceChildren(form);
  refresh();
  const first = form.querySelector('button.opt, textarea');
  if (first) first.focus({ preventScroll: true });
  return form;
}

function range(a, b) {
  const out = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}
