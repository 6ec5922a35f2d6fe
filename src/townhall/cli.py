"""The `townhall` command: run the server, publish audio as a speaker bot, mint tokens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from townhall import __version__
from townhall.config import ConfigError, load


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from townhall.app import create_app

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGTERM/Ctrl-C that ends in a clean drain exits with status 0
        (uvicorn re-raises the signal after draining, which reports a clean stop as a kill)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    config = load(
        host=args.host, port=args.port, data_dir=Path(args.data_dir) if args.data_dir else None
    )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(config)
    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            access_log=args.access_log,
            timeout_graceful_shutdown=5,
            lifespan="on",
        )
    )

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        print(f"townhall {__version__} is live at {config.base_url}/  (Ctrl-C to stop)", flush=True)

    async def main() -> None:
        announcer = asyncio.create_task(announce())
        await server.serve()
        announcer.cancel()

    asyncio.run(main())
    return 0 if server.started else 1


def _speak(args: argparse.Namespace) -> int:
    from townhall.client.sources import FileTrack, ToneTrack
    from townhall.client.speaker import Speaker, SpeakerError, parse_stage_url, run_speaker

    try:
        address = parse_stage_url(args.url, args.token)
        source = FileTrack(args.file, loop=args.loop) if args.file else ToneTrack(args.tone)
    except (SpeakerError, OSError) as exc:
        print(f"townhall speak: {exc}", file=sys.stderr)
        return 2
    speaker = Speaker(address, source, Path(args.record_return) if args.record_return else None)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        await run_speaker(speaker, args.duration)

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        return 0
    except (SpeakerError, OSError, TimeoutError) as exc:
        print(f"townhall speak: {exc}", file=sys.stderr)
        return 1
    return 0


def _token(args: argparse.Namespace) -> int:
    from townhall.api.tokens import StageRole, TokenSigner
    from townhall.spaces.model import is_space_id

    if not is_space_id(args.space):
        print(f"townhall token: {args.space!r} is not a Space id", file=sys.stderr)
        return 2
    config = load(data_dir=Path(args.data_dir) if args.data_dir else None)
    signer = TokenSigner(config.secret, config.token_ttl_s)
    print(signer.mint(args.space, StageRole(args.role), ttl_s=args.ttl))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="townhall", description="Live audio rooms.")
    parser.add_argument("--version", action="version", version=f"townhall {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (one process, embedded defaults)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1, env TOWNHALL_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, env TOWNHALL_PORT)")
    serve.add_argument(
        "--data-dir", help="where data lives (default ./data, env TOWNHALL_DATA_DIR)"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--access-log", action="store_true", help="log every request (off: listeners are many)"
    )
    serve.set_defaults(func=_serve)

    speak = sub.add_parser("speak", help="join a stage as a speaker bot and publish audio")
    speak.add_argument(
        "url", help="stage link (http://HOST/s/SPACE/stage#token=…) or Space link with --token"
    )
    speak.add_argument("--token", help="stage token (if the link does not carry one)")
    source = speak.add_mutually_exclusive_group(required=True)
    source.add_argument("--tone", type=float, help="publish a sine tone of this frequency (Hz)")
    source.add_argument("--file", help="publish an audio file (anything FFmpeg reads)")
    speak.add_argument("--loop", action="store_true", help="with --file: play it in a loop")
    speak.add_argument(
        "--duration", type=float, help="seconds to stay on stage (default: until Ctrl-C)"
    )
    speak.add_argument("--record-return", help="write the mix you hear back to this WAV file")
    speak.set_defaults(func=_speak)

    token = sub.add_parser(
        "token", help="mint a stage token for a Space with this installation's secret"
    )
    token.add_argument("space", help="Space id")
    token.add_argument("--role", choices=["host", "speaker"], default="speaker")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.add_argument("--data-dir", help="data directory holding the secret (default ./data)")
    token.set_defaults(func=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"townhall: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
