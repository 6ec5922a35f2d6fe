"""A wave of bulk listeners finds the live stream as a player would: a 503 with Retry-After is asked
again after it; any other failing answer says what it was (bench/density.py `locate_live`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from bench.bulk import Unlocated
from bench.density import locate_live

from townhall.loadtest.llhls import parse_playlist

PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n"
    "#EXT-X-PART-INF:PART-TARGET=0.32000\n#EXT-X-MEDIA-SEQUENCE:7\n"
    '#EXT-X-MAP:URI="abc/init.mp4"\n#EXT-X-PROGRAM-DATE-TIME:2026-12-05T02:50:34.053Z\n'
    '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="abc/s7.m4s",BYTERANGE-START=0\n'
)


class Answers:
    """The answers the server gives, in turn: (status, headers, body); the last one repeats."""

    def __init__(self, *answers: tuple[int, dict[str, str], str]) -> None:
        self.answers = list(answers)
        self.asked = 0

    def next(self) -> tuple[int, dict[str, str], str]:
        self.asked += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def serve() -> Iterator[Callable[[Answers], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answers: Answers) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = answers.next()
                data = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_503_with_retry_after_is_asked_again_then_the_stream_is_found(
    serve: Callable[[Answers], str],
) -> None:
    answers = Answers((503, {"Retry-After": "1"}, '{"error": {}}'), (200, {}, PLAYLIST))
    base = serve(answers)
    url = f"{base}/live/x/media.m3u8"
    live = locate_live(base, url, "x")
    assert answers.asked == 2
    hint = parse_playlist(PLAYLIST, url).hint
    assert hint is not None
    assert live.msn == hint.msn
    assert live.segment_prefix == "/live/x/abc/"


def test_another_answer_is_unlocated_and_says_what_it_was(serve: Callable[[Answers], str]) -> None:
    base = serve(Answers((404, {}, '{"error": {"code": "not_found"}}')))
    with pytest.raises(Unlocated, match="404"):
        locate_live(base, f"{base}/live/x/media.m3u8", "x")
    base = serve(Answers((503, {}, "{}")))  # no Retry-After: nothing says when to ask again
    with pytest.raises(Unlocated, match="503"):
        locate_live(base, f"{base}/live/x/media.m3u8", "x")
