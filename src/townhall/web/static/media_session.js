// The listener on a phone: what the lock screen, the notification shade and a headset show and
// control (the Media Session API). The Space's title, its host and the townhall icon; play and
// pause; and where there is something to seek in (a replay, a rewound live Space), seek back,
// forward and to a position. Browsers without the API get nothing and lose nothing.
//
// listen.js owns the player: it hands over the actions (`wireMediaSession`) and says what plays
// (`describeMediaSession`, `showPlayback`).

const ARTWORK = [
  { src: '/static/icon-192.png', sizes: '192x192', type: 'image/png' },
  { src: '/static/icon-512.png', sizes: '512x512', type: 'image/png' },
];

const session = 'mediaSession' in navigator ? navigator.mediaSession : null;
let described = '';

function handle(action, handler) {
  try {
    session.setActionHandler(action, handler);
  } catch {
    // an action this browser does not know: the others still work
  }
}

/**
 * `actions`: play(), pause(), seekBy(seconds) and seekTo(seconds); seekBy and seekTo are offered
 * only while `canSeek()` says there is something to seek in (live audio has no position).
 */
export function wireMediaSession(actions) {
  if (!session) return;
  handle('play', () => actions.play());
  handle('pause', () => actions.pause());
  handle('stop', () => actions.pause());
  handle('seekbackward', (details) => {
    if (actions.canSeek()) actions.seekBy(-(details.seekOffset || 15));
  });
  handle('seekforward', (details) => {
    if (actions.canSeek()) actions.seekBy(details.seekOffset || 15);
  });
  handle('seekto', (details) => {
    if (actions.canSeek() && Number.isFinite(details.seekTime)) actions.seekTo(details.seekTime);
  });
}

/** What plays: the Space's title and who hosts it (set again only when they change). */
export function describeMediaSession(title, host, state) {
  if (!session || !window.MediaMetadata) return;
  const album = state === 'ended' ? 'townhall · replay' : state === 'live' ? 'townhall · live' : 'townhall';
  const key = `${title}\n${host}\n${album}`;
  if (key === described) return;
  described = key;
  session.metadata = new MediaMetadata({ title, artist: host || '', album, artwork: ARTWORK });
}

/** Playing or paused, as the lock screen shows it; with a position when there is one. */
export function showPlayback(playing, position = null) {
  if (!session) return;
  session.playbackState = playing ? 'playing' : 'paused';
  if (position && session.setPositionState && Number.isFinite(position.duration) && position.duration > 0) {
    try {
      session.setPositionState({
        duration: position.duration,
        position: Math.min(Math.max(0, position.position), position.duration),
        playbackRate: 1,
      });
    } catch {
      // a position the browser refuses (mid-seek): the next update sets it
    }
  }
}
