// Stage page (host, co-hosts, speakers): publish the microphone over WebRTC, hear the rest of the
// stage, follow the Space live, and — for the host and co-hosts — run it.
//
// Theory of operation.
//
// *Who.* The page works for whoever is on the Space's stage roster, identified by the session
// cookie. An invite link (`#invite=…`, a fragment, which browsers never send to a server) seats
// whoever opens it: the page makes sure there is an identity (a guest name if need be), claims the
// seat (`POST …/stage/join`) and strips the fragment so a reload does not claim it again. The role
// comes from `GET …/me`.
//
// *What the Space is doing* comes from two sources that never disagree for long: a full read
// (`GET …/{id}`, `…/me`, `…/hands`) and the stage's WebSocket of ordered events. The first socket
// starts from the beginning of the log (`after=0`); its `hello` names the latest event, the page
// then does a full read and skips the events up to that one (the read already contains them).
// Events arriving while a read is in flight wait and are applied after it; applying an event twice
// is harmless (each one sets a state). A reconnect resumes after the last event seen; `reset`
// (history gone) means a full read again. The ON AIR / OFF AIR banner follows the Space state only
// from these two sources — never from the listeners' cached snapshot, which may be a second old.
//
// *Audio.* "Start talking" opens the microphone once; a *session* then owns one RTCPeerConnection
// at a time. The exchange is non-trickle: the offer is sent after ICE gathering completed (or a
// timeout), the server answers with all its candidates. The connection is lost when it fails,
// stays disconnected for a few seconds, or — what a crashed or restarted server leaves behind,
// while the browser may still call the connection "connected" — when the audio the stage sends
// back (a packet every 20 ms, silence included) stands still for RETURN_TIMEOUT_MS. Then the
// session drops that peer connection and makes a new one, at once and then after exponential
// waits with full jitter (recovery.js), keeping the same microphone track; the page says
// "Reconnecting…" until the new one carries audio. Answers that retrying cannot fix (not on the
// stage, Space ended) stop the session instead. The stage talks in the green room
// too: nothing reaches listeners until the host goes live.
//
// *Mute.* Muting is a server state (the mixer applies it, the roster shows it); the page also
// disables the microphone track at once, so a hot mic goes quiet before the round trip. Only the
// speaker can clear a host's mute ("Unmute myself").
//
// Query parameters decide the capture processing, so that tests can measure a tone unaltered:
//   ?raw=1 turns echoCancellation, noiseSuppression and autoGainControl off; each can also be set
//   on its own, e.g. ?echoCancellation=0&autoGainControl=1.

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
  signInLink,
  spaceIdFromPath,
  whoAmI,
} from './api.js';
import { audiencePanel } from './audience.js';
import { Captions } from './captions.js';
import { banQuestion, removeQuestion } from './moderation.js';
import { retryDelay, Stillness } from './recovery.js';
import { renderEdit, wireEdit } from './space_edit.js';

const ICE_GATHERING_TIMEOUT_MS = 3000;
const DISCONNECTED_GRACE_MS = 2500; // ICE may recover from "disconnected" by itself; a fresh connection is cheap
const MAX_ATTEMPTS = 12; // then stop and offer "Try again" (about a minute of tries)
const MAX_BACKOFF_S = 10;
const RETURN_TIMEOUT_MS = 3000; // no audio back from the stage this long: the connection is gone
const WATCH_MS = 1000;
const EVENTS_MAX_BACKOFF_S = 20;
const SNAPSHOT_POLL_MS = 2000; // speaking indicators and the listener count
const FALLBACK_POLL_MS = 4000; // full reads while the event socket cannot connect
const ROLE_ORDER = { host: 0, cohost: 1, speaker: 2 };
const ROLE_PHRASE = { host: 'the host', cohost: 'a co-host', speaker: 'a speaker' };
// A ban as the server enforces it: no stage, reactions, hands or clips; the stream is not refused.
const BANNED_TEXT =
  'You are banned from this Space: you cannot come back on stage, react, raise a hand or make clips here. ' +
  'The stream is open to anyone with the link, so you can still listen.';

const STATE_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  connected: 'Connected: the stage hears you',
  reconnecting: 'Reconnecting…',
  failed: 'Connection failed',
  ended: 'This Space has ended',
  offstage: 'You are not on the stage',
};

const AIR = {
  live: ['ON AIR', 'Listeners hear the stage.'],
  green_room: ['OFF AIR', 'Green room: listeners hear nothing yet.'],
  scheduled: ['OFF AIR', 'Scheduled: listeners hear nothing yet.'],
  ended: ['ENDED', 'This Space is over.'],
  cancelled: ['CANCELLED', 'This Space was cancelled.'],
};

const ui = {
  who: byId('who'),
  whoName: byId('who-name'),
  air: byId('air'),
  airLabel: byId('air-label'),
  airDetail: byId('air-detail'),
  role: byId('role'),
  rec: byId('rec'),
  listeners: byId('listeners'),
  reactions: byId('stage-reactions'),
  title: byId('space-title'),
  announce: byId('announce'),
  gate: byId('gate'),
  gateHeading: byId('gate-heading'),
  gateText: byId('gate-text'),
  gateGuest: byId('gate-guest'),
  gateSignin: byId('gate-signin'),
  gateListen: byId('gate-listen'),
  micCard: byId('mic-card'),
  connection: byId('connection'),
  hostMuted: byId('host-muted'),
  unmuteSelf: byId('unmute-self'),
  start: byId('start'),
  mute: byId('mute'),
  hangup: byId('hangup'),
  level: byId('level'),
  meter: byId('meter'),
  error: byId('error'),
  remote: byId('remote'),
  console: byId('console'),
  consoleHeading: byId('console-heading'),
  airControls: byId('air-controls'),
  airDivider: byId('air-divider'),
  goLive: byId('go-live'),
  openRoom: byId('open-room'),
  deviceField: byId('device-field'),
  micDevice: byId('mic-device'),
  pinForm: byId('pin-form'),
  pinUrl: byId('pin-url'),
  pinSet: byId('pin-set'),
  pinClear: byId('pin-clear'),
  pinStatus: byId('pin-status'),
  confirmDialog: byId('confirm-dialog'),
  confirmQuestion: byId('confirm-question'),
  confirmYes: byId('confirm-yes'),
  end: byId('end'),
  endConfirm: byId('end-confirm'),
  endYes: byId('end-yes'),
  endNo: byId('end-no'),
  delayForm: byId('delay-form'),
  delay: byId('delay'),
  delaySet: byId('delay-set'),
  dump: byId('dump'),
  delayStatus: byId('delay-status'),
  invite: byId('invite'),
  inviteCohost: byId('invite-cohost'),
  inviteResult: byId('invite-result'),
  inviteLabel: byId('invite-label'),
  inviteLink: byId('invite-link'),
  copyInvite: byId('copy-invite'),
  inviteStatus: byId('invite-status'),
  inviteUses: byId('invite-uses'),
  inviteExpiry: byId('invite-expiry'),
  inviteLinks: byId('invite-links'),
  inviteLinksEmpty: byId('invite-links-empty'),
  handsCard: byId('hands-card'),
  hands: byId('hands'),
  handsCount: byId('hands-count'),
  handsEmpty: byId('hands-empty'),
  rosterCard: byId('roster-card'),
  roster: byId('roster'),
  rosterStatus: byId('roster-status'),
  recordingCard: byId('recording-card'),
  recordingText: byId('recording-text'),
  download: byId('download'),
  downloadStatus: byId('download-status'),
  shareCard: byId('share-card'),
  listenLink: byId('listen-link'),
  copyListen: byId('copy-listen'),
  rotateRow: byId('rotate-row'),
  rotateHint: byId('rotate-hint'),
  rotateInvite: byId('rotate-invite'),
  rotateStatus: byId('rotate-status'),
  copyListenStatus: byId('copy-listen-status'),
  leaveRow: byId('leave-row'),
  leave: byId('leave'),
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
const audioConstraints = captureConstraints(new URLSearchParams(location.search));

/** What the page knows about the Space and the people in it. */
const view = {
  me: null, // {user_id, display_name, kind}
  space: null, // the Space as the API shows it
  links: null,
  members: new Map(), // user_id → stage member
  hands: [], // [{user_id, display_name, raised_at}], in the order they were raised
  inviteLinks: [], // the Space's invite links as GET …/invite-links gives them, newest first
  speaking: new Set(),
  onStage: false,
  over: false,
};

const session = {
  state: 'idle',
  stream: null,
  pc: null,
  generation: 0, // bumped whenever the peer connection is replaced: late events of old ones are ignored
  attempt: 0,
  retryTimer: 0,
  graceTimer: 0,
  watchTimer: 0, // checks that the stage's audio still arrives (see the top of this file)
  returned: new Stillness(0), // packets received from the stage
  audioContext: null,
  analyser: null,
  samples: null,
  meterFrame: 0,
  opening: false, // waiting for the microphone permission
  muting: false, // a mute asked of the server and not answered yet: the track is already silent
};

const events = {
  socket: null,
  after: 0, // the last event seen
  skipUpTo: 0, // events a full read already contains
  synced: false, // a full read happened since the page opened
  syncing: null, // the full read in flight (a Promise)
  pending: [], // events that arrived during a full read
  attempt: 0,
  retryTimer: 0,
  stopped: false,
  failedOpens: 0, // sockets in a row that closed before their hello
  fallbackTimer: 0, // polling full reads while no socket gets through (a proxy without WebSockets)
};

let snapshotTimer = 0;
let iceServersCache = null;

// The host console's audience list (audience.js), shown with the console.
const audience = audiencePanel({
  spacePath,
  actionButton,
  confirmAction,
  visibility: () => (view.space ? view.space.visibility : 'public'),
  onGone: (userId) => removeHand(userId),
});

// ------------------------------------------------------------------------------------ helpers

function me() {
  return view.me ? view.members.get(view.me.user_id) || null : null;
}

function myRole() {
  const member = me();
  return member ? member.role : 'listener';
}

function isModerator() {
  const role = myRole();
  return role === 'host' || role === 'cohost';
}

function isHost() {
  return myRole() === 'host';
}

function announce(message) {
  // Re-set even when equal, so that screen readers say it again.
  ui.announce.textContent = '';
  requestAnimationFrame(() => {
    ui.announce.textContent = message;
  });
}

function showError(message) {
  say(ui.error, message);
}

function spacePath(suffix = '') {
  return `/api/spaces/${spaceId}${suffix}`;
}

// -------------------------------------------------------------------------------------- display

function setState(state, detail = '') {
  session.state = state;
  ui.connection.dataset.state = state;
  ui.connection.textContent = detail ? `${STATE_TEXT[state]} ${detail}` : STATE_TEXT[state];
  renderMic();
}

function renderMic() {
  const connected = session.stream !== null;
  const usable = view.onStage && !view.over;
  const notOpen = Boolean(view.space && view.space.state === 'scheduled'); // no audio before the green room
  ui.start.hidden = !usable || (connected && session.state !== 'failed');
  ui.start.disabled = !usable || session.opening || notOpen;
  ui.start.title = notOpen ? 'The host opens the green room first' : '';
  ui.start.textContent = session.state === 'failed' ? 'Try again' : 'Start talking';
  ui.hangup.hidden = !usable || !connected;
  ui.meter.hidden = !usable;
  renderMute();
}

function renderMute() {
  const member = me();
  const muted = Boolean(member && member.muted);
  const byHost = Boolean(member && member.muted_by_host);
  const track = session.stream && session.stream.getAudioTracks()[0];
  if (track) track.enabled = !muted && !session.muting; // a disabled track sends silence; the call stays up
  ui.mute.hidden = !member || view.over || byHost;
  ui.mute.setAttribute('aria-pressed', String(muted || Boolean(session.muting)));
  ui.mute.textContent = muted ? 'Unmute' : 'Mute';
  ui.hostMuted.hidden = !member || view.over || !byHost;
}

function renderAir() {
  const state = view.space ? view.space.state : 'unknown';
  const [label, detail] = AIR[state] || ['…', ''];
  const air = state === 'live' ? 'on' : view.over ? 'over' : 'off';
  // Only touch the live region when something changed: it is read out each time.
  if (ui.air.dataset.state !== state) {
    ui.air.dataset.state = state;
    ui.air.dataset.air = air;
    ui.airLabel.textContent = label;
    ui.airDetail.textContent = detail;
  }
}

function renderSpace() {
  if (!view.space) return;
  ui.title.textContent = view.space.title;
  document.title = `${view.space.state === 'live' ? '● ON AIR · ' : ''}${view.space.title} · Stage · townhall`;
  renderAir();
  if (view.links) {
    ui.listenLink.value = view.links.listen;
    ui.gateListen.href = view.links.listen;
  }
  renderConsole();
  renderDelay();
  renderMic();
  renderRecording();
  renderCaptions();
}

/**
 * A private Space's new listener link (host): the server gives it a new invite code, so the old
 * link and the audio addresses made from it stop working for everyone who has them.
 */
async function rotateInvite() {
  const question =
    'Make a new listener link? Everyone with the current link, including people listening now, ' +
    'stops hearing the Space within a few seconds; share the new link with those who should stay.';
  if (!(await confirmAction(question, 'Yes, make a new link'))) return;
  ui.rotateInvite.disabled = true;
  say(ui.rotateStatus, '');
  try {
    const result = await api(spacePath('/rotate-invite'), { method: 'POST' });
    applySpace(result.space, result.links);
    errorAt(ui.rotateInvite, '');
    say(ui.rotateStatus, 'New listener link made: the old one no longer works. Copy it above.');
  } catch (err) {
    errorAt(ui.rotateInvite, err.message);
  } finally {
    ui.rotateInvite.disabled = false;
  }
}

// Live captions as listeners get them (captions.js); the stage hears itself live, so each cue is
// shown as it arrives rather than at a playback position.
const captions = new Captions({
  button: byId('cc'),
  line: byId('captions'),
  playlist: () => (view.links ? view.links.playlist.replace(/index\.m3u8$/, 'captions.m3u8') : null),
  position: () => null,
});

function renderCaptions() {
  const shown = Boolean(view.space && view.space.captions && view.space.state === 'live' && view.onStage);
  byId('captions-card').hidden = !shown;
  captions.setAvailable(shown);
}

/** The REC badge for everyone on stage; the host's recording card with its download. */
function renderRecording() {
  const space = view.space;
  showRecording(ui.rec, Boolean(space && space.record && view.onStage), space ? space.state : '');
  const shown = Boolean(space && space.record && view.onStage && isHost());
  ui.recordingCard.hidden = !shown;
  if (!shown) return;
  const aired = Boolean(space.started_at) || space.state === 'live';
  ui.download.hidden = !aired;
  let text;
  if (space.state === 'live') text = 'Everything listeners hear is recorded. Download what has been recorded so far at any time.';
  else if (aired) text = 'The Space is over: download the whole recording.';
  else if (space.state === 'cancelled') text = 'The Space was cancelled before it went live: nothing was recorded.';
  else text = 'Recording starts when you go live: nothing in the green room is recorded.';
  if (ui.recordingText.textContent !== text) ui.recordingText.textContent = text;
}

/** Checks that there is something to download (a clear sentence if not), then downloads it. */
async function downloadRecording() {
  ui.downloadStatus.textContent = '';
  ui.download.disabled = true;
  try {
    const info = await api(spacePath('/recording'));
    if (info.expired) {
      errorAt(ui.download, 'This recording was deleted after the retention period.');
      return;
    }
    if (!(info.seconds > 0)) {
      errorAt(ui.download, 'Nothing has been recorded yet: try again in a moment.');
      return;
    }
    // A link with `download` saves the file without leaving the stage (the call stays up).
    const link = el('a');
    link.href = spacePath('/recording.m4a');
    link.download = `${spaceId}.m4a`;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    const seconds = Math.round(info.seconds);
    const length = seconds < 60 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
    ui.downloadStatus.textContent = `Downloading the recording (${length}${info.recording ? ' so far' : ''}).`;
    clearErrors();
  } catch (err) {
    errorAt(ui.download, err.message);
  } finally {
    ui.download.disabled = false;
  }
}

function renderRole() {
  const role = myRole();
  ui.role.hidden = !view.onStage;
  ui.role.dataset.role = role;
  ui.role.textContent = roleLabel(role);
  const onStage = view.onStage && !view.over;
  ui.micCard.hidden = !view.onStage;
  ui.rosterCard.hidden = !view.onStage;
  ui.shareCard.hidden = !view.onStage || view.over;
  const rotatable = view.onStage && isHost() && Boolean(view.space) && view.space.visibility === 'private';
  ui.rotateRow.hidden = !rotatable;
  ui.rotateHint.hidden = !rotatable;
  ui.leaveRow.hidden = !onStage || role === 'host'; // the host hands over or ends instead
  renderConsole();
  renderRecording();
}

function renderConsole() {
  const moderator = view.onStage && !view.over && isModerator();
  ui.console.hidden = !moderator;
  ui.handsCard.hidden = !moderator;
  audience.show(moderator);
  if (!moderator || !view.space) return;
  const host = isHost();
  const state = view.space.state;
  ui.consoleHeading.textContent = host ? 'Host console' : 'Co-host console';
  ui.airControls.hidden = !host;
  ui.airDivider.hidden = !host;
  ui.goLive.hidden = !host || state !== 'green_room';
  ui.openRoom.hidden = !host || state !== 'scheduled';
  ui.pinClear.hidden = !view.space.pinned_link;
  if (document.activeElement !== ui.pinUrl && view.space.pinned_link) ui.pinUrl.value = view.space.pinned_link;
  ui.end.hidden = !host || !ui.endConfirm.hidden;
  ui.inviteCohost.hidden = !host;
  renderEdit(view.space);
}

function renderDelay() {
  if (!view.space) return;
  const seconds = Number(view.space.delay_s) || 0;
  if (document.activeElement !== ui.delay) ui.delay.value = String(seconds);
  ui.dump.disabled = seconds === 0;
  ui.dump.title = seconds === 0 ? 'There is no delay, so nothing to dump' : '';
}

function sortedMembers() {
  return [...view.members.values()].sort(
    (a, b) => (ROLE_ORDER[a.role] ?? 9) - (ROLE_ORDER[b.role] ?? 9) || a.joined_at - b.joined_at,
  );
}

function actionButton(label, accessibleName, onClick, className = 'small') {
  const button = el('button', className, label);
  button.type = 'button';
  button.setAttribute('aria-label', accessibleName);
  button.addEventListener('click', async () => {
    const focused = document.activeElement === button;
    const card = button.closest('section');
    button.disabled = true; // a disabled button drops the focus: it is given back below
    try {
      await onClick();
      clearErrors(); // what failed before is history now
    } catch (err) {
      if (err instanceof ApiError && err.status === 410) spaceEnded();
      else if (button.isConnected) errorAt(button, err.message); // right by the button pressed
      else say(ui.rosterStatus, err.message); // its list was redrawn meanwhile
    } finally {
      button.disabled = false;
      if (focused && focusLost()) {
        // The button is back, or its list was redrawn without it: then its card's heading.
        const heading = card && card.querySelector('h2');
        if (button.isConnected) button.focus();
        else if (heading && !card.hidden) focusHeading(heading);
      }
    }
  });
  return button;
}

function focusHeading(heading) {
  heading.tabIndex = -1; // focusable from script, not a Tab stop
  heading.focus();
}

/** Asks a yes/no question in a modal dialog (focus starts on Cancel); resolves to true on yes. */
function confirmAction(question, yesLabel) {
  const dialog = ui.confirmDialog;
  ui.confirmQuestion.textContent = question;
  ui.confirmYes.textContent = yesLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.showModal();
  });
}

/** Where a stage member (they have a role) or a raised hand stands, for the confirmations. */
function where(person) {
  const visibility = view.space ? view.space.visibility : 'public';
  return { onStage: Boolean(person.role), handRaised: !person.role, visibility };
}

/** "Remove" and "Ban" for a stage member or a raised hand, each behind a confirmation. */
function exitButtons(person) {
  const name = person.display_name;
  const gone = (userId) => {
    removeMember(userId);
    removeHand(userId);
  };
  return [
    actionButton('Remove', `Remove ${name} from the Space`, async () => {
      if (!(await confirmAction(removeQuestion(name, where(person)), 'Yes, remove'))) return;
      await api(spacePath(`/members/${person.user_id}/remove`), { method: 'POST' });
      gone(person.user_id);
      say(ui.rosterStatus, `${name} was removed.`);
    }),
    actionButton(
      'Ban',
      `Ban ${name}`,
      async () => {
        if (!(await confirmAction(banQuestion(name, where(person)), 'Yes, ban'))) return;
        await api(spacePath(`/members/${person.user_id}/ban`), { method: 'POST' });
        gone(person.user_id);
        say(ui.rosterStatus, `${name} was banned from this Space.`);
      },
      'small danger',
    ),
  ];
}

/** May I mute / move this member? The rules are the server's (spaces/rules.py); this only hides
 * buttons that would certainly be refused. */
function canModerate(member, action) {
  const role = myRole();
  if (view.over || !view.me || member.user_id === view.me.user_id || member.role === 'host') return false;
  if (role === 'host') return true;
  if (role !== 'cohost') return false;
  return action === 'mute' || member.role === 'speaker';
}

function renderRoster() {
  const items = sortedMembers().map((member) => {
    const mine = view.me && member.user_id === view.me.user_id;
    const speaking = view.speaking.has(member.user_id) && !member.muted;
    const item = el('li', 'person');
    item.dataset.userId = member.user_id;
    item.dataset.speaking = String(speaking);
    const avatar = el('span', 'avatar', (member.display_name.trim()[0] || '?').toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    const main = el('div', 'person-main');
    main.append(el('span', 'person-name', mine ? `${member.display_name} (you)` : member.display_name));
    const meta = [roleLabel(member.role)];
    if (member.muted_by_host) meta.push('muted by host');
    else if (member.muted) meta.push('muted');
    if (speaking) meta.push('speaking');
    main.append(el('span', 'person-meta', meta.join(' · ')));
    item.append(avatar, main);
    const actions = el('div', 'person-actions');
    if (canModerate(member, 'mute') && !member.muted) {
      actions.append(
        actionButton('Mute', `Mute ${member.display_name}`, async () =>
          upsertMember(await api(spacePath(`/members/${member.user_id}/mute`), { method: 'POST' })),
        ),
      );
    }
    if (canModerate(member, 'move')) {
      actions.append(
        actionButton('Move to audience', `Move ${member.display_name} to the audience`, async () => {
          await api(spacePath(`/members/${member.user_id}/move-to-audience`), { method: 'POST' });
          removeMember(member.user_id);
        }),
      );
    }
    if (isHost() && !mine && !view.over) {
      if (member.role === 'speaker') {
        actions.append(
          actionButton('Make co-host', `Make ${member.display_name} a co-host`, async () =>
            upsertMember(await api(spacePath(`/members/${member.user_id}/add-cohost`), { method: 'POST' })),
          ),
        );
      } else if (member.role === 'cohost') {
        actions.append(
          actionButton('Make speaker', `Make ${member.display_name} a speaker again`, async () =>
            upsertMember(await api(spacePath(`/members/${member.user_id}/remove-cohost`), { method: 'POST' })),
          ),
        );
      }
      actions.append(
        actionButton('Make host', `Hand the host role to ${member.display_name}`, async () => {
          const ok = await confirmAction(
            `Hand the host role to ${member.display_name}? You stay on stage as a co-host or speaker; only the new host can go live or end.`,
            'Yes, make them host',
          );
          if (!ok) return;
          const result = await api(spacePath('/host'), { method: 'POST', body: { user_id: member.user_id } });
          applySpace(result.space, result.links);
          await resync();
          announce(`${member.display_name} is now the host.`);
        }),
      );
    }
    if (canModerate(member, 'move')) actions.append(...exitButtons(member));
    if (actions.childElementCount > 0) item.append(actions);
    return item;
  });
  ui.roster.replaceChildren(...items);
}

function renderHands() {
  const items = view.hands.map((hand) => {
    const item = el('li', 'person');
    const avatar = el('span', 'avatar', (hand.display_name.trim()[0] || '?').toUpperCase());
    avatar.setAttribute('aria-hidden', 'true');
    const main = el('div', 'person-main');
    main.append(el('span', 'person-name', hand.display_name));
    const actions = el('div', 'person-actions');
    actions.append(
      actionButton(
        'Accept',
        `Bring ${hand.display_name} on stage`,
        async () => {
          upsertMember(await api(spacePath(`/hands/${hand.user_id}/accept`), { method: 'POST' }));
          removeHand(hand.user_id);
        },
        'small primary',
      ),
      actionButton('Decline', `Decline ${hand.display_name}`, async () => {
        await api(spacePath(`/hands/${hand.user_id}`), { method: 'DELETE' });
        removeHand(hand.user_id);
      }),
      ...exitButtons(hand),
    );
    item.append(avatar, main, actions);
    return item;
  });
  ui.hands.replaceChildren(...items);
  ui.handsEmpty.hidden = view.hands.length > 0;
  ui.handsCount.textContent = view.hands.length > 0 ? `(${view.hands.length})` : '';
}

function showGate(message, { heading = 'Join the stage', guest = false, signIn = false, listen = true } = {}) {
  ui.gate.hidden = false;
  ui.gateHeading.textContent = heading;
  ui.gateText.textContent = message;
  ui.gateGuest.hidden = !guest;
  ui.gateSignin.hidden = !signIn;
  ui.gateSignin.href = signInLink();
  ui.gateListen.hidden = !listen;
  ui.gateListen.textContent = heading === 'Join the stage' ? 'Listen instead' : 'Listen to the Space';
  // ON AIR / OFF AIR is for the people on stage, and says nothing of a Space the page cannot read.
  ui.air.hidden = !view.space || !view.onStage;
  ui.listeners.hidden = true;
  ui.reactions.hidden = true;
}

// ------------------------------------------------------------------------------ the page's model

function upsertMember(member) {
  const mine = view.me && member.user_id === view.me.user_id;
  const before = view.members.get(member.user_id);
  view.members.set(member.user_id, member);
  removeHand(member.user_id);
  if (mine) {
    const wasOnStage = view.onStage;
    view.onStage = true;
    if (before && before.role !== member.role) announce(`You are now ${ROLE_PHRASE[member.role] || member.role}.`);
    if (member.muted_by_host && !(before && before.muted_by_host)) announce('You were muted by the host.');
    if (!wasOnStage || (before && before.role !== member.role)) {
      renderRole();
      if (isModerator()) refreshHands();
    }
    renderMute();
  }
  renderRoster();
}

function removeMember(userId) {
  view.members.delete(userId);
  view.speaking.delete(userId);
  renderRoster();
}

function removeHand(userId) {
  const before = view.hands.length;
  view.hands = view.hands.filter((h) => h.user_id !== userId);
  if (before !== view.hands.length) renderHands();
}

function applySpace(space, links) {
  const wasOver = view.over;
  view.space = space;
  if (links) view.links = links;
  view.over = space.state === 'ended' || space.state === 'cancelled';
  renderSpace();
  if (view.over && !wasOver) spaceEnded();
}

async function refreshHands() {
  if (!isModerator() || view.over) return;
  try {
    view.hands = await api(spacePath('/hands'));
    renderHands();
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 403)) say(ui.rosterStatus, err.message);
  }
}

/** A full read of the Space, my place in it and (for moderators) the queue. One at a time. */
function resync() {
  if (events.syncing) return events.syncing;
  events.syncing = (async () => {
    try {
      const [current, mine] = await Promise.all([api(spacePath()), api(spacePath('/me'))]);
      view.members = new Map(current.stage.map((m) => [m.user_id, m]));
      view.onStage = mine.role !== 'listener';
      applySpace(current.space, current.links);
      renderRole();
      renderRoster();
      if (isModerator()) await Promise.all([refreshHands(), refreshInviteLinks()]);
      if (!view.onStage && !view.over) offStage(mine.banned ? BANNED_TEXT : 'You are not on this stage.', mine.banned ? 'You were banned' : undefined);
      events.synced = true;
    } finally {
      events.syncing = null;
    }
    const waiting = events.pending.splice(0);
    for (const event of waiting) applyEvent(event);
  })();
  return events.syncing;
}

/** One event of the Space's log (see control.py for what each carries). */
function applyEvent({ type, data }) {
  const myId = view.me && view.me.user_id;
  switch (type) {
    case 'space.state':
      // The ON AIR banner is a live region of its own: it says the change.
      if (view.space) {
        // Went on air: the host's download appears (the full read would say when exactly).
        const started = view.space.started_at || (data.state === 'live' ? Date.now() / 1000 : null);
        applySpace({ ...view.space, state: data.state, started_at: started });
      }
      break;
    case 'space.edited':
      if (view.space) applySpace({ ...view.space, title: data.title, description: data.description });
      break;
    case 'space.pinned':
      if (view.space) applySpace({ ...view.space, pinned_link: data.url });
      break;
    case 'delay.set':
      if (view.space) applySpace({ ...view.space, delay_s: data.delay_s });
      ui.delayStatus.textContent = data.delay_s > 0 ? `Listeners hear the stage ${data.delay_s} s late.` : 'No delay: listeners hear the stage live.';
      break;
    case 'delay.dumped':
      ui.delayStatus.textContent = 'Dumped: what was in the delay will never air.';
      announce('The delay was dumped.');
      break;
    case 'stage.joined':
    case 'stage.role':
    case 'stage.muted':
      if (data.member) upsertMember(data.member);
      if (data.invite_link) refreshInviteLinks(); // its use count moved
      break;
    case 'invite_link.created':
    case 'invite_link.revoked':
      refreshInviteLinks();
      break;
    case 'stage.left':
    case 'user.removed':
    case 'user.banned':
      removeHand(data.user_id);
      if (data.user_id === myId) {
        const text = {
          'stage.left': data.by === myId ? 'You left the stage.' : 'The host moved you to the audience.',
          'user.removed':
            'You were removed from this Space: you are off the stage. You are not banned: you can keep listening and raise your hand to ask to come back.',
          'user.banned': BANNED_TEXT,
        }[type];
        removeMember(data.user_id);
        offStage(text, { 'user.removed': 'You were removed', 'user.banned': 'You were banned' }[type]);
      } else if (view.members.has(data.user_id)) {
        removeMember(data.user_id);
      }
      break;
    case 'hand.raised':
      if (!view.hands.some((h) => h.user_id === data.user_id)) {
        view.hands.push({ user_id: data.user_id, display_name: data.display_name, raised_at: 0 });
        renderHands();
        if (isModerator()) announce(`${data.display_name} raised a hand.`);
      }
      break;
    case 'hand.lowered':
    case 'hand.declined':
      removeHand(data.user_id);
      break;
    case 'host.transferred':
      resync().then(() => {
        if (data.to === myId) announce('You are now the host.');
      });
      break;
    default:
      break; // space.created, stage.invited, and whatever comes later
  }
}

// ------------------------------------------------------------------------------ the event socket

function eventsUrl() {
  const url = new URL(spacePath(`/events?after=${events.after}`), location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

function openEvents() {
  if (events.stopped) return;
  clearTimeout(events.retryTimer);
  const socket = new WebSocket(eventsUrl());
  let greeted = false;
  events.socket = socket;
  socket.addEventListener('message', (message) => {
    if (socket !== events.socket) return;
    let frame;
    try {
      frame = JSON.parse(message.data);
    } catch {
      return;
    }
    if (frame.type === 'hello') greeted = true;
    onFrame(frame);
  });
  socket.addEventListener('close', (event) => {
    if (socket !== events.socket) return;
    events.socket = null;
    if (events.stopped) return;
    events.failedOpens = greeted ? 0 : events.failedOpens + 1;
    if (events.failedOpens >= 2) startFallback();
    if (event.code === 4401 || event.code === 4403) {
      // Not (or no longer) allowed: find out why from a full read rather than retrying blindly.
      resync()
        .then(() => {
          if (view.onStage && !view.over) retryEvents();
        })
        .catch(() => retryEvents());
      return;
    }
    retryEvents();
  });
}

function retryEvents() {
  if (events.stopped) return;
  events.attempt += 1;
  events.retryTimer = setTimeout(openEvents, backoff(events.attempt, EVENTS_MAX_BACKOFF_S) * 1000);
}

/** No socket gets through: keep the page right by full reads until one does. */
function startFallback() {
  if (events.fallbackTimer || events.stopped) return;
  events.fallbackTimer = setInterval(() => {
    if (!events.syncing) resync().catch(() => {});
  }, FALLBACK_POLL_MS);
}

function stopFallback() {
  clearInterval(events.fallbackTimer);
  events.fallbackTimer = 0;
}

function onFrame(frame) {
  if (frame.type === 'hello') {
    events.attempt = 0;
    if (events.fallbackTimer) {
      stopFallback();
      events.synced = false; // the polls moved the page on without sequence numbers: read afresh
    }
    if (!events.synced) {
      events.skipUpTo = frame.latest_seq;
      resync().catch((err) => showError(err.message));
    }
    return;
  }
  if (frame.type === 'reset') {
    events.after = frame.latest_seq;
    events.skipUpTo = frame.latest_seq;
    resync().catch((err) => showError(err.message));
    return;
  }
  if (frame.type === 'ping' || typeof frame.seq !== 'number') return;
  if (frame.seq <= events.after) return; // seen already
  events.after = frame.seq;
  if (frame.seq <= events.skipUpTo) return; // the full read already has it
  if (events.syncing) events.pending.push(frame);
  else applyEvent(frame);
}

function stopEvents() {
  events.stopped = true;
  clearTimeout(events.retryTimer);
  stopFallback();
  if (events.socket) {
    const socket = events.socket;
    events.socket = null;
    socket.close(1000);
  }
}

// ---------------------------------------------------------------------- speaking and listeners

async function pollSnapshot() {
  clearTimeout(snapshotTimer);
  if (view.over || !view.onStage) return;
  try {
    const code = view.links ? new URL(view.links.listen).searchParams.get('code') : null;
    const query = code ? `?code=${encodeURIComponent(code)}` : '';
    const snapshot = await api(spacePath(`/snapshot${query}`), { cache: 'default' });
    view.speaking = new Set(snapshot.stage.filter((m) => m.speaking).map((m) => m.user_id));
    ui.listeners.hidden = false;
    ui.listeners.textContent = listenersLabel(snapshot.listeners.approx);
    showReactions(snapshot.reactions);
    renderRoster();
  } catch (err) {
    // Indicators are a nicety: try again at the next round, unless there is nothing to read.
    if (err instanceof ApiError && err.status === 404) return;
  }
  snapshotTimer = setTimeout(pollSnapshot, SNAPSHOT_POLL_MS);
}

/** What the audience is sending: the recent totals, most frequent first (the listeners' page sends them). */
function showReactions(reactions) {
  const totals = Object.entries((reactions && reactions.totals) || {})
    .map(([emoji, n]) => [emoji, Number(n) || 0])
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5);
  ui.reactions.hidden = totals.length === 0 || view.over;
  const text = totals.map(([emoji, n]) => `${emoji} ${n > 999 ? `${Math.round(n / 100) / 10}k` : n}`).join('  ');
  if (ui.reactions.textContent !== text) ui.reactions.textContent = text;
  const seconds = reactions && reactions.window_s ? ` in the last ${reactions.window_s} s` : '';
  ui.reactions.title = `Reactions from the audience${seconds}`;
  ui.reactions.setAttribute('aria-label', `Audience reactions${seconds}: ${text}`);
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

// What the stage sends back (the others' mix-minus), analysed for the tests' hooks. Chromium pulls a
// remote WebRTC stream through Web Audio only while a media element plays it too: #remote does.
const returned = { context: null, analyser: null, spectrum: null, samples: null };

function analyseReturn(stream) {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  if (!returned.context) returned.context = new Context();
  const analyser = returned.context.createAnalyser();
  analyser.fftSize = 8192; // ≈ 6 Hz bins at 48 kHz
  analyser.smoothingTimeConstant = 0.3;
  returned.context.createMediaStreamSource(stream).connect(analyser); // not to the speakers: #remote plays it
  Object.assign(returned, {
    analyser,
    spectrum: new Float32Array(analyser.frequencyBinCount),
    samples: new Float32Array(analyser.fftSize),
  });
  if (returned.context.state === 'suspended') returned.context.resume().catch(() => {});
}

/** Strongest level (dBFS per FFT bin) within ±tolerance Hz of `hz` in what the stage returns; null before any. */
function returnedLevelAt(hz, tolerance = 10) {
  if (!returned.analyser) return null;
  returned.analyser.getFloatFrequencyData(returned.spectrum);
  const binHz = returned.context.sampleRate / returned.analyser.fftSize;
  let best = -Infinity;
  for (let i = Math.max(1, Math.floor((hz - tolerance) / binHz)); i <= Math.ceil((hz + tolerance) / binHz); i += 1) {
    if (i < returned.spectrum.length && returned.spectrum[i] > best) best = returned.spectrum[i];
  }
  return Number.isFinite(best) ? best : -200;
}

/** RMS level of what the stage returns, in dBFS (-200 for digital silence); null before any. */
function returnedLevel() {
  if (!returned.analyser) return null;
  returned.analyser.getFloatTimeDomainData(returned.samples);
  let sum = 0;
  for (const sample of returned.samples) sum += sample * sample;
  const rms = Math.sqrt(sum / returned.samples.length);
  return rms > 0 ? 20 * Math.log10(rms) : -200;
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

// --------------------------------------------------------------------------------- audio session

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
  clearInterval(session.watchTimer);
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
    const answer = await api(spacePath('/rtc'), {
      method: 'POST',
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
      watchReturn(pc);
      break;
    case 'disconnected':
      setState('reconnecting');
      clearTimeout(session.graceTimer);
      session.graceTimer = setTimeout(() => {
        if (pc.connectionState !== 'connected') retryLater();
      }, DISCONNECTED_GRACE_MS);
      break;
    case 'failed':
    case 'closed':
      retryLater();
      break;
    default:
      break;
  }
}

/** While connected: the connection is lost once the stage's audio stops arriving. */
function watchReturn(pc) {
  const generation = session.generation;
  clearInterval(session.watchTimer);
  session.returned.reset(performance.now());
  session.watchTimer = setInterval(async () => {
    let packets = 0;
    try {
      (await pc.getStats()).forEach((stats) => {
        if (stats.type === 'inbound-rtp' && stats.kind === 'audio') packets += stats.packetsReceived;
      });
    } catch {
      return; // closed meanwhile: a newer connection has its own watch
    }
    if (generation !== session.generation || session.state !== 'connected') return;
    if (session.returned.stillFor(packets, performance.now()) > RETURN_TIMEOUT_MS) {
      showError('The stage stopped answering.');
      retryLater();
    }
  }, WATCH_MS);
}

function onConnectError(err) {
  if (err instanceof ApiError) {
    if (err.status === 410) {
      spaceEnded();
      return;
    }
    if ([400, 401, 403, 404, 409, 422].includes(err.status)) {
      // Retrying the same offer as the same person cannot succeed.
      stopSession();
      setState('failed');
      showError(err.status === 403 ? `${err.message} Only people on the stage can talk.` : err.message);
      if (err.status === 403) resync().catch(() => {});
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
  const delay = retryDelay(session.attempt, MAX_BACKOFF_S, minimumSeconds);
  setState('reconnecting', delay >= 1 ? `Next try in ${Math.ceil(delay)} s.` : '');
  session.retryTimer = setTimeout(connect, delay * 1000);
}

function playReturn(event) {
  const stream = event.streams[0] || new MediaStream([event.track]);
  ui.remote.srcObject = stream;
  analyseReturn(stream);
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
  renderMute(); // a mute set before connecting applies from the first frame
  startMeter(session.stream);
  listMicrophones().catch(() => {}); // labels are readable once the microphone is allowed
  session.attempt = 0;
  connect();
}

/** Fills the microphone choice; shown only when there is a choice to make. */
async function listMicrophones() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  const inputs = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'audioinput');
  const track = session.stream && session.stream.getAudioTracks()[0];
  const current = track && track.getSettings ? track.getSettings().deviceId : '';
  const options = inputs.map((device, i) => {
    const option = el('option', '', device.label || `Microphone ${i + 1}`);
    option.value = device.deviceId;
    option.selected = device.deviceId === current;
    return option;
  });
  ui.micDevice.replaceChildren(...options);
  ui.deviceField.hidden = !session.stream || inputs.length < 2;
}

/** Another microphone, without hanging up: the sender's track is replaced in place. */
async function switchMicrophone(deviceId) {
  if (!session.stream || !deviceId) return;
  const old = session.stream.getAudioTracks()[0];
  if (old && old.getSettings && old.getSettings().deviceId === deviceId) return;
  ui.micDevice.disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { ...audioConstraints, deviceId: { exact: deviceId } },
      video: false,
    });
    const [track] = stream.getAudioTracks();
    const sender = session.pc && session.pc.getSenders().find((s) => s.track && s.track.kind === 'audio');
    if (sender) await sender.replaceTrack(track);
    track.addEventListener('ended', () => {
      if (session.stream === stream) {
        stopSession();
        showError('Your microphone stopped (was it unplugged?). Start talking again to reconnect.');
      }
    });
    session.stream = stream;
    if (old) old.stop();
    stopMeter();
    startMeter(stream);
    renderMute(); // the new track obeys the current mute at once
    announce(`Microphone: ${ui.micDevice.selectedOptions[0] ? ui.micDevice.selectedOptions[0].textContent : 'changed'}.`);
  } catch (err) {
    showError(micErrorMessage(err));
    listMicrophones().catch(() => {});
  } finally {
    ui.micDevice.disabled = false;
  }
}

function stopSession() {
  dropPeer();
  stopMeter();
  if (session.stream) {
    for (const track of session.stream.getTracks()) track.stop();
    session.stream = null;
  }
  ui.remote.pause();
  ui.remote.srcObject = null;
  ui.deviceField.hidden = true;
  setState(view.over ? 'ended' : view.onStage ? 'idle' : 'offstage');
}

function hangUp({ keepalive = false } = {}) {
  const wasConnected = session.stream !== null;
  stopSession();
  if (!wasConnected || view.over) return Promise.resolve();
  return api(spacePath('/rtc'), { method: 'DELETE', keepalive }).catch((err) => {
    if (!(err instanceof ApiError && [401, 403, 404, 410].includes(err.status))) showError(err.message);
  });
}

async function setMuted(muted) {
  const member = me();
  if (!member || !view.me) return;
  session.muting = muted; // silence the track now; the server's answer confirms
  renderMute();
  ui.mute.disabled = true;
  ui.unmuteSelf.disabled = true;
  try {
    upsertMember(await api(spacePath(`/members/${view.me.user_id}/${muted ? 'mute' : 'unmute'}`), { method: 'POST' }));
    clearErrors();
  } catch (err) {
    if (err instanceof ApiError && err.status === 410) spaceEnded();
    else errorAt(member.muted_by_host ? ui.unmuteSelf : ui.mute, err.message);
  } finally {
    session.muting = false;
    ui.mute.disabled = false;
    ui.unmuteSelf.disabled = false;
    renderMute();
  }
}

// ------------------------------------------------------------------------------ leaving, ending

/** Off the stage (left, moved, removed, banned): the page says why, and offers to listen. */
function offStage(message, heading = 'You are in the audience') {
  view.onStage = false;
  stopSession();
  stopEvents();
  clearTimeout(snapshotTimer);
  renderRole();
  showGate(message, { heading, listen: true });
  announce(message);
}

function spaceEnded() {
  view.over = true;
  stopSession();
  stopEvents();
  clearTimeout(snapshotTimer);
  view.speaking.clear();
  ui.listeners.hidden = true;
  ui.reactions.hidden = true;
  ui.endConfirm.hidden = true;
  renderRoster();
  renderAir();
  renderRole();
  renderMic();
  setState('ended');
}

async function leaveStage() {
  ui.leave.disabled = true;
  try {
    await hangUp();
    await api(spacePath('/stage/leave'), { method: 'POST' });
    view.members.delete(view.me.user_id);
    offStage('You left the stage. You can still listen.');
  } catch (err) {
    if (err instanceof ApiError && err.status === 410) spaceEnded();
    else showError(err.message);
  } finally {
    ui.leave.disabled = false;
  }
}

// ------------------------------------------------------------------------------- host console

async function consoleCall(button, call) {
  button.disabled = true;
  try {
    const result = await call();
    clearErrors();
    return result;
  } catch (err) {
    if (err instanceof ApiError && err.status === 410) spaceEnded();
    else errorAt(button, err.message);
    return null;
  } finally {
    button.disabled = false;
    renderConsole();
    renderDelay();
  }
}

async function goLive() {
  const result = await consoleCall(ui.goLive, () => api(spacePath('/go-live'), { method: 'POST' }));
  if (result) applySpace(result.space, result.links);
  if (focusLost() && !ui.end.hidden) ui.end.focus(); // "Go live" is gone: the next thing a host does
}

async function openGreenRoom() {
  const result = await consoleCall(ui.openRoom, () => api(spacePath('/open'), { method: 'POST' }));
  if (result) {
    applySpace(result.space, result.links);
    announce('The green room is open: the stage can talk, listeners hear nothing until you go live.');
  }
  if (focusLost() && !ui.goLive.hidden) ui.goLive.focus();
}

async function pinLink(event) {
  event.preventDefault();
  const url = ui.pinUrl.value.trim();
  if (!/^https?:\/\/[^\s]+$/i.test(url)) {
    errorAt(ui.pinUrl, 'Pin a web address starting with https:// (or http://).');
    ui.pinUrl.focus();
    return;
  }
  errorAt(ui.pinUrl, '');
  const result = await consoleCall(ui.pinSet, () => api(spacePath('/pin'), { method: 'PUT', body: { url } }));
  if (result) {
    applySpace(result.space, result.links);
    ui.pinStatus.textContent = 'Pinned: listeners see the link under the title.';
  }
}

async function unpinLink() {
  const result = await consoleCall(ui.pinClear, () => api(spacePath('/pin'), { method: 'PUT', body: { url: null } }));
  if (result) {
    ui.pinUrl.value = '';
    applySpace(result.space, result.links);
    ui.pinStatus.textContent = 'Unpinned.';
    ui.pinUrl.focus();
  }
}

async function endSpace() {
  const result = await consoleCall(ui.endYes, () => api(spacePath('/end'), { method: 'POST' }));
  ui.endConfirm.hidden = true;
  if (result) applySpace(result.space, result.links);
  renderConsole();
}

async function setDelay(event) {
  event.preventDefault();
  const seconds = Number(ui.delay.value);
  if (!Number.isFinite(seconds) || seconds < 0 || seconds > 30 || ui.delay.value.trim() === '') {
    errorAt(ui.delay, 'The delay is 0 to 30 seconds.');
    ui.delay.focus();
    return;
  }
  errorAt(ui.delay, '');
  const result = await consoleCall(ui.delaySet, () => api(spacePath('/delay'), { method: 'PUT', body: { seconds } }));
  if (result) {
    applySpace(result.space, result.links);
    ui.delayStatus.textContent = seconds > 0 ? `Listeners hear the stage ${result.space.delay_s} s late.` : 'No delay: listeners hear the stage live.';
  }
}

async function dump() {
  const done = await consoleCall(ui.dump, async () => {
    await api(spacePath('/dump'), { method: 'POST' });
    return true;
  });
  if (done) ui.delayStatus.textContent = 'Dumped: what was in the delay will never air.';
}

// ------------------------------------------------------------------------------- invite links
//
// A link seats as many people as the host chose, until it expires or is revoked (the rule is the
// server's: spaces/invite_links.py). The list is read again whenever the event log says a link was
// made, revoked or used, so every moderator's console shows the same counts.

const INVITE_USES_MAX = 100;
const LINK_ROLE = { speaker: 'Speaker link', cohost: 'Co-host link' };

/** "15 minutes", "24 hours", "7 days": the lifetime as the menu says it. */
function lifetimeText(seconds) {
  const option = [...ui.inviteExpiry.options].find((o) => Number(o.value) === seconds);
  return option ? option.textContent : `${Math.round(seconds / 60)} minutes`;
}

function clockText(unixSeconds) {
  const at = new Date(unixSeconds * 1000);
  const time = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const sameDay = at.toDateString() === new Date().toDateString();
  return sameDay ? time : `${at.toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'short' })} ${time}`;
}

function linkStateText(link) {
  switch (link.state) {
    case 'open':
      return `works until ${clockText(link.expires_at)}`;
    case 'used_up':
      return 'used up';
    case 'expired':
      return 'expired';
    case 'revoked':
      return 'revoked';
    default:
      return 'no longer works: the person who made it can no longer invite';
  }
}

async function invite(role) {
  const button = role === 'cohost' ? ui.inviteCohost : ui.invite;
  ui.inviteStatus.textContent = '';
  const uses = Number(ui.inviteUses.value);
  if (!Number.isInteger(uses) || uses < 1 || uses > INVITE_USES_MAX) {
    errorAt(ui.inviteUses, `A link can seat from 1 to ${INVITE_USES_MAX} people.`);
    ui.inviteUses.focus();
    return;
  }
  errorAt(ui.inviteUses, '');
  const body = { role, max_uses: uses, expires_in_s: Number(ui.inviteExpiry.value) };
  const created = await consoleCall(button, () => api(spacePath('/invite-links'), { method: 'POST', body }));
  if (!created) return;
  ui.inviteLabel.textContent = role === 'cohost' ? 'Co-host invite link' : 'Speaker invite link';
  ui.inviteLink.value = created.url;
  ui.inviteResult.hidden = false;
  const people = uses === 1 ? '1 person' : `${uses} people`;
  ui.inviteStatus.textContent = `New ${role === 'cohost' ? 'co-host' : 'speaker'} invite link ready: it seats ${people} and works for ${lifetimeText(created.expires_in)}.`;
  upsertInviteLink(created.link);
  ui.inviteLink.focus();
  ui.inviteLink.select();
}

function upsertInviteLink(link) {
  view.inviteLinks = [link, ...view.inviteLinks.filter((l) => l.id !== link.id)].sort((a, b) => b.created_at - a.created_at);
  renderInviteLinks();
}

let inviteLinksReading = null;

/** The list, read again; a read asked for while one is in flight runs once after it. */
async function refreshInviteLinks() {
  if (!isModerator() || view.over) return;
  if (inviteLinksReading) {
    inviteLinksReading.again = true;
    return;
  }
  inviteLinksReading = { again: false };
  try {
    do {
      inviteLinksReading.again = false;
      view.inviteLinks = await api(spacePath('/invite-links'));
      renderInviteLinks();
    } while (inviteLinksReading.again);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 403)) say(ui.inviteStatus, err.message);
  } finally {
    inviteLinksReading = null;
  }
}

function renderInviteLinks() {
  const count = view.inviteLinks.length;
  const items = view.inviteLinks.map((link, index) => {
    const name = `${LINK_ROLE[link.role] || 'Invite link'} #${count - index}`; // #1 is the oldest
    const item = el('li', 'person invite-link');
    item.dataset.state = link.state;
    item.dataset.linkId = link.id;
    const main = el('div', 'person-main');
    main.append(
      el('span', 'person-name', name),
      el('span', 'person-meta', `${link.uses} of ${link.max_uses} used · ${linkStateText(link)} · made by ${link.created_by_name}`),
    );
    if (link.used_by.length > 0) {
      main.append(el('span', 'person-meta', `Joined with it: ${link.used_by.map((u) => u.display_name).join(', ')}`));
    }
    const actions = el('div', 'person-actions');
    const revocable = link.state !== 'revoked' && link.state !== 'expired' && (isHost() || link.role === 'speaker');
    if (revocable) {
      actions.append(
        actionButton('Revoke', `Revoke ${name}`, async () => {
          upsertInviteLink(await api(spacePath(`/invite-links/${link.id}`), { method: 'DELETE' }));
          ui.inviteStatus.textContent = `${name} is revoked: it seats nobody from now on. Whoever it seated stays on the stage.`;
        }),
      );
    }
    item.append(main, actions);
    return item;
  });
  ui.inviteLinks.replaceChildren(...items);
  ui.inviteLinksEmpty.hidden = count > 0;
}

// -------------------------------------------------------------------------------------- startup

function wire() {
  ui.start.addEventListener('click', startTalking);
  ui.hangup.addEventListener('click', () => hangUp());
  ui.mute.addEventListener('click', () => setMuted(!(me() && me().muted)));
  ui.unmuteSelf.addEventListener('click', () => setMuted(false));
  ui.leave.addEventListener('click', leaveStage);
  ui.download.addEventListener('click', downloadRecording);
  ui.copyListen.addEventListener('click', () => copyField(ui.listenLink, ui.copyListenStatus));
  ui.rotateInvite.addEventListener('click', rotateInvite);
  ui.copyInvite.addEventListener('click', () => copyField(ui.inviteLink, ui.inviteStatus));
  ui.invite.addEventListener('click', () => invite('speaker'));
  ui.inviteCohost.addEventListener('click', () => invite('cohost'));
  ui.goLive.addEventListener('click', goLive);
  ui.openRoom.addEventListener('click', openGreenRoom);
  ui.pinForm.addEventListener('submit', pinLink);
  wireEdit(async (body, onError) => {
    try {
      const result = await api(spacePath(), { method: 'PATCH', body });
      applySpace(result.space, result.links);
      return result;
    } catch (err) {
      if (err instanceof ApiError && err.status === 410) spaceEnded();
      else onError(err);
      return null;
    }
  });
  ui.pinClear.addEventListener('click', unpinLink);
  ui.micDevice.addEventListener('change', () => switchMicrophone(ui.micDevice.value));
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener('devicechange', () => {
      if (session.stream) listMicrophones().catch(() => {});
    });
  }
  ui.delayForm.addEventListener('submit', setDelay);
  ui.dump.addEventListener('click', dump);
  ui.end.addEventListener('click', () => {
    ui.end.hidden = true;
    ui.endConfirm.hidden = false;
    ui.endNo.focus();
  });
  ui.endNo.addEventListener('click', () => {
    ui.endConfirm.hidden = true;
    renderConsole();
    ui.end.focus();
  });
  ui.endYes.addEventListener('click', endSpace);
  // The confirmation is a dialog in all but name: Escape takes it back.
  ui.endConfirm.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !ui.endConfirm.hidden) {
      event.preventDefault();
      ui.endNo.click();
    }
  });
  ui.gateGuest.addEventListener('click', () => location.reload());
  // Pasting another invite link into this tab changes only the fragment: start over with it.
  window.addEventListener('hashchange', () => {
    if (location.hash.includes('invite=')) location.reload();
  });
  // Leaving the page hangs up at once rather than waiting for ICE consent to time out.
  window.addEventListener('pagehide', () => {
    if (session.stream && !view.over) api(spacePath('/rtc'), { method: 'DELETE', keepalive: true }).catch(() => {});
  });
}

// Small, stable hooks for the browser tests (and for the curious, in the console).
window.townhall = {
  get state() {
    return session.state;
  },
  get role() {
    return view.onStage ? myRole() : null;
  },
  get muted() {
    const member = me();
    return Boolean(member && member.muted);
  },
  get mutedByHost() {
    const member = me();
    return Boolean(member && member.muted_by_host);
  },
  get spaceState() {
    return view.space ? view.space.state : null;
  },
  get onAir() {
    return Boolean(view.space && view.space.state === 'live');
  },
  get eventsSeq() {
    return events.after;
  },
  get eventsConnected() {
    return events.socket !== null && events.socket.readyState === WebSocket.OPEN;
  },
  stage: () => sortedMembers().map((m) => ({ ...m })),
  hands: () => view.hands.map((h) => ({ ...h })),
  inviteLinks: () => view.inviteLinks.map((l) => ({ ...l })),
  micLevel,
  returnedLevel,
  returnedLevelAt,
};

/** Claims the seat an invite link offers; strips the link from the address either way. */
async function claimInvite(invite) {
  const strip = () => history.replaceState(history.state, '', location.pathname + location.search);
  try {
    await api(spacePath('/stage/join'), { method: 'POST', body: { invite } });
    strip();
    return true;
  } catch (err) {
    strip();
    if (err instanceof ApiError && err.status === 410) {
      showGate('This Space has ended.', { listen: false });
    } else {
      showGate(`${err.message}`, { listen: true });
    }
    return false;
  }
}

async function main() {
  wire();
  setState('idle');
  if (!spaceId) {
    showGate('This is not a Space link.', { listen: false });
    return;
  }
  ui.gateListen.href = `/s/${spaceId}`;
  const invite = new URLSearchParams(location.hash.slice(1)).get('invite');
  try {
    // Someone opening an invite link may have no identity yet: they pick a name. Everybody else
    // must be signed in to be here.
    view.me = invite ? await ensureIdentity('join the stage') : await whoAmI();
  } catch (err) {
    showGate(err.message);
    return;
  }
  if (!view.me) {
    showGate(
      invite
        ? 'Pick a name (or sign in) to take your seat on the stage.'
        : 'Sign in to open the stage. Listening needs no account.',
      { guest: Boolean(invite), signIn: true },
    );
    return;
  }
  ui.who.hidden = false;
  ui.whoName.textContent = `${view.me.display_name}${view.me.kind === 'guest' ? ' (guest)' : ''}`;
  if (invite && !(await claimInvite(invite))) return;
  try {
    await resync();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      ui.title.textContent = 'No such Space';
      showGate('This Space does not exist. Check the link.', { listen: false });
    } else {
      showGate(err.message);
    }
    return;
  }
  if (!view.onStage || view.over) return;
  if (invite) announce(`You are on the stage as ${roleLabel(myRole()).toLowerCase()}.`);
  // The socket's first `hello` triggers one more full read; the one above lets the page show at once.
  events.synced = false;
  openEvents();
  pollSnapshot();
}

main();
