// Clip page (/c/{clip_id}): the server writes everything a crawler and a reader need (title, who
// was on stage, date, length, the player, the preview tags); this script only says the date in the
// reader's own time zone, explains a clip that cannot play, and shares the link.

import { byId, say } from './api.js';

const ui = {
  audio: byId('clip-audio'),
  error: byId('clip-error'),
  share: byId('clip-share'),
  shareStatus: byId('clip-share-status'),
};

async function share() {
  const url = `${location.origin}${location.pathname}${location.search}`; // a private clip's key
  if (navigator.share) {
    try {
      await navigator.share({ title: document.title, url });
      ui.shareStatus.textContent = 'Shared.';
    } catch (err) {
      if (err.name !== 'AbortError') ui.shareStatus.textContent = `Could not share: ${err.message}`;
    }
    return;
  }
  try {
    await navigator.clipboard.writeText(url);
    ui.shareStatus.textContent = 'Link copied to the clipboard.';
  } catch {
    ui.shareStatus.textContent = `Copy this link: ${url}`;
  }
}

/** The server wrote the date in UTC; the reader's clock and language say it better. */
function localDates() {
  const format = new Intl.DateTimeFormat(undefined, { dateStyle: 'long', timeStyle: 'short' });
  for (const time of document.querySelectorAll('time[datetime]')) {
    const when = new Date(time.dateTime);
    if (!Number.isNaN(when.getTime())) time.textContent = format.format(when);
  }
}

function main() {
  localDates();
  const failed = () =>
    say(ui.error, 'This clip cannot be played: it may have expired with its recording, or the link is wrong.');
  ui.audio.addEventListener('error', failed);
  if (ui.audio.error) failed(); // it failed before this script ran
  ui.share.addEventListener('click', share);
}

window.townhall = {
  currentTime: () => ui.audio.currentTime,
  get paused() {
    return ui.audio.paused;
  },
};

main();
