// The host console's "Details" form: title and description at any time; before the Space opens,
// also its start time (in the host's own time zone) and who can find it. Only what the host
// changed is sent (PATCH); the server checks the start time and tells everyone reminded by email or push.
//
// stage.js owns the console: it passes the call that sends the change (its console call, which
// shows a refusal by the button) and what to do with the Space that comes back.

import { byId, errorAt, say } from './api.js';

const ui = {
  form: byId('edit-form'),
  title: byId('edit-title'),
  description: byId('edit-description'),
  scheduled: byId('edit-scheduled'),
  start: byId('edit-start'),
  visibility: byId('edit-visibility'),
  save: byId('edit-save'),
  status: byId('edit-status'),
};

const FIELDS = { title: 'title', description: 'description', scheduled_start: 'start', visibility: 'visibility' };

let shown = null; // the Space the form was last filled from
let send = null;

/** "2026-12-05T19:00" in the browser's zone, as a datetime-local input takes it. */
function localInput(seconds) {
  const at = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}T${pad(at.getHours())}:${pad(at.getMinutes())}`;
}

function changes() {
  const body = {};
  const title = ui.title.value.trim();
  const description = ui.description.value.trim();
  if (title !== shown.title) body.title = title;
  if (description !== (shown.description || '')) body.description = description;
  if (shown.state === 'scheduled') {
    if (ui.start.value && ui.start.value !== localInput(shown.scheduled_start)) {
      body.scheduled_start = new Date(ui.start.value).getTime() / 1000; // the input's local time
    }
    if (ui.visibility.value !== shown.visibility) body.visibility = ui.visibility.value;
  }
  return body;
}

async function save(event) {
  event.preventDefault();
  say(ui.status, '');
  for (const input of [ui.title, ui.description, ui.start, ui.visibility]) errorAt(input, '');
  const body = changes();
  if (Object.keys(body).length === 0) {
    say(ui.status, 'Nothing changed.');
    return;
  }
  const result = await send(body, (err) => {
    const input = ui[FIELDS[err.field] || (String(err.code).startsWith('start_') ? 'start' : '')];
    errorAt(input || ui.save, err.message);
  });
  if (!result) return;
  say(
    ui.status,
    'scheduled_start' in body
      ? 'Saved. Everyone who asked to be reminded by email or push is told of the new time.'
      : 'Saved.',
  );
}

/** Wire the form: `call(body, onError)` sends the change and resolves to the API's answer. */
export function wireEdit(call) {
  send = call;
  ui.form.addEventListener('submit', save);
}

/** Fill the form from the Space (leaving alone a field the host is typing in). */
export function renderEdit(space) {
  const fresh = !shown || shown.id !== space.id;
  const changed = fresh || shown.title !== space.title || shown.description !== space.description
    || shown.scheduled_start !== space.scheduled_start || shown.visibility !== space.visibility
    || shown.state !== space.state;
  shown = space;
  if (!changed) return;
  const typing = (input) => document.activeElement === input;
  if (!typing(ui.title)) ui.title.value = space.title;
  if (!typing(ui.description)) ui.description.value = space.description || '';
  ui.scheduled.hidden = space.state !== 'scheduled';
  if (space.scheduled_start && !typing(ui.start)) ui.start.value = localInput(space.scheduled_start);
  if (!typing(ui.visibility)) ui.visibility.value = space.visibility;
}
