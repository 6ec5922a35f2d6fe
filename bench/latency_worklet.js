// AudioWorklet processor for bench/latency.py: reports the context frame of every burst onset.
//
// It sits on a side branch of the listener page's own graph (the page's MediaElementSource), so it
// sees exactly the samples the page sends to its output, frame-accurately on the context timeline
// (`currentFrame` is the first frame of this render quantum). Wall-clock mapping happens on the main
// thread (there is no clock in the worklet scope).

class BurstOnsets extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { threshold, holdoffFrames } = options.processorOptions;
    this.threshold = threshold;
    this.holdoffFrames = holdoffFrames; // a loud sample this soon after the last one is the same burst
    this.lastLoud = -Infinity;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const n = channels[0].length;
      for (let i = 0; i < n; i += 1) {
        let sum = 0;
        for (const channel of channels) sum += channel[i];
        if (Math.abs(sum / channels.length) <= this.threshold) continue;
        const frame = currentFrame + i;
        if (frame - this.lastLoud > this.holdoffFrames) this.port.postMessage({ frame });
        this.lastLoud = frame;
      }
    }
    return true;
  }
}

registerProcessor('latency-burst-onsets', BurstOnsets);
