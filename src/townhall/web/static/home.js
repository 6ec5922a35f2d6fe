// Home page: who you are (guest, sign in, sign up), start or schedule a Space, the Spaces live now
// (with their listener count and who is on stage, from each Space's cacheable snapshot) and the
// ones coming up, with "Remind me".
//
// Which reminders this browser set it remembers itself (api.js, `remindedSpaces`).
//
// `?next=/s/…` brings a person back to the page that sent them here to sign in.

import {
  api,
  byId,
  clearErrors,
  continueAsGuest,
  el,
  errorAt,
  listenersLabel,
  rememberReminder,
  remindedSpaces,
  roleLabel,
  safeNext,
  say,
  showRecording,
  signIn,
  signOut,
  signUp,
  stateLabel,
  whoAmI,
} from './api.js';

const LIST_REFRESH_MS = 15000;
const SNAPSHOTS_SHOWN = 12; // live Spaces whose snapshot (count, stage) the list fetches

const ui = {
  who: byId('who'),
  whoName: byId('who-name'),
  signout: byId('signout'),
  identity: byId('identity'),
  identityError: byId('identity-error'),
  modes: {
    guest: { button: byId('mode-guest'), form: byId('guest-form') },
    signin: { button: byId('mode-signin'), form: byId('signin-form') },
    signup: { button: byId('mode-signup'), form: byId('signup-form') },
  },
  createForm: byId('create-form'),
  createFields: byId('create-fields'),
  createSignin: byId('create-signin'),
  title: byId('title'),
  visibility: byId('visibility'),
  record: byId('record'),
  captions: byId('captions'),
  schedule: byId('schedule'),
  whenField: byId('when-field'),
  when: byId('when'),
  upcomingList: byId('upcoming-list'),
  upcomingEmpty: byId('upcoming-empty'),
  upcomingStatus: byId('upcoming-status'),
  upcomingError: byId('upcoming-error'),
  create: byId('create'),
  createStatus: byId('create-status'),
  createError: byId('create-error'),
  liveList: byId('live-list'),
  liveEmpty: byId('live-empty'),
  liveError: byId('live-error'),
};

let me = null;
const next = safeNext(new URLSearchParams(location.search).get('next'));

// ---------------------------------------------------------------------------------------- identity

function showIdentity(identity) {
  me = identity;
  ui.who.hidden = !me;
  ui.identity.hidden = Boolean(me);
  ui.whoName.textContent = me ? `${me.display_name}${me.kind === 'guest' ? ' (guest)' : ''}` : '';
  ui.createFields.disabled = !me;
  ui.createSignin.hidden = Boolean(me);
}

function chooseMode(mode) {
  for (const [name, { button, form }] of Object.entries(ui.modes)) {
    button.setAttribute('aria-pressed', String(name === mode));
    form.hidden = name !== mode;
  }
  say(ui.identityError, '');
  clearErrors(ui.identity);
  const first = ui.modes[mode].form.querySelector('input');
  if (first) first.focus();
}

/** The form's inputs, trimmed; focuses and names the first empty one, right under it. */
function filled(form) {
  const values = [];
  for (const input of form.querySelectorAll('input')) {
    const value = input.type === 'password' ? input.value : input.value.trim();
    if (!value) {
      const label = form.querySelector(`label[for="${input.id}"]`);
      errorAt(input, `Fill in “${label ? label.textContent : input.id}”.`);
      input.focus();
      return null;
    }
    values.push(value);
  }
  return values;
}

/**
 * Says a refusal next to what caused it: the input the server names (`err.field`, matched by the
 * input's `name`), or else the form's submit button.
 */
function refuse(form, err) {
  const input = err.field ? form.querySelector(`[name="${err.field}"]`) : null;
  if (input) {
    errorAt(input, err.message);
    input.focus();
  } else {
    errorAt(form.querySelector('button[type="submit"]'), err.message);
  }
}

function onIdentityForm(form, submit) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    say(ui.identityError, '');
    clearErrors(form); // the person tries again: old sentences would describe the old input
    const values = filled(form);
    if (values === null) return;
    const button = form.querySelector('button[type="submit"]');
    button.disabled = true;
    try {
      const identity = await submit(...values);
      if (next) {
        location.assign(next);
        return;
      }
      showIdentity(identity);
      form.reset();
      ui.title.focus();
      refreshLists();
    } catch (err) {
      refuse(form, err.code === 'bad_credentials' ? { ...err, message: err.message, field: 'password' } : err);
    } finally {
      button.disabled = false;
    }
  });
}

// ------------------------------------------------------------------------------------ create

async function createSpace(event) {
  event.preventDefault();
  say(ui.createError, '');
  clearErrors(ui.createForm);
  const title = ui.title.value.trim();
  if (!title) {
    errorAt(ui.title, 'Give your Space a title.');
    ui.title.focus();
    return;
  }
  const body = { title, visibility: ui.visibility.value, record: ui.record.checked, captions: ui.captions.checked };
  if (ui.schedule.checked) {
    const start = ui.when.value ? new Date(ui.when.value).getTime() / 1000 : NaN;
    if (!Number.isFinite(start) || start < Date.now() / 1000) {
      errorAt(ui.when, 'Pick a start time in the future.');
      ui.when.focus();
      return;
    }
    body.scheduled_start = Math.round(start);
  }
  ui.create.disabled = true;
  ui.createStatus.textContent = body.scheduled_start ? 'Scheduling your Space…' : 'Opening your green room…';
  try {
    const created = await api('/api/spaces', { method: 'POST', body });
    ui.createStatus.textContent = body.scheduled_start
      ? 'Your Space is scheduled. Opening its stage…'
      : 'Your Space is ready. Opening the stage…';
    location.assign(`/s/${created.space.id}/stage`);
  } catch (err) {
    ui.createStatus.textContent = '';
    if (err.status === 401) {
      say(ui.createError, 'Pick a name or sign in first.');
      showIdentity(null);
    } else {
      refuse(ui.createForm, err);
    }
    ui.create.disabled = false;
  }
}

// ------------------------------------------------------------------------------------- live list

/** The first speakers' names and the count: "Ana, Ben and 3 more on stage". */
function stageLine(stage) {
  const host = stage.find((m) => m.role === 'host');
  const others = stage.filter((m) => m !== host);
  const named = others.slice(0, 2).map((m) => m.display_name);
  const rest = others.length - named.length;
  const parts = [];
  if (host) parts.push(`Hosted by ${host.display_name}`);
  if (named.length > 0) parts.push(`with ${named.join(', ')}${rest > 0 ? ` and ${rest} more` : ''}`);
  return parts.join(' ');
}

function spaceItem({ space, stage }) {
  const item = el('li', 'space-item');
  const head = el('div', 'space-item-head');
  const badge = el('span', 'badge', stateLabel(space.state));
  badge.dataset.state = space.state;
  const link = el('a', 'space-link', space.title);
  link.href = `/s/${space.id}`;
  head.append(link, badge, recBadge(space));
  const line = stageLine(stage);
  item.append(head);
  if (line) item.append(el('p', 'hint', line));
  const live = el('p', 'hint live-line');
  live.dataset.space = space.id;
  live.hidden = true;
  item.append(live);
  const mine = me && stage.find((m) => m.user_id === me.user_id);
  if (mine) {
    const stageLink = el('a', 'stage-link', `Open the stage (${roleLabel(mine.role)})`);
    stageLink.href = `/s/${space.id}/stage`;
    item.append(stageLink);
  }
  return item;
}

/** REC (or "Will be recorded") beside a recorded Space's name, before anyone opens it. */
function recBadge(space) {
  const badge = el('span', 'badge rec');
  showRecording(badge, space.record, space.state);
  return badge;
}

async function refreshLive() {
  try {
    const spaces = await api('/api/spaces?state=live');
    ui.liveList.replaceChildren(...spaces.map(spaceItem));
    ui.liveEmpty.hidden = spaces.length > 0;
    say(ui.liveError, '');
    spaces.slice(0, SNAPSHOTS_SHOWN).forEach(({ space }) => showLiveDetails(space.id));
  } catch (err) {
    say(ui.liveError, `Could not load the live Spaces: ${err.message}`);
  }
}

/** Listener count and who is speaking, from the Space's snapshot (cacheable: the same for everyone). */
async function showLiveDetails(spaceId) {
  let snapshot;
  try {
    snapshot = await api(`/api/spaces/${spaceId}/snapshot`, { cache: 'default' });
  } catch {
    return; // the list still names the Space; details are a nicety
  }
  const line = ui.liveList.querySelector(`.live-line[data-space="${spaceId}"]`);
  if (!line) return;
  const parts = [listenersLabel(snapshot.listeners.approx)];
  const speaking = snapshot.space.on_air ? snapshot.stage.filter((m) => m.speaking && !m.muted) : [];
  if (speaking.length > 0) parts.push(`${speaking.map((m) => m.display_name).join(', ')} speaking`);
  line.textContent = parts.join(' · ');
  line.hidden = false;
}

// -------------------------------------------------------------------------------------- upcoming

function startsLabel(seconds) {
  if (!seconds) return 'Start time to be announced';
  const when = new Date(seconds * 1000);
  const format = new Intl.DateTimeFormat(undefined, { weekday: 'short', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
  return `Starts ${format.format(when)}`;
}

function showRemind(button, on, title) {
  button.setAttribute('aria-pressed', String(on));
  button.textContent = on ? 'Reminder set' : 'Remind me';
  button.setAttribute('aria-label', on ? `Cancel the reminder for ${title}` : `Remind me of ${title}`);
}

async function toggleRemind(button, space) {
  say(ui.upcomingError, '');
  const on = remindedSpaces().has(space.id);
  button.disabled = true;
  try {
    if (!me) {
      // The identity card is right on this page: send the person there rather than a second form.
      say(ui.upcomingError, 'Pick a name or sign in at the top of the page to get a reminder.');
      const first = ui.identity.querySelector('form:not([hidden]) input');
      if (first) first.focus();
      return;
    }
    await api(`/api/spaces/${space.id}/remind`, { method: on ? 'DELETE' : 'POST' });
    rememberReminder(space.id, !on);
    // The list may have been rebuilt while the request was out (a refresh that began before it
    // answered): show the new state on the button the list holds now, not only the one clicked.
    const shown = ui.upcomingList.querySelector(`button.remind[data-space="${space.id}"]`);
    for (const each of new Set([button, shown].filter(Boolean))) showRemind(each, !on, space.title);
    ui.upcomingStatus.textContent = on
      ? `Reminder for “${space.title}” cancelled.`
      : `Reminder saved for “${space.title}”.`;
    clearErrors(ui.upcomingList);
  } catch (err) {
    errorAt(button, err.message);
    if (err.status === 401) showIdentity(null);
  } finally {
    button.disabled = false;
  }
}

function upcomingItem({ space, stage }) {
  const item = el('li', 'space-item');
  const head = el('div', 'space-item-head');
  const link = el('a', 'space-link', space.title);
  link.href = `/s/${space.id}`;
  const badge = el('span', 'badge', stateLabel(space.state));
  badge.dataset.state = space.state;
  head.append(link, badge, recBadge(space));
  item.append(head, el('p', 'hint', startsLabel(space.scheduled_start)));
  const line = stageLine(stage);
  if (line) item.append(el('p', 'hint', line));
  const row = el('div', 'row');
  const remind = el('button', 'small remind');
  remind.type = 'button';
  remind.dataset.space = space.id;
  showRemind(remind, remindedSpaces().has(space.id), space.title);
  remind.addEventListener('click', () => toggleRemind(remind, space));
  row.append(remind);
  const mine = me && stage.find((m) => m.user_id === me.user_id);
  if (mine) {
    const stageLink = el('a', 'stage-link', `Open the stage (${roleLabel(mine.role)})`);
    stageLink.href = `/s/${space.id}/stage`;
    row.append(stageLink);
  }
  item.append(row);
  return item;
}

async function refreshUpcoming() {
  try {
    const spaces = await api('/api/spaces?state=upcoming');
    spaces.sort((a, b) => (a.space.scheduled_start || Infinity) - (b.space.scheduled_start || Infinity));
    // Keep focus on a Remind button across refreshes: rebuild only when the list changed.
    const ids = spaces.map((s) => s.space.id).join(',');
    if (ui.upcomingList.dataset.ids !== ids || !ui.upcomingList.contains(document.activeElement)) {
      ui.upcomingList.replaceChildren(...spaces.map(upcomingItem));
      ui.upcomingList.dataset.ids = ids;
    }
    ui.upcomingEmpty.hidden = spaces.length > 0;
    say(ui.upcomingError, '');
  } catch (err) {
    say(ui.upcomingError, `Could not load the upcoming Spaces: ${err.message}`);
  }
}

function refreshLists() {
  refreshLive();
  refreshUpcoming();
}

/** A Date as a datetime-local input's value (local time, to the minute). */
function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

// -------------------------------------------------------------------------------------- startup

function wire() {
  for (const [mode, { button }] of Object.entries(ui.modes)) button.addEventListener('click', () => chooseMode(mode));
  onIdentityForm(ui.modes.guest.form, (name) => continueAsGuest(name));
  onIdentityForm(ui.modes.signin.form, (username, password) => signIn(username, password));
  onIdentityForm(ui.modes.signup.form, (username, displayName, password) => signUp(username, password, displayName));
  ui.signout.addEventListener('click', async () => {
    try {
      await signOut();
    } catch {
      // the cookie may already be gone: showing the signed-out page is right either way
    }
    showIdentity(null);
    refreshLists();
  });
  ui.createForm.addEventListener('submit', createSpace);
  ui.schedule.addEventListener('change', () => {
    ui.whenField.hidden = !ui.schedule.checked;
    ui.create.textContent = ui.schedule.checked ? 'Schedule the Space' : 'Start a Space';
    if (ui.schedule.checked) {
      if (!ui.when.value) ui.when.value = localInputValue(new Date(Date.now() + 3600 * 1000));
      ui.when.min = localInputValue(new Date());
      ui.when.focus();
    }
  });
}

async function main() {
  wire();
  ui.createFields.disabled = true; // until we know who this is (no flash of the sign-in card)
  try {
    showIdentity(await whoAmI());
  } catch (err) {
    showIdentity(null);
    say(ui.identityError, err.message);
  }
  if (next && !me) chooseMode('signin');
  await Promise.all([refreshLive(), refreshUpcoming()]);
  setInterval(refreshLists, LIST_REFRESH_MS);
}

main();
