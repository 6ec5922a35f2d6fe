// Init script for bench/latency.py: taps the listener page's audio without changing the page.
//
// The page routes its <audio> through Web Audio (createMediaElementSource → gain → destination).
// We wrap createMediaElementSource so that, once the page made its source, the same source also
// feeds our AudioWorklet (bench/latency_worklet.js, from a blob: URL; the bench's browser context
// bypasses the page's CSP, script-src 'self', for that). For every burst onset the worklet reports
// its context frame; here it is placed on the wall clock two ways:
//   played   = timeOrigin + getOutputTimestamp().performanceTime + (onset − contextTime): when the
//              browser says that frame leaves for the output device (includes its output latency
//              estimate);
//   rendered = timeOrigin + now − (currentTime − onset): when the render thread processed it.
// `window.__latency` is read back by the bench (onsets, stalls, the audio context, errors).
(() => {
  const config = __CONFIG__; // replaced by the bench with a JSON object literal
  const state = { onsets: [], errors: [], waiting: [], context: null };
  window.__latency = state;
  const workletUrl = URL.createObjectURL(new Blob([config.workletSource], { type: 'text/javascript' }));
  const original = AudioContext.prototype.createMediaElementSource;
  AudioContext.prototype.createMediaElementSource = function tapped(element) {
    const source = original.call(this, element);
    const context = this;
    // Stalls (the element ran out of data) explain steps in latency: hls.js raises its target after each.
    element.addEventListener('waiting', () => state.waiting.push(performance.timeOrigin + performance.now()));
    context.audioWorklet
      .addModule(workletUrl)
      .then(() => {
        const node = new AudioWorkletNode(context, 'latency-burst-onsets', {
          numberOfOutputs: 1,
          processorOptions: {
            threshold: config.threshold,
            holdoffFrames: Math.round(config.holdoffS * context.sampleRate),
          },
        });
        node.port.onmessage = ({ data }) => {
          const now = performance.now();
          const onset = data.frame / context.sampleRate;
          const stamp = context.getOutputTimestamp();
          state.onsets.push({
            onset,
            played: performance.timeOrigin + stamp.performanceTime + (onset - stamp.contextTime) * 1000,
            rendered: performance.timeOrigin + now - (context.currentTime - onset) * 1000,
          });
        };
        source.connect(node);
        const mute = context.createGain(); // keeps the node pulled by the graph, adds nothing to the output
        mute.gain.value = 0;
        node.connect(mute);
        mute.connect(context.destination);
        state.context = context; // read at the end: outputLatency is only known once playing
      })
      .catch((err) => state.errors.push(String(err)));
    return source;
  };
})();
