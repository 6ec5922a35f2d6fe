"""Live captions: the listener program, after the broadcast delay line, transcribed into WebVTT.

Where the audio goes (see docs/architecture.md, "Live captions"):

    program frame after the delay line (media time) --> chunk (pause-cut windows, `chunker`)
        --> transcriber worker process (`worker`: Whisper on CTranslate2, niced, bounded)
        --> timed cues (`track`) --> WebVTT subtitle rendition of the LL-HLS stream (`vtt`)
                                 --> the recording's captions (`store`), replays and `.vtt` download

`chunker`, `vtt` and `track` are sans-I/O cores; `worker` and `live` are the adapters.
"""
