// The townhall JSON API as the pages use it, and the few helpers every page shares.
//
// Every API error has one shape, {"error": {"code", "message"}}; `api()` turns it (and a network
// failure) into an ApiError whose message is written for the person in front of the page.
//
// Identity. Signing up, signing in and "continue as a guest" set the HttpOnly `th_session` cookie;
// pages never see the token, they send the cookie with every same-origin call and ask
// `GET /api/auth/me` who they are. Listening needs no identity; reacting, raising a hand and the
// stage do: `ensureIdentity()` asks for a guest name (or offers to sign in) when there is none.

export class ApiError extends Error {
  constructor(status, code, message, retryAfterSeconds = 0, field = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status; // 0 when the server could not be reached at all
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
    this.field = field; // the input it is about (the request's JSON name), when the server says
  }
}

/** Refusals about one input that the server names by code rather than by field. */
const CODE_FIELDS = {
  bad_username: 'username',
  username_taken: 'username',
  bad_password: 'password',
  bad_display_name: 'display_name',
};

function retryAfter(response) {
  const raw = response.headers.get('Retry-After');
  const seconds = raw === null ? NaN : Number(raw);
  return Number.isFinite(seconds) && seconds > 0 ? seconds : 0;
}

/** Messages of the server written for API clients, said again for people. */
const FRIENDLY = {
  identity_required: 'Sign in or pick a guest name first.',
  bad_credentials: 'Wrong username or password.',
  username_taken: 'That username is taken: pick another one.',
  banned: 'You are banned from this Space.',
  token_expired: 'This invite link has expired. Ask the host for a new one.',
  token_invalid: 'This invite link is not valid. Ask the host for a new one.',
  token_wrong_space: 'This invite link is for another Space. Open the link exactly as it was sent to you.',
  rate_limited: 'Slow down a little, then try again.',
};

/**
 * One API call. `cache: 'default'` is for the few public, cacheable reads (the listeners'
 * snapshot): 'no-store' (the default here) makes the browser send `Cache-Control: no-cache`,
 * which would ask every HTTP cache on the way to go to the origin.
 */
export async function api(path, { method = 'GET', body, keepalive = false, cache = 'no-store' } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin', // the session cookie is the identity
      keepalive,
      cache,
    });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  if (response.status === 204 || response.status === 202) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON (a proxy's error page, say): fall through to the generic message
  }
  if (!response.ok) {
    const error = data && typeof data.error === 'object' ? data.error : {};
    const code = error.code || `http_${response.status}`;
    let message = FRIENDLY[code] || error.message || `The server answered ${response.status} ${response.statusText}.`;
    message = message.trim();
    message = message.charAt(0).toUpperCase() + message.slice(1);
    if (!/[.!?]$/.test(message)) message += '.';
    throw new ApiError(response.status, code, message, retryAfter(response), error.field || CODE_FIELDS[code] || null);
  }
  return data;
}

// ------------------------------------------------------------------------------------- identity
//
// The session cookie is HttpOnly, so a page cannot see whether it has one: it asks the server.
// `GET /api/auth/me` answers 200 either way ({"signed_in": false} when nobody is signed in), so
// asking costs a signed-out listener no console error, and the pages keep no copy of who they are.

try {
  localStorage.removeItem('townhall.identity'); // the hint earlier versions kept: nothing reads it now
} catch {
  // storage blocked: nothing was kept either
}

const REMINDERS_KEY = 'townhall.reminders';

/**
 * The Spaces this browser asked to be reminded of. The API has no "did I ask?" read: the browser
 * remembers the reminders it set (localStorage), which is right for the person who set them here.
 */
export function remindedSpaces() {
  try {
    const saved = JSON.parse(localStorage.getItem(REMINDERS_KEY) || '[]');
    return new Set(Array.isArray(saved) ? saved : []);
  } catch {
    return new Set();
  }
}

/** Remember (or forget) that this browser asked to be reminded of a Space. */
export function rememberReminder(spaceId, on) {
  const set = remindedSpaces();
  if (on) set.add(spaceId);
  else set.delete(spaceId);
  try {
    localStorage.setItem(REMINDERS_KEY, JSON.stringify([...set].slice(-200)));
  } catch {
    // storage blocked: the button just forgets after a reload
  }
}

/** Who this browser is ({user_id, display_name, kind, expires_at}), or null when signed out. */
export async function whoAmI() {
  const me = await api('/api/auth/me');
  return me && me.signed_in !== false ? me : null;
}

export async function signUp(username, password, displayName) {
  const body = { username, password, display_name: displayName };
  return api('/api/auth/signup', { method: 'POST', body });
}

export async function signIn(username, password) {
  return api('/api/auth/signin', { method: 'POST', body: { username, password } });
}

export async function continueAsGuest(displayName) {
  return api('/api/auth/guest', { method: 'POST', body: { display_name: displayName } });
}

export async function signOut() {
  await api('/api/auth/signout', { method: 'POST' });
}

/** The home page's sign-in link that brings the person back here afterwards (fragment included). */
export function signInLink() {
  return `/?next=${encodeURIComponent(location.pathname + location.search + location.hash)}`;
}

/**
 * A `next=` target that is a path on this site (never another origin), or null. Judged by what
 * the browser would do with it, not by its first characters: the URL parser drops tabs and
 * newlines and reads a backslash as a slash, so `/\t/evil.example/x` is `//evil.example/x`, another host.
 */
export function safeNext(raw) {
  if (typeof raw !== 'string' || !raw.startsWith('/')) return null;
  let url;
  try {
    url = new URL(raw, location.origin);
  } catch {
    return null;
  }
  if (url.origin !== location.origin) return null;
  return url.pathname + url.search + url.hash;
}

let identityDialog = null;

function buildIdentityDialog() {
  const dialog = document.createElement('dialog');
  dialog.className = 'identity-dialog';
  dialog.setAttribute('aria-labelledby', 'identity-heading');
  const form = document.createElement('form');
  form.method = 'dialog';
  form.noValidate = true;
  const heading = document.createElement('h2');
  heading.id = 'identity-heading';
  heading.textContent = 'Pick a name';
  const reason = document.createElement('p');
  reason.className = 'hint';
  reason.id = 'identity-reason';
  const field = document.createElement('div');
  field.className = 'field';
  const label = document.createElement('label');
  label.htmlFor = 'identity-name';
  label.textContent = 'Your name';
  const input = document.createElement('input');
  input.id = 'identity-name';
  input.type = 'text';
  input.maxLength = 40;
  input.autocomplete = 'nickname';
  input.required = true;
  input.setAttribute('aria-describedby', 'identity-reason');
  field.append(label, input);
  const error = document.createElement('p');
  error.className = 'error';
  error.setAttribute('role', 'alert');
  error.hidden = true;
  const row = document.createElement('div');
  row.className = 'row';
  const ok = document.createElement('button');
  ok.type = 'submit';
  ok.className = 'primary';
  ok.textContent = 'Continue as guest';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.textContent = 'Cancel';
  row.append(ok, cancel);
  const account = document.createElement('p');
  account.className = 'hint';
  const link = document.createElement('a');
  link.textContent = 'Sign in or create an account instead';
  account.append('Have an account? ', link);
  form.append(heading, reason, field, row, error, account);
  dialog.append(form);
  document.body.append(dialog);
  return { dialog, form, reason, input, error, ok, cancel, link };
}

/**
 * The current identity, or — when there is none — the one the person picks in a small dialog
 * (a guest name, or a link to sign in). Resolves to null when they cancel.
 */
export async function ensureIdentity(why) {
  const current = await whoAmI();
  if (current) return current;
  if (identityDialog === null) identityDialog = buildIdentityDialog();
  const ui = identityDialog;
  ui.reason.textContent = `Pick the name others see when you ${why}. No account needed.`;
  ui.link.href = signInLink();
  say(ui.error, '');
  ui.ok.disabled = false;
  return new Promise((resolve) => {
    const finish = (identity) => {
      ui.form.removeEventListener('submit', onSubmit);
      ui.cancel.removeEventListener('click', onCancel);
      ui.dialog.removeEventListener('cancel', onCancel);
      if (ui.dialog.open) ui.dialog.close();
      resolve(identity);
    };
    const onCancel = (event) => {
      event.preventDefault();
      finish(null);
    };
    const onSubmit = async (event) => {
      event.preventDefault();
      const name = ui.input.value.trim();
      if (!name) {
        say(ui.error, 'Type the name others will see.');
        ui.input.setAttribute('aria-invalid', 'true');
        ui.input.focus();
        return;
      }
      ui.input.removeAttribute('aria-invalid');
      ui.ok.disabled = true;
      try {
        finish(await continueAsGuest(name));
      } catch (err) {
        say(ui.error, err.message);
        ui.ok.disabled = false;
      }
    };
    ui.form.addEventListener('submit', onSubmit);
    ui.cancel.addEventListener('click', onCancel);
    ui.dialog.addEventListener('cancel', onCancel);
    ui.dialog.showModal();
    ui.input.focus();
  });
}

// ------------------------------------------------------------------------------------- display

const STATE_LABELS = {
  scheduled: 'Scheduled',
  green_room: 'Starting soon',
  live: 'Live',
  ended: 'Ended',
  cancelled: 'Cancelled',
  replay: 'Replay',
};

/** A Space's lifecycle state as people say it. */
export function stateLabel(state) {
  return STATE_LABELS[state] || String(state).replace(/_/g, ' ');
}

const ROLE_LABELS = { host: 'Host', cohost: 'Co-host', speaker: 'Speaker', listener: 'Listener' };

export function roleLabel(role) {
  return ROLE_LABELS[role] || String(role);
}

/**
 * The REC badge every page of a Space shows (stage and listeners alike), in a live region so that
 * screen readers say it when it appears or changes: "REC" on air, "Will be recorded" before
 * (nothing is recorded off air), nothing when the Space is not recorded or is over. Only writes
 * on change, so a poll does not make it speak again.
 */
export function showRecording(element, record, state) {
  const mode = !record ? '' : state === 'live' ? 'on' : state === 'scheduled' || state === 'green_room' ? 'soon' : '';
  if ((element.dataset.rec || '') === mode) return;
  element.dataset.rec = mode;
  if (mode === 'on') {
    const mark = el('span', 'rec-mark', 'REC');
    mark.setAttribute('aria-hidden', 'true');
    element.replaceChildren(mark, ' ', el('span', 'visually-hidden', 'This Space is being recorded.'));
    element.title = 'This Space is being recorded';
  } else if (mode === 'soon') {
    element.replaceChildren('Will be recorded');
    element.title = 'Recording starts when the Space goes live';
  } else {
    element.replaceChildren();
    element.title = '';
  }
}

/** "about 1,200 listening": the count is sampled, and the page says so. */
export function listenersLabel(approx) {
  const n = Math.max(0, Math.round(Number(approx) || 0));
  if (n === 0) return 'No listeners counted yet';
  const shown = n >= 10000 ? new Intl.NumberFormat(undefined, { notation: 'compact' }).format(n) : n.toLocaleString();
  return `About ${shown} listening`;
}

/** The Space id in /s/{id} or /s/{id}/stage, or null. */
export function spaceIdFromPath(pathname = location.pathname) {
  const match = /^\/s\/([a-z0-9]{10})(?:\/|$)/.exec(pathname);
  return match ? match[1] : null;
}

export function byId(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`page is missing #${id}`);
  return element;
}

/** Shows a message in an element (role="alert" or "status"), or hides it when message is empty. */
export function say(element, message) {
  element.textContent = message || '';
  element.hidden = !message;
}

// ------------------------------------------------------------------------------- inline errors
//
// An error is said next to the control that caused it — under its field, or under the row of
// buttons it sits in — not in a box at the bottom of the card: a person looks where they clicked.
// It is a role="alert" (read out at once), tied to the control by aria-describedby (and
// aria-invalid on inputs), and it stays until a later action succeeds (`clearErrors`) or the same
// control fails again (then it says the new sentence).

let errorIds = 0;

function errorSlotOf(control) {
  const container = control.closest('.field, .row, .copy-row, .person-actions, .delay-row') || control;
  if (!control.id) {
    errorIds += 1;
    control.id = `control-${errorIds}`;
  }
  let slot = document.getElementById(`${control.id}-error`);
  if (slot === null) {
    slot = el('p', 'error inline-error');
    slot.id = `${control.id}-error`;
    slot.dataset.for = control.id;
    slot.setAttribute('role', 'alert');
    // Inside a field (under its hint), else right after the row of buttons it is about.
    if (container.classList.contains('field')) container.append(slot);
    else container.after(slot);
  }
  return slot;
}

/** Shows `message` right by `control` (an input or a button); an empty message clears it. */
export function errorAt(control, message) {
  if (!message && !(control.id && document.getElementById(`${control.id}-error`))) {
    control.removeAttribute('aria-invalid'); // nothing was said here: nothing to take back
    return;
  }
  const slot = errorSlotOf(control);
  say(slot, message);
  const described = (control.getAttribute('aria-describedby') || '').split(' ').filter((id) => id && id !== slot.id);
  if (message) described.push(slot.id);
  if (described.length > 0) control.setAttribute('aria-describedby', described.join(' '));
  else control.removeAttribute('aria-describedby');
  if (control.matches('input, select, textarea')) {
    if (message) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  }
}

/** Clears every inline error within `scope`: something the person did since has worked. */
export function clearErrors(scope = document) {
  for (const slot of scope.querySelectorAll('.inline-error')) {
    const control = document.getElementById(slot.dataset.for || '');
    if (control) errorAt(control, '');
    else say(slot, '');
  }
}

/** A new element with a class and text: the pages build lists without innerHTML. */
export function el(tag, className = '', text = '') {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text) element.textContent = text;
  return element;
}

/**
 * Whether the keyboard focus went nowhere useful: to the page itself, into a closed dialog or onto
 * something hidden (a disabled button loses it, a closing dialog may leave it behind).
 */
export function focusLost() {
  const active = document.activeElement;
  if (!active || active === document.body || active === document.documentElement) return true;
  return active.closest('dialog:not([open])') !== null || active.getClientRects().length === 0;
}

/** Copies a read-only field's text; where the clipboard is not available, selects it for Ctrl+C. */
export async function copyField(input, feedback) {
  input.focus();
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    feedback.textContent = 'Copied to the clipboard.';
  } catch {
    feedback.textContent = 'Selected: press Ctrl+C (⌘C on a Mac) to copy.';
  }
}

/** Exponential backoff with jitter (a crowd must not retry in step), in seconds. */
export function backoff(attempt, maxSeconds, baseSeconds = 0.5) {
  const ceiling = Math.min(maxSeconds, baseSeconds * 2 ** Math.max(0, attempt - 1));
  return ceiling * (0.5 + Math.random() / 2);
}
