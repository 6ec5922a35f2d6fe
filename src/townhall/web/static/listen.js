// Listener page: play a Space's program mix over LL-HLS.
//
// Theory of operation. Everything a listener fetches is a cacheable GET: the Space record once, then
// the playlists and media. hls.js plays where Media Source Extensions exist (low-latency mode, so
// it follows EXT-X-PART, blocking reloads and preload hints); elsewhere (iPhone Safari without
// MSE) the browser's own HLS player takes the playlist URL.
//
// Latency. The target is the playlist's PART-HOLD-BACK plus one PART-TARGET: parts arrive whole, so
// the buffer ahead saws by one part, and hls.js only speeds up with more than 1 s buffered; with the
// bare hold-back as target it can never settle and flips the playback rate forever (seen: 1.0 ↔ 1.15
// several times a second). When playback drifts behind the target, hls.js plays up to 15 % faster;
// beyond MAX_BEHIND_S the page jumps to the live edge. hls.js adds a second to its target after each
// stall and never takes it back; after STALL_FORGIVE_MS without a stall the page resets it.
//
// Recovery: fatal media errors go to hls.recoverMediaError (swapping the codec hint if that
// repeats quickly); fatal network errors first ask the API whether the Space has ended, and if not,
// restart loading after an exponential, jittered backoff. The Space is over when the playlist
// carries EXT-X-ENDLIST and playback reaches its end, or when the API says so.

import Hls from './vendor/hls.min.mjs';
import { ApiError, api, byId, say, spaceIdFromPath, stateLabel } from './api.js';

const MAX_BEHIND_S = 6; // further behind than this after a stall: jump to live instead of speeding up
const STALL_RECONNECTING_MS = 4000; // no progress for this long while playing: say so, check the Space
const END_STALL_MS = 1500; // after ENDLIST, this long without progress means the end was reached
const STALL_FORGIVE_MS = 30000;
const MAX_BACKOFF_S = 15;
const TICK_MS = 500;

const HLS_CONFIG = {
  lowLatencyMode: true,
  // Catch up on drift by playing up to 15 % faster (pitch is preserved); beyond MAX_BEHIND_S we jump.
  maxLiveSyncPlaybackRate: 1.15,
  // A listener never rewinds far yet (DVR comes later): keep memory small.
  backBufferLength: 10,
  maxBufferLength: 10,
};

const STATE_TEXT = {
  idle: 'Press Play to listen.',
  loading: 'Loading…',
  playing: 'Playing live',
  paused: 'Paused',
  reconnecting: 'Reconnecting…',
  ended: 'This Space has ended.',
  unavailable: 'This Space cannot be played.',
};

const ui = {
  spaceState: byId('space-state'),
  title: byId('space-title'),
  play: byId('play'),
  playLabel: byId('play-label'),
  status: byId('status'),
  latency: byId('latency'),
  live: byId('live'),
  controls: byId('controls'),
  volume: byId('volume'),
  error: byId('error'),
  audio: byId('player'),
};

const spaceId = spaceIdFromPath();
const playlistUrl = `/live/${spaceId}/index.m3u8`;

const player = {
  state: 'idle',
  hls: null,
  native: false, // the browser's own HLS (Safari without MSE)
  started: false,
  attempt: 0,
  retryTimer: 0,
  lastMediaRecovery: -Infinity,
  targetLatency: null, // seconds, from the playlist (see the top of this file)
  lastStallAt: 0,
  endlist: false,
  lastTime: -1,
  lastProgressAt: 0,
  stallChecked: false,
  audioContext: null,
  analyser: null,
  gain: null,
  spectrum: null,
};

// ---------------------------------------------------------------------------------------- display

function setState(state, message = '') {
  player.state = state;
  ui.status.dataset.state = state;
  ui.status.textContent = message || STATE_TEXT[state];
  const over = state === 'ended' || state === 'unavailable';
  // Nothing left to play (replay comes later): only the status remains.
  ui.play.hidden = over;
  ui.play.disabled = over;
  ui.controls.hidden = over;
  ui.latency.hidden = over;
  const playing = state === 'playing' || state === 'loading' || state === 'reconnecting';
  ui.play.setAttribute('aria-label', playing ? 'Pause' : 'Play');
  ui.playLabel.textContent = playing ? 'Pause' : 'Play';
  ui.play.querySelector('.icon').textContent = playing ? '❚❚' : '▶';
  ui.live.disabled = !player.started;
}

function showSpace(space) {
  ui.title.textContent = space.title;
  document.title = `${space.title} · townhall`;
  ui.spaceState.dataset.state = space.state;
  ui.spaceState.textContent = stateLabel(space.state);
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

function setVolume(value) {
  if (player.gain) player.gain.gain.value = value;
  else ui.audio.volume = value;
}

// -------------------------------------------------------------------------------------- latency

/** Seconds between the live edge and what is heard now, or null when unknown. */
function latency() {
  if (player.hls) {
    const value = player.hls.latency;
    return Number.isFinite(value) && value > 0 ? value : null;
  }
  if (player.native && ui.audio.seekable.length > 0) {
    return Math.max(0, ui.audio.seekable.end(ui.audio.seekable.length - 1) - ui.audio.currentTime);
  }
  return null;
}

function jumpToLive() {
  if (player.hls) {
    const target = player.hls.liveSyncPosition;
    if (Number.isFinite(target) && target > ui.audio.currentTime) ui.audio.currentTime = target;
  } else if (player.native && ui.audio.seekable.length > 0) {
    ui.audio.currentTime = Math.max(0, ui.audio.seekable.end(ui.audio.seekable.length - 1) - 1);
  }
}

// ------------------------------------------------------------------------------------- playback

function createHls() {
  const hls = new Hls(HLS_CONFIG);
  player.targetLatency = null;
  hls.on(Hls.Events.ERROR, onHlsError);
  hls.on(Hls.Events.LEVEL_UPDATED, (_, { details }) => {
    if (!details.live) player.endlist = true;
    if (player.targetLatency === null && details.partTarget > 0) {
      player.targetLatency = (details.partHoldBack || details.holdBack) + details.partTarget;
      hls.targetLatency = player.targetLatency;
    }
  });
  hls.on(Hls.Events.FRAG_BUFFERED, () => {
    player.attempt = 0;
  });
  hls.attachMedia(ui.audio);
  hls.loadSource(playlistUrl);
  player.hls = hls;
}

function destroyHls() {
  if (player.hls) {
    player.hls.destroy();
    player.hls = null;
  }
}

function start() {
  player.started = true;
  player.lastProgressAt = performance.now();
  if (Hls.isSupported()) {
    createHls();
  } else if (ui.audio.canPlayType('application/vnd.apple.mpegurl')) {
    player.native = true;
    ui.audio.src = playlistUrl;
  } else {
    setState('unavailable', 'This browser cannot play live audio (no Media Source Extensions, no HLS).');
    return false;
  }
  return true;
}

async function play() {
  say(ui.error, '');
  if (!player.started) {
    if (Hls.isSupported()) ensureAudioGraph(); // must happen inside the click: autoplay rules
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
  setState('paused');
}

function finish() {
  clearTimeout(player.retryTimer);
  destroyHls();
  if (player.native) ui.audio.removeAttribute('src');
  ui.audio.pause();
  if (ui.spaceState.dataset.state !== 'cancelled') {
    ui.spaceState.dataset.state = 'ended';
    ui.spaceState.textContent = stateLabel('ended');
  }
  setState('ended');
}

async function spaceHasEnded() {
  try {
    const space = await api(`/api/spaces/${spaceId}`);
    showSpace(space);
    return space.state === 'ended' || space.state === 'cancelled';
  } catch (err) {
    return err instanceof ApiError && (err.status === 404 || err.status === 410);
  }
}

function onHlsError(_, data) {
  if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR) player.lastStallAt = performance.now();
  if (!data.fatal) return;
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
    const now = performance.now();
    if (now - player.lastMediaRecovery < 3000) player.hls.swapAudioCodec();
    player.lastMediaRecovery = now;
    player.hls.recoverMediaError();
    return;
  }
  setState('reconnecting');
  recoverLater(data.type === Hls.ErrorTypes.NETWORK_ERROR && player.hls.levels.length > 0);
}

async function recoverLater(canResumeLoading) {
  clearTimeout(player.retryTimer);
  if (await spaceHasEnded()) {
    finish();
    return;
  }
  player.attempt += 1;
  const backoff = Math.min(MAX_BACKOFF_S, 0.5 * 2 ** (player.attempt - 1));
  const delay = backoff * (0.5 + Math.random()); // jitter: a million players must not retry in step
  setState('reconnecting', `Reconnecting in ${Math.ceil(delay)} s…`);
  player.retryTimer = setTimeout(() => {
    if (player.state === 'ended') return;
    if (canResumeLoading && player.hls) {
      player.hls.startLoad(-1);
    } else {
      destroyHls();
      createHls();
    }
    setState('reconnecting');
    ui.audio.play().catch(() => {});
  }, delay * 1000);
}

/** Give hls.js its original target back once playback has been smooth for a while. */
function forgiveOldStalls(now) {
  const { hls, targetLatency } = player;
  if (!hls || targetLatency === null || now - player.lastStallAt < STALL_FORGIVE_MS) return;
  if (hls.targetLatency !== null && hls.targetLatency > targetLatency + 0.01) hls.targetLatency = targetLatency;
}

/** Twice a second: show latency, notice stalls and the end of an ended playlist. */
async function tick() {
  if (!player.started || player.state === 'ended') return;
  const behind = latency();
  ui.latency.textContent = behind === null ? '' : `${behind.toFixed(1)} s behind live`;
  if (ui.audio.paused) return;
  const now = performance.now();
  if (ui.audio.currentTime !== player.lastTime) {
    player.lastTime = ui.audio.currentTime;
    player.lastProgressAt = now;
    player.stallChecked = false;
    if (behind !== null && behind > MAX_BEHIND_S) jumpToLive();
    forgiveOldStalls(now);
    return;
  }
  const stalledFor = now - player.lastProgressAt;
  if (player.endlist && stalledFor > END_STALL_MS) {
    // An ended playlist can stall a hair before its last sample (MSE rounding): that is the end.
    finish();
  } else if (stalledFor > STALL_RECONNECTING_MS && !player.stallChecked) {
    player.stallChecked = true;
    setState('reconnecting');
    if (await spaceHasEnded()) finish();
  }
}

function wire() {
  ui.play.addEventListener('click', () => (ui.audio.paused ? play() : pause()));
  ui.live.addEventListener('click', () => {
    jumpToLive();
    if (ui.audio.paused) play();
  });
  ui.volume.addEventListener('input', () => setVolume(Number(ui.volume.value)));
  ui.audio.addEventListener('playing', () => setState('playing'));
  ui.audio.addEventListener('waiting', () => {
    if (player.state === 'playing') setState('loading', 'Buffering…');
  });
  ui.audio.addEventListener('ended', finish);
  setInterval(tick, TICK_MS);
}

// Small, stable hooks for the browser tests (and for the curious, in the console).
window.townhall = {
  get state() {
    return player.state;
  },
  currentTime: () => ui.audio.currentTime,
  latency,
  dominantFrequency,
};

async function main() {
  wire();
  if (!spaceId) {
    setState('unavailable', 'This is not a Space link.');
    return;
  }
  try {
    const space = await api(`/api/spaces/${spaceId}`);
    showSpace(space);
    if (space.state === 'ended' || space.state === 'cancelled') {
      finish();
      return;
    }
    setState('idle');
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      ui.title.textContent = 'No such Space';
      ui.spaceState.textContent = 'Not found';
      setState('unavailable', 'This Space does not exist. Check the link.');
      return;
    }
    // The API is busy or away, but the playlist may still be reachable: let the listener try.
    say(ui.error, err.message);
    setState('idle');
  }
}

main();
