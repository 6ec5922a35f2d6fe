// Home page: start a Space and go to its stage as the host.

import { api, byId, say, stageLink } from './api.js';

const form = byId('create-form');
const titleInput = byId('title');
const submit = byId('create');
const status = byId('create-status');
const error = byId('create-error');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say(error, '');
  const title = titleInput.value.trim();
  if (!title) {
    say(error, 'Give your Space a title.');
    titleInput.setAttribute('aria-invalid', 'true');
    titleInput.focus();
    return;
  }
  titleInput.removeAttribute('aria-invalid');
  submit.disabled = true;
  status.textContent = 'Starting your Space…';
  try {
    const created = await api('/api/spaces', { method: 'POST', body: { title } });
    status.textContent = 'Your Space is live. Opening the stage…';
    // The host token travels in the fragment, which browsers never send to a server.
    location.assign(stageLink(created.space.id, created.host_token));
  } catch (err) {
    status.textContent = '';
    say(error, err.message);
    submit.disabled = false;
  }
});
