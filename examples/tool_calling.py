"""Tool calling: the model asks for a function call, the app runs it, and the model answers with its result.

Two turns: the first request offers a `get_weather` tool and the model answers with a call (its
arguments streamed as deltas and put together by `get_final_completion()`); the app runs the function
and sends its result back as a `tool` message; the second answer is text. With no `DEPLOYAI_API_KEY`,
the local emulator answers: it calls the offered tool with arguments that fit its schema, and then
repeats the tool's result.

    python examples/tool_calling.py
"""

from __future__ import annotations

import json
from typing import Any

from _connect import example_client

from deployai import DeployAI
from deployai.types import ChatCompletionMessageParam, ToolCallParam

MODEL = "openai/gpt-4o"
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city, for example Paris."},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]


def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
    """The app's own function (a fixed answer here; a real app would ask a weather service)."""
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit, "sky": "clear"}


def ask(client: DeployAI, question: str) -> str:
    """Ask `question` with the tool offered, run the calls the model makes, and return its final answer."""
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": question}]
    with client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, stream=True) as stream:
        first = stream.get_final_completion().choices[0]
    calls = first.message.tool_calls or []
    if not calls:
        return first.message.content or ""
    # The assistant's turn goes back into the conversation, calls and all, before their results.
    sent_calls: list[ToolCallParam] = [
        {"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in calls
    ]
    messages.append({"role": "assistant", "content": first.message.content, "tool_calls": sent_calls})
    for call in calls:
        arguments = json.loads(call.function.arguments)
        print(f"-> the model calls {call.function.name}({arguments})")
        result = get_weather(**arguments)
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    return second.choices[0].message.content or ""


def main() -> None:
    """Run the two turns against the real API when a key is set, else against the local emulator."""
    with example_client() as client:
        print(ask(client, "What is the weather like in Paris?"))


if __name__ == "__main__":
    main()
