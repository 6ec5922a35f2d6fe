"""Schemathesis over the whole OpenAPI of a real `townhall serve`: every operation, as every kind of
caller, must answer something the OpenAPI documents (status, content type, headers, body schema)
and never a 5xx.

Two runs, both against one real server process on loopback (its uvicorn, its middleware, its
media node; the same thing a user reaches):

- **Stateless**: each operation's generated requests, valid ones and ones the schema refuses,
  each sent as one of the host, a speaker, a listener with a raised hand, an unrelated guest (by
  bearer token, or by session cookie as a browser sends it) and a stranger with no identity. Path
  parameters are the ids of the real Space and its people four times in five (a random id only
  ever meets a 404). One Space per run; the operations that take something away (remove, ban,
  hand over, end, sign out) come last, so that every other one meets the whole cast.
- **Stateful**: a Hypothesis state machine walks the API: any operation, as any of those
  callers, on any Space it knows of, including those its own requests created, and as anyone its
  own requests signed up; so sequences such as create → go live → invite → accept → mute → end
  → edit are reached.

Bounded for CI: a fixed number of examples per operation and of walks, derandomized (the same
requests on every run), no example database, no deadline (the machine may be busy), no shrinking
of a failed walk. The fuzzing takes about a minute on a 2-core machine at a load of 25 (the
server's start half a minute more); the FUZZ_* numbers below set it.
The server's requests come "through an edge" (TOWNHALL_TRUSTED_PROXIES=127.0.0.1) that names one
client address per Space's cast, so that the per-address limits of one run are its own.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from townhall.api.auth import COOKIE
from townhall.harness import Server, polite_request, start_server

pytestmark = pytest.mark.e2e

FUZZ_EXAMPLES_PER_OPERATION = 8  # each as one of CALLERS; × 2 modes × ~50 operations
FUZZ_STATEFUL_RUNS = 3
FUZZ_STATEFUL_STEPS = 40


@schemathesis.check
def not_a_server_error_but_shedding(ctx: Any, response: Response, case: Any) -> bool | None:
    """Never a 5xx, except a 503 with Retry-After: what a node answers by design when it has no
    room for another Space or sheds requests because its event loop is late (api/admission.py),
    which a CI machine at a load of 20 can make it do. Any other 5xx is a bug."""
    if response.status_code == 503 and response.headers.get("retry-after"):
        SHED.append(case.operation.label)
        return None
    return not_a_server_error(ctx, response, case)


SHED: list[str] = []  # the operations answered 503 + Retry-After, told at the end of each run
# Whatever the request, the answer must be one the OpenAPI documents.
CHECKS = [
    not_a_server_error_but_shedding,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Signing up and in cost ~0.1 s of argon2 CPU each on purpose (1-2 s on a loaded machine): a few
# examples say enough about them, and the walk leaves them out (guest names make its newcomers).
PASSWORD_OPERATIONS = {"POST /api/auth/signup": 3, "POST /api/auth/signin": 3}
CALLERS = ("host", "speaker", "listener", "guest", "browser guest", "stranger")
# Callers whose identity rides on the session cookie, as the web pages' does, with the Origin a
# page of this site sends (api/origins.py refuses cookie writes from other sites' pages).
COOKIE_CALLERS = frozenset({"browser guest"})

_addresses = (f"198.51.{n // 250 % 250}.{n % 250 + 1}" for n in itertools.count())


@dataclass
class World:
    """One Space and the people around it, made through the API as a client would, all from one
    client address of their own (told to the server in the trusted-proxy header), so that one
    world's per-address limits are not spent by the worlds before it."""

    url: str
    address: str
    space_id: str = ""
    tokens: dict[str, str | None] = field(default_factory=lambda: {"stranger": None})
    user_ids: dict[str, str] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens[caller]
        if not token:
            auth = {}
        elif caller in COOKIE_CALLERS:
            auth = {"Cookie": f"{COOKIE}={token}", "Origin": self.url}
        else:
            auth = {"Authorization": f"Bearer {token}"}
        return {"X-Forwarded-For": self.address, **auth}

    def call(self, caller: str, method: str, path: str, body: object = None) -> Any:
        """One setup call, as a well-behaved client makes it (a loaded machine can make the
        server shed: 503, retried after its Retry-After)."""
        answer = polite_request(
            method, f"{self.url}{path}", headers=self.headers(caller), json=body
        )
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None


def make_world(server: Server) -> World:
    """A Space in its green room with its host, a speaker the host invited, a listener with a raised
    hand, an unrelated guest and a stranger."""
    world = World(server.url, next(_addresses))
    for caller in (caller for caller in CALLERS if caller != "stranger"):
        made = world.call("stranger", "POST", "/api/auth/guest", {"display_name": caller.title()})
        world.tokens[caller], world.user_ids[caller] = made["token"], made["user_id"]
    world.space_id = world.call("host", "POST", "/api/spaces", {"title": "Fuzzed"})["space"]["id"]
    space = f"/api/spaces/{world.space_id}"
    world.call("host", "POST", f"{space}/invitations", {"user_id": world.user_ids["speaker"]})
    world.call("speaker", "POST", f"{space}/invitations/accept")
    world.call("listener", "POST", f"{space}/hand")
    return world


def end_world(world: World) -> None:
    """End the Space (if the fuzzing has not), so that its media clock stops."""
    httpx.post(
        f"{world.url}/api/spaces/{world.space_id}/end", headers=world.headers("host"), timeout=15
    )


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Each world's requests name its own client address (World.headers), as an edge would.
    server = start_server(
        tmp_path_factory.mktemp("fuzz") / "data", env={"TOWNHALL_TRUSTED_PROXIES": "127.0.0.1"}
    )
    yield server
    code = server.proc.stop()
    assert code == 0, f"server did not shut down cleanly (exit {code}):\n{server.proc.output()}"


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/api/openapi.json")


# Operations that take something away from the world's people (their seat, their Space, their
# session): fuzzed last, in this order, so that every other operation meets the whole world.
LAST = (
    "DELETE /api/spaces/{space_id}/hands/{user_id}",
    "POST /api/spaces/{space_id}/members/{user_id}/move-to-audience",
    "POST /api/spaces/{space_id}/members/{user_id}/remove-cohost",
    "POST /api/spaces/{space_id}/stage/leave",
    "POST /api/spaces/{space_id}/members/{user_id}/remove",
    "POST /api/spaces/{space_id}/members/{user_id}/ban",
    "POST /api/spaces/{space_id}/host",
    "POST /api/spaces/{space_id}/end",
    "POST /api/auth/signout",
)


def in_fuzzing_order(api_schema: Any) -> list[Any]:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert set(LAST) <= {op.label for op in operations}, "LAST names an operation that is gone"
    return sorted(operations, key=lambda op: LAST.index(op.label) if op.label in LAST else -1)


def aim_at_the_world(case: Any, world: World, data: st.DataObject) -> None:
    """Path parameters: mostly the ids of the real Space and its people (a generated id only
    ever meets a 404), sometimes what was generated."""
    real = {"space_id": [world.space_id], "user_id": sorted(world.user_ids.values())}
    for name in list(case.path_parameters):
        if name in real and data.draw(st.integers(0, 4), label=f"generated {name}?") > 0:
            case.path_parameters[name] = data.draw(st.sampled_from(real[name]), label=name)


def send(case: Any, world: World, caller: str) -> Response:
    """One request as `caller`; the answer must be one the OpenAPI documents, never a 5xx."""
    response = case.call(headers=world.headers(caller))
    case.validate_response(response, checks=CHECKS, headers=world.headers(caller))
    return response


def has_input_to_refuse(operation: Any) -> bool:
    """Whether the schema refuses some input of this operation: a body or query parameters (its
    path parameters are free-form strings, which no request can get wrong)."""
    return len(operation.body) > 0 or len(operation.query) > 0


def fuzz_operation(operation: Any, mode: GenerationMode, world: World) -> None:
    if mode is GenerationMode.NEGATIVE and not has_input_to_refuse(operation):
        return

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @settings(
        max_examples=PASSWORD_OPERATIONS.get(operation.label, FUZZ_EXAMPLES_PER_OPERATION),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def examples(case: Any, data: st.DataObject) -> None:
        aim_at_the_world(case, world, data)
        send(case, world, data.draw(st.sampled_from(CALLERS), label="caller"))

    examples()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_answers_as_documented_whoever_calls(
    mode: GenerationMode, api_schema: Any, fuzzed_server: Server
) -> None:
    """Valid requests (positive) and requests the schema refuses (negative), for every operation,
    each from one of the callers."""
    world = make_world(fuzzed_server)
    started = time.monotonic()
    failed: list[str] = []
    try:
        for operation in in_fuzzing_order(api_schema):
            try:
                fuzz_operation(operation, mode, world)
            except Exception as exc:  # every operation is tried; all that failed are reported
                failed.append(f"{operation.label}: {str(exc)[:2000]}")
    finally:
        end_world(world)
    print(f"fuzzing {mode}: {time.monotonic() - started:.1f} s, {len(SHED)} answers 503 so far")
    assert not failed, "\n\n".join(failed)


class WalkTheApi(RuleBasedStateMachine):
    """Any operation, as any caller, on any Space and person the walk knows of: the world's, and
    the Spaces and identities its own requests created (a new identity becomes a caller too)."""

    server: Server
    operations: list[Any]
    requests = 0  # over all walks, told at the end

    def __init__(self) -> None:
        super().__init__()
        self.world = make_world(self.server)
        self.created: list[tuple[str, str]] = []  # (Space id, caller who created it)
        self.strategies = {op.label: op.as_strategy() for op in self.operations}

    @rule(data=st.data())
    def request(self, data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(self.operations), label="operation")
        case = data.draw(self.strategies[operation.label], label="request")
        self.aim(case, data)
        caller = data.draw(st.sampled_from(sorted(self.world.tokens)), label="caller")
        response = send(case, self.world, caller)
        WalkTheApi.requests += 1
        kinds = response.headers.get("content-type") or [""]  # schemathesis: a list per header
        json_body = str(kinds[0]).startswith("application/json")
        if response.status_code < 300 and response.content and json_body:  # not a calendar file
            self.learn(caller, response.json())

    def aim(self, case: Any, data: st.DataObject) -> None:
        spaces = [self.world.space_id, *(space for space, _ in self.created)]
        real = {"space_id": spaces, "user_id": sorted(self.world.user_ids.values())}
        for name in list(case.path_parameters):
            if name in real and data.draw(st.integers(0, 4), label=f"generated {name}?") > 0:
                case.path_parameters[name] = data.draw(st.sampled_from(real[name]), label=name)

    def learn(self, caller: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        space = body.get("space")
        known = {self.world.space_id, *(space_id for space_id, _ in self.created)}
        if isinstance(space, dict) and space.get("id") not in known:
            self.created.append((str(space["id"]), caller))
        if isinstance(body.get("token"), str) and isinstance(body.get("user_id"), str):
            newcomer = f"newcomer {len(self.world.tokens)}"
            self.world.tokens[newcomer] = body["token"]
            self.world.user_ids[newcomer] = body["user_id"]

    def teardown(self) -> None:
        """End every Space the walk opened (their media clocks stop), then the world's."""
        for space_id, creator in self.created:
            httpx.post(
                f"{self.world.url}/api/spaces/{space_id}/end",
                headers=self.world.headers(creator),
                timeout=15,
            )
        end_world(self.world)


def test_sequences_of_calls_answer_as_documented(api_schema: Any, fuzzed_server: Server) -> None:
    """A state machine walks the API (create, go live, invite, accept, mute, ban, end, edit, sign
    out, ... in any order); every answer on the way is documented and none is a 5xx."""
    WalkTheApi.server = fuzzed_server
    # Hypothesis leans to the first of a list: the walk starts from creating Spaces.
    operations = [op for op in in_fuzzing_order(api_schema) if op.label not in PASSWORD_OPERATIONS]
    WalkTheApi.operations = sorted(operations, key=lambda op: op.label != "POST /api/spaces")
    started = time.monotonic()
    run_state_machine_as_test(
        WalkTheApi,
        settings=settings(
            max_examples=FUZZ_STATEFUL_RUNS,
            stateful_step_count=FUZZ_STATEFUL_STEPS,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded even when failing
        ),
    )
    print(
        f"stateful: {time.monotonic() - started:.1f} s, {WalkTheApi.requests} requests,"
        f" {len(SHED)} answers 503 so far"
    )
