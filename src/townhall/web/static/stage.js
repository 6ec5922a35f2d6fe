// Stage page (host and speakers): publish the microphone over WebRTC, hear the rest of the stage.
//
// Theory of operation. The stage token arrives in the URL fragment (#token=…), which browsers never
// send to a server. "Start talking" opens the microphone once; a *session* then owns one
// RTCPeerConnection at a time. The exchange is non-trickle: the offer is sent after ICE gathering
// completed (or a timeout), the server answers with all its candidates. When the connection fails
// (or stays disconnected for a few seconds) the session drops that peer connection and makes a new
// one after an exponential, jittered backoff, keeping the same microphone track. Answers that
// retrying cannot fix (token refused, Space ended) stop the session instead.
//
// Query parameters decide the capture processing, so that tests can measure a tone unaltered:
//   ?raw=1 turns echoCancellation, noiseSuppression and autoGainControl off; each can also be set
//   on its own, e.g. ?echoCancellation=0&autoGainControl=1.

import {
  ApiError,
  api,
  byId,
  copyField,
  jwtClaims,
  listenerLink,
  say,
  spaceIdFromPath,
  stageLink,
  stateLabel,
} from './api.js';

const ICE_GATHERING_TIMEOUT_MS = 3000;
const DISCONNECTED_GRACE_MS = 2500; // ICE may recover from "disconnected" by itself; a fresh connection is cheap
const MAX_ATTEMPTS = 8; // then stop and offer "Try again"
const MAX_BACKOFF_S = 30;
const SPACE_POLL_MS = 10000; // the stage is small: polling the Space's state is cheap here

const STATE_TEXT = {
  idle: 'Not on stage',
  connecting: 'Connecting…',
  connected: 'Connected: you are on stage',
  reconnecting: 'Reconnecting…',
  failed: 'Connection failed',
  ended: 'This Space has ended',
};

const ui = {
  spaceState: byId('space-state'),
  role: byId('role'),
  title: byId('space-title'),
  connection: byId('connection'),
  start: byId('start'),
  mute: byId('mute'),
  leave: byId('leave'),
  level: byId('level'),
  meter: byId('meter'),
  error: byId('error'),
  remote: byId('remote'),
  listenLink: byId('listen-link'),
  copyListen: byId('copy-listen'),
  copyListenStatus: byId('copy-listen-status'),
  hostTools: byId('host-tools'),
  invite: byId('invite'),
  inviteResult: byId('invite-result'),
  inviteLink: byId('invite-link'),
  copyInvite: byId('copy-invite'),
  inviteStatus: byId('invite-status'),
  end: byId('end'),
  endConfirm: byId('end-confirm'),
  endYes: byId('end-yes'),
  endNo: byId('end-no'),
};

function captureConstraints(params) {
  const raw = params.get('raw') === '1';
  const choose = (name) => {
    const value = params.get(name);
    if (value === '1' || value === 'true') return true;
    if (value === '0' || value === 'false') return false;
    return !raw;
  };
  return {
    echoCancellation: choose('echoCancellation'),
    noiseSuppression: choose('noiseSuppression'),
    autoGainControl: choose('autoGainControl'),
  };
}

const spaceId = spaceIdFromPath();
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const claims = token ? jwtClaims(token) : null;
const audioConstraints = captureConstraints(new URLSearchParams(location.search));

const session = {
  state: 'idle',
  stream: null,
  pc: null,
  generation: 0, // bumped whenever the peer connection is replaced: late events of old ones are ignored
  attempt: 0,
  retryTimer: 0,
  graceTimer: 0,
  audioContext: null,
  analyser: null,
  samples: null,
  meterFrame: 0,
  spaceEnded: false,
  opening: false, // waiting for the microphone permission
};
let iceServersCache = null;

// ---------------------------------------------------------------------------------------- display

function setState(state, detail = '') {
  session.state = state;
  ui.connection.dataset.state = state;
  ui.connection.textContent = detail ? `${STATE_TEXT[state]} ${detail}` : STATE_TEXT[state];
  const onStage = session.stream !== null;
  ui.start.hidden = (onStage && state !== 'failed') || session.spaceEnded;
  ui.meter.hidden = session.spaceEnded;
  ui.start.disabled = session.spaceEnded || !token || session.opening;
  ui.start.textContent = state === 'failed' ? 'Try again' : 'Start talking';
  ui.mute.hidden = !onStage;
  ui.leave.hidden = !onStage;
}

function showSpace(space) {
  ui.title.textContent = space.title;
  document.title = `${space.title} · Stage · townhall`;
  showSpaceState(space.state);
}

function showSpaceState(state) {
  ui.spaceState.dataset.state = state;
  ui.spaceState.textContent = stateLabel(state);
}

function showError(message) {
  say(ui.error, message);
}

function micErrorMessage(err) {
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Microphone access was refused. Allow the microphone for this site and try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one and try again.';
    case 'NotReadableError':
      return 'The microphone is in use by another application or cannot be opened.';
    default:
      return `The microphone could not be opened (${(err && err.message) || err}).`;
  }
}

// ------------------------------------------------------------------------------------ level meter

function startMeter(stream) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  session.audioContext = new Context();
  const source = session.audioContext.createMediaStreamSource(stream);
  session.analyser = session.audioContext.createAnalyser();
  session.analyser.fftSize = 2048;
  session.samples = new Float32Array(session.analyser.fftSize);
  source.connect(session.analyser); // not to the destination: nobody wants to hear themselves
  const draw = () => {
    const level = micLevel();
    ui.level.value = level;
    ui.level.textContent = `${Math.round(level * 100)} %`;
    session.meterFrame = requestAnimationFrame(draw);
  };
  draw();
}

function stopMeter() {
  cancelAnimationFrame(session.meterFrame);
  if (session.audioContext) session.audioContext.close().catch(() => {});
  session.audioContext = null;
  session.analyser = null;
  ui.level.value = 0;
  ui.level.textContent = 'silent';
}

/** The microphone's RMS level mapped from -60…0 dBFS to 0…1 (0 while muted). */
function micLevel() {
  if (!session.analyser) return 0;
  const track = session.stream && session.stream.getAudioTracks()[0];
  if (!track || !track.enabled) return 0;
  session.analyser.getFloatTimeDomainData(session.samples);
  let sum = 0;
  for (const sample of session.samples) sum += sample * sample;
  const rms = Math.sqrt(sum / session.samples.length);
  const dbfs = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
  return Math.min(1, Math.max(0, (dbfs + 60) / 60));
}

// ---------------------------------------------------------------------------------------- session

async function iceServers() {
  if (iceServersCache === null) {
    try {
      iceServersCache = await api('/api/ice-servers');
    } catch (err) {
      if (err instanceof ApiError && err.status === 0) throw err;
      iceServersCache = []; // host candidates still work on an open network
    }
  }
  return iceServersCache;
}

function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === 'complete') done();
    };
    // A STUN/TURN server that does not answer must not hold the offer forever: send what we have.
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function dropPeer() {
  session.generation += 1;
  clearTimeout(session.retryTimer);
  clearTimeout(session.graceTimer);
  if (session.pc) {
    session.pc.close();
    session.pc = null;
  }
}

async function connect() {
  dropPeer();
  const generation = session.generation;
  const current = () => generation === session.generation;
  setState(session.attempt === 0 ? 'connecting' : 'reconnecting');
  try {
    const servers = await iceServers();
    if (!current()) return;
    const pc = new RTCPeerConnection({ iceServers: servers });
    session.pc = pc;
    const [track] = session.stream.getAudioTracks();
    pc.addTransceiver(track, { direction: 'sendrecv', streams: [session.stream] });
    pc.addEventListener('track', (event) => {
      if (current()) playReturn(event);
    });
    pc.addEventListener('connectionstatechange', () => {
      if (current()) onConnectionState(pc);
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, ICE_GATHERING_TIMEOUT_MS);
    if (!current()) return;
    const answer = await api(`/api/spaces/${spaceId}/rtc`, {
      method: 'POST',
      token,
      body: { type: 'offer', sdp: pc.localDescription.sdp },
    });
    if (!current()) return;
    await pc.setRemoteDescription(answer);
  } catch (err) {
    if (current()) onConnectError(err);
  }
}

function onConnectionState(pc) {
  switch (pc.connectionState) {
    case 'connected':
      clearTimeout(session.graceTimer);
      session.attempt = 0;
      showError('');
      setState('connected');
      break;
    case 'disconnected':
      setState('reconnecting');
      clearTimeout(session.graceTimer);
      session.graceTimer = setTimeout(() => {
        if (pc.connectionState !== 'connected') retryLater();
      }, DISCONNECTED_GRACE_MS);
      break;
    case 'failed':
      retryLater();
      break;
    default:
      break;
  }
}

function onConnectError(err) {
  if (err instanceof ApiError) {
    if (err.status === 410) {
      spaceEnded();
      return;
    }
    if ([400, 401, 403, 404].includes(err.status)) {
      // Retrying the same offer with the same token cannot succeed.
      stopSession();
      setState('failed');
      showError(err.status === 401 ? `${err.message} Ask the host for a new invite link.` : err.message);
      return;
    }
    retryLater(err.retryAfterSeconds);
    return;
  }
  showError(`Could not connect: ${err.message || err}`);
  retryLater();
}

function retryLater(minimumSeconds = 0) {
  dropPeer();
  session.attempt += 1;
  if (session.attempt > MAX_ATTEMPTS) {
    setState('failed');
    showError('Could not reach the stage after several tries. Check your network, then try again.');
    return;
  }
  const backoff = Math.min(MAX_BACKOFF_S, 0.5 * 2 ** (session.attempt - 1));
  const delay = Math.max(minimumSeconds, backoff * (0.5 + Math.random())); // jitter spreads a storm
  setState('reconnecting', `Next try in ${Math.ceil(delay)} s.`);
  session.retryTimer = setTimeout(connect, delay * 1000);
}

function playReturn(event) {
  ui.remote.srcObject = event.streams[0] || new MediaStream([event.track]);
  ui.remote.play().catch((err) => {
    if (err.name === 'NotAllowedError') showError('Your browser blocked playback of the stage: click anywhere on the page.');
  });
}

async function startTalking() {
  showError('');
  if (session.stream) {
    // "Try again" after the session gave up: keep the microphone, start counting anew.
    session.attempt = 0;
    connect();
    return;
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError('This page needs a secure connection (https, or localhost) to use the microphone.');
    return;
  }
  session.opening = true;
  setState('connecting', '(waiting for the microphone)');
  try {
    session.stream = await navigator.mediaDevices.getUserMedia({ audio: audioConstraints, video: false });
  } catch (err) {
    session.opening = false;
    setState('idle');
    showError(micErrorMessage(err));
    return;
  }
  session.opening = false;
  const [track] = session.stream.getAudioTracks();
  track.addEventListener('ended', () => {
    stopSession();
    showError('Your microphone stopped (was it unplugged?). Start talking again to reconnect.');
  });
  setMuted(false);
  startMeter(session.stream);
  session.attempt = 0;
  connect();
}

function stopSession() {
  dropPeer();
  stopMeter();
  if (session.stream) {
    for (const track of session.stream.getTracks()) track.stop();
    session.stream = null;
  }
  ui.remote.srcObject = null;
  setState(session.spaceEnded ? 'ended' : 'idle');
}

async function leaveStage() {
  const wasOnStage = session.stream !== null;
  stopSession();
  if (!wasOnStage) return;
  try {
    await api(`/api/spaces/${spaceId}/rtc`, { method: 'DELETE', token, keepalive: true });
  } catch (err) {
    if (!(err instanceof ApiError && [404, 410].includes(err.status))) showError(err.message);
  }
}

function setMuted(muted) {
  const track = session.stream && session.stream.getAudioTracks()[0];
  if (track) track.enabled = !muted; // a disabled track sends silence; the connection stays up
  ui.mute.setAttribute('aria-pressed', String(muted));
  ui.mute.textContent = muted ? 'Unmute' : 'Mute';
}

function spaceEnded() {
  session.spaceEnded = true;
  clearInterval(spacePoll);
  if (ui.spaceState.dataset.state !== 'cancelled') showSpaceState('ended');
  stopSession();
  ui.hostTools.hidden = true;
  setState('ended');
}

// ------------------------------------------------------------------------------------ host tools

async function invite() {
  ui.invite.disabled = true;
  ui.inviteStatus.textContent = '';
  try {
    const created = await api(`/api/spaces/${spaceId}/invites`, { method: 'POST', token });
    ui.inviteLink.value = stageLink(spaceId, created.speaker_token);
    ui.inviteResult.hidden = false;
    const hours = Math.round(created.expires_in / 3600);
    ui.inviteStatus.textContent = `New invite link ready (valid for ${hours > 0 ? `${hours} h` : `${created.expires_in} s`}).`;
    ui.inviteLink.focus();
    ui.inviteLink.select();
  } catch (err) {
    if (err instanceof ApiError && err.status === 410) spaceEnded();
    else showError(err.message);
  } finally {
    ui.invite.disabled = false;
  }
}

async function endSpace() {
  ui.endYes.disabled = true;
  try {
    const space = await api(`/api/spaces/${spaceId}/end`, { method: 'POST', token });
    showSpace(space);
    spaceEnded();
  } catch (err) {
    if (err instanceof ApiError && err.status === 410) spaceEnded();
    else showError(err.message);
  } finally {
    ui.endYes.disabled = false;
    ui.endConfirm.hidden = true;
    ui.end.hidden = false;
  }
}

// -------------------------------------------------------------------------------------- startup

let spacePoll = 0;

async function refreshSpace() {
  try {
    const space = await api(`/api/spaces/${spaceId}`);
    showSpace(space);
    const over = space.state === 'ended' || space.state === 'cancelled';
    if (over && !session.spaceEnded) spaceEnded();
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      clearInterval(spacePoll);
      ui.title.textContent = 'No such Space';
      showSpaceState('not found');
      showError('This Space does not exist. Check the link.');
      ui.start.disabled = true;
      return false;
    }
    return true; // a blip: the next poll tries again
  }
}

function wire() {
  ui.start.addEventListener('click', startTalking);
  ui.leave.addEventListener('click', leaveStage);
  ui.mute.addEventListener('click', () => setMuted(ui.mute.getAttribute('aria-pressed') !== 'true'));
  ui.copyListen.addEventListener('click', () => copyField(ui.listenLink, ui.copyListenStatus));
  ui.copyInvite.addEventListener('click', () => copyField(ui.inviteLink, ui.inviteStatus));
  ui.invite.addEventListener('click', invite);
  ui.end.addEventListener('click', () => {
    ui.end.hidden = true;
    ui.endConfirm.hidden = false;
    ui.endNo.focus();
  });
  ui.endNo.addEventListener('click', () => {
    ui.endConfirm.hidden = true;
    ui.end.hidden = false;
    ui.end.focus();
  });
  ui.endYes.addEventListener('click', endSpace);
  // Pasting another stage link into this tab changes only the fragment: start over with its token.
  window.addEventListener('hashchange', () => location.reload());
  // Leaving the page hangs up at once rather than waiting for ICE consent to time out.
  window.addEventListener('pagehide', () => {
    if (session.stream) api(`/api/spaces/${spaceId}/rtc`, { method: 'DELETE', token, keepalive: true }).catch(() => {});
  });
}

// Small, stable hooks for the browser tests (and for the curious, in the console).
window.townhall = {
  get state() {
    return session.state;
  },
  get role() {
    return claims ? claims.role : null;
  },
  get muted() {
    return ui.mute.getAttribute('aria-pressed') === 'true';
  },
  micLevel,
};

async function main() {
  wire();
  setState('idle');
  if (!spaceId) {
    showError('This is not a Space link.');
    return;
  }
  ui.listenLink.value = listenerLink(spaceId);
  if (!token || !claims) {
    showError('This stage link has no valid stage token. Ask the host for an invite link.');
    ui.start.disabled = true;
  } else {
    ui.role.hidden = false;
    ui.role.textContent = claims.role === 'host' ? 'Host' : 'Speaker';
    ui.hostTools.hidden = claims.role !== 'host';
    if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
      showError('This stage link has expired. Ask the host for a new invite link.');
    }
  }
  if (await refreshSpace()) spacePoll = setInterval(refreshSpace, SPACE_POLL_MS);
  setState(session.state);
}

main();
