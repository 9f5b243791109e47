"""A batch from JSON Lines: requests queued one per line, answered with `as_completed`, results written back.

A service queues requests as `ChatCompletionRequest` lines (the exact body `create` sends), replays
them later, and writes one JSON line per result as each call finishes, with its request's place in
the queue: an answer, or the error that ended that request (one failure never loses the others, and
a batch interrupted midway keeps every line already written). `create_many` would give the same
results as one list, in input order, at the end. With no `DEPLOYAI_API_KEY` it runs against the
local emulator.

    python examples/batch_jsonl.py
"""

from __future__ import annotations

import io
import json
import sys
from typing import TextIO

from _connect import example_client

from deployai import DeployAI, DeployAIError
from deployai.types import ChatCompletionRequest

QUESTIONS = [
    ("openai/gpt-4o", "What is a token?"),
    ("anthropic/claude-3.5-sonnet", "What is a context window?"),
    ("nobody/no-such-model", "This one fails: the API knows no such model."),
    ("google/gemini-2.0-flash", "What is streaming?"),
]


def queue(out: TextIO) -> None:
    """Write the requests as JSON Lines, as a producer would put them on a queue or in a file."""
    for model, question in QUESTIONS:
        request = ChatCompletionRequest(model=model, messages=[{"role": "user", "content": question}], max_tokens=50)
        out.write(request.model_dump_json(exclude_unset=True) + "\n")


def answer(client: DeployAI, lines: TextIO, out: TextIO) -> None:
    """Read the queued requests back, answer them four at a time, and write one result line each as it comes."""
    requests = [ChatCompletionRequest.model_validate_json(line) for line in lines if line.strip()]
    for index, result in client.chat.completions.as_completed(requests, concurrency=4):
        line: dict[str, object] = {"index": index, "model": requests[index].model}
        if isinstance(result, DeployAIError):
            status = getattr(result, "status_code", None)  # None when no answer came (a connection error)
            line |= {"error": type(result).__name__, "status": status}
        else:
            line["answer"] = result.choices[0].message.content
        out.write(json.dumps(line) + "\n")
        out.flush()  # on disk before the next result: an interrupted batch keeps it


def main() -> None:
    """Queue the requests, then answer them, against the real API or the local emulator."""
    queued = io.StringIO()
    queue(queued)
    queued.seek(0)
    with example_client() as client:
        answer(client, queued, sys.stdout)


if __name__ == "__main__":
    main()
