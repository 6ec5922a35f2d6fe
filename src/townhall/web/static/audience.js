// Host console: the audience list. Who is listening with an account or a guest name, searchable by
// name, a page at a time, with the actions a raised hand has: invite to speak (the hand's
// "Accept"), ban. Someone whose hand is up is shown but acted on in the queue (accept, decline,
// remove, ban there), so each person has each button once; removing someone with neither a seat
// nor a hand would change nothing, so the list does not offer it.
//
// Theory of operation. The list comes from `GET …/audience` (api/audience_routes.py): those whose
// page beaconed, reacted or raised a hand in the last minute, the stage left out, in name order,
// a page at a time with an opaque cursor (the previous page's `next_cursor`). The page keeps the
// cursors of the pages it has shown, so "Previous" goes back exactly. A search starts again at the
// first page. The list is read again every REFRESH_MS while the panel is shown, except while the
// keyboard is in it or a confirmation is open, so a refresh never pulls a button from under the
// person about to press it. At a very large audience the server says the list is a sample, and the
// panel says so too.

import { api, byId, el, say } from './api.js';
import { banQuestion } from './moderation.js';

const REFRESH_MS = 10000;
const SEARCH_DELAY_MS = 300; // typing: search once the keys stop

/**
 * The panel, wired to the stage page's helpers: `spacePath(suffix)`, `actionButton(label, name,
 * onClick, className)`, `confirmAction(question, yes)`, `visibility()` ('public' or 'private'),
 * and `onGone(userId)` (someone left the hand queue: banned or removed here).
 */
export function audiencePanel({ spacePath, actionButton, confirmAction, visibility, onGone }) {
  const ui = {
    card: byId('audience-card'),
    heading: byId('audience-heading'),
    count: byId('audience-count'),
    form: byId('audience-search'),
    q: byId('audience-q'),
    list: byId('audience'),
    empty: byId('audience-empty'),
    sample: byId('audience-sample'),
    page: byId('audience-page'),
    prev: byId('audience-prev'),
    next: byId('audience-next'),
    status: byId('audience-status'),
  };
  const state = { shown: false, q: '', cursors: [null], page: 0, timer: 0, typing: 0, reading: null };

  async function read() {
    const params = new URLSearchParams();
    if (state.q) params.set('q', state.q);
    const cursor = state.cursors[state.page];
    if (cursor) params.set('cursor', cursor);
    const query = params.toString();
    const body = await api(spacePath(`/audience${query ? `?${query}` : ''}`));
    render(body);
  }

  /** One read at a time; errors go to the panel's status line. */
  function refresh() {
    if (!state.reading) {
      state.reading = read()
        .catch((err) => say(ui.status, err.message))
        .finally(() => {
          state.reading = null;
        });
    }
    return state.reading;
  }

  function busy() {
    return ui.list.contains(document.activeElement) || document.querySelector('dialog[open]') !== null;
  }

  function render(body) {
    const more = Boolean(body.next_cursor);
    state.cursors.length = state.page + 1;
    if (more) state.cursors.push(body.next_cursor);
    ui.count.textContent = body.matching > 0 ? `(${body.matching})` : '';
    ui.sample.hidden = body.complete;
    ui.empty.hidden = body.people.length > 0;
    ui.empty.textContent = state.q
      ? `Nobody listening right now has a name that matches “${state.q}”.`
      : 'Nobody with an account or a guest name is listening right now.';
    ui.prev.hidden = state.page === 0;
    ui.next.hidden = !more;
    ui.page.textContent = state.page > 0 || more ? `Page ${state.page + 1}` : '';
    ui.list.replaceChildren(...body.people.map(item));
  }

  function item(person) {
    const name = person.display_name;
    const row = el('li', 'person');
    row.dataset.userId = person.user_id;
    const avatar = el('span', 'avatar', (name.trim()[0] || '?').toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    const main = el('div', 'person-main');
    main.append(el('span', 'person-name', name));
    const meta = [person.guest ? 'guest' : 'account'];
    if (person.hand_raised) meta.push('hand raised: in the queue above');
    if (person.banned) meta.push('banned: can still hear the stream');
    main.append(el('span', 'person-meta', meta.join(' · ')));
    row.append(avatar, main);
    // One place per person for each action: a raised hand is acted on in the queue above.
    if (person.banned || person.hand_raised) return row;
    const actions = el('div', 'person-actions');
    actions.append(
      actionButton(
        'Invite to speak',
        `Invite ${name} to speak`,
        async () => {
          await api(spacePath('/invitations'), { method: 'POST', body: { user_id: person.user_id } });
          say(ui.status, `${name} is invited: their page offers them a place on the stage.`);
        },
        'small primary',
      ),
    );
    const where = { visibility: visibility() };
    actions.append(
      actionButton(
        'Ban',
        `Ban ${name}`,
        async () => {
          if (!(await confirmAction(banQuestion(name, where), 'Yes, ban'))) return;
          await api(spacePath(`/members/${person.user_id}/ban`), { method: 'POST' });
          onGone(person.user_id);
          say(ui.status, `${name} was banned from this Space.`);
          await refresh();
        },
        'small danger',
      ),
    );
    row.append(actions);
    return row;
  }

  function search() {
    clearTimeout(state.typing);
    const q = ui.q.value.trim();
    if (q === state.q && state.page === 0) return refresh();
    state.q = q;
    state.cursors = [null];
    state.page = 0;
    return refresh();
  }

  async function turn(by) {
    state.page = Math.max(0, state.page + by);
    await refresh();
    // The button pressed may have gone (first or last page): keep the keyboard in the panel.
    const button = by > 0 ? ui.next : ui.prev;
    if (!button.hidden) button.focus();
    else {
      ui.heading.tabIndex = -1;
      ui.heading.focus();
    }
  }

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    search();
  });
  ui.q.addEventListener('input', () => {
    clearTimeout(state.typing);
    state.typing = setTimeout(search, SEARCH_DELAY_MS);
  });
  ui.prev.addEventListener('click', () => turn(-1));
  ui.next.addEventListener('click', () => turn(1));

  return {
    /** Show or hide the panel (the host and co-hosts see it); reads the list while shown. */
    show(visible) {
      ui.card.hidden = !visible;
      if (visible === state.shown) return;
      state.shown = visible;
      clearInterval(state.timer);
      if (visible) {
        refresh();
        state.timer = setInterval(() => {
          if (!busy() && !document.hidden) refresh();
        }, REFRESH_MS);
      }
    },
    refresh,
  };
}
