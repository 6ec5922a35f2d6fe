// Live listening at one request per segment: the listener page's live player.
//
// Theory of operation. The origin lists every LL-HLS part as a byte range of its segment and
// answers a GET of a segment still being produced with a chunked response that carries each part
// as it is written (delivery/origin.py). hls.js cannot use that (it asks for every part and reloads
// the playlist before each: ~6–9 requests/s at 0.32 s parts, and its maintainers have said it will
// not stream parts), so the live page plays through this small loader instead:
//   1. at start it reads the multivariant playlist (codecs) and the media playlist once, appends
//      the init section, the last complete segment (so playback starts with a full buffer) and then
//      streams the open segment from its first byte: the parts already written arrive at once;
//   2. when a segment's response ends (the segment closed), it asks for the next one,
//      `s{msn+1}.m4s`, at once: the origin holds that request until its first part exists;
//   3. every chunk goes into a Media Source Extensions SourceBuffer as it arrives.
// The playlist is read again only when the next segment is not there (204: the stream ended; 404:
// a new run of the stream began after a restart or a take-over; 503: late), never in steady state.
// One request per segment: 0.52 requests/s with 1.92 s segments.
//
// Room state. Each part starts with an `emsg` box carrying the room's state during that part
// (roomstate.js): the loader cuts the stream into whole top-level boxes, hands every event message
// to `onRoom` and appends the rest (ftyp+moov, moof+mdat) to the SourceBuffer. A part is written
// by the origin in one piece, so waiting for whole boxes costs no latency.
//
// Latency. Parts arrive as they are written, so the buffer ahead of the playhead saws by one part.
// The player keeps that buffer, measured right after a part arrived (its peak), at `targetAhead`:
// one and a half part durations, so that its trough stays half a part above empty. It plays 10 %
// faster when further behind (25 % when more than CATCH_UP_S behind: after a stall) and 5 % slower
// when closer (pitch is kept), and jumps when more than MAX_BEHIND_S behind. A stall (the element waits for data) adds a part to the target; STALL_FORGIVE_MS
// without one takes it back to the start value.
//
// Failures are the page's to handle (recovery.js): a broken transfer, an unreadable playlist or a
// media error calls `onFatal`; a new run of the stream calls `onNewRun` (the page starts a new player
// at the new run's live edge, as it does after any loss); the end of the Space ends the media
// element's stream (its `ended` event), after `onEnded`.

import { readEventMessage } from './roomstate.js';

const MAX_BEHIND_S = 6; // further behind than this: jump instead of speeding up
const FASTER = 1.1;
const MUCH_FASTER = 1.25; // more than CATCH_UP_S behind the target (after a stall, at the start)
const CATCH_UP_S = 1;
const SLOWER = 0.95;
const STALL_FORGIVE_MS = 30000;
const KEEP_BEHIND_S = 10; // media kept behind the playhead (a paused listener keeps more)
const KEEP_TOTAL_S = 40; // at most this much media buffered in all (paused for long)
const TARGET_PARTS = 1.5; // buffer ahead right after a part arrived, in parts (see the top)
const MAX_TARGET_PARTS = 8;
const MAX_MISSES = 3; // the next segment not there this many times in a row: fatal (the page recovers)
const ascii = new TextDecoder('latin1');

/** Whole top-level ISO-BMFF boxes out of bytes that arrive in pieces (one response at a time). */
export class BoxCutter {
  constructor() {
    this.held = new Uint8Array(0);
  }

  /** The boxes completed by `bytes`, each {type, bytes}; an incomplete one waits for more. */
  feed(bytes) {
    let data = bytes;
    if (this.held.length) {
      data = new Uint8Array(this.held.length + bytes.length);
      data.set(this.held);
      data.set(bytes, this.held.length);
    }
    const boxes = [];
    let at = 0;
    while (data.length - at >= 8) {
      const view = new DataView(data.buffer, data.byteOffset + at, data.length - at);
      let size = view.getUint32(0);
      if (size === 1) {
        if (data.length - at < 16) break;
        size = Number(view.getBigUint64(8));
      } else if (size === 0) {
        size = data.length - at; // "to the end": only ever the last box of a whole object
      }
      if (size < 8) throw new Error(`the stream holds a box of impossible size ${size}`);
      if (data.length - at < size) break;
      boxes.push({ type: ascii.decode(data.subarray(at + 4, at + 8)), bytes: data.subarray(at, at + size) });
      at += size;
    }
    this.held = data.slice(at);
    return boxes;
  }
}

/** The attributes of one playlist tag, quoted values unquoted. */
function attributes(text) {
  const found = {};
  for (const match of text.matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) {
    found[match[1]] = match[2].replace(/^"|"$/g, '');
  }
  return found;
}

/** What this player needs of a live media playlist (null fields: not in it). */
export function parseMediaPlaylist(text, url) {
  const playlist = {
    init: null,
    partTarget: null,
    partHoldBack: null,
    discontinuitySequence: 0,
    ended: false,
    openUri: null, // the segment being produced: the one the preload hint names
    openMsn: null,
    lastComplete: null, // the newest complete segment's URI
  };
  let pendingSegment = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-MAP:')) playlist.init = new URL(attributes(line.slice(11)).URI, url).href;
    else if (line.startsWith('#EXT-X-PART-INF:')) playlist.partTarget = Number(attributes(line.slice(16))['PART-TARGET']);
    else if (line.startsWith('#EXT-X-SERVER-CONTROL:')) {
      const holdBack = attributes(line.slice(22))['PART-HOLD-BACK'];
      if (holdBack) playlist.partHoldBack = Number(holdBack);
    } else if (line.startsWith('#EXT-X-DISCONTINUITY-SEQUENCE:')) playlist.discontinuitySequence = Number(line.slice(30));
    else if (line.startsWith('#EXT-X-ENDLIST')) playlist.ended = true;
    else if (line.startsWith('#EXTINF:')) pendingSegment = true;
    else if (line.startsWith('#EXT-X-PRELOAD-HINT:')) {
      const hint = attributes(line.slice(20));
      const match = hint.TYPE === 'PART' && /^(.*\/)?s(\d+)\.m4s$/.exec(hint.URI);
      if (match) {
        playlist.openUri = new URL(hint.URI, url).href;
        playlist.openMsn = Number(match[2]);
      }
    } else if (line && !line.startsWith('#') && pendingSegment) {
      playlist.lastComplete = new URL(line, url).href;
      pendingSegment = false;
    }
  }
  return playlist;
}

/** The URL of segment `msn` of the stream `segmentUrl` belongs to (same run, same directory). */
function segmentUrl(of, msn) {
  return of.replace(/s\d+\.m4s$/, `s${msn}.m4s`);
}

/** Whether this browser can play the live stream this way (Media Source Extensions with AAC). */
export function segmentPlayerSupported(codecs = 'mp4a.40.2') {
  return Boolean(window.MediaSource && MediaSource.isTypeSupported(`audio/mp4; codecs="${codecs}"`));
}

class Gone extends Error {}

export class SegmentPlayer {
  /**
   * @param {HTMLMediaElement} media the element to play into
   * @param {string} multivariantUrl the Space's index.m3u8
   * @param {{onFatal: (why: string) => void, onNewRun: () => void, onEnded: () => void,
   *          onRoom?: (event: object) => void, fresh?: boolean}} options fresh: ask for
   *          playlists past the browser's cache; onRoom: each event message of the stream
   */
  constructor(media, multivariantUrl, { onFatal, onNewRun, onEnded, onRoom = () => {}, fresh = false }) {
    this.media = media;
    this.multivariantUrl = multivariantUrl;
    this.onFatal = onFatal;
    this.onNewRun = onNewRun;
    this.onEnded = onEnded;
    this.onRoom = onRoom;
    this.fresh = fresh;
    this.abort = new AbortController();
    this.queue = []; // appends and removals for the SourceBuffer, in order
    this.buffer = null;
    this.lastChunkAt = null;
    this.appending = null; // what the SourceBuffer is busy with
    this.liveAppended = false; // a chunk of a segment being produced is in the buffer
    this.targetAhead = null;
    this.baseTarget = null;
    this.lastStallAt = -Infinity;
    this.placed = false; // the playhead has been put at the live edge once
    this.destroyed = false;
    this.requests = 0; // segment, playlist and init requests made (for the curious)
    this.onWaiting = () => this.stalled();
    media.addEventListener('waiting', this.onWaiting);
    this.source = new MediaSource();
    this.objectUrl = URL.createObjectURL(this.source);
    media.src = this.objectUrl;
    this.run().catch((err) => {
      if (!this.destroyed && !(err instanceof Gone)) this.onFatal(String(err && err.message ? err.message : err));
    });
  }

  /** Seconds between the live edge and what is heard now, or null before anything arrived. */
  get latency() {
    const end = this.bufferedEnd();
    if (end === null || this.lastChunkAt === null) return null;
    return Math.max(0, end - this.media.currentTime + (performance.now() - this.lastChunkAt) / 1000);
  }

  /** Where live playback should be: the target distance behind what has arrived. */
  get liveSyncPosition() {
    const end = this.bufferedEnd();
    return end === null ? null : Math.max(this.bufferedStart(), end - this.targetAhead);
  }

  destroy() {
    this.destroyed = true;
    this.abort.abort();
    this.media.removeEventListener('waiting', this.onWaiting);
    this.media.playbackRate = 1;
    this.media.removeAttribute('src');
    this.media.load();
    URL.revokeObjectURL(this.objectUrl);
  }

  // -- loading ------------------------------------------------------------------------------------
  async get(url, { body = 'bytes', playlist = false } = {}) {
    this.requests += 1;
    const response = await fetch(url, {
      signal: this.abort.signal,
      credentials: 'same-origin',
      cache: playlist && this.fresh ? 'no-cache' : 'default',
    });
    if (this.destroyed) throw new Gone();
    if (body === 'response') return response;
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return body === 'text' ? response.text() : new Uint8Array(await response.arrayBuffer());
  }

  async run() {
    const index = await this.get(this.multivariantUrl, { body: 'text', playlist: true });
    const mediaUri = index.split('\n').find((line) => line && !line.startsWith('#'));
    const codecs = /CODECS="([^"]+)"/.exec(index);
    if (!mediaUri) throw new Error('the multivariant playlist names no media playlist');
    this.mediaUrl = new URL(mediaUri, new URL(this.multivariantUrl, location.href)).href;
    let playlist = await this.playlist();
    if (playlist.ended || playlist.openUri === null) {
      this.end();
      return;
    }
    this.stream = playlist.init;
    this.discontinuitySequence = playlist.discontinuitySequence;
    const part = playlist.partTarget || 0.5;
    this.partTarget = part;
    this.baseTarget = TARGET_PARTS * part;
    this.targetAhead = this.baseTarget;
    await this.opened();
    this.buffer = this.source.addSourceBuffer(`audio/mp4; codecs="${codecs ? codecs[1] : 'mp4a.40.2'}"`);
    this.buffer.mode = 'segments';
    this.buffer.addEventListener('updateend', () => this.updated());
    this.buffer.addEventListener('error', () => this.onFatal('the browser could not decode the stream'));
    this.take(await this.get(playlist.init), new BoxCutter());
    if (playlist.lastComplete) this.take(await this.get(playlist.lastComplete), new BoxCutter());
    let url = playlist.openUri;
    let msn = playlist.openMsn;
    let misses = 0; // the next segment asked for in vain, in a row
    for (;;) {
      const outcome = await this.streamSegment(url);
      if (outcome === 'done') {
        msn += 1;
        url = segmentUrl(url, msn);
        misses = 0;
        continue;
      }
      // Not there: late (503, wait as told), or the playlist knows why (ended, a new run). A
      // stream that neither moves on nor explains itself is the page's to recover (a new player).
      misses += 1;
      if (misses > MAX_MISSES) throw new Error(`${url}: not there after ${MAX_MISSES} tries`);
      await this.pause(outcome.retryAfter ?? (misses > 1 ? 0.5 : 0));
      playlist = await this.playlist();
      if (playlist.ended) {
        this.end();
        return;
      }
      if (playlist.init !== this.stream || playlist.discontinuitySequence !== this.discontinuitySequence) {
        this.onNewRun();
        return;
      }
      if (playlist.openMsn !== null && playlist.openMsn > msn) {
        msn = playlist.openMsn; // fell out of the window: carry on from the live edge
        url = playlist.openUri;
      }
    }
  }

  async playlist() {
    return parseMediaPlaylist(await this.get(this.mediaUrl, { body: 'text', playlist: true }), this.mediaUrl);
  }

  opened() {
    if (this.source.readyState === 'open') return Promise.resolve();
    return new Promise((resolve) => this.source.addEventListener('sourceopen', resolve, { once: true }));
  }

  pause(seconds) {
    return seconds > 0 ? new Promise((resolve) => setTimeout(resolve, seconds * 1000)) : Promise.resolve();
  }

  /** One segment, chunk by chunk as the origin sends it: 'done', or why it is not there. */
  async streamSegment(url) {
    const response = await this.get(url, { body: 'response' });
    // 204: the stream ended before this segment (the playlist says so); 404: a new run, or gone.
    if (response.status === 204 || response.status === 404 || response.status === 410) return { retryAfter: null };
    if (response.status === 503 || response.status === 429) {
      return { retryAfter: Number(response.headers.get('Retry-After')) || 1 };
    }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    const reader = response.body.getReader();
    const cutter = new BoxCutter();
    for (;;) {
      const { done, value } = await reader.read(); // a broken transfer throws: fatal
      if (this.destroyed) throw new Gone();
      if (done) return 'done';
      this.lastChunkAt = performance.now();
      this.take(value, cutter, { live: true });
    }
  }

  /** Bytes of a response: event messages to `onRoom`, the media boxes to the SourceBuffer. */
  take(bytes, cutter, { live = false } = {}) {
    const media = [];
    for (const box of cutter.feed(bytes)) {
      if (box.type !== 'emsg') media.push(box.bytes);
      else {
        const event = readEventMessage(box.bytes);
        if (event) this.onRoom(event);
      }
    }
    if (!media.length) return;
    if (media.length === 1) {
      this.append(media[0], { live });
      return;
    }
    const joined = new Uint8Array(media.reduce((sum, part) => sum + part.length, 0));
    let at = 0;
    for (const part of media) {
      joined.set(part, at);
      at += part.length;
    }
    this.append(joined, { live });
  }

  end() {
    this.onEnded();
    this.queue.push({ end: true });
    this.pump();
  }

  // -- the SourceBuffer ---------------------------------------------------------------------------
  append(bytes, { live = false } = {}) {
    this.queue.push({ bytes, live });
    this.pump();
  }

  pump() {
    const buffer = this.buffer;
    if (this.destroyed || !this.queue.length || (buffer && buffer.updating)) return;
    const next = this.queue[0];
    if (next.end) {
      this.queue.shift();
      if (this.source.readyState === 'open') this.source.endOfStream();
      return;
    }
    if (!buffer) return;
    this.queue.shift();
    this.appending = next;
    try {
      if (next.remove) buffer.remove(next.remove[0], next.remove[1]);
      else buffer.appendBuffer(next.bytes);
    } catch (err) {
      if (err.name === 'QuotaExceededError' && next.bytes) {
        this.queue.unshift(next); // make room first, then try again
        this.queue.unshift({ remove: [0, Math.max(0.1, this.media.currentTime - 1)] });
        setTimeout(() => this.pump(), 100);
        return;
      }
      this.onFatal(`the browser refused the stream: ${err.message}`);
    }
  }

  updated() {
    if (this.destroyed) return;
    if (this.appending && this.appending.live) this.liveAppended = true;
    this.appending = null;
    this.follow();
    this.evict();
    this.pump();
  }

  bufferedEnd() {
    const ranges = this.buffer ? this.buffer.buffered : null;
    return ranges && ranges.length ? ranges.end(ranges.length - 1) : null;
  }

  bufferedStart() {
    const ranges = this.buffer ? this.buffer.buffered : null;
    return ranges && ranges.length ? ranges.start(0) : 0;
  }

  /** Keep the playhead `targetAhead` behind what has arrived (see the top). */
  follow() {
    const end = this.bufferedEnd();
    if (end === null || !this.liveAppended) return; // the live edge is not in the buffer yet
    const media = this.media;
    const ahead = end - media.currentTime;
    if (!this.placed || ahead > this.targetAhead + MAX_BEHIND_S || ahead < 0) {
      this.placed = true;
      media.currentTime = this.liveSyncPosition;
      media.playbackRate = 1;
      return;
    }
    if (performance.now() - this.lastStallAt > STALL_FORGIVE_MS) this.targetAhead = this.baseTarget;
    if (media.paused) return;
    if (ahead > this.targetAhead + CATCH_UP_S) media.playbackRate = MUCH_FASTER;
    else if (ahead > this.targetAhead + this.partTarget / 2) media.playbackRate = FASTER;
    else if (ahead < this.targetAhead - this.partTarget / 2) media.playbackRate = SLOWER;
    else if (Math.abs(ahead - this.targetAhead) < this.partTarget / 4) media.playbackRate = 1;
  }

  /** The element ran dry: ask for one more part of buffer from now on. */
  stalled() {
    if (this.media.paused || this.media.seeking || !this.placed) return; // a jump is no stall
    this.lastStallAt = performance.now();
    this.targetAhead = Math.min(this.targetAhead + this.partTarget, MAX_TARGET_PARTS * this.partTarget);
  }

  /** Bounded memory: drop what lies well behind the playhead, and the oldest beyond KEEP_TOTAL_S. */
  evict() {
    const end = this.bufferedEnd();
    if (end === null || this.queue.some((item) => item.remove)) return;
    const upTo = Math.max(this.media.currentTime - KEEP_BEHIND_S, end - KEEP_TOTAL_S);
    if (upTo - this.bufferedStart() > KEEP_BEHIND_S) this.queue.push({ remove: [0, upTo] });
  }
}
