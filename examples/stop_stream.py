"""A "stop generating" button: a stream closed from another thread while it is being read.

`stream.close()` may be called from any thread (a UI's button, a handler that saw the user leave):
the reader stops at its next read, the loop simply ends, and the connection is released, so the same
client goes on serving. `with_raw_response` gives the HTTP answer before the first token arrives, and
the stream says when its first chunk came and how many it read.

    python examples/stop_stream.py
"""

from __future__ import annotations

import threading
import time

from _connect import example_client

from deployai import DeployAI

MODEL = "anthropic/claude-3.5-sonnet"
QUESTION = "Tell me the whole story of the web, from the first browser to the streaming chat APIs of today."


def stream_until_stopped(client: DeployAI) -> None:
    """Print the answer as it arrives, until a button in another thread stops it a moment after it starts."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    print(f"[{raw.status_code} {raw.headers['content-type']}, request {raw.request_id}: before any token]")
    stream = raw.parse()
    started = threading.Event()

    def press_stop() -> None:
        """The button: the user reads the first words, then stops the answer."""
        started.wait()
        time.sleep(0.3)
        stream.close()

    button = threading.Thread(target=press_stop)
    button.start()
    finish_reason = None
    try:
        with stream:
            for chunk in stream:
                if chunk.choices:
                    text, finish_reason = chunk.choices[0].delta.content, chunk.choices[0].finish_reason
                    if text:
                        print(text, end="", flush=True)
                        started.set()
    finally:  # an answer too short to be stopped, or one that failed, releases the button too
        started.set()
        button.join()
    print()
    ending = f"ended: {finish_reason}" if finish_reason else "stopped"
    first = stream.time_to_first_chunk
    print(f"[{ending} after {stream.chunk_count} chunks; the first came after {first or 0:.2f} s]")


def main() -> None:
    """Stop one answer, then ask again on the same client: the stopped stream left nothing behind."""
    # A delay between the emulator's tokens, so that the answer is still streaming when the button is pressed.
    with example_client(token_latency=0.05) as client:
        stream_until_stopped(client)
        completion = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Still there?"}])
        print(f"next call: {completion.choices[0].message.content!r}")


if __name__ == "__main__":
    main()
