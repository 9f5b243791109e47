"""Tool calling in the emulator, and its `/_emulator/` control API (in-process, and over HTTP from other clients)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import openai
import pydantic
import pytest

from deployai.testing import Emulator, EmulatorServer, VirtualClock
from tests.emulator_helpers import TEST_KEY, chat_body, error_of, raw_client, sse_chunks

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "default": 3},
                "hourly": {"type": "boolean"},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            },
        },
    },
}
TIME: dict[str, Any] = {"type": "function", "function": {"name": "get_time"}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
}


@pytest.fixture
def raw() -> Iterator[httpx.Client]:
    with raw_client(Emulator()) as client:
        yield client


def post(raw: httpx.Client, **body: Any) -> httpx.Response:
    return raw.post("/v1/chat/completions", json=chat_body(**body))


# Tool calling: what the emulator checks


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"function": {"name": "f"}}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "get weather"}}]}, "tools[0].function.name"),
        ({"tools": [TIME, TIME]}, "tools[1].function.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TIME], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
        ({"messages": [*ASK, {"role": "tool", "tool_call_id": "c1", "content": "21"}]}, "messages[1].tool_call_id"),
        ({"messages": [*ASK, CALLED, {"role": "user", "content": "and?"}]}, "messages[1].tool_calls"),
        ({"messages": [*ASK, {**CALLED, "tool_calls": [{"type": "function"}]}]}, "messages[1].tool_calls[0].id"),
        (
            {"messages": [*ASK, {**CALLED, "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]},
            "messages[1].tool_calls[0].function",
        ),
    ],
    ids=[
        "without-type",
        "bad-name",
        "same-name-twice",
        "parameters-not-a-schema",
        "choice-without-tools",
        "choice-names-no-tool",
        "result-without-call",
        "call-left-unanswered",
        "call-without-id",
        "arguments-not-a-string",
    ],
)
def test_tool_definitions_choices_and_turns_are_checked_like_the_api(
    raw: httpx.Client, body: dict[str, Any], param: str
) -> None:
    response = post(raw, **body)
    error = error_of(response)
    assert (response.status_code, error["code"], error["param"]) == (400, "invalid_parameter", param)


def test_a_well_formed_tool_conversation_is_accepted(raw: httpx.Client) -> None:
    result = {"role": "tool", "tool_call_id": "c1", "content": "21 degrees"}
    response = post(raw, messages=[*ASK, CALLED, result], tools=[WEATHER])
    assert response.json()["choices"][0]["message"]["content"] == "Tool result: 21 degrees"


def test_an_allowed_tools_choice_narrows_the_tools_the_emulator_calls(raw: httpx.Client) -> None:
    allowed = {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [TIME]}}
    response = post(raw, messages=ASK, tools=[WEATHER, TIME], tool_choice=allowed)
    (call,) = response.json()["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time"


@pytest.mark.parametrize(
    ("allowed", "param"),
    [
        ({"mode": "auto", "tools": ["get_time"]}, "tool_choice.allowed_tools.tools[0]"),
        ({"mode": "auto", "tools": [{"type": "function", "function": {}}]}, "tool_choice.allowed_tools.tools[0]"),
        ({"mode": "auto", "tools": [5]}, "tool_choice.allowed_tools.tools[0]"),
        ({"mode": "auto", "tools": "get_time"}, "tool_choice.allowed_tools.tools"),
        ({"mode": "sometimes", "tools": []}, "tool_choice.allowed_tools.mode"),
        ([1], "tool_choice.allowed_tools"),
    ],
)
def test_an_allowed_tools_choice_of_another_shape_is_the_apis_400_not_a_crash(
    raw: httpx.Client, allowed: Any, param: str
) -> None:
    # The SDK leaves such a choice to the server: the emulator's own answer to it was a bare 500.
    choice = {"type": "allowed_tools", "allowed_tools": allowed}
    response = post(raw, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice)
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == ("invalid_parameter", param)


def test_given_tools_the_emulator_calls_one_with_arguments_shaped_by_its_schema(raw: httpx.Client) -> None:
    choice = post(raw, messages=ASK, tools=[WEATHER, TIME]).json()["choices"][0]
    (call,) = choice["message"]["tool_calls"]
    assert (choice["finish_reason"], call["function"]["name"], call["id"]) == ("tool_calls", "get_weather", "call_1_0")
    arguments = json.loads(call["function"]["arguments"])
    assert arguments == {"city": "Paris", "unit": "celsius", "days": 3, "hourly": False, "where": {"lat": 0}}
    named = {"type": "function", "function": {"name": "get_time"}}
    choice = post(raw, messages=ASK, tools=[WEATHER, TIME], tool_choice=named).json()["choices"][0]
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": "{}"}
    choice = post(raw, messages=ASK, tools=[WEATHER], tool_choice="none").json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("You said: Weather in Paris?", "stop")


class _Node(pydantic.BaseModel):
    value: int
    next: _Node | None  # no default, as OpenAI's strict mode asks


class _Person(pydantic.BaseModel):
    name: str
    parent: _Person | None
    friend: _Person | None
    mentor: _Person | None
    rival: _Person | None


class _Constrained(pydantic.BaseModel):
    """Constraints pydantic writes into the JSON Schema of a model: each was filled with a value it refused."""

    share: Annotated[float, pydantic.Field(gt=0, lt=1)]
    narrow: Annotated[float, pydantic.Field(gt=0.5, lt=0.6)]
    code: Annotated[str, pydantic.Field(pattern="^[A-Z]{3}-[0-9]{2,4}$")]
    point: tuple[float, float]
    tags: Annotated[set[str], pydantic.Field(min_length=2)]
    ids: Annotated[frozenset[int], pydantic.Field(min_length=3)]
    minutes: Annotated[int, pydantic.Field(multiple_of=15, ge=1)]
    below: Annotated[int, pydantic.Field(lt=-5)]
    address: ipaddress.IPv4Address
    network: ipaddress.IPv6Network
    counts: Annotated[dict[str, int], pydantic.Field(min_length=1)]
    chain: _Node
    people: list[_Person]


@pytest.mark.parametrize("model", [_Constrained, _Person])
def test_the_emulators_own_arguments_and_json_answers_fit_the_pydantic_models_they_were_asked_for(
    raw: httpx.Client, model: type[pydantic.BaseModel]
) -> None:
    # A model that refers to itself four times was filled in ever deeper copies: seconds, megabytes,
    # and still refused at the depth where the filling stopped.
    schema = model.model_json_schema()
    tool = {"type": "function", "function": {"name": "record", "parameters": schema}}
    called = post(raw, messages=ASK, tools=[tool]).json()["choices"][0]["message"]["tool_calls"][0]
    model.model_validate_json(called["function"]["arguments"])
    form = {"type": "json_schema", "json_schema": {"name": "record", "schema": schema}}
    model.model_validate_json(post(raw, messages=ASK, response_format=form).json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    "kind", [{"const": "x"}, ["null", {"enum": [1]}], [["string"]]], ids=["dict", "in a list", "list"]
)
def test_a_schema_whose_type_is_no_name_is_filled_not_a_crash(raw: httpx.Client, kind: Any) -> None:
    # `{"type": {...}}` in a property answered 500 "unhashable type".
    parameters = {"type": "object", "properties": {"p": {"type": kind}}}
    tool = {"type": "function", "function": {"name": "record", "parameters": parameters}}
    response = post(raw, messages=ASK, tools=[tool])
    assert response.status_code == 200
    assert "p" in json.loads(response.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])


# The control API
# The control API


def control(raw: httpx.Client, method: str, action: str, body: Any = None) -> httpx.Response:
    if isinstance(body, bytes):  # JSON that httpx would not write, such as NaN
        return raw.request(method, f"/_emulator/{action}", content=body, headers={"authorization": ""})
    return raw.request(method, f"/_emulator/{action}", json=body, headers={"authorization": ""})


def test_replies_and_faults_scripted_over_http_are_used_and_listed() -> None:
    emulator = Emulator()
    with raw_client(emulator) as raw:
        reply = control(raw, "POST", "replies", {"content": "Hi from HTTP", "match": {"model": "openai/gpt-4o"}})
        fault = control(raw, "POST", "faults", {"fault": "fail", "status": 503, "match": {"route": "models"}})
        assert (reply.status_code, fault.status_code) == (200, 200)
        emulator.on(when=lambda r: True).cut_stream_after(1)
        rules = control(raw, "GET", "rules").json()["data"]
        assert [rule["kind"] for rule in rules] == ["reply", "fail", "cut_stream_after"]
        assert rules[2]["match"]["when"] == "<lambda>"  # a predicate never shows as "any request"
        emulator.reset()
        control(raw, "POST", "replies", {"content": "Hi from HTTP", "match": {"model": "openai/gpt-4o"}})
        control(raw, "POST", "faults", {"fault": "fail", "status": 503, "match": {"route": "models"}})
        assert post(raw).json()["choices"][0]["message"]["content"] == "Hi from HTTP"
        assert raw.get("/v1/models").status_code == 503
        assert control(raw, "GET", "rules").json()["data"] == []
        exchanges = control(raw, "GET", "requests").json()["data"]
        # Control requests are not recorded, and the key is not in what they show.
        assert [(e["route"], e["status"]) for e in exchanges] == [("chat", 200), ("models", 503)]
        assert exchanges[0]["headers"]["authorization"] == "Bearer [redacted]"
        assert TEST_KEY not in json.dumps(exchanges)
        assert control(raw, "POST", "reset").json() == {"reset": True}
        assert control(raw, "GET", "requests").json() == {"data": []}


def test_a_tool_call_and_stream_faults_can_be_scripted_over_http(raw: httpx.Client) -> None:
    call = {"name": "lookup", "arguments": {"q": "x"}, "id": "call_9"}
    control(raw, "POST", "replies", {"tool_calls": [call], "times": None})
    control(raw, "POST", "faults", {"fault": "error_event_after", "n_chunks": 2, "match": {"stream": True}})
    message = post(raw).json()["choices"][0]["message"]
    assert message["tool_calls"] == [
        {"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"x"}'}}
    ]
    chunks = sse_chunks(post(raw, stream=True).text)
    assert len(chunks) == 3
    assert chunks[-1]["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    ("method", "action", "body", "status", "param"),
    [
        ("POST", "replies", {"content": 3}, 400, "content"),
        ("POST", "replies", {"colour": "blue"}, 400, "colour"),
        ("POST", "replies", {"content": "x", "match": {"when": "always"}}, 400, "match"),
        ("POST", "replies", [1, 2], 400, "body"),
        ("POST", "faults", {"fault": "explode"}, 400, "fault"),
        ("POST", "faults", {"fault": "fail", "status": 200}, 400, "status"),
        ("POST", "faults", {"fault": "fail"}, 400, "status"),
        ("POST", "faults", {"fault": "stall", "seconds": 1, "times": 0}, 400, "times"),
        ("POST", "faults", {"fault": "fail", "status": 503, "headers": [["retry-after", "0"]]}, 400, "headers"),
        ("POST", "faults", {"fault": "fail", "status": 503, "headers": {"retry-after": 0}}, 400, "headers"),
        ("POST", "faults", {"fault": "error_event_after", "n_chunks": 1, "error": [[1, 2]]}, 400, "error"),
        ("POST", "replies", {"content": "x", "match": []}, 400, "match"),
        ("POST", "replies", {"content": "x", "match": {"route": "models"}}, 400, "route"),
        ("POST", "replies", b'{"content": "x", "extra": {"n": NaN}}', 400, "extra"),
        ("GET", "replies", None, 405, None),
        ("GET", "nothing", None, 404, None),
    ],
)
def test_bad_control_requests_get_a_clear_error_and_change_nothing(
    method: str, action: str, body: Any, status: int, param: str | None
) -> None:
    emulator = Emulator()
    with raw_client(emulator) as raw:
        response = control(raw, method, action, body)
    error = error_of(response)
    assert (response.status_code, error["param"]) == (status, param)
    assert (emulator.rules, emulator.requests) == ([], [])
    if status == 405:
        assert response.headers["allow"] == "POST"


def test_the_official_openai_sdk_gets_replies_scripted_over_http_from_the_loopback_server() -> None:
    with EmulatorServer(Emulator()) as server, httpx.Client(base_url=server.base_url.removesuffix("/v1")) as admin:
        call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
        admin.post("/_emulator/replies", json={"tool_calls": [call], "match": {"stream": True}}).raise_for_status()
        admin.post("/_emulator/replies", json={"content": "Plain.", "match": {"stream": False}}).raise_for_status()
        with openai.OpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0) as client:
            plain = client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}])
            stream = client.chat.completions.create(
                model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
            )
            arguments = "".join(
                c.choices[0].delta.tool_calls[0].function.arguments or ""
                for c in stream
                if c.choices and c.choices[0].delta.tool_calls and c.choices[0].delta.tool_calls[0].function
            )
        assert plain.choices[0].message.content == "Plain."
        assert json.loads(arguments) == {"city": "Oslo"}
        assert [e["streamed"] for e in admin.get("/_emulator/requests").json()["data"]] == [False, True]


def test_rules_are_numbered_from_1_in_each_emulator_and_again_after_a_reset() -> None:
    # Numbered across the process, a test's rules were named after those of the tests before it.
    Emulator().reply("elsewhere")
    emulator = Emulator()
    with raw_client(emulator) as raw:
        assert control(raw, "POST", "replies", {"content": "x"}).json()["id"] == 1
        assert emulator.fail(503).id == 2
        control(raw, "POST", "reset", None)
        assert control(raw, "POST", "replies", {"content": "x"}).json()["id"] == 1


def test_the_official_openai_sdk_retrieves_a_model_whose_slash_it_encodes() -> None:
    with (
        EmulatorServer(Emulator()) as server,
        openai.OpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0) as client,
    ):
        assert client.models.retrieve("anthropic/claude-3.5-sonnet").id == "anthropic/claude-3.5-sonnet"


def test_over_http_a_stall_takes_real_time_even_on_a_virtual_clock() -> None:
    # Clients over HTTP keep real time: a stall must still time them out, as the fixtures' server does.
    with EmulatorServer(Emulator(clock=VirtualClock())) as server:
        server.emulator.stall_next(5)
        with httpx.Client(timeout=0.2) as raw, pytest.raises(httpx.ReadTimeout):
            raw.get(server.base_url + "/models", headers={"authorization": f"Bearer {TEST_KEY}"})
