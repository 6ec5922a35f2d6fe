// Listener page: play a Space's program mix over LL-HLS, see who is on stage, react, raise a hand.
//
// Theory of operation. Everything a listener fetches is a cacheable GET: the Space's *snapshot*
// (state, title, stage, reaction totals, approximate listener count: the same body for everyone,
// so an HTTP cache answers for the whole audience), then the playlists and media. While the live
// player plays, what the page shows of the room (on air, stage, speaking, reactions, count,
// removals and bans, the end) comes from the stream itself (roomstate.js): it went through the
// broadcast delay with the audio, so it is shown at the playback position, in step with what the
// listener hears, and what the host dumped never shows. The snapshot is then read only every
// SNAPSHOT_STREAMED_MS for what the stream does not carry (title, pinned link, recording). Before
// Play, while rewound and with the browser's own player it is read every SNAPSHOT_MS as before;
// its speaking flags are the stage's, live, so they are shown only when the Space has no delay. Live, where Media Source Extensions exist, segments.js plays: one request
// per segment, each streamed as the origin writes its parts (about 0.5 requests/s, where hls.js
// made a playlist reload and a part request per 0.32 s part); rewind and replay are VODs of whole
// segments and play in hls.js. Elsewhere (iPhone Safari without MSE) the browser's own HLS player
// takes the standard LL-HLS playlist URL. Before the host goes live the program
// is silence: the listener may press Play in the green room and hears the stage the moment it is
// on air, without doing anything.
//
// The few things that are about one listener are separate, small, private calls: a presence beacon
// every 30 s from a sample of listeners (the snapshot says how large a sample: the count is an
// estimate, and the page says "about"), reactions, the raised hand and its fate (`…/me`, asked only
// while the hand is up). They need an identity; a guest name is enough.
//
// Latency: the live player keeps its own target behind the live edge (see segments.js); the page
// jumps to live on resume and when more than MAX_BEHIND_S behind.
//
// Recovery (recovery.js): fatal media errors in hls.js (rewind, replay) go to
// hls.recoverMediaError. A fatal error of the live player, and a stall (no progress of currentTime
// for STALL_RECONNECTING_MS while playing), first ask the API whether the Space has ended; if not, the
// page re-creates the player — at once the first time, then after an exponential wait with full
// jitter (at most RECONNECT_MAX_S while the Space is live) — which starts again at the live edge.
// A new player rather than a reload of the same one: after a server restart or a take-over the
// stream may number its segments from 1 again, with a new init section and timeline; the live
// player notices a new run (the playlist names another stream) and the page starts a new player
// at its live edge at once, so the same recovery serves both. The Space is over when the playlist
// carries EXT-X-ENDLIST and playback reaches its end, or when the snapshot says so (then a player
// that is still playing gets END_FALLBACK_MS to play out what it has).

import Hls from './vendor/hls.min.mjs';
import {
  ApiError,
  api,
  backoff,
  byId,
  clearErrors,
  copyField,
  el,
  ensureIdentity,
  errorAt,
  focusLost,
  listenersLabel,
  roleLabel,
  say,
  showRecording,
  spaceIdFromPath,
  stateLabel,
  whoAmI,
} from './api.js';
import { startMediaSession } from './media_session.js';
import { retryDelay } from './recovery.js';
import { RoomSchedule } from './roomstate.js';
import { Captions } from './captions.js';
import { SegmentPlayer, segmentPlayerSupported } from './segments.js';
import { showUpcoming } from './upcoming.js';

const MAX_BEHIND_S = 6; // further behind than this after a stall: jump to live instead of speeding up
const STALL_RECONNECTING_MS = 3000; // no progress for this long while playing: re-create the player
const RECONNECT_MAX_S = 3; // back within ~5 s of a live stream's return; the jitter spreads the crowd
const END_STALL_MS = 1500; // after ENDLIST, this long without progress means the end was reached
const MAX_BACKOFF_S = 15;
const TICK_MS = 500;
const SNAPSHOT_MS = 1000;
const SNAPSHOT_STREAMED_MS = 15000; // while the stream brings the room: only title, link, recording
const STREAM_FRESH_MS = 5000; // the stream's room state is current if a message came this recently
const ROOM_CHECK_MS = 50; // how often the playback position is compared with the room's views
const PRESENCE_MS = 30000;
const HAND_POLL_MS = 5000; // only while my hand is up: was it accepted or declined?
const END_FALLBACK_MS = 40000; // the longest broadcast delay (30 s) and a margin
const PRESENCE_KEY = 'townhall.presence-key';
const REPLAY_CHECKS = 20; // after the end, look for the replay this many times…
const REPLAY_CHECK_MS = 2000; // …this far apart (the recorder closes shortly after the end)
const SKIP_S = 15;
const BACK_S = 60; // "Back 1 min"
const DVR_END_S = 1; // this close to the end of the rewind playlist (and stalled, or ended): go live
const ROLE_PHRASE = { host: 'the host', cohost: 'a co-host', speaker: 'a speaker' };
// What a removal or a ban means for this person, as the server enforces it (spaces/rules.py): a
// ban refuses reacting, raising a hand, clips and the stage, but the stream itself is an open
// HTTP broadcast that anyone with the link plays; a removal bars nothing.
const MODERATED_TEXT = {
  banned:
    'You were banned from this Space: you can no longer react, raise your hand, make clips or come on stage here. ' +
    'The stream is open to anyone with the link, so you can still listen.',
  removedFromStage:
    'You were removed from this Space: you are off the stage. ' +
    'You are not banned: you can keep listening and raise your hand to ask to come back.',
  removed:
    'You were removed from this Space: your raised hand was taken down. ' +
    'You are not banned: you can keep listening and raise your hand again.',
  removedListening:
    'You were removed from this Space. You are not banned: you can keep listening, react and raise your hand.',
};

const REACTIONS = [
  ['👏', 'Applause'],
  ['😂', 'Laughing'],
  ['❤️', 'Love'],
  ['🔥', 'Fire'],
  ['💯', 'Hundred'],
  ['👍', 'Thumbs up'],
  ['😮', 'Wow'],
  ['🙏', 'Thanks'],
];

// A finished recording is a VOD (whole segments, no parts): low-latency mode stalls on ended
// playlists (MEDIA-NOTES), and a replay wants a longer buffer to seek around in.
const REPLAY_CONFIG = {
  lowLatencyMode: false,
  maxBufferLength: 30,
  backBufferLength: 30,
};

const STATE_TEXT = {
  idle: 'Press Play to listen.',
  'replay-ready': 'This Space has ended. Listen to the replay.',
  'replay-loading': 'Loading the replay…',
  'replay-playing': 'Playing the replay',
  'replay-paused': 'Replay paused',
  'replay-ended': 'End of the replay.',
  rewound: 'Rewound',
  'rewound-loading': 'Loading the earlier audio…',
  'rewound-paused': 'Rewound · paused',
  loading: 'Loading…',
  playing: 'Playing live',
  paused: 'Paused',
  reconnecting: 'Reconnecting…',
  ended: 'This Space has ended.',
  unavailable: 'This Space cannot be played.',
};

const ui = {
  who: byId('who'),
  whoName: byId('who-name'),
  spaceState: byId('space-state'),
  rec: byId('rec'),
  listeners: byId('listeners'),
  title: byId('space-title'),
  pinned: byId('pinned'),
  pinnedLink: byId('pinned-link'),
  soon: byId('soon'),
  share: byId('share'),
  shareStatus: byId('share-status'),
  announce: byId('announce'),
  play: byId('play'),
  playLabel: byId('play-label'),
  status: byId('status'),
  latency: byId('latency'),
  live: byId('live'),
  controls: byId('controls'),
  volume: byId('volume'),
  error: byId('error'),
  audio: byId('player'),
  replayControls: byId('replay-controls'),
  seek: byId('seek'),
  position: byId('position'),
  duration: byId('duration'),
  back: byId('back'),
  forward: byId('forward'),
  rewindControls: byId('rewind-controls'),
  fromStart: byId('from-start'),
  backMinute: byId('back-minute'),
  clipControls: byId('clip-controls'),
  clip: byId('clip'),
  clipStatus: byId('clip-status'),
  clipShare: byId('clip-share'),
  clipLink: byId('clip-link'),
  clipCopy: byId('clip-copy'),
  clipSend: byId('clip-send'),
  clipOpen: byId('clip-open'),
  clipCopyStatus: byId('clip-copy-status'),
  interact: byId('interact'),
  moderated: byId('moderated'),
  reactions: byId('reactions'),
  reactStatus: byId('react-status'),
  hand: byId('hand'),
  handLabel: byId('hand-label'),
  handStatus: byId('hand-status'),
  toStage: byId('to-stage'),
  acceptInvitation: byId('accept-invitation'),
  stage: byId('stage'),
  stageHeading: byId('stage-heading'),
  stageEmpty: byId('stage-empty'),
};

// Captions under the player (captions.js): live, cues by the live player's position (media
// time); rewound or replaying, the captions kept with the recording by the recording's time.
const captions = new Captions({
  button: byId('cc'),
  line: byId('captions'),
  playlist: () => `${mediaBase}/captions.m3u8`,
  position: () => ((player.live && !player.rewound) || playsRecording() ? ui.audio.currentTime : -1),
  recorded: () => (playsRecording() ? { url: `${mediaBase}/captions.vtt`, growing: player.rewound } : null),
});

/** Whether the audio element plays the recording (rewound behind live, or the replay). */
function playsRecording() {
  return player.started && (player.rewound || player.replay);
}

/** The CC button is there for a captioned Space on air, and for its replay. */
function showCaptionsButton() {
  const info = space.snapshot && space.snapshot.space;
  captions.setAvailable(Boolean(info && info.captions) && (info.state === 'live' || player.replay));
}

const spaceId = spaceIdFromPath();
const inviteCode = new URLSearchParams(location.search).get('code'); // private Spaces
/** An API path with the invite code a private Space's every call must show (`?code=`). */
function withCode(path) {
  return inviteCode ? `${path}?code=${encodeURIComponent(inviteCode)}` : path;
}
const snapshotUrl = withCode(`/api/spaces/${spaceId}/snapshot`);
// Where the Space's audio is: `/live/{id}` for a public Space; a private one's capability path
// (`/live/{id}/{key}`, the key made from its invite code) comes with the snapshot.
let mediaBase = `/live/${spaceId}`;
const playlistUrl = () => `${mediaBase}/index.m3u8`;
const dvrUrl = () => `${mediaBase}/dvr.m3u8`; // everything recorded so far, a VOD (rebuilt every 10 s)

/** What the snapshot and the private calls said last. */
const space = {
  snapshot: null,
  state: null, // scheduled, green_room, live, ended, cancelled
  over: false,
  overAt: 0,
  failures: 0,
  pollTimer: 0,
  me: null, // identity, once known
  hand: false,
  handTimer: 0,
  onStage: false,
  banned: false,
  moderatedAt: null, // server seconds: removals and bans up to then are not news to this page
  justModerated: false, // this snapshot took me off the stage: say why, not "back in the audience"
  record: undefined, // whether the Space is recorded (REC badge, rewind and clips): the snapshot says
  settled: false, // my own state is known: changes from now on are news worth announcing
  reactionButtons: new Map(), // emoji → {button, count}
  room: new RoomSchedule(), // the stream's room state by media time (live player only)
  roomAt: -Infinity, // performance.now() of the stream's last message
  roomView: null, // the stream's view shown now: {on_air, speaking, stage}
  presenceSample: null, // the share of listeners asked to beacon, as the stream said last
  revision: null, // the stream's revision of what only the snapshot says (title, pinned link)
  polling: false, // a snapshot request is in flight
};

const player = {
  state: 'idle',
  hls: null, // rewind and replay (VOD)
  live: null, // the live player (segments.js)
  native: false, // the browser's own HLS (Safari without MSE)
  started: false,
  attempt: 0,
  retryTimer: 0,
  endlist: false,
  lastTime: -1,
  lastProgressAt: 0,
  stallChecked: false, // this stall was acted on: the re-created player gets a stall window of its own
  reconnecting: false, // a re-created player is due (one at a time)
  audioContext: null,
  analyser: null,
  gain: null,
  spectrum: null,
  replay: false, // the Space ended and its recording plays as a VOD
  replayTimer: 0,
  recorded: null, // whether the Space was recorded (and went on air), once asked
  replayDuration: 0,
  startAt: 0, // where the replay starts when first played (a seek before Play)
  dragging: false, // the position slider is being moved: do not move it under the finger
  rewound: false, // a live Space played from its recording (DVR), behind live
  rewindDuration: 0, // length of the rewind playlist as loaded
  rewinding: false, // a rewind is being set up
};

// ---------------------------------------------------------------------------------------- display

function setState(state, message = '') {
  player.state = state;
  ui.status.dataset.state = state;
  let text = message || STATE_TEXT[state];
  if (!message && state === 'playing' && !onAirHeard()) text = 'Playing: waiting for the stage to go live';
  ui.status.textContent = text;
  const over = state === 'ended' || state === 'unavailable';
  const replaying = state.startsWith('replay-');
  ui.status.classList.toggle('rewound', state.startsWith('rewound'));
  // Nothing left to play (until a replay turns up): only the status remains.
  ui.play.hidden = over;
  ui.play.disabled = over;
  ui.controls.hidden = over;
  ui.latency.hidden = over || replaying;
  ui.live.hidden = replaying;
  ui.replayControls.hidden = !replaying;
  const playing = ['playing', 'loading', 'reconnecting', 'replay-playing', 'replay-loading', 'rewound', 'rewound-loading'].includes(state);
  const idle = replaying ? ['Play the replay', 'Replay'] : ['Play', 'Play'];
  ui.play.setAttribute('aria-label', playing ? 'Pause' : idle[0]);
  ui.playLabel.textContent = playing ? 'Pause' : idle[1];
  ui.play.querySelector('.icon').textContent = playing ? '❚❚' : '▶';
  ui.live.disabled = !player.started;
  showRecordingControls();
}

/** The Space's state as the badge and the "starting soon" line show it. */
function showSpaceState(state) {
  if (ui.spaceState.dataset.state === state) return; // a live region: speak only on change
  ui.spaceState.dataset.state = state;
  ui.spaceState.textContent = stateLabel(state);
}

function showSnapshot(snapshot) {
  const info = snapshot.space;
  const previous = space.state;
  space.snapshot = snapshot;
  space.state = info.state;
  if (info.media) mediaBase = info.media;
  ui.title.textContent = info.title;
  document.title = `${info.title} · townhall`;
  showSpaceState(info.state);
  space.record = Boolean(info.record);
  showRecording(ui.rec, space.record, info.state);
  showCaptionsButton();
  // Scheduled: the upcoming card says when (upcoming.js); the green room: press Play and wait.
  ui.soon.hidden = info.state !== 'green_room';
  showUpcoming(info, spaceId, inviteCode, announce);
  if (info.pinned_link) {
    ui.pinnedLink.href = info.pinned_link;
    ui.pinnedLink.textContent = info.pinned_link.replace(/^https?:\/\//, '');
  }
  ui.pinned.hidden = !info.pinned_link;
  ui.listeners.hidden = space.over;
  if (!roomStreamed()) {
    ui.listeners.textContent = listenersLabel(snapshot.listeners.approx);
    noticeModeration(snapshot);
    // Speaking flags of the snapshot are the stage's, live: with a broadcast delay they run ahead
    // of what listeners hear and would show what a dump discards, so they are shown only without
    // one (and not while rewound). The green room is off air: nobody is shown "speaking".
    showStage(snapshot.stage, Boolean(info.on_air) && !info.delay_s && !player.rewound);
    space.justModerated = false;
    showReactionTotals(snapshot.reactions.totals || {});
  }
  if (previous !== info.state && player.state === 'playing') setState('playing'); // "waiting" → "live"
  if (info.state === 'ended' || info.state === 'cancelled') spaceIsOver();
  showRecordingControls();
}

function showStage(members, onAir) {
  const mine = space.me && members.find((m) => m.user_id === space.me.user_id);
  const items = members.map((member) => {
    const speaking = onAir && Boolean(member.speaking) && !member.muted;
    const item = el('li', 'person');
    item.dataset.speaking = String(speaking);
    item.dataset.userId = member.user_id;
    const avatar = el('span', 'avatar', (member.display_name.trim()[0] || '?').toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    const main = el('div', 'person-main');
    main.append(el('span', 'person-name', member.display_name));
    const meta = [roleLabel(member.role)];
    if (member.muted) meta.push('muted');
    if (speaking) meta.push('speaking');
    main.append(el('span', 'person-meta', meta.join(' · ')));
    item.append(avatar, main);
    return item;
  });
  ui.stage.replaceChildren(...items);
  ui.stageEmpty.hidden = members.length > 0;
  showOnStage(Boolean(mine), mine ? mine.role : undefined);
}

function showOnStage(onStage, role = 'speaker') {
  if (onStage === space.onStage) return;
  const wasOnStage = space.onStage;
  space.onStage = onStage;
  ui.toStage.hidden = !onStage || space.over;
  ui.hand.hidden = onStage;
  if (onStage) {
    space.hand = false;
    clearTimeout(space.handTimer);
    ui.handStatus.textContent = 'You are on the stage now: open the stage to talk.';
    if (space.me && space.settled) announce(`You are now ${ROLE_PHRASE[role] || 'on the stage'}. Open the stage to talk.`);
  } else if (wasOnStage && space.me && space.settled && !space.over && !space.justModerated) {
    showHand(false, 'You are back in the audience.');
    announce('You are back in the audience.');
  }
}

function announce(message) {
  // Re-set even when equal, so that screen readers say it again.
  ui.announce.textContent = '';
  requestAnimationFrame(() => {
    ui.announce.textContent = message;
  });
}

/** The link to this page (a private Space's `?code=` included), shared or copied. */
async function share() {
  const url = `${location.origin}${location.pathname}${location.search}`;
  const title = space.snapshot ? space.snapshot.space.title : document.title;
  if (navigator.share) {
    try {
      const text = player.replay ? `Listen to the replay of “${title}” on townhall` : `Listen to “${title}” live on townhall`;
      await navigator.share({ title, text, url });
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

// ------------------------------------------------------------------------------- audio analysis

/** Route the element through Web Audio: an analyser for the level/frequency hooks, a gain for volume. */
function ensureAudioGraph() {
  if (player.audioContext) {
    if (player.audioContext.state === 'suspended') player.audioContext.resume().catch(() => {});
    return;
  }
  // Safari's MediaElementSource yields silence for native HLS: leave that path untouched.
  if (player.native) return;
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  const context = new Context();
  const source = context.createMediaElementSource(ui.audio);
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192; // ≈ 6 Hz bins at 48 kHz
  analyser.smoothingTimeConstant = 0.3;
  const gain = context.createGain();
  gain.gain.value = Number(ui.volume.value);
  source.connect(analyser);
  source.connect(gain);
  gain.connect(context.destination);
  Object.assign(player, { audioContext: context, analyser, gain, spectrum: new Float32Array(analyser.frequencyBinCount) });
}

/** Frequency (Hz) of the strongest FFT bin, refined by parabolic interpolation; null when silent. */
function dominantFrequency() {
  if (!player.analyser) return null;
  const bins = player.spectrum;
  player.analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length - 1; i += 1) if (bins[i] > bins[best]) best = i;
  if (!Number.isFinite(bins[best]) || bins[best] < -90) return null;
  const [a, b, c] = [bins[best - 1], bins[best], bins[best + 1]];
  const denominator = a - 2 * b + c;
  const offset = Number.isFinite(denominator) && denominator !== 0 ? (0.5 * (a - c)) / denominator : 0;
  return ((best + offset) * player.audioContext.sampleRate) / player.analyser.fftSize;
}

/** Strongest level (dBFS per FFT bin) within ±tolerance Hz of `hz` in what the listener hears; null before playing. */
function levelAt(hz, tolerance = 10) {
  if (!player.analyser) return null;
  const bins = player.spectrum;
  player.analyser.getFloatFrequencyData(bins);
  const binHz = player.audioContext.sampleRate / player.analyser.fftSize;
  let best = -Infinity;
  for (let i = Math.max(1, Math.floor((hz - tolerance) / binHz)); i <= Math.ceil((hz + tolerance) / binHz); i += 1) {
    if (i < bins.length && bins[i] > best) best = bins[i];
  }
  return Number.isFinite(best) ? best : -200;
}

function setVolume(value) {
  if (player.gain) player.gain.gain.value = value;
  else ui.audio.volume = value;
}

// -------------------------------------------------------------------------------------- latency

/** Seconds between the live edge and what is heard now, or null when unknown. */
function latency() {
  if (player.live) return player.live.latency;
  if (player.native && ui.audio.seekable.length > 0) {
    return Math.max(0, ui.audio.seekable.end(ui.audio.seekable.length - 1) - ui.audio.currentTime);
  }
  return null;
}

/** "Jump to live": out of a rewind, or to the live edge (and playing). */
function goLive() {
  if (player.rewound) {
    backToLive();
    return;
  }
  jumpToLive();
  if (ui.audio.paused) play();
}

function jumpToLive() {
  if (player.live) {
    const target = player.live.liveSyncPosition;
    if (target !== null && target > ui.audio.currentTime) ui.audio.currentTime = target;
  } else if (player.native && ui.audio.seekable.length > 0) {
    ui.audio.currentTime = Math.max(0, ui.audio.seekable.end(ui.audio.seekable.length - 1) - 1);
  }
}

// ------------------------------------------------------------------------------------- playback

/** The live player. A re-created one (`recovering`) asks for its playlists past the browser's
 * cache: a stream that started again at 1 repeats the URLs of an earlier run. */
function createLive({ recovering = false } = {}) {
  resetRoom();
  player.live = new SegmentPlayer(ui.audio, playlistUrl(), {
    fresh: recovering,
    onRoom: roomMessage,
    onFatal: () => reconnect(),
    // A new run of the stream (the server restarted, or another node took the Space over): its
    // segments follow a gap in time. Go to its live edge at once with a new player.
    onNewRun: () => {
      destroyPlayer();
      createLive({ recovering: true });
      player.lastProgressAt = performance.now(); // moving again: not a stall to recover from
      if (player.state !== 'paused') ui.audio.play().catch(() => {});
    },
    onEnded: () => {
      player.endlist = true;
    },
  });
}

/** Stop whichever player plays (live, rewind or replay) and release its requests. */
function destroyPlayer() {
  if (player.hls) {
    player.hls.destroy();
    player.hls = null;
  }
  if (player.live) {
    player.live.destroy();
    player.live = null;
  }
}

function start() {
  player.started = true;
  player.lastProgressAt = performance.now();
  if (segmentPlayerSupported()) {
    createLive();
  } else if (ui.audio.canPlayType('application/vnd.apple.mpegurl')) {
    player.native = true;
    ui.audio.src = playlistUrl();
  } else {
    setState('unavailable', 'This browser cannot play live audio (no Media Source Extensions, no HLS).');
    return false;
  }
  return true;
}

async function play() {
  say(ui.error, '');
  if (player.replay) {
    await playReplay();
    return;
  }
  if (player.rewound) {
    ensureAudioGraph();
    setState('rewound-loading');
    ui.audio.play().catch(() => {});
    return;
  }
  if (!player.started) {
    if (segmentPlayerSupported()) ensureAudioGraph(); // must happen inside the click: autoplay rules
    if (!start()) return;
  } else {
    ensureAudioGraph();
    jumpToLive(); // a live room resumes at "now", not where it was paused
  }
  setState('loading');
  try {
    await ui.audio.play();
  } catch (err) {
    if (err.name === 'NotAllowedError') {
      setState('paused', 'Your browser blocked playback: press Play again.');
    }
    // AbortError: the source was replaced (recovery); the new one plays on its own.
  }
}

function pause() {
  ui.audio.pause();
  setState(player.replay ? 'replay-paused' : player.rewound ? 'rewound-paused' : 'paused');
}

function finish() {
  if (player.replay) return; // the live stream is long gone; the replay has its own end
  player.rewound = false;
  clearTimeout(player.retryTimer);
  destroyPlayer();
  if (player.native) ui.audio.removeAttribute('src');
  ui.audio.pause();
  if (ui.spaceState.dataset.state !== 'cancelled') showSpaceState('ended');
  space.over = true;
  stopInteraction();
  setState('ended', space.state === 'cancelled' ? 'This Space was cancelled.' : '');
  if (space.state !== 'cancelled') findReplay();
}

// ------------------------------------------------------------------------------- rewind (DVR)
//
// A live recorded Space can be rewound: the page loads `dvr.m3u8`, everything recorded so far as
// one VOD playlist (whole segments; the origin rebuilds it at most every 10 s), in hls.js out of
// low-latency mode, and plays it from the start or from a minute before what the listener heard.
// Only rewinding listeners load it, once. "Jump to live" (or reaching the playlist's end) goes
// back to the live playlist in low-latency mode.

function showRecordingControls() {
  const live = space.state === 'live' && !space.over && !player.replay;
  ui.rewindControls.hidden = !(space.record && live && Hls.isSupported());
  ui.clipControls.hidden = !(space.record && (live || player.replay));
}

async function rewind(fromStart) {
  if (player.rewinding) return;
  say(ui.error, '');
  ensureAudioGraph(); // inside the click: autoplay rules
  if (player.rewound && player.hls) {
    // Already behind live: move within the playlist already loaded.
    ui.audio.currentTime = fromStart ? 0 : Math.max(0, ui.audio.currentTime - BACK_S);
    if (ui.audio.paused) play();
    return;
  }
  // "Back 1 min" is a minute before what the listener heard, not before the live edge.
  const behind = player.started && !ui.audio.paused ? latency() || 0 : 0;
  const button = fromStart ? ui.fromStart : ui.backMinute;
  player.rewinding = true;
  ui.fromStart.disabled = true;
  ui.backMinute.disabled = true;
  try {
    const response = await fetch(dvrUrl(), { credentials: 'same-origin' });
    if (!response.ok) {
      errorAt(button, response.status === 404 ? 'Nothing to rewind yet: try again in a moment.' : 'Could not load the earlier audio. Try again.');
      return;
    }
    const text = await response.text();
    const duration = [...text.matchAll(/#EXTINF:([\d.]+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
    clearErrors(ui.rewindControls.parentElement);
    startRewind(fromStart ? 0 : Math.max(0, duration - BACK_S - behind), duration);
  } catch {
    errorAt(button, 'Cannot reach the server. Check your connection and try again.');
  } finally {
    player.rewinding = false;
    ui.fromStart.disabled = false;
    ui.backMinute.disabled = false;
  }
}

function startRewind(target, duration) {
  clearTimeout(player.retryTimer);
  destroyPlayer();
  Object.assign(player, {
    rewound: true,
    started: true,
    endlist: false,
    rewindDuration: duration,
    lastTime: -1,
    lastProgressAt: performance.now(),
    stallChecked: false,
  });
  const hls = new Hls({ ...REPLAY_CONFIG, startPosition: target });
  hls.on(Hls.Events.ERROR, onRewindError);
  hls.on(Hls.Events.LEVEL_LOADED, (_, { details }) => {
    player.rewindDuration = details.totalduration;
  });
  hls.attachMedia(ui.audio);
  hls.loadSource(dvrUrl());
  player.hls = hls;
  pollSnapshot(); // the stream no longer brings the room: back to the snapshot at once
  setState('rewound-loading');
  ui.latency.textContent = '';
  announce('Rewound. Press Jump to live to catch up.');
  ui.audio.play().catch(() => {});
}

function onRewindError(_, data) {
  if (!data.fatal) return;
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
    player.hls.recoverMediaError();
    return;
  }
  say(ui.error, 'The earlier audio could not be loaded: back to live.');
  backToLive();
}

/** Leave the rewind for the live playlist (low-latency mode again). */
function backToLive() {
  if (!player.rewound) return;
  player.rewound = false;
  player.rewindDuration = 0;
  destroyPlayer();
  if (space.over) {
    finish();
    return;
  }
  Object.assign(player, { lastTime: -1, lastProgressAt: performance.now(), stallChecked: false, endlist: false });
  createLive();
  setState('loading');
  ensureAudioGraph();
  announce('Back to live.');
  ui.audio.play().catch(() => {});
}

/** Twice a second while rewound: where we are, and whether the recorded end was reached. */
function rewoundTick() {
  const duration = player.rewindDuration || (Number.isFinite(ui.audio.duration) ? ui.audio.duration : 0);
  const at = ui.audio.currentTime;
  ui.latency.textContent = duration > 0 ? `At ${clock(at)} of the ${clock(duration)} recorded so far` : '';
  if (ui.audio.paused) return;
  const now = performance.now();
  if (at !== player.lastTime) {
    player.lastTime = at;
    player.lastProgressAt = now;
    return;
  }
  // The end of an ended playlist can stall a hair before its last sample (MSE rounding).
  if (duration > 0 && at >= duration - DVR_END_S && now - player.lastProgressAt > END_STALL_MS) backToLive();
}

// ---------------------------------------------------------------------------------------- clips

function clipsUrl() {
  return withCode(`/api/spaces/${spaceId}/clips`);
}

async function makeClip() {
  ui.clip.disabled = true;
  ui.clipStatus.textContent = '';
  try {
    if (!(await identity('make a clip'))) return;
    ui.clipStatus.textContent = 'Making your clip…';
    const clip = await api(clipsUrl(), { method: 'POST', body: {} });
    ui.clipLink.value = clip.page; // a private Space's clip link carries the clip's key
    ui.clipOpen.href = clip.page;
    ui.clipShare.hidden = false;
    ui.clipCopyStatus.textContent = '';
    ui.clipStatus.textContent = `Your clip of the last ${Math.round(clip.seconds)} s is ready: share the link.`;
  } catch (err) {
    if (err.status === 429) {
      const wait = Math.ceil(err.retryAfterSeconds || 20);
      ui.clipStatus.textContent = `You just made a clip. Please wait ${wait} s before making another one.`;
    } else if (err.code === 'nothing_recorded') {
      ui.clipStatus.textContent = 'Nothing has been recorded yet: try again in a moment.';
    } else {
      ui.clipStatus.textContent = err.message;
      if (err.status === 401) forgetIdentity();
    }
  } finally {
    ui.clip.disabled = false;
  }
}

async function shareClip() {
  const url = ui.clipLink.value;
  if (!url) return;
  if (navigator.share) {
    try {
      const title = space.snapshot ? space.snapshot.space.title : 'townhall';
      await navigator.share({ title, text: `A clip from “${title}” on townhall`, url });
      ui.clipCopyStatus.textContent = 'Shared.';
    } catch (err) {
      if (err.name !== 'AbortError') ui.clipCopyStatus.textContent = `Could not share: ${err.message}`;
    }
    return;
  }
  await copyField(ui.clipLink, ui.clipCopyStatus);
}

// --------------------------------------------------------------------------------------- replay

function spaceViewUrl() {
  return withCode(`/api/spaces/${spaceId}`);
}

/**
 * After the end: a recorded Space that went on air gets a replay at the same playlist URL, a VOD
 * (`#EXT-X-PLAYLIST-TYPE:VOD`) once the recorder has closed, which takes a moment: look a few times.
 */
async function findReplay(attempt = 0) {
  clearTimeout(player.replayTimer);
  if (player.replay || !spaceId) return;
  try {
    if (player.recorded === null) {
      const { space: info } = await api(spaceViewUrl());
      player.recorded = Boolean(info.record && info.started_at);
      space.record = Boolean(info.record);
    }
    if (!player.recorded) return; // nothing was recorded: nothing to look for
    const response = await fetch(`${mediaBase}/media.m3u8`, { credentials: 'same-origin' });
    const text = response.ok ? await response.text() : '';
    if (text.includes('#EXT-X-PLAYLIST-TYPE:VOD')) {
      // Its length, before anything plays: the sum of the segments' durations.
      player.replayDuration = [...text.matchAll(/#EXTINF:([\d.]+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
      offerReplay();
      return;
    }
    if (response.status === 404) return; // recorded, yet nothing was kept
  } catch {
    // the API or the origin is busy or away: look again
  }
  if (attempt + 1 < REPLAY_CHECKS) player.replayTimer = setTimeout(() => findReplay(attempt + 1), REPLAY_CHECK_MS);
}

function offerReplay() {
  player.replay = true;
  showCaptionsButton();
  player.started = false;
  player.lastTime = -1;
  ui.spaceState.dataset.state = 'replay';
  ui.spaceState.textContent = stateLabel('replay');
  setState('replay-ready');
  showPosition();
}

function replayDuration() {
  if (player.replayDuration > 0) return player.replayDuration;
  return Number.isFinite(ui.audio.duration) ? ui.audio.duration : 0;
}

function startReplay() {
  destroyPlayer();
  player.started = true;
  if (Hls.isSupported()) {
    const hls = new Hls({ ...REPLAY_CONFIG, startPosition: player.startAt });
    hls.on(Hls.Events.ERROR, onReplayError);
    hls.on(Hls.Events.LEVEL_LOADED, (_, { details }) => {
      player.replayDuration = details.totalduration;
      showPosition();
    });
    hls.attachMedia(ui.audio);
    hls.loadSource(playlistUrl());
    player.hls = hls;
    return true;
  }
  if (ui.audio.canPlayType('application/vnd.apple.mpegurl')) {
    player.native = true;
    ui.audio.src = playlistUrl();
    if (player.startAt > 0) {
      ui.audio.addEventListener('loadedmetadata', () => (ui.audio.currentTime = player.startAt), { once: true });
    }
    return true;
  }
  player.started = false;
  setState('replay-ready', 'This browser cannot play the replay (no Media Source Extensions, no HLS).');
  return false;
}

async function playReplay() {
  if (!player.started) {
    if (!startReplay()) return;
  } else if (player.state === 'replay-ended') {
    ui.audio.currentTime = 0;
  }
  ensureAudioGraph(); // inside the click: autoplay rules
  setState('replay-loading');
  try {
    await ui.audio.play();
  } catch (err) {
    if (err.name === 'NotAllowedError') setState('replay-paused', 'Your browser blocked playback: press Play again.');
  }
}

function onReplayError(_, data) {
  if (!data.fatal) return;
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
    player.hls.recoverMediaError();
    return;
  }
  // The replay does not go away: let the listener try again rather than retrying on their behalf.
  player.startAt = ui.audio.currentTime;
  destroyPlayer();
  player.started = false;
  ui.audio.pause();
  setState('replay-paused', 'The replay could not be loaded. Press Play to try again.');
}

/** Moves the replay to `seconds` from its start (clamped); before the first Play, that is where it starts. */
function seekTo(seconds) {
  const duration = replayDuration();
  const target = Math.max(0, duration > 0 ? Math.min(seconds, duration - 0.5) : seconds);
  if (!player.started) {
    player.startAt = target;
    showPosition(target);
    return;
  }
  ui.audio.currentTime = target;
  showPosition(target);
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

function showPosition(at) {
  const duration = replayDuration();
  const current = at ?? (player.dragging ? Number(ui.seek.value) : player.started ? ui.audio.currentTime : player.startAt);
  ui.seek.max = String(Math.max(1, Math.ceil(duration)));
  if (!player.dragging) ui.seek.value = String(Math.floor(current));
  ui.position.textContent = clock(current);
  ui.duration.textContent = clock(duration);
  ui.seek.setAttribute('aria-valuetext', `${clock(current)} of ${clock(duration)}`);
}

/** The snapshot says the Space is over; a playing player may still have the end to play. */
function spaceIsOver() {
  if (player.replay) return;
  if (!space.over) {
    space.over = true;
    space.overAt = performance.now();
    stopInteraction();
  }
  if (!player.started || ui.audio.paused || player.state === 'reconnecting') finish();
}

/** Whether the stream stopped for good: the Space is over, or this link opens nothing now (404:
 * the page says so itself, see notFound(); it is not an end, and no replay is looked for). */
async function spaceHasEnded() {
  try {
    const snapshot = await api(snapshotUrl, { cache: 'default' });
    showSnapshot(snapshot);
    return space.over;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      notFound();
      return true;
    }
    return err instanceof ApiError && err.status === 410;
  }
}

/** The stream stopped: unless the Space ended, a new player after a jittered wait (see the top). */
async function reconnect() {
  if (player.reconnecting) return;
  player.reconnecting = true;
  clearTimeout(player.retryTimer);
  const resume = player.state !== 'paused';
  if (resume) setState('reconnecting');
  if (await spaceHasEnded()) {
    player.reconnecting = false;
    if (player.state !== 'unavailable') finish();
    return;
  }
  player.attempt += 1;
  const delay = retryDelay(player.attempt, space.state === 'live' ? RECONNECT_MAX_S : MAX_BACKOFF_S);
  if (resume && delay >= 1) setState('reconnecting', `Reconnecting in ${Math.ceil(delay)} s…`);
  player.retryTimer = setTimeout(restartPlayer, delay * 1000);
}

function restartPlayer() {
  player.reconnecting = false;
  if (player.state === 'ended' || player.replay || player.rewound) return;
  const resume = player.state !== 'paused';
  if (player.native) {
    ui.audio.src = playlistUrl(); // assigning it again loads it afresh
  } else {
    destroyPlayer(); // a live player, or none left (the page was in the back-forward cache)
    createLive({ recovering: true });
  }
  player.lastProgressAt = performance.now();
  player.stallChecked = false;
  if (!resume) return;
  setState('reconnecting');
  ui.audio.play().catch(() => {}); // AbortError if replaced again meanwhile: that one plays
}

/** Back in the foreground (media_session.js): a live player that died or was paused while hidden
 * is re-created at the live edge; one that stood still since the last (throttled) tick is a stall. */
function recoverInForeground() {
  if (!player.started || player.replay || player.rewound || space.over) return;
  if (!['playing', 'loading', 'reconnecting'].includes(player.state)) return;
  ensureAudioGraph(); // resumes a suspended graph
  if ((!player.live && !player.native) || ui.audio.paused) reconnect();
  else tick();
}

/** Twice a second: show latency, notice stalls and the end of an ended playlist. */
function tick() {
  if (player.replay) {
    if (player.started) showPosition();
    return;
  }
  if (player.rewound) {
    rewoundTick();
    return;
  }
  if (!player.started || player.state === 'ended') return;
  const behind = latency();
  ui.latency.textContent = behind === null ? '' : `${behind.toFixed(1)} s behind live`;
  if (ui.audio.paused) return;
  const now = performance.now();
  if (space.over && now - space.overAt > END_FALLBACK_MS) {
    finish(); // the end never came down the playlist
    return;
  }
  if (ui.audio.currentTime !== player.lastTime) {
    player.lastTime = ui.audio.currentTime;
    player.lastProgressAt = now;
    player.stallChecked = false;
    player.attempt = 0;
    if (behind !== null && behind > MAX_BEHIND_S) jumpToLive();
    return;
  }
  const stalledFor = now - player.lastProgressAt;
  if (player.endlist && stalledFor > END_STALL_MS) {
    // An ended playlist can stall a hair before its last sample (MSE rounding): that is the end.
    finish();
  } else if (stalledFor > STALL_RECONNECTING_MS && !player.stallChecked) {
    player.stallChecked = true;
    reconnect();
  }
}

// ------------------------------------------------------------------------ room state in the stream

/** The stream brings the room now: the live player plays and its messages keep coming. */
function roomStreamed() {
  return Boolean(player.live) && !player.rewound && performance.now() - space.roomAt < STREAM_FRESH_MS;
}

/** On air as the listener hears it: the stream's view when it brings one, else the Space's state. */
function onAirHeard() {
  if (roomStreamed() && space.roomView) return space.roomView.on_air;
  return space.state === 'live';
}

function roomMessage(event) {
  space.room.add(event);
  space.roomAt = performance.now();
}

/** Every ROOM_CHECK_MS: show what the stream said for the playback position, once it is heard. */
function roomTick() {
  if (!player.live || player.rewound) return;
  const due = space.room.take(ui.audio.currentTime);
  if (!due) return;
  // The audience first: a removal is news before the stage that no longer has me (which, through
  // the delay, may come later) is shown, so the page says "removed", not "back in the audience".
  if (due.audience) {
    const audience = due.audience;
    ui.listeners.textContent = listenersLabel(audience.listeners);
    space.presenceSample = audience.presence_sample;
    showReactionTotals(audience.reactions || {});
    noticeModeration({ at: space.snapshot ? space.snapshot.at : 0, moderation: audience.moderation });
    // The title or the pinned link changed: read the snapshot now, and once more a second later
    // (a cache may answer the first with the body of the second before the change).
    if (space.revision !== null && audience.revision > space.revision) {
      pollSnapshot();
      setTimeout(pollSnapshot, SNAPSHOT_MS + 100);
    }
    space.revision = audience.revision;
  }
  if (due.view) {
    const wasOnAir = onAirHeard();
    space.roomView = due.view;
    const speaking = new Set(due.view.speaking);
    showStage(
      due.view.stage.map((seat) => ({ ...seat, speaking: speaking.has(seat.user_id) })),
      due.view.on_air,
    );
    if (!space.onStage) space.justModerated = false; // the removal has been shown
    if (due.view.on_air) heardLive();
    if (wasOnAir !== due.view.on_air && player.state === 'playing') setState('playing');
  }
  if (due.ended) spaceIsOver();
}

/** The stream says the stage is heard on air: the Space is live, whatever the last snapshot said
 * (it is read rarely while the stream brings the room). */
function heardLive() {
  if (space.state !== 'scheduled' && space.state !== 'green_room') return;
  space.state = 'live';
  showSpaceState('live');
  ui.soon.hidden = true;
  showRecording(ui.rec, space.record, 'live');
  showRecordingControls();
}

/** A new live player starts from a key part: forget what the last one had not shown yet. */
function resetRoom() {
  space.room = new RoomSchedule();
  space.roomAt = -Infinity;
}

// ------------------------------------------------------------------------------------- snapshot

async function pollSnapshot() {
  if (space.polling) return; // the one in flight schedules the next
  clearTimeout(space.pollTimer);
  if (player.replay || (space.over && (player.state === 'ended' || player.state === 'unavailable'))) return;
  let wait = roomStreamed() ? SNAPSHOT_STREAMED_MS : SNAPSHOT_MS;
  space.polling = true;
  try {
    const snapshot = await api(snapshotUrl, { cache: 'default' });
    // A cache may answer with an older second than one already seen: keep the newest.
    if (!space.snapshot || snapshot.at >= space.snapshot.at) showSnapshot(snapshot);
    space.failures = 0;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      notFound();
      return;
    }
    space.failures += 1;
    wait = Math.max(err.retryAfterSeconds || 0, backoff(space.failures, MAX_BACKOFF_S)) * 1000;
  } finally {
    space.polling = false;
  }
  if (!player.replay && !(space.over && player.state === 'ended')) space.pollTimer = setTimeout(pollSnapshot, wait);
}

/** Nothing at this link: no such Space ever (a mistyped link, a private one without its code:
 * the same answer, by design), or no longer: a private Space's link that worked on this page
 * until its host made a new listener link. Say which, and stop asking (the stream is gone too). */
function notFound() {
  const replaced = Boolean(inviteCode && space.snapshot); // this page played it with this code
  clearTimeout(player.retryTimer);
  clearTimeout(space.pollTimer);
  destroyPlayer();
  ui.audio.pause();
  stopInteraction();
  if (!replaced) ui.title.textContent = 'No such Space';
  showSpaceState('not found');
  ui.spaceState.textContent = replaced ? 'Link replaced' : 'Not found';
  setState(
    'unavailable',
    replaced
      ? 'This listener link no longer works: the host made a new one. Ask the host for it.'
      : 'This Space does not exist. Check the link.',
  );
}

// ----------------------------------------------------------------------------------- presence

/** A random key of this browser, kept so that a reload is not counted as a new listener. */
function presenceKey() {
  try {
    let key = localStorage.getItem(PRESENCE_KEY);
    if (!key || !/^[A-Za-z0-9_-]{16,64}$/.test(key)) {
      const bytes = crypto.getRandomValues(new Uint8Array(18));
      key = btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
      localStorage.setItem(PRESENCE_KEY, key);
    }
    return key;
  } catch {
    return null; // no storage: this listener is not counted, which the estimate tolerates
  }
}

function beacon() {
  if (space.over) return;
  const sample = space.presenceSample ?? (space.snapshot ? space.snapshot.listeners.presence_sample : 1);
  const key = presenceKey();
  // Only a sample of listeners beacons: at a million listeners the origin sees a few thousand.
  if (key && Math.random() < sample) {
    api(withCode(`/api/spaces/${spaceId}/presence`), { method: 'POST', body: { key } }).catch(() => {});
  }
}

// ------------------------------------------------------------------------- reactions and hands

function buildReactions() {
  for (const [emoji, name] of REACTIONS) {
    const button = el('button', 'reaction');
    button.type = 'button';
    button.dataset.emoji = emoji;
    button.setAttribute('aria-label', `React: ${name}`);
    const face = el('span', 'reaction-emoji', emoji);
    face.setAttribute('aria-hidden', 'true');
    const count = el('span', 'reaction-count');
    button.append(face, count);
    button.addEventListener('click', () => react(emoji, name, button));
    ui.reactions.append(button);
    space.reactionButtons.set(emoji, { button, count, name });
  }
}

function showReactionTotals(totals) {
  for (const [emoji, { button, count, name }] of space.reactionButtons) {
    const n = Number(totals[emoji]) || 0;
    const shown = n > 999 ? `${Math.round(n / 100) / 10}k` : n > 0 ? String(n) : '';
    if (count.textContent !== shown) {
      count.textContent = shown;
      button.setAttribute('aria-label', n > 0 ? `React: ${name} (${n} recently)` : `React: ${name}`);
      if (n > 0) {
        button.classList.remove('pulse');
        void button.offsetWidth; // restart the animation
        button.classList.add('pulse');
      }
    }
  }
}

async function identity(why) {
  if (space.me) return space.me;
  space.me = await ensureIdentity(why);
  showWho();
  return space.me;
}

function showWho() {
  ui.who.hidden = !space.me;
  if (space.me) ui.whoName.textContent = `${space.me.display_name}${space.me.kind === 'guest' ? ' (guest)' : ''}`;
}

async function react(emoji, name, button) {
  say(ui.reactStatus, '');
  try {
    if (!(await identity('react'))) return;
    button.classList.add('sent');
    await api(withCode(`/api/spaces/${spaceId}/reactions`), { method: 'POST', body: { emoji } });
    ui.reactStatus.textContent = `You reacted: ${name}.`;
  } catch (err) {
    ui.reactStatus.textContent = err.status === 429 ? 'Slow down: too many reactions at once.' : err.message;
    if (err.status === 401) forgetIdentity();
    if (err.code === 'banned') banned();
  } finally {
    setTimeout(() => button.classList.remove('sent'), 300);
  }
}

/**
 * Removals and bans of me, from the snapshot every listener polls anyway (the server lists the
 * last minute's): said at once, each one once. Those from before the page opened are not news.
 */
function noticeModeration(snapshot) {
  if (space.moderatedAt === null) space.moderatedAt = snapshot.at - 1;
  if (!space.me) return;
  for (const entry of snapshot.moderation || []) {
    if (entry.user_id !== space.me.user_id || entry.at <= space.moderatedAt) continue;
    space.moderatedAt = entry.at;
    if (entry.action === 'invited') {
      invited();
      continue;
    }
    space.justModerated = true;
    if (entry.action === 'banned') banned();
    else removed();
  }
}

/** The host invited me to speak (from their audience list): offer the seat, one press away. */
function invited() {
  if (space.banned || space.onStage || space.over) return;
  ui.acceptInvitation.hidden = false;
  ui.handStatus.textContent = 'The host invites you to speak: press “Join the stage” to take a seat.';
  announce('The host invites you to speak.');
}

async function acceptInvitation() {
  ui.acceptInvitation.disabled = true;
  try {
    const member = await api(`/api/spaces/${spaceId}/invitations/accept`, { method: 'POST' });
    ui.acceptInvitation.hidden = true;
    showOnStage(true, member.role);
    if (!ui.toStage.hidden) ui.toStage.focus();
  } catch (err) {
    ui.handStatus.textContent = err.message;
    if (err.code === 'banned') banned();
    if (err.code === 'no_invitation') ui.acceptInvitation.hidden = true;
  } finally {
    ui.acceptInvitation.disabled = false;
  }
}

/** Says why, in the notice at the top of the audience card (a live region: read out at once). */
function showModerated(text) {
  ui.moderated.textContent = text;
}

/** I was banned: say so, and disable what the server would refuse, each naming the reason. */
function banned() {
  if (space.banned) return;
  space.banned = true;
  clearTimeout(space.handTimer);
  showHand(false, '');
  showModerated(MODERATED_TEXT.banned);
  ui.reactStatus.textContent = '';
  ui.toStage.hidden = true;
  ui.acceptInvitation.hidden = true; // a ban withdraws any invitation (records.ban)
  const refused = [ui.hand, ui.clip, ...[...space.reactionButtons.values()].map(({ button }) => button)];
  for (const button of refused) {
    button.disabled = true;
    button.setAttribute('aria-describedby', ui.moderated.id);
  }
}

/** I was removed: nothing is barred, but the stage or my hand went away, and I am told why. */
function removed() {
  if (space.banned) return;
  const text = space.onStage
    ? MODERATED_TEXT.removedFromStage
    : space.hand
      ? MODERATED_TEXT.removed
      : MODERATED_TEXT.removedListening;
  clearTimeout(space.handTimer);
  showHand(false, '');
  showModerated(text);
}

function forgetIdentity() {
  space.me = null;
  showWho();
}

function showHand(raised, message) {
  space.hand = raised;
  ui.hand.setAttribute('aria-pressed', String(raised));
  ui.handLabel.textContent = raised ? 'Lower hand' : 'Raise hand';
  if (message !== undefined) ui.handStatus.textContent = message;
  clearTimeout(space.handTimer);
  if (raised) space.handTimer = setTimeout(checkHand, HAND_POLL_MS);
}

async function toggleHand() {
  const focused = document.activeElement === ui.hand;
  ui.hand.disabled = true; // a disabled button drops the focus: it is given back below
  try {
    if (!(await identity('raise your hand'))) return;
    if (space.hand) {
      await api(withCode(`/api/spaces/${spaceId}/hand`), { method: 'DELETE' });
      showHand(false, 'You lowered your hand.');
    } else {
      await api(withCode(`/api/spaces/${spaceId}/hand`), { method: 'POST' });
      showHand(true, 'Your hand is up: the host sees you in the queue.');
      if (!space.banned) showModerated(''); // a removal is behind them now
    }
  } catch (err) {
    ui.handStatus.textContent = err.message;
    if (err.status === 401) forgetIdentity();
    if (err.code === 'banned') banned();
  } finally {
    ui.hand.disabled = space.banned || space.over;
    if (focused && focusLost() && !ui.hand.hidden && !ui.hand.disabled) ui.hand.focus();
  }
}

/** My own state in this Space (private, never cached): hand, role, ban. */
async function checkHand() {
  if (!space.me || space.over) return;
  try {
    const mine = await api(withCode(`/api/spaces/${spaceId}/me`));
    if (mine.role !== 'listener') {
      showOnStage(true, mine.role);
    } else if (mine.banned) {
      banned();
    } else if (space.hand && !mine.hand_raised) {
      showHand(false, 'Your hand was lowered: the host did not bring you on stage this time.');
    } else {
      showHand(mine.hand_raised);
    }
  } catch (err) {
    if (space.hand) space.handTimer = setTimeout(checkHand, HAND_POLL_MS * 2);
    if (err.status === 401) forgetIdentity();
  }
}

function stopInteraction() {
  clearTimeout(space.handTimer);
  ui.hand.disabled = true;
  for (const { button } of space.reactionButtons.values()) button.disabled = true;
  ui.toStage.hidden = true;
  ui.interact.hidden = true;
  ui.soon.hidden = true;
  ui.listeners.hidden = true;
  ui.stageHeading.textContent = 'Who was on stage';
}

// -------------------------------------------------------------------------------------- startup

function wire() {
  ui.play.addEventListener('click', () => (ui.audio.paused ? play() : pause()));
  ui.live.addEventListener('click', goLive);
  ui.fromStart.addEventListener('click', () => rewind(true));
  ui.backMinute.addEventListener('click', () => rewind(false));
  ui.clip.addEventListener('click', makeClip);
  ui.clipCopy.addEventListener('click', () => copyField(ui.clipLink, ui.clipCopyStatus));
  ui.clipSend.addEventListener('click', shareClip);
  ui.volume.addEventListener('input', () => setVolume(Number(ui.volume.value)));
  ui.audio.addEventListener('playing', () => setState(player.replay ? 'replay-playing' : player.rewound ? 'rewound' : 'playing'));
  ui.audio.addEventListener('waiting', () => {
    if (player.state === 'playing') setState('loading', 'Buffering…');
    if (player.state === 'rewound') setState('rewound-loading', 'Buffering…');
    if (player.state === 'replay-playing') setState('replay-loading', 'Buffering…');
  });
  ui.audio.addEventListener('ended', () => {
    if (player.replay) setState('replay-ended');
    else if (player.rewound) backToLive(); // caught up with what was recorded: on to live
    else finish();
  });
  ui.seek.addEventListener('input', () => {
    player.dragging = true;
    showPosition(Number(ui.seek.value));
  });
  ui.seek.addEventListener('change', () => {
    player.dragging = false;
    seekTo(Number(ui.seek.value));
  });
  ui.back.addEventListener('click', () => seekTo((player.started ? ui.audio.currentTime : player.startAt) - SKIP_S));
  ui.forward.addEventListener('click', () => seekTo((player.started ? ui.audio.currentTime : player.startAt) + SKIP_S));
  ui.hand.addEventListener('click', toggleHand);
  ui.acceptInvitation.addEventListener('click', acceptInvitation);
  ui.share.addEventListener('click', share);
  // Back from the background (a phone unlocked, a tab shown again): a live player that fell
  // behind while the browser throttled it catches up at once instead of playing the past.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible' || player.replay || player.rewound) return;
    const behind = latency();
    if (player.state === 'playing' && behind !== null && behind > MAX_BEHIND_S) jumpToLive();
  });
  // Leaving stops all audio at once and releases the player (and its requests).
  // Kept in the back-forward cache (`persisted`), the page may come back: keep its audio graph
  // (an element feeds one graph for life) and let recoverInForeground start a new player.
  window.addEventListener('pagehide', (event) => {
    clearTimeout(player.retryTimer);
    clearTimeout(player.replayTimer);
    destroyPlayer();
    ui.audio.pause();
    if (player.audioContext) (event.persisted ? player.audioContext.suspend() : player.audioContext.close()).catch(() => {});
  });
  setInterval(tick, TICK_MS);
  setInterval(roomTick, ROOM_CHECK_MS);
}

/** RMS level of what the listener hears, in dBFS (-Infinity for digital silence; null before playing). */
function levelDbfs() {
  if (!player.analyser) return null;
  const samples = new Float32Array(player.analyser.fftSize);
  player.analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
}

// Small, stable hooks for the browser tests (and for the curious, in the console).
window.townhall = {
  get state() {
    return player.state;
  },
  get spaceState() {
    return space.state;
  },
  get onAir() {
    if (roomStreamed() && space.roomView) return space.roomView.on_air;
    return Boolean(space.snapshot && space.snapshot.space.on_air);
  },
  /** Whether the room shown comes from the stream, and how many of its messages were read. */
  get roomStreamed() {
    return roomStreamed();
  },
  roomMessages: () => space.room.received,
  /** Who the page shows speaking now, by user id. */
  speakingShown: () => [...ui.stage.querySelectorAll('li.person[data-speaking="true"]')].map((item) => item.dataset.userId),
  get handRaised() {
    return space.hand;
  },
  get banned() {
    return space.banned;
  },
  get replay() {
    return player.replay;
  },
  get rewound() {
    return player.rewound;
  },
  rewindDuration: () => player.rewindDuration,
  replayDuration,
  currentTime: () => ui.audio.currentTime,
  latency,
  dominantFrequency,
  levelAt,
  level: () => {
    const value = levelDbfs();
    return value === -Infinity ? -200 : value; // JSON has no -Infinity
  },
};

/** What the lock screen and a headset see and do (media_session.js). */
function mediaSessionPage() {
  const host = (space.snapshot?.stage || []).find((member) => member.role === 'host');
  const over = player.state === 'ended' || player.state === 'unavailable';
  const mode = player.replay ? 'replay' : player.rewound ? 'rewound' : player.started && !over ? 'live' : 'idle';
  return {
    title: space.snapshot?.space.title || document.title,
    host: host ? host.display_name : '',
    mode,
    duration: player.replay ? replayDuration() : player.rewindDuration,
    canRewind: !ui.rewindControls.hidden,
  };
}

async function main() {
  wire();
  startMediaSession(ui.audio, {
    now: mediaSessionPage,
    play,
    pause,
    rewind: () => rewind(false),
    seekTo: (seconds) => (player.replay ? seekTo(seconds) : (ui.audio.currentTime = seconds)),
    toLive: goLive,
    recover: recoverInForeground,
    skipSeconds: SKIP_S,
  });
  buildReactions();
  if (!spaceId) {
    setState('unavailable', 'This is not a Space link.');
    ui.interact.hidden = true;
    return;
  }
  ui.toStage.href = `/s/${spaceId}/stage`;
  setState('idle', 'Loading the Space…');
  ui.play.disabled = true;
  try {
    showSnapshot(await api(snapshotUrl, { cache: 'default' }));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      notFound();
      return;
    }
    // The API is busy or away, but the playlist may still be reachable: let the listener try.
    say(ui.error, err.message);
  }
  if (space.over) return;
  setState('idle');
  space.pollTimer = setTimeout(pollSnapshot, SNAPSHOT_MS);
  beacon();
  setInterval(beacon, PRESENCE_MS);
  try {
    space.me = await whoAmI();
    showWho();
    if (space.me) await checkHand();
  } catch {
    // who I am matters only to react or raise a hand: asked again then
  }
  space.settled = true;
}

main();
