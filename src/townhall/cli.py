"""The `townhall` command: run the server, publish audio as a speaker bot, mint tokens."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

from townhall import __version__
from townhall.config import ConfigError, listen_backlog, load, log_format, make_private_dir
from townhall.reminders.webpush import VapidKey
from townhall.spaces.invite_links import TTL_DEFAULT_S, USES_DEFAULT, USES_MAX
from townhall.telemetry import jsonlog


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    import uvloop

    from townhall.api import bounds
    from townhall.api.accept import ConnectionCap
    from townhall.api.fastpath import FastPath
    from townhall.api.listener_protocol import ListenerProtocol
    from townhall.app import create_app
    from townhall.node import collector

    class Server(uvicorn.Server):
        """uvicorn's server, but (1) the first SIGTERM/Ctrl-C first hands this node's Spaces to
        other nodes while it still answers the requests relayed to it, and only then stops
        accepting (a second signal stops at once), and (2) a clean drain exits with status 0
        (uvicorn re-raises the signal after draining, which reports a clean stop as a kill)."""

        draining: asyncio.Task[None] | None = None

        def on_signal(self, sig: int) -> None:
            if self.draining is not None or not self.started:
                self.handle_exit(sig, None)
                return

            async def drain_then_exit() -> None:
                try:
                    await app.state.drain()
                finally:
                    self.handle_exit(sig, None)

            self.draining = asyncio.create_task(drain_then_exit(), name="drain")

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.on_signal, sig)
            try:
                yield
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)

    config = load(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        role=args.role,
        access_log=args.access_log or None,
    )
    make_private_dir(config.data_dir)
    app = create_app(config)
    cap: ConnectionCap = app.state.connection_cap
    # What the protocol answers itself (api/listener_protocol.py): a listener's open segment, and
    # the prebuilt answers (none of either when the access log is on).
    protocol = partial(
        ListenerProtocol,
        segments=getattr(app.state, "segment_front", None),
        answers=front if isinstance(front := getattr(app, "front", None), FastPath) else None,
    )
    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=args.log_level,
            # Requests are logged by the app (telemetry.requests: with their route template,
            # duration and request id), in the format chosen for every other line.
            access_log=False,
            # JSON lines: uvicorn's loggers go through the root handler like everyone else's.
            log_config=None if config.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
            timeout_graceful_shutdown=5,
            lifespan="on",
            # The app believes X-Forwarded-* from TOWNHALL_TRUSTED_PROXIES only; uvicorn's own
            # handling would trust any loopback peer first.
            proxy_headers=False,
            # Deadlines for a request's head and body, a cap on the head (api/bounds.py), and the
            # idle time a kept-alive connection is held between requests; past the connection
            # cap, a 503 before anything is parsed (api/accept.py).
            http=cast(Any, cap.protocol(protocol)),
            timeout_keep_alive=bounds.KEEP_ALIVE_S,
            backlog=listen_backlog(config),
            ws_max_size=bounds.WS_MESSAGE_MAX,
        )
    )

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        print(f"townhall {__version__} is live at {config.base_url}/  (Ctrl-C to stop)", flush=True)
        collector.tune_after_startup()

    async def main() -> None:
        announcer = asyncio.create_task(announce())
        await server.serve()
        announcer.cancel()

    # uvloop: the same asyncio, with an event loop and transports in C (each request costs
    # the server less; bench.control_cost measures it).
    uvloop.run(main())
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
    speaker = Speaker(
        address, source, Path(args.record_return) if args.record_return else None, name=args.name
    )

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
    """Mint an identity token with this installation's secret: for bots and operator scripts."""
    from townhall.api.identity import IdentityError, clean_display_name
    from townhall.api.tokens import IdentityKind, IdentityTokens
    from townhall.spaces.model import is_user_id, new_guest_id

    if args.user_id is not None and not is_user_id(args.user_id):
        print(f"townhall token: {args.user_id!r} is not a user id (u-… or g-…)", file=sys.stderr)
        return 2
    try:
        name = clean_display_name(args.name)
    except IdentityError as exc:
        print(f"townhall token: {exc.message}", file=sys.stderr)
        return 2
    config = load(data_dir=Path(args.data_dir) if args.data_dir else None)
    user_id = args.user_id or new_guest_id()
    kind = IdentityKind.ACCOUNT if user_id.startswith("u-") else IdentityKind.GUEST
    print(IdentityTokens(config.secret, args.ttl).mint(user_id, name, kind))
    return 0


def when(raw: str) -> float:
    """A start time as people type it: UNIX seconds, or an ISO 8601 time with its zone
    (`2026-12-05T18:00Z`, `2026-12-05 19:00+01:00`); a time without a zone is refused rather
    than guessed, since a reminder an hour off is worse than an error."""
    import datetime

    try:
        return float(raw)
    except ValueError:
        pass
    try:
        at = datetime.datetime.fromisoformat(raw.strip().replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a time: give UNIX seconds or e.g. 2026-12-05T18:00Z"
        ) from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{raw!r} has no time zone: add Z for UTC or an offset like +01:00"
        )
    return at.timestamp()


def _duration(raw: str) -> int:
    """Seconds from "90", "15m", "2h" or "7d"."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (raw[:-1], raw[-1]) if raw[-1:] in units else (raw, "s")
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {raw!r} (say 900, 15m, 2h or 7d)"
        ) from None


def _spaces(args: argparse.Namespace) -> int:
    """Operator commands over the HTTP API (so they work against any node, local or not)."""
    import json

    import httpx

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    base = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=20) as http:
            if args.action == "list":
                response = http.get("/api/spaces", params={"state": args.state})
            elif args.action == "create":
                body: dict[str, object] = {
                    "title": args.title,
                    "visibility": args.visibility,
                    "record": args.record,
                    "captions": args.captions,
                }
                if args.start is not None:
                    body["scheduled_start"] = args.start
                response = http.post("/api/spaces", json=body)
            elif args.action == "edit":
                changes = {
                    "title": args.title,
                    "description": args.description,
                    "scheduled_start": args.start,
                    "visibility": args.visibility,
                }
                edit = {name: value for name, value in changes.items() if value is not None}
                response = http.patch(f"/api/spaces/{args.space}", json=edit)
            elif args.action == "invite":
                invite = {"role": args.role, "max_uses": args.uses, "expires_in_s": args.expires}
                response = http.post(f"/api/spaces/{args.space}/invite-links", json=invite)
            elif args.action == "invites":
                response = http.get(f"/api/spaces/{args.space}/invite-links")
            elif args.action == "revoke-invite":
                response = http.delete(f"/api/spaces/{args.space}/invite-links/{args.link}")
            else:  # open, go-live, end, rotate-invite
                response = http.post(f"/api/spaces/{args.space}/{args.action}")
    except httpx.HTTPError as exc:
        print(f"townhall spaces: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        try:
            error = response.json()["error"]
            print(f"townhall spaces: {error['code']}: {error['message']}", file=sys.stderr)
        except (ValueError, KeyError, TypeError):
            print(f"townhall spaces: HTTP {response.status_code}", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2, ensure_ascii=False))
    return 0


def _webhooks(args: argparse.Namespace) -> int:
    """Manage webhook endpoints in this installation's database (run on the server's machine)."""
    import secrets

    from townhall.control_plane import open_config_records

    config = load(data_dir=Path(args.data_dir) if args.data_dir else None)

    async def main() -> int:
        records = await open_config_records(config)
        try:
            if args.action == "add":
                if not args.url.startswith(("https://", "http://")):
                    print("townhall webhooks: the URL must be http(s)://…", file=sys.stderr)
                    return 2
                secret = secrets.token_urlsafe(32)
                endpoint = await records.add_webhook(args.url, secret, args.events.split(","))
                print(f"webhook {endpoint.id} → {endpoint.url} for {', '.join(endpoint.events)}")
                print(f"signing secret (shown once): {secret}")
            elif args.action == "list":
                for endpoint in await records.webhooks():
                    print(f"{endpoint.id}\t{endpoint.url}\t{','.join(endpoint.events)}")
            elif not await records.remove_webhook(args.id):
                print(f"townhall webhooks: no webhook {args.id}", file=sys.stderr)
                return 1
            return 0
        finally:
            await records.close()

    return asyncio.run(main())


def _loadtest(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from townhall.loadtest import report, view
    from townhall.loadtest.rehearsal import Plan, PlanError, rehearse

    plan = Plan(
        url=args.space_url,
        listeners=args.listeners,
        ramp_s=args.ramp,
        duration_s=args.duration,
        storm=args.storm,
        storm_at_s=args.storm_at,
        reactions_per_s=args.reactions,
        hands_per_s=args.hands,
        processes=args.processes,
        speakers=args.speakers,
        tone_hz=args.tone,
        host_token=args.host_token,
        allow_remote=args.yes_i_operate_this_server,
        client=args.client,
    )
    console = Console(stderr=True)
    try:
        plan.check()
        with Live(view.table(plan, None, None), console=console, refresh_per_second=2) as live:
            result = rehearse(
                plan, lambda second, sample: live.update(view.table(plan, second, sample))
            )
    except PlanError as exc:
        print(f"townhall loadtest: {exc}", file=sys.stderr)
        return 2
    written = report.write(result, Path(args.out))
    console.print(result.verdict.summary)
    for path in written:
        console.print(f"wrote {path}")
    return 0 if result.verdict.held else 1


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
    serve.add_argument(
        "--role",
        choices=["all", "api", "media"],
        help="all: API and media in one process (default); api: never runs media; media: runs "
        "the Spaces placed on it (env TOWNHALL_ROLE)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (off: listeners are many; env TOWNHALL_ACCESS_LOG)",
    )
    serve.set_defaults(func=_serve)

    speak = sub.add_parser("speak", help="join a stage as a speaker bot and publish audio")
    speak.add_argument(
        "url", help="invite link (http://HOST/s/SPACE/stage#invite=…) or a Space link with --token"
    )
    speak.add_argument(
        "--token", help="identity token of someone already on the stage (e.g. the host's)"
    )
    speak.add_argument(
        "--name", default="Speaker bot", help="display name when joining by invite link"
    )
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
        "token", help="mint an identity token (for bots) with this installation's secret"
    )
    token.add_argument("--name", required=True, help="display name")
    token.add_argument(
        "--user-id", help="an existing user id (u-… or g-…); default: a new guest id"
    )
    token.add_argument(
        "--ttl", type=int, default=86400, help="seconds until it expires (default a day)"
    )
    token.add_argument("--data-dir", help="data directory holding the secret (default ./data)")
    token.set_defaults(func=_token)

    vapid = sub.add_parser(
        "vapid-key",
        help="print a new Web Push (VAPID) private key for TOWNHALL_VAPID_PRIVATE_KEY",
    )
    vapid.set_defaults(func=_vapid_key)

    spaces = sub.add_parser(
        "spaces", help="list, create, edit, open, start and end Spaces over the API"
    )
    spaces.add_argument(
        "--url", default="http://127.0.0.1:8080", help="server (default http://127.0.0.1:8080)"
    )
    spaces.add_argument("--token", help="identity token (townhall token, or from sign-in)")
    actions = spaces.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="public Spaces")
    listing.add_argument("--state", choices=["live", "upcoming"], default="live")
    create = actions.add_parser("create", help="create a Space (green room) or schedule one")
    create.add_argument("title")
    create.add_argument("--visibility", choices=["public", "unlisted", "private"], default="public")
    create.add_argument(
        "--start", type=when, help="scheduled start: UNIX seconds or e.g. 2026-12-05T18:00Z"
    )
    create.add_argument(
        "--record",
        action="store_true",
        help="record it (everyone sees a REC badge; replay, clips and the host's download)",
    )
    create.add_argument(
        "--captions",
        action="store_true",
        help="caption it live for listeners (kept with the recording; the server must allow it)",
    )
    edit = actions.add_parser(
        "edit",
        help="change the title or description; before it opens, the start time or visibility "
        "(everyone reminded by email hears of a new time)",
    )
    edit.add_argument("space")
    edit.add_argument("--title")
    edit.add_argument("--description")
    edit.add_argument("--start", type=when, help="UNIX seconds or e.g. 2026-12-05T18:00Z")
    edit.add_argument("--visibility", choices=["public", "unlisted", "private"])
    for name, about in (
        ("open", "open the green room (host)"),
        ("go-live", "go on air (host)"),
        ("end", "end the Space (host)"),
        ("rotate-invite", "a private Space's new invite link; old links stop working (host)"),
    ):
        action = actions.add_parser(name, help=about)
        action.add_argument("space")
    invite = actions.add_parser(
        "invite", help="make a stage invite link (host, co-hosts; prints its url)"
    )
    invite.add_argument("space")
    invite.add_argument("--role", choices=["speaker", "cohost"], default="speaker")
    invite.add_argument(
        "--uses", type=int, default=USES_DEFAULT, help=f"people it seats (1–{USES_MAX})"
    )
    invite.add_argument(
        "--expires",
        type=_duration,
        default=TTL_DEFAULT_S,
        help="how long it works: seconds, or 15m, 2h, 7d (5 minutes to 7 days; default 24h)",
    )
    invites = actions.add_parser("invites", help="a Space's invite links with their uses")
    invites.add_argument("space")
    revoke = actions.add_parser("revoke-invite", help="revoke one invite link")
    revoke.add_argument("space")
    revoke.add_argument("link", help="the link's id, as `invites` lists it")
    spaces.set_defaults(func=_spaces)

    hooks = sub.add_parser(
        "webhooks", help="add, list or remove webhook endpoints (local database)"
    )
    hooks.add_argument("--data-dir", help="data directory (default ./data)")
    hook_actions = hooks.add_subparsers(dest="action", required=True)
    add = hook_actions.add_parser("add", help="send events to a URL (prints the signing secret)")
    add.add_argument("url")
    add.add_argument(
        "--events",
        default="space.*,stage.*",
        help="comma-separated: space.scheduled, space.started, space.ended, stage.changed, space.*, *",
    )
    hook_actions.add_parser("list", help="the registered endpoints")
    remove = hook_actions.add_parser("remove", help="stop sending to an endpoint")
    remove.add_argument("id", type=int)
    hooks.set_defaults(func=_webhooks)

    load = sub.add_parser(
        "loadtest",
        help="rehearse an event: a synthetic audience of listener pages on a Space you operate",
    )
    load.add_argument(
        "space_url", help="the Space's link, http://HOST/s/SPACE (…?code= if private)"
    )
    load.add_argument("--listeners", type=int, default=100, help="listeners to ramp up to")
    load.add_argument("--ramp", type=float, default=10.0, help="seconds to reach them (default 10)")
    load.add_argument("--duration", type=float, default=60.0, help="seconds in all (default 60)")
    load.add_argument("--storm", type=int, default=0, help="a join storm of this many listeners…")
    load.add_argument("--storm-at", type=float, default=0.0, help="…arriving in 1 s at this second")
    load.add_argument("--reactions", type=float, default=0.0, help="reactions per second")
    load.add_argument(
        "--hands", type=float, default=0.0, help="raised (and lowered) hands per second"
    )
    load.add_argument("--speakers", type=int, default=0, help="speaker bots to invite (tone)")
    load.add_argument("--tone", type=float, default=440.0, help="the first bot's tone (Hz)")
    load.add_argument("--host-token", help="the host's token: needed to invite speaker bots")
    load.add_argument(
        "--processes", type=int, default=0, help="generator processes (default: one per core)"
    )
    load.add_argument(
        "--client",
        choices=["lean", "streams"],
        default="lean",
        help="the listeners' HTTP client: lean (default, many listeners per core) or streams "
        "(asyncio streams, the reference it is measured against)",
    )
    load.add_argument("--out", default="loadtest-report", help="report directory")
    load.add_argument(
        "--yes-i-operate-this-server",
        action="store_true",
        help="allow a host other than this machine (only a server you operate)",
    )
    load.set_defaults(func=_loadtest)
    return parser


def _vapid_key(_args: argparse.Namespace) -> int:
    """One key for every machine of a deployment: a browser subscribed with one server's public
    key only accepts pushes signed by the matching private key."""
    print(VapidKey.generate())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        jsonlog.configure(log_format(os.environ))
    except ConfigError as exc:
        print(f"townhall: configuration error: {exc}", file=sys.stderr)
        return 2
    for chatty in ("alembic", "aioice", "httpx"):  # their INFO lines are per connection / per check
        logging.getLogger(chatty).setLevel(logging.WARNING)
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
