// Home page: who you are (guest, sign in, sign up), start a Space, and the Spaces live now.
//
// `?next=/s/…` brings a person back to the page that sent them here to sign in.

import {
  api,
  byId,
  continueAsGuest,
  el,
  roleLabel,
  safeNext,
  say,
  signIn,
  signOut,
  signUp,
  stateLabel,
  whoAmI,
} from './api.js';

const LIST_REFRESH_MS = 15000;

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
  const first = ui.modes[mode].form.querySelector('input');
  if (first) first.focus();
}

/** The form's inputs, trimmed; focuses and names the first empty one. */
function filled(form) {
  const values = [];
  for (const input of form.querySelectorAll('input')) {
    const value = input.type === 'password' ? input.value : input.value.trim();
    if (!value) {
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      const label = form.querySelector(`label[for="${input.id}"]`);
      say(ui.identityError, `Fill in “${label ? label.textContent : input.id}”.`);
      return null;
    }
    input.removeAttribute('aria-invalid');
    values.push(value);
  }
  return values;
}

function onIdentityForm(form, submit) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    say(ui.identityError, '');
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
      refreshLive();
    } catch (err) {
      say(ui.identityError, err.message);
    } finally {
      button.disabled = false;
    }
  });
}

// ------------------------------------------------------------------------------------ create

async function createSpace(event) {
  event.preventDefault();
  say(ui.createError, '');
  const title = ui.title.value.trim();
  if (!title) {
    say(ui.createError, 'Give your Space a title.');
    ui.title.setAttribute('aria-invalid', 'true');
    ui.title.focus();
    return;
  }
  ui.title.removeAttribute('aria-invalid');
  ui.create.disabled = true;
  ui.createStatus.textContent = 'Opening your green room…';
  try {
    const created = await api('/api/spaces', { method: 'POST', body: { title } });
    ui.createStatus.textContent = 'Your Space is ready. Opening the stage…';
    location.assign(`/s/${created.space.id}/stage`);
  } catch (err) {
    ui.createStatus.textContent = '';
    say(ui.createError, err.status === 401 ? 'Pick a name or sign in first.' : err.message);
    if (err.status === 401) showIdentity(null);
    ui.create.disabled = false;
  }
}

// ------------------------------------------------------------------------------------- live list

function spaceItem({ space, stage }) {
  const item = el('li', 'space-item');
  const head = el('div', 'space-item-head');
  const badge = el('span', 'badge', stateLabel(space.state));
  badge.dataset.state = space.state;
  const link = el('a', 'space-link', space.title);
  link.href = `/s/${space.id}`;
  head.append(link, badge);
  const host = stage.find((m) => m.role === 'host');
  const others = stage.length - (host ? 1 : 0);
  const line = [host ? `Hosted by ${host.display_name}` : '', others > 0 ? `${others} more on stage` : '']
    .filter(Boolean)
    .join(' · ');
  item.append(head);
  if (line) item.append(el('p', 'hint', line));
  const mine = me && stage.find((m) => m.user_id === me.user_id);
  if (mine) {
    const stageLink = el('a', 'stage-link', `Open the stage (${roleLabel(mine.role)})`);
    stageLink.href = `/s/${space.id}/stage`;
    item.append(stageLink);
  }
  return item;
}

async function refreshLive() {
  try {
    const spaces = await api('/api/spaces?state=live');
    ui.liveList.replaceChildren(...spaces.map(spaceItem));
    ui.liveEmpty.hidden = spaces.length > 0;
    say(ui.liveError, '');
  } catch (err) {
    say(ui.liveError, `Could not load the live Spaces: ${err.message}`);
  }
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
    refreshLive();
  });
  ui.createForm.addEventListener('submit', createSpace);
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
  await refreshLive();
  setInterval(refreshLive, LIST_REFRESH_MS);
}

main();
