// A phone is a first-class listener: the lock screen, the notification shade, a headset's buttons
// and a car's display control the listener page through the Media Session API, and the page comes
// back by itself when the phone brings it to the foreground again.
//
// Theory of operation. The page (listen.js) hands over a few of its own functions — play, pause,
// rewind, seek, go live, recover — and a `now()` that says what plays: the Space's title and host,
// and whether it is live, rewound (the DVR, a VOD behind live) or a replay, with the length of what
// can be sought. Once a second, and on the media element's own events, this module brings the
// session up to date:
//   - metadata (title, host as the artist, the app icons as artwork), set again only on change;
//   - the actions offered, which depend on what plays: play/pause/stop always; seeking back where
//     there is something behind (a replay, a rewind, a live Space that is recorded: the first step
//     back from live is the page's own "Back 1 min"); seeking forward and to a position only in a
//     VOD; "next track" is *seek to live* (there is no standard action for it, and next is what a
//     headset's double press and a lock screen's ⏭ send), offered while live or rewound;
//   - the position: a replay or a rewind has a duration; live has none, which the API spells as an
//     infinite duration (lock screens then show "LIVE" and no scrubber).
// Coming back: a phone may freeze a hidden page's timers, pause its audio (a call) or put the whole
// page in the back-forward cache (pagehide releases the player). On `visibilitychange` to visible,
// and on a `pageshow` from that cache, the page's `recover` runs: the same path as after a server
// crash (recovery.js), which re-creates a dead or stalled live player at the live edge.
//
// `actionHandlers` holds the handlers registered with the browser, by action: what the lock screen
// offers now. Browsers have no way to press a Media Session button from a script, so the tests
// call these.

const ARTWORK = [96, 192, 512].map((size) => ({
  src: `/static/icons/icon-${size}.png`,
  sizes: `${size}x${size}`,
  type: 'image/png',
}));
const REFRESH_MS = 1000;
const DEFAULT_SKIP_S = 15;
const ACTIONS = ['play', 'pause', 'stop', 'seekbackward', 'seekforward', 'seekto', 'nexttrack'];

/** Action → handler, as registered with `navigator.mediaSession` (absent: not offered now). */
export const actionHandlers = new Map();

/** The position last given to the browser (`{}`: none), for the tests and the curious. */
export let positionState = {};

let metadataKey = '';

/**
 * Start keeping the Media Session in step with `audio` and the page. `page` gives:
 * now() → {title, host, mode: 'idle' | 'live' | 'rewound' | 'replay', duration, canRewind},
 * play(), pause(), rewind() (from live, back into the recording), seekTo(seconds) (within a replay
 * or a rewind), toLive(), recover() (back in the foreground), and skipSeconds.
 */
export function startMediaSession(audio, page) {
  const refresh = () => update(audio, page);
  for (const event of ['play', 'pause', 'playing', 'ratechange', 'seeked', 'durationchange', 'emptied']) {
    audio.addEventListener(event, refresh);
  }
  setInterval(refresh, REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') page.recover();
  });
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) page.recover();
  });
  refresh();
}

function update(audio, page) {
  const now = page.now();
  const session = 'mediaSession' in navigator ? navigator.mediaSession : null;
  setHandlers(session, offered(audio, page, now));
  if (!session) return;
  const key = JSON.stringify([now.title, now.host, now.mode]);
  if (key !== metadataKey && typeof MediaMetadata === 'function') {
    metadataKey = key;
    session.metadata = new MediaMetadata({
      title: now.title || 'townhall',
      artist: now.host || '',
      album: now.mode === 'replay' ? 'Replay · townhall' : 'Live on townhall',
      artwork: ARTWORK,
    });
  }
  session.playbackState = now.mode === 'idle' ? 'none' : audio.paused ? 'paused' : 'playing';
  setPosition(session, audio, now);
}

/** The handlers that make sense for what plays now (see the top). */
function offered(audio, page, now) {
  const skip = page.skipSeconds || DEFAULT_SKIP_S;
  const vod = now.mode === 'replay' || now.mode === 'rewound';
  const position = () => audio.currentTime;
  const handlers = {
    play: () => page.play(),
    pause: () => page.pause(),
    stop: () => page.pause(), // live, resuming starts at the live edge again: a pause is a stop
  };
  if (vod || (now.mode === 'live' && now.canRewind)) {
    handlers.seekbackward = (details) => {
      if (vod) page.seekTo(Math.max(0, position() - (details?.seekOffset || skip)));
      else page.rewind();
    };
  }
  if (vod) {
    handlers.seekforward = (details) => seekWithin(page, now, position() + (details?.seekOffset || skip));
    handlers.seekto = (details) => seekWithin(page, now, details.seekTime);
  }
  if (now.mode === 'live' || now.mode === 'rewound') handlers.nexttrack = () => page.toLive();
  return handlers;
}

/** A seek within a VOD; past the end of a rewind is live (there is nothing else there). */
function seekWithin(page, now, seconds) {
  if (now.mode === 'rewound' && now.duration > 0 && seconds >= now.duration - 1) page.toLive();
  else page.seekTo(Math.max(0, seconds));
}

function setHandlers(session, handlers) {
  for (const action of ACTIONS) {
    const handler = handlers[action] || null;
    const had = actionHandlers.has(action);
    if (handler) actionHandlers.set(action, handler);
    else actionHandlers.delete(action);
    if (!session || (!handler && !had)) continue;
    try {
      session.setActionHandler(action, handler);
    } catch {
      // an action this browser does not know: the others still work
    }
  }
}

function setPosition(session, audio, now) {
  if (!session.setPositionState) return;
  const rate = audio.playbackRate || 1;
  let state = {};
  if (now.mode === 'live') {
    state = { duration: Infinity, playbackRate: rate, position: Math.max(0, audio.currentTime) };
  } else if ((now.mode === 'replay' || now.mode === 'rewound') && now.duration > 0) {
    state = { duration: now.duration, playbackRate: rate, position: Math.min(Math.max(0, audio.currentTime), now.duration) };
  }
  try {
    session.setPositionState(state);
  } catch {
    state = {}; // e.g. an infinite duration refused: no position at all is still true for live
    session.setPositionState();
  }
  positionState = state;
}
