// Room state from the stream: what the listener page shows (on air, stage, speaking, reactions,
// listener count, moderation, the end) read from the event messages in the live stream itself.
//
// Theory of operation (the server side is media/roomstate.py). Every LL-HLS part starts with an
// `emsg` box (DASH event message, version 1) of the scheme SCHEME: a JSON message with the room's
// views during that part, each at an offset from the part's presentation time, and the audience
// numbers. The stage's side of the room went through the broadcast delay line with the audio, so a
// view's media time is when its audio plays: the page shows a view when the media element's
// currentTime reaches it (checked every CHECK_MS), in step with what the listener hears, a dump
// included (dumped audio never carries speaking flags). segments.js takes the boxes out of the
// stream before Media Source Extensions sees it and hands them here.

export const SCHEME = 'urn:townhall:room:1';
const MAX_PENDING = 2000; // views waiting for their time (about 10 minutes of a busy stage)
const text = new TextDecoder();

/** The event message in a whole `emsg` box (version 1), or null for any other version. */
export function readEventMessage(box) {
  const view = new DataView(box.buffer, box.byteOffset, box.byteLength);
  const header = view.getUint32(0) === 1 ? 16 : 8;
  if (box.byteLength < header + 24 || box[header] !== 1) return null;
  let at = header + 4; // version and flags
  const timescale = view.getUint32(at);
  const time = Number(view.getBigUint64(at + 4));
  const duration = view.getUint32(at + 12);
  at += 20;
  const schemeEnd = box.indexOf(0, at);
  if (schemeEnd < 0) return null;
  const valueEnd = box.indexOf(0, schemeEnd + 1);
  if (valueEnd < 0) return null;
  return {
    scheme: text.decode(box.subarray(at, schemeEnd)),
    value: text.decode(box.subarray(schemeEnd + 1, valueEnd)),
    timescale,
    time,
    duration,
    data: box.subarray(valueEnd + 1),
  };
}

/**
 * The room's views by media time: `add` the stream's messages as they arrive, `take` what is due
 * at the playback position. A view without a stage keeps the one before it (key parts repeat it).
 */
export class RoomSchedule {
  constructor() {
    this.pending = []; // {at, view?, audience?, ended?} in media time order
    this.stage = null; // the stage of the newest view added
    this.received = 0; // messages read (for the curious, and the tests)
  }

  /** One event message of the stream; ignored if not ours or unreadable. */
  add(event) {
    if (event.scheme !== SCHEME || !event.timescale) return;
    let message;
    try {
      message = JSON.parse(text.decode(event.data));
    } catch {
      return;
    }
    if (message.v !== 1 || !Array.isArray(message.views)) return;
    this.received += 1;
    const start = event.time / event.timescale;
    if (message.audience) this.pending.push({ at: start, audience: message.audience });
    for (const [offset, view] of message.views) {
      if (view.stage) this.stage = view.stage;
      if (this.stage === null) continue; // a part before any key part: nothing to show yet
      this.pending.push({ at: start + offset, view: { ...view, stage: this.stage } });
    }
    if (message.ended) this.pending.push({ at: start, ended: true });
    if (this.pending.length > MAX_PENDING) this.pending.splice(0, this.pending.length - MAX_PENDING);
  }

  /** What became due at `position` (seconds of media time): the newest view and audience, and
   * whether the end was reached; null when nothing did. */
  take(position) {
    let due = 0;
    while (due < this.pending.length && this.pending[due].at <= position) due += 1;
    if (!due) return null;
    const found = { view: null, audience: null, ended: false };
    for (const entry of this.pending.splice(0, due)) {
      if (entry.view) found.view = entry.view;
      if (entry.audience) found.audience = entry.audience;
      if (entry.ended) found.ended = true;
    }
    return found;
  }
}
