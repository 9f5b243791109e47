"""What a service sees of each call: the SDK's log lines in its own logging, a retry metric, and timings.

The `deployai` logger is silent until it is given a level: here DEBUG, through the app's own logging
set-up (one line per answer, one per retry; API keys are redacted from every record). `on_retry` is
called before each retry, for a metrics system, and every answer says how many retries it took, how
long, and how much of the rate-limit window is left. Against the local emulator (no `DEPLOYAI_API_KEY`)
the first attempt meets a scripted 503, so that a retry shows. For a quick look without any set-up,
`DEPLOYAI_LOG=debug` prints the same lines to stderr.

    python examples/logging_and_metrics.py
"""

from __future__ import annotations

import collections
import logging
import sys

from _connect import base_url_and_key, emulator_fault

import deployai
from deployai import DeployAI

RETRIES: collections.Counter[str] = collections.Counter()  # a stand-in for a Prometheus counter


def count_retry(retry: int, wait_seconds: float, error: deployai.APIError) -> None:
    """The client's `on_retry`: count each retry by the kind of error that caused it."""
    RETRIES[type(error).__name__] += 1


def main() -> None:
    """Make one call that is retried once, and show what the logs, the metric and the answer say about it."""
    logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("deployai").setLevel(logging.DEBUG)  # the app's choice; nothing else is needed
    with base_url_and_key() as (base_url, api_key):
        emulator_fault(base_url, fault="fail", status=503, headers={"retry-after": "0.1"})
        with DeployAI(base_url=base_url, api_key=api_key, on_retry=count_retry) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}]
            )
    completion = raw.parse()
    print(f"answer: {completion.choices[0].message.content!r}, request {raw.request_id}")
    print(f"retries: {raw.retries}; last attempt took {raw.elapsed.total_seconds() * 1000:.0f} ms")
    limit, seconds = raw.rate_limit, raw.rate_limit.seconds_until_reset()
    if seconds is not None:  # None: the server sent no rate-limit headers
        print(f"rate limit: {limit.remaining}/{limit.limit} requests left, the window resets in {seconds:.0f} s")
    print(f"retry metric: {dict(RETRIES)}")


if __name__ == "__main__":
    main()
