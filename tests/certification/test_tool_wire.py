"""Tool calls, tool results and structured output as each provider spells them."""

from __future__ import annotations

from certq.certification.chat import ChatRequest, ChatResult, Message, ResponseSchema, ToolCall, ToolSpec
from certq.certification.tool_wire import (
    converse_messages,
    converse_tool_config,
    merge_tool_deltas,
    openai_message,
    openai_tool_calls,
    schema_tool,
    structured_from_tool,
)

CALL = ToolCall("get_secret_number", '{"key": "k1"}', "call_1")
SPEC = ToolSpec("get_secret_number", "d", {"type": "object"})


def test_streamed_tool_call_pieces_join_into_one_call_per_index() -> None:
    calls: dict[int, list[str]] = {}
    merge_tool_deltas(calls, [{"index": 0, "id": "c1", "function": {"name": "get_secret_number", "arguments": ""}}])
    merge_tool_deltas(calls, [{"index": 0, "function": {"arguments": '{"key": '}}])
    merge_tool_deltas(
        calls, [{"index": 0, "function": {"arguments": '"k1"}'}}, {"index": 1, "function": {"name": "x"}}]
    )
    assert calls == {0: ["c1", "get_secret_number", '{"key": "k1"}'], 1: ["", "x", ""]}


def test_openai_tool_turns_carry_the_call_and_its_id() -> None:
    assert openai_message(Message("assistant", "", tool_calls=(CALL,))) == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_secret_number", "arguments": '{"key": "k1"}'},
            }
        ],
    }
    assert openai_message(Message("tool", "7", tool_call_id="call_1")) == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": "7",
    }


def test_openai_arguments_sent_as_an_object_are_kept_as_json_text() -> None:
    calls = openai_tool_calls([{"id": "a", "function": {"name": "f", "arguments": {"key": "k"}}}, "junk"])
    assert calls == [ToolCall("f", '{"key":"k"}', "a")]


def test_converse_tool_results_are_user_turns_and_same_role_turns_merge() -> None:
    turns = converse_messages(
        (
            Message("user", "q"),
            Message("assistant", "", tool_calls=(CALL, ToolCall("other", "not json", "call_2"))),
            Message("tool", "7", tool_call_id="call_1"),
            Message("tool", "8", tool_call_id="call_2"),
        )
    )
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][0] == {
        "toolUse": {"toolUseId": "call_1", "name": "get_secret_number", "input": {"key": "k1"}}
    }
    assert turns[1]["content"][1]["toolUse"]["input"] == {}  # unparseable arguments cannot be echoed as an object
    assert [b["toolResult"]["toolUseId"] for b in turns[2]["content"]] == ["call_1", "call_2"]


def test_a_response_schema_becomes_a_forced_tool_whose_input_is_the_answer() -> None:
    request = ChatRequest.ask(
        "q", tools=(SPEC,), tool_choice="auto", response_schema=ResponseSchema("my answer!", {"type": "object"})
    )
    config = converse_tool_config(request)
    assert config is not None and config["toolChoice"] == {"tool": {"name": "my_answer_"}} == {
        "tool": {"name": schema_tool("my answer!")}
    }
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["get_secret_number", "my_answer_"]
    assert converse_tool_config(ChatRequest.ask("q")) is None
    required = converse_tool_config(ChatRequest.ask("q", tools=(SPEC,), tool_choice="required"))
    assert required is not None and required["toolChoice"] == {"any": {}}
    result = ChatResult(
        "", "tool_calls", "tool_use", None, None, 200, 0.1, tool_calls=[ToolCall("my_answer_", '{"a":1}', "t")]
    )
    structured_from_tool(result, "my_answer_")
    assert (result.text, result.structured_via, result.tool_calls) == ('{"a":1}', "tool", [])
