"""The protocol takes a listener's segment request before parsing it (api/listener_protocol.py
`raw_segment_get`) only when the parser would have read it as the same thing: a GET of that
segment, HTTP/1.1, kept alive, no body, no range, no upgrade, no expectation. Checked against the
server's own parser (httptools) over drawn requests, well-formed or not."""

from __future__ import annotations

import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from townhall.api.listener_protocol import raw_segment_get

SEGMENT = b"/live/abcdefghij/2b539a1f/s12.m4s"
# What makes a plain GET something else, for the parser.
NOT_PLAIN = {b"content-length", b"transfer-encoding", b"range", b"upgrade", b"expect"}


class Parsed:
    """What httptools hands the server's protocol (uvicorn's callbacks)."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_message_complete(self) -> None:
        self.complete += 1


def parse(data: bytes) -> tuple[Parsed, httptools.HttpRequestParser] | None:
    parsed = Parsed()
    parser = httptools.HttpRequestParser(parsed)
    try:
        parser.feed_data(data)
    except httptools.HttpParserError:
        return None
    return parsed, parser


names = st.sampled_from(
    [
        b"Host",
        b"Accept",
        b"User-Agent",
        b"Connection",
        b"content-length",
        b"Range",
        b"Upgrade",
        b"Transfer-Encoding",
        b"Expect",
        b"X-A",
        b"Cookie",
        b"Host ",
        b" Host",
        b"Ho:st",
        b"",
        b"A\x00",
    ]
)
values = st.one_of(
    st.sampled_from(
        [
            b"keep-alive",
            b"close",
            b" Keep-Alive ",
            b"keep-alive, Upgrade",
            b"0",
            b"5",
            b"chunked",
            b"bytes=0-9",
            b"websocket",
            b"100-continue",
            b"*/*",
            b"",
            b"\tx",
        ]
    ),
    st.binary(max_size=12),
)
lines = st.lists(st.tuples(names, st.sampled_from([b": ", b":", b" : "]), values), max_size=6)
starts = st.sampled_from(
    [
        b"GET " + SEGMENT + b" HTTP/1.1",
        b"GET " + SEGMENT + b" HTTP/1.0",
        b"get " + SEGMENT + b" HTTP/1.1",
        b"GET " + SEGMENT + b"?x HTTP/1.1",
        b"GET " + SEGMENT + b"x HTTP/1.1",
        b"GET http://h" + SEGMENT + b" HTTP/1.1",
        b"GET  " + SEGMENT + b" HTTP/1.1",
    ]
)
tails = st.sampled_from([b"", b"GET / HTTP/1.1\r\n\r\n", b"x", b"\r\n"])


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(starts, lines, tails)
def test_what_is_taken_before_parsing_is_what_the_parser_reads_as_a_plain_segment_get(
    start: bytes, header_lines: list[tuple[bytes, bytes, bytes]], tail: bytes
) -> None:
    data = b"\r\n".join([start, *(n + sep + v for n, sep, v in header_lines), b"", b""]) + tail
    taken = raw_segment_get(data)
    if taken is None:
        return
    read = parse(data)
    assert read is not None, data
    parsed, parser = read
    assert parsed.complete == 1  # one whole request, nothing after it
    assert parser.get_method() == b"GET"
    assert parser.get_http_version() == "1.1"
    assert parser.should_keep_alive()
    assert not parser.should_upgrade()
    assert parsed.url == SEGMENT
    assert (taken[1], taken[2], taken[3]) == (b"abcdefghij", b"2b539a1f", b"12")
    header_names = {name for name, _ in parsed.headers}
    assert not header_names & NOT_PLAIN, data
    assert all(
        value.strip().lower() == b"keep-alive"
        for name, value in parsed.headers
        if name == b"connection"
    ), data


def test_the_requests_players_and_edges_send_are_taken_and_odd_ones_are_not() -> None:
    plain = b"GET " + SEGMENT + b" HTTP/1.1\r\nHost: origin\r\n"
    assert raw_segment_get(plain + b"\r\n") is not None
    assert raw_segment_get(plain + b"Connection: keep-alive\r\nAccept: */*\r\n\r\n") is not None
    for odd in (
        plain,  # not whole yet
        plain + b"Connection: close\r\n\r\n",
        plain + b"Range: bytes=0-99\r\n\r\n",
        plain + b"Content-Length: 0\r\n\r\n",
        plain + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        plain + b"\r\nGET / HTTP/1.1\r\n\r\n",  # a pipelined request behind it
        plain + b"X: caf\xc3\xa9\r\n\r\n",  # a value outside what is taken: the parser's
    ):
        assert raw_segment_get(odd) is None, odd
