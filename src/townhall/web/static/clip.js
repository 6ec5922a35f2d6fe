// Clip page (/c/{clip_id}): plays a clip of a Space (an .m4a remuxed from its recording), links to
// the Space's listener page and offers the file for download. No identity needed: the link is the key.

import { byId, say } from './api.js';

const ui = {
  audio: byId('clip-audio'),
  error: byId('clip-error'),
  space: byId('clip-space'),
  download: byId('clip-download'),
  share: byId('clip-share'),
  shareStatus: byId('clip-share-status'),
};

/** The clip id in /c/{space}-{12 chars}, and its Space, or null. */
function clipFromPath(pathname = location.pathname) {
  const match = /^\/c\/(([a-z0-9]{10})-[a-z0-9]{12})\/?$/.exec(pathname);
  return match ? { id: match[1], space: match[2] } : null;
}

async function share() {
  const url = `${location.origin}${location.pathname}`;
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

function main() {
  const clip = clipFromPath();
  if (!clip) {
    say(ui.error, 'This is not a clip link.');
    ui.audio.hidden = true;
    return;
  }
  const file = `/api/clips/${clip.id}.m4a`;
  ui.space.href = `/s/${clip.space}`;
  ui.download.href = file;
  ui.download.setAttribute('download', `townhall-clip-${clip.id}.m4a`);
  ui.audio.addEventListener('error', () => {
    say(ui.error, 'This clip cannot be played: it may have expired with its recording, or the link is wrong.');
  });
  ui.audio.src = file;
  ui.share.addEventListener('click', share);
}

window.townhall = {
  currentTime: () => ui.audio.currentTime,
  get paused() {
    return ui.audio.paused;
  },
};

main();
