// Live captions on the page: the CC button and the caption line under the player (listener page)
// or in the stage's console (stage page).
//
// Theory of operation (the server side is townhall/captions). A captioned Space's stream has a
// WebVTT subtitle rendition (captions.m3u8 beside index.m3u8): a plain live playlist whose
// segments are published once transcribed, so it trails the audio by the transcription delay.
// While CC is on (off by default: nobody pays requests for captions they did not ask for), the
// page reloads it every target duration and fetches each new segment once; cue times are media
// time, the clock the listener page's `currentTime` runs on (as the room messages are, see
// roomstate.js). Each check shows the newest cue that has started at the playback position, for
// as long as it lasts and up to LATE_S after (captions arrive a few seconds after the words they
// carry, so a cue is often readable only after its audio was heard: it is shown then, late,
// rather than not at all). A page without a playback position (the stage hears itself live)
// shows each cue as it arrives. The line is an aria-live="polite" region: screen readers read
// each new caption once, without interrupting.
//
// Played from the recording — rewound behind live (DVR) or the replay of an ended Space — the
// position is the recording's own time (hls.js plays a VOD from 0 at its first segment), not media
// time, and the live playlist holds only its last minutes. Then the line follows the captions kept
// with the recording instead: captions.vtt, every kept caption timed from the recording's start
// (the .vtt download). It is fetched once for a replay, which never changes, and again every
// RECORDED_RELOAD_MS while rewound, as the recording grows; cues are shown exactly in their time
// (they were transcribed long before), and seeking anywhere finds its own.

const CHECK_MS = 250;
const LATE_S = 4; // a cue stays up this long after its end (or its arrival, on the stage)
const MAX_CUES = 200;
const RECORDED_RELOAD_MS = 10000;
const MAX_RECORDED_CUES = 50000; // about 14 hours of speech: a replay's whole file
const TIMING = /^(\d+):(\d\d):(\d\d\.\d{3}) --> (\d+):(\d\d):(\d\d\.\d{3})/;

function seconds(h, m, s) {
  return Number(h) * 3600 + Number(m) * 60 + Number(s);
}

/** The cues of one WebVTT file: [{start, end, text}]. */
export function parseVtt(text) {
  const lines = text.split('\n');
  const cues = [];
  for (let i = 0; i < lines.length - 1; i += 1) {
    const t = TIMING.exec(lines[i]);
    if (t) cues.push({ start: seconds(t[1], t[2], t[3]), end: seconds(t[4], t[5], t[6]), text: lines[i + 1] });
  }
  return cues;
}

/** The newest cue started at `position` and not over for more than `late` s; '' if none. */
export function cueAt(cues, position, late = LATE_S) {
  let shown = '';
  for (const cue of cues) {
    if (cue.start > position) break; // sorted by start
    if (position <= cue.end + late) shown = cue.text;
  }
  return shown;
}

export class Captions {
  /**
   * @param {{button: HTMLButtonElement, line: HTMLElement, playlist: () => string | null,
   *          position: () => number | null,
   *          recorded?: () => {url: string, growing: boolean} | null}} parts
   * `playlist`: the captions playlist URL (null: none yet); `position`: the playback position
   * (media time live, the recording's time when `recorded` names a file), or null where there is
   * none (the stage); `recorded`: while the recording plays, where its captions are and whether
   * it still grows (rewound behind live), else null.
   */
  constructor({ button, line, playlist, position, recorded = () => null }) {
    this.button = button;
    this.line = line;
    this.playlist = playlist;
    this.position = position;
    this.recorded = recorded;
    this.cues = [];
    this.fetched = new Set();
    this.kept = { url: null, cues: [], at: 0, loading: false, failed: false };
    this.on = false;
    this.timer = 0;
    this.check = 0;
    this.button.addEventListener('click', () => this.toggle());
  }

  /** Whether this Space is captioned: the CC button is there only then. */
  setAvailable(available) {
    this.button.hidden = !available;
    if (!available && this.on) this.toggle();
  }

  toggle() {
    this.on = !this.on;
    this.button.setAttribute('aria-pressed', String(this.on));
    this.line.hidden = !this.on;
    clearTimeout(this.timer);
    clearInterval(this.check);
    if (!this.on) {
      this.line.textContent = '';
      return;
    }
    this.reload();
    this.check = setInterval(() => this.show(), CHECK_MS);
  }

  async reload() {
    let wait = 2000;
    const url = this.recorded() ? null : this.playlist(); // the recording's captions meanwhile
    try {
      if (url) {
        const response = await fetch(url, { credentials: 'same-origin' });
        if (response.ok) {
          const text = await response.text();
          const target = /#EXT-X-TARGETDURATION:(\d+)/.exec(text);
          if (target) wait = Number(target[1]) * 1000;
          for (const uri of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
            if (this.fetched.has(uri)) continue;
            this.fetched.add(uri);
            const segment = await fetch(new URL(uri, response.url), { credentials: 'same-origin' });
            if (segment.ok) this.add(parseVtt(await segment.text()));
          }
        }
      }
    } catch {
      // A failed reload is retried at the next one; captions are never worth an error message.
    }
    if (this.on) this.timer = setTimeout(() => this.reload(), wait);
  }

  add(cues) {
    const now = performance.now() / 1000;
    for (const cue of cues) {
      if (this.cues.some((c) => c.start === cue.start && c.text === cue.text)) continue; // a repeat
      this.cues.push({ ...cue, arrived: now });
    }
    this.cues.sort((a, b) => a.start - b.start);
    if (this.cues.length > MAX_CUES) this.cues.splice(0, this.cues.length - MAX_CUES);
    if (this.fetched.size > MAX_CUES) this.fetched = new Set([...this.fetched].slice(-MAX_CUES));
  }

  /** The recording's captions (see the theory above), fetched in the background when due. */
  async loadRecorded({ url, growing }) {
    const kept = this.kept;
    const again = (growing || kept.failed) && performance.now() - kept.at > RECORDED_RELOAD_MS;
    if (kept.loading || (kept.url === url && !again)) return;
    kept.loading = true;
    try {
      const response = await fetch(url, { credentials: 'same-origin' });
      // 404: nothing kept (yet): an empty file, asked for again only while the recording grows.
      const cues = response.ok ? parseVtt(await response.text()) : [];
      cues.sort((a, b) => a.start - b.start);
      Object.assign(kept, { cues: cues.slice(0, MAX_RECORDED_CUES), failed: !response.ok && response.status !== 404 });
    } catch {
      kept.failed = true; // unreachable: asked for again after the reload time
    } finally {
      Object.assign(kept, { url, at: performance.now(), loading: false });
    }
  }

  show() {
    const position = this.position();
    const recorded = this.recorded();
    let text;
    if (recorded && position !== null) {
      this.loadRecorded(recorded);
      text = this.kept.url === recorded.url ? cueAt(this.kept.cues, position, 0) : '';
    } else if (position === null) {
      const now = performance.now() / 1000;
      const recent = this.cues.filter((c) => now - c.arrived <= LATE_S + (c.end - c.start));
      text = recent.length ? recent[recent.length - 1].text : '';
    } else {
      text = cueAt(this.cues, position);
    }
    if (this.line.textContent !== text) this.line.textContent = text; // a live region: only changes
  }
}
