// The listener page of a Space that has not started: when it starts, in the viewer's own time
// zone, with a countdown; Remind me (by email too, for a signed-in account, by a push to this
// browser (push.js), and 10 minutes before if they like); Add to calendar (the Space's .ics) and the host's feed to subscribe to. While
// the page stays open, a reminded person is also told in the page, and by a browser notification
// if they allowed one, the moment the Space goes on air.
//
// Fed by listen.js with each snapshot (`showUpcoming`); asks the API only when the person acts,
// and once for the host's id (the snapshot, shared by the whole audience, does not carry it).

import { api, byId, ensureIdentity, errorAt, clearErrors, rememberReminder, remindedSpaces, say, whoAmI } from './api.js';
import { pushSupported, subscribeThisBrowser } from './push.js';

const COUNTDOWN_MS = 1000;

const ui = {
  card: byId('upcoming'),
  startsAt: byId('starts-at'),
  countdown: byId('countdown'),
  form: byId('remind-form'),
  emailRow: byId('remind-email-row'),
  email: byId('remind-email'),
  soon: byId('remind-soon'),
  soonRow: byId('remind-soon-row'),
  push: byId('remind-push'),
  pushRow: byId('remind-push-row'),
  button: byId('remind'),
  cancel: byId('remind-cancel'),
  guestHint: byId('remind-guest-hint'),
  status: byId('remind-status'),
  calendar: byId('calendar'),
  hostFeed: byId('host-feed'),
};

const state = {
  spaceId: null,
  code: null,
  start: null, // UNIX seconds
  timer: 0,
  wired: false,
  hostAsked: false,
  told: false, // the "on air now" news was given
  announce: () => {},
};

/** "Saturday 5 December, 19:00 (your time, Europe/Paris)" */
function localTime(seconds) {
  const when = new Date(seconds * 1000);
  const format = new Intl.DateTimeFormat(undefined, {
    weekday: 'long', day: 'numeric', month: 'long', hour: 'numeric', minute: '2-digit',
  });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return `${format.format(when)} (your time${zone ? `, ${zone}` : ''})`;
}

/** "in 2 days 3 h", "in 12 min 5 s", "any moment now" */
function countdown(seconds) {
  const left = Math.round(seconds - Date.now() / 1000);
  if (left <= 0) return 'Any moment now';
  const days = Math.floor(left / 86400);
  const hours = Math.floor((left % 86400) / 3600);
  const minutes = Math.floor((left % 3600) / 60);
  const secs = left % 60;
  if (days > 0) return `Starts in ${days} day${days === 1 ? '' : 's'} ${hours} h`;
  if (hours > 0) return `Starts in ${hours} h ${minutes} min`;
  return `Starts in ${minutes} min ${secs} s`;
}

function tick() {
  if (state.start) ui.countdown.textContent = countdown(state.start);
}

function withCode(path) {
  return state.code ? `${path}?code=${encodeURIComponent(state.code)}` : path;
}

function showReminded(on) {
  ui.button.textContent = on ? 'Update my reminder' : 'Remind me';
  ui.cancel.hidden = !on;
}

let channels = null; // how this server reminds people: {email, push, page} (asked once)

async function showWhoCanMail() {
  let me = null;
  try {
    if (channels === null) channels = await api('/api/reminders/channels', { cache: 'default' });
    me = await whoAmI();
  } catch {
    // asked again when they press the button
  }
  const account = Boolean(me && me.kind === 'account');
  const mails = Boolean(channels && channels.email);
  ui.emailRow.hidden = !account || !mails;
  ui.guestHint.hidden = account || !mails;
  ui.pushRow.hidden = !(channels && channels.push && pushSupported());
  ui.soonRow.hidden = ui.emailRow.hidden && ui.pushRow.hidden;
}

/** "We will email ada@example.org and notify this browser when it starts, and 10 minutes before." */
function promise(email, push, soon) {
  const ways = [email ? `email ${email}` : '', push ? 'notify this browser' : ''].filter(Boolean);
  if (ways.length === 0) return 'Reminder saved: keep this page open and you will be told when it starts.';
  return `We will ${ways.join(' and ')} when it starts${soon ? ', and 10 minutes before' : ''}.`;
}

async function remind(event) {
  event.preventDefault();
  clearErrors(ui.form);
  say(ui.status, '');
  const me = await ensureIdentity('ask to be reminded');
  if (!me) return;
  const email = me.kind === 'account' && !ui.emailRow.hidden ? ui.email.value.trim() : '';
  ui.button.disabled = true;
  let push = !ui.pushRow.hidden && ui.push.checked;
  let pushTrouble = '';
  if (push) {
    try {
      await subscribeThisBrowser();
    } catch (err) {
      push = false; // remind by the other ways; say why not this one
      pushTrouble = err.message;
    }
  }
  const soon = (Boolean(email) || push) && ui.soon.checked;
  const body = { ...(email ? { email } : {}), ...(push ? { push } : {}), ...(soon ? { soon } : {}) };
  try {
    await api(withCode(`/api/spaces/${state.spaceId}/remind`), { method: 'POST', body });
    rememberReminder(state.spaceId, true);
    showReminded(true);
    say(ui.status, [pushTrouble, promise(email, push, soon)].filter(Boolean).join(' '));
    // The in-page notice: ask now, while the person is pressing a button (browsers require it).
    if (window.Notification && Notification.permission === 'default') Notification.requestPermission().catch(() => {});
  } catch (err) {
    errorAt(err.field === 'email' ? ui.email : ui.button, err.message);
  } finally {
    ui.button.disabled = false;
    showWhoCanMail();
  }
}

async function cancel() {
  clearErrors(ui.form);
  try {
    await api(withCode(`/api/spaces/${state.spaceId}/remind`), { method: 'DELETE' });
    rememberReminder(state.spaceId, false);
    showReminded(false);
    say(ui.status, 'Reminder cancelled.');
  } catch (err) {
    errorAt(ui.cancel, err.message);
  }
}

async function findHost() {
  state.hostAsked = true;
  try {
    const view = await api(withCode(`/api/spaces/${state.spaceId}`), { cache: 'default' });
    if (view.space.visibility !== 'public') return; // a host's feed lists public Spaces only
    ui.hostFeed.href = `/api/hosts/${view.space.host_id}/calendar.ics`;
    ui.hostFeed.hidden = false;
  } catch {
    // the feed link is a nicety: without it the page still works
  }
}

function wire() {
  state.wired = true;
  ui.form.addEventListener('submit', remind);
  ui.cancel.addEventListener('click', cancel);
  showReminded(remindedSpaces().has(state.spaceId));
  showWhoCanMail();
}

/** The news that the Space is on air, for someone who asked to be reminded and kept the page. */
function tellOnAir(title) {
  if (state.told || !remindedSpaces().has(state.spaceId)) return;
  state.told = true;
  state.announce(`“${title}” is on air now. Press Play to listen.`);
  if (window.Notification && Notification.permission === 'granted' && document.visibilityState !== 'visible') {
    try {
      new Notification('On air now', { body: title, tag: `townhall-${state.spaceId}` });
    } catch {
      // some browsers allow notifications only from a service worker: the page notice stands
    }
  }
}

/**
 * Show (or hide) the upcoming card for this snapshot's Space. `announce` speaks a sentence to
 * the page's live region.
 */
export function showUpcoming(info, spaceId, code, announce) {
  state.spaceId = spaceId;
  state.code = code;
  state.announce = announce;
  const upcoming = info.state === 'scheduled' && Boolean(info.scheduled_start);
  ui.card.hidden = !upcoming;
  if (info.state === 'live') tellOnAir(info.title);
  if (!upcoming) {
    clearInterval(state.timer);
    state.timer = 0;
    return;
  }
  if (!state.wired) wire();
  if (!state.hostAsked) findHost();
  ui.calendar.href = withCode(`/api/spaces/${spaceId}/calendar.ics`);
  if (state.start !== info.scheduled_start) {
    state.start = info.scheduled_start;
    ui.startsAt.dateTime = new Date(state.start * 1000).toISOString();
    ui.startsAt.textContent = localTime(state.start);
  }
  tick();
  if (!state.timer) state.timer = setInterval(tick, COUNTDOWN_MS);
}
