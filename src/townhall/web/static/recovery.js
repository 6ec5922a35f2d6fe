// Coming back by itself: what the listener's player and the stage's microphone share when their
// server crashes, restarts or hands the Space to another node.
//
// Both pages notice a loss the same way — something that should move stands still: the player's
// currentTime (a stalled stream), the packets the stage sends back (the mixer sends one every
// 20 ms, silence included). Events can be missed (a crashed server says goodbye to no one; a
// browser's ICE takes ~5–30 s to call a dead peer failed), a still counter cannot. Then they try
// again: the first retry at once (a restarted or taken-over Space is usually back within seconds),
// later ones after exponential waits with *full* jitter, so that an audience dropped by one crash
// does not come back in step. Pure functions and a small class: the pages own the timers.

/** Seconds to wait before retry number `attempt` (1, 2, …): none for the first, then uniform in
 * [0, min(maxSeconds, baseSeconds · 2^(attempt − 2))]; at least `floorSeconds` (a Retry-After). */
export function retryDelay(attempt, maxSeconds, floorSeconds = 0, baseSeconds = 0.5) {
  const ceiling = attempt <= 1 ? 0 : Math.min(maxSeconds, baseSeconds * 2 ** (attempt - 2));
  return Math.max(floorSeconds, Math.random() * ceiling);
}

/** Notices a value that stopped moving: fed (value, now in ms), says how long it has stood still. */
export class Stillness {
  constructor(now) {
    this.value = undefined;
    this.since = now;
  }

  stillFor(value, now) {
    if (value !== this.value) {
      this.value = value;
      this.since = now;
    }
    return now - this.since;
  }

  /** Start counting anew (a new player or connection: what came before does not count). */
  reset(now) {
    this.value = undefined;
    this.since = now;
  }
}
