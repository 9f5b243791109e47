"""The `deployai` command: try a model from a terminal, list the models, run the local emulator.

```console
$ deployai chat "Hello!" -m openai/gpt-4o      # streams the answer
$ echo "Summarize this" | deployai chat -      # the prompt from stdin
$ deployai models --json
$ deployai emulator --port 8787
```

The key and base URL come from `--api-key` / `--base-url`, else `DEPLOYAI_API_KEY` /
`DEPLOYAI_BASE_URL`, as for the clients. An error prints one line on stderr and exits with the code
of its kind (`EXIT_CODES`); Ctrl+C stops at once with code 130 and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    DeployAIError,
    InvalidParameterError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from ._logging import MIN_KEY_LENGTH, redact
from ._sse import SURROGATE, has_surrogates
from ._version import __version__

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    from ._client import DeployAI

__all__ = ["EXIT_CODES", "main"]

DEFAULT_MODEL: Final = "openai/gpt-4o"
INTERRUPTED: Final = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl+C
IO_ERROR: Final = 1  # stdout closed, a full disk: as `ls` or `echo` exit when they cannot write

EXIT_CODES: Final[tuple[tuple[type[BaseException], int, str], ...]] = (
    (InvalidParameterError, 3, "a bad argument, refused before sending"),
    (AuthenticationError, 4, "the API key was refused (401)"),
    (PermissionDeniedError, 4, "the key may not do this (403)"),
    (NotFoundError, 5, "no such model or endpoint (404)"),
    (RateLimitError, 6, "rate limited (429), after retries"),
    (APIResponseValidationError, 9, "the answer could not be read"),
    (APIConnectionError, 8, "no connection, or a timeout, after retries"),
    (APIStatusError, 7, "any other error status (400, 409, 422, 5xx), after retries"),
    (DeployAIError, 3, "a configuration error, such as no API key"),
)
"""(exception class, exit code, meaning), most specific first; 2 is a usage error, 130 an interruption."""


def _exit_code(error: BaseException) -> int:
    return next(code for kind, code, _ in EXIT_CODES if isinstance(error, kind))


def _epilog() -> str:
    rows = sorted(EXIT_CODES, key=lambda row: row[1])
    codes = "\n".join(f"  {code:>3}  {kind.__name__}: {meaning}" for kind, code, meaning in rows)
    return (
        f"exit codes:\n    0  success\n    1  an input or output error (stdout closed, a full disk)\n"
        f"    2  a usage error (see --help)\n{codes}\n  130  interrupted (Ctrl+C)"
    )


class _Parser(argparse.ArgumentParser):
    """argparse, with any API key taken out of its error messages (which repeat what was typed)."""

    _typed: Sequence[str] = ()
    commands: Mapping[str, argparse.ArgumentParser] = {}  # the top-level parser's: each command's parser

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviated options: `--ap KEY` was taken for `--api-key`, and echoed in usage errors
        # where no rule could tell it for a key.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse does, keeping what was typed: a key in it is taken out of the errors."""
        self._typed = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        """Print the help on stdout; raise `OSError` if it cannot be written (stdout closed, a full disk)."""
        if file is None and sys.stdout is None:  # argparse would print it on stderr
            raise OSError(errno.EBADF, "standard output is closed")
        super().print_help(file)

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        if not message:
            return
        stdout = sys.stdout
        if stdout is not None and file == stdout:  # identity (`is` would make mypy take stdout for `file`)
            # argparse ignores a failed write: `--help` would exit 0 with nothing printed.
            stdout.write(message)
            stdout.flush()
            return
        target = sys.stderr if file is None else file
        with contextlib.suppress(OSError, AttributeError):  # stderr closed too: nowhere left to say it
            target.write(message)

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error, the key redacted, and exit with status 2."""
        # Its own options (`--max-tokens`) are no credentials: a typo in their values stays readable.
        for key in _typed_keys(self._typed, frozenset(self._option_string_actions) - {"--api-key"}):
            message = redact(message, key)
        if sys.stderr is not None:  # closed (`2>&-`), argparse would print the usage on stdout instead
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {redact(message)}\n")


class _Version(argparse.Action):
    """`--version`, as argparse's, but a version that cannot be written is an error (exit 1), not a silent 0."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings, dest, default=argparse.SUPPRESS, nargs=0, help="show program's version number and exit"
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        stdout = sys.stdout
        if stdout is None:  # argparse would print it on stderr, or nowhere and exit 0 when that is closed too
            raise OSError(errno.EBADF, "standard output is closed")
        stdout.write(f"deployai {__version__}\n")
        stdout.flush()
        parser.exit()


_CREDENTIAL_WORDS: Final = ("key", "token", "secret", "password", "passwd", "auth", "credential")


def _typed_keys(typed: Sequence[str], own: frozenset[str] = frozenset()) -> list[str]:
    """What was typed as an API key, in any shape, to be taken out of a usage error.

    The value of `--api-key`, of an abbreviation of it, or of an option named like a credential
    (`--api_key`, `-api-key`, `--key`, `--token`, `--secret`, `--password`, `--auth`), given as
    `--name=value`, as the next word, or in the same word after a space (`"--api-key KEY"`, as a
    list of arguments may hold it), unless it is one of the parser's `own` options. No client
    exists yet to know the key by, and a key not shaped like `sk-...` has no pattern.
    """
    keys = []
    for index, word in enumerate(typed):
        if not word.startswith("-"):
            continue
        name, equals, value = word.partition("=")
        if not equals:
            name, equals, value = word.partition(" ")
        if name in own:
            continue
        spelled = name.lower().replace("_", "-").lstrip("-")
        abbreviated = len(spelled) > 0 and "api-key".startswith(spelled)  # `--a`, `--ap`: refused, and echoed
        if (
            abbreviated
            or spelled == "k"
            or any(part in spelled for part in _CREDENTIAL_WORDS)
            or _mistyped_api_key(spelled)
        ):
            if not equals and index + 1 < len(typed) and not typed[index + 1].startswith("--"):
                value = typed[index + 1]
            keys.append(value)
    return [key for key in keys if len(key) >= MIN_KEY_LENGTH]  # a shorter one would redact ordinary words


def _mistyped_api_key(spelled: str) -> bool:
    """Whether an option name not the parser's is `api-key` mistyped (`api-kye`, `apu-key`, `ap-key`)."""
    import difflib  # only for a usage error

    return difflib.SequenceMatcher(None, spelled, "api-key").ratio() >= _TYPO_LIKENESS


_TYPO_LIKENESS: Final = 0.75  # `api-kye` and `api-ket` are 0.86 like `api-key`, `max-tokens` 0.24


def _connection_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument("--api-key", help="the API key (default: $DEPLOYAI_API_KEY)")
    group.add_argument("--base-url", help="the API base URL (default: $DEPLOYAI_BASE_URL, else the DeployAI API)")
    group.add_argument(
        "--timeout",
        type=float,
        help="seconds to wait to connect, and for each read of the answer (default 600, and 5 to connect)",
    )
    group.add_argument("--max-retries", type=int, help="retries of a failed call (default 2)")
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="send the key over plain http:// to a host that is not this machine (a gateway on your network)",
    )
    return common


def _parser() -> _Parser:
    from .testing.__main__ import add_serve_arguments

    parser = _Parser(
        prog="deployai",
        description="The DeployAI API from a terminal.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    # The commands that call the API: the connection options, and the exit codes in their help.
    calling: dict[str, Any] = {
        "parents": [_connection_options()],
        "epilog": _epilog(),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    chat = commands.add_parser(
        "chat",
        help="ask a model and stream its answer",
        description="Ask a model and stream its answer to stdout.",
        **calling,
    )
    chat.add_argument("prompt", help="the prompt; '-' reads it from stdin")
    chat.add_argument("-m", "--model", default=DEFAULT_MODEL, help=f"the model id (default {DEFAULT_MODEL})")
    chat.add_argument("-s", "--system", help="a system message to send first")
    chat.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2")
    chat.add_argument("--max-tokens", type=int, help="the most tokens to generate")
    chat.add_argument("--json", action="store_true", help="print the final completion as JSON instead of the text")
    models = commands.add_parser(
        "models", help="list the models", description="List the models: id, provider and context window.", **calling
    )
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    emulator = commands.add_parser(
        "emulator",
        help="run the local emulator (as python -m deployai.testing serve)",
        description="Serve the local DeployAI emulator on loopback until Ctrl+C; the first line is its base URL.",
    )
    add_serve_arguments(emulator)
    parser.commands = commands.choices
    return parser


def _client(args: argparse.Namespace) -> DeployAI:
    from ._client import DeployAI

    options: dict[str, Any] = {"api_key": args.api_key, "base_url": args.base_url}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.max_retries is not None:
        options["max_retries"] = args.max_retries
    if args.allow_insecure_http:
        options["allow_insecure_http"] = True
    return DeployAI(**options)


def _chat(args: argparse.Namespace, out: _Output) -> None:
    prompt = _stdin_prompt() if args.prompt == "-" else args.prompt
    if not prompt.strip():  # `deployai chat "$QUESTION"` with the variable unset: no call to pay for
        raise InvalidParameterError("prompt", prompt, "text that is not empty ('-' reads it from stdin)")
    messages: list[dict[str, str]] = [] if args.system is None else [{"role": "system", "content": args.system}]
    messages.append({"role": "user", "content": prompt})
    params: dict[str, Any] = {"model": args.model, "messages": messages}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    if args.json:  # a whole answer: unlike a stream's, it has its usage
        with _client(args) as client:
            completion = client.chat.completions.create(**params)
        out.write(_json_text(completion.model_dump(mode="json")) + "\n")
        return
    held = ""  # a piece's last half of a character, whose other half may open the next piece
    wrote = False
    with _client(args) as client, client.chat.completions.create(**params, stream=True) as stream:
        try:
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.index == 0:  # the one answer asked for: never another choice's text
                        text = choice.delta.content or choice.delta.refusal  # a refusal is the answer there is
                        if text:
                            text, held = _characters(held + text)
                            if text:
                                out.write(text)
                                out.flush()
                                wrote = True
        except BaseException:
            # A stream that broke ends the line its answer was on; one that broke before any text
            # writes nothing (a script appending answers to a file gets no empty line).
            _end_answer(out, held, ended=wrote or bool(held))
            raise
        _end_answer(out, held, ended=True)  # an empty answer is an empty line


def _end_answer(out: _Output, held: str, *, ended: bool) -> None:
    """End the line of a streamed answer, writing a half character still held as U+FFFD."""
    if held:
        # An encoding with no U+FFFD (ascii, cp1252) must not put its error in place of the stream's.
        with contextlib.suppress(_UnwritableError):
            out.write("\N{REPLACEMENT CHARACTER}")
    if ended:
        out.write("\n")


def _characters(text: str) -> tuple[str, str]:
    """`text` as characters stdout can write, and a high surrogate it ends with, held for the next piece.

    A gateway that cuts text in UTF-16 units sends an emoji's two halves in two chunks, each a lone
    surrogate, which no encoding writes: the halves are joined, and one never matched is written as
    U+FFFD.
    """
    if not has_surrogates(text):
        return text, ""
    held = ""
    if "\ud800" <= text[-1] <= "\udbff":
        text, held = text[:-1], text[-1]
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"), held


def _json_text(data: object) -> str:
    """`data` as indented JSON, with any lone surrogate a server sent written as the escape it came as."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if not has_surrogates(text):
        return text
    return SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def _stdin_prompt() -> str:
    if sys.stdin is None:  # started with it closed (`<&-`)
        raise InvalidParameterError("prompt", "-", "text on stdin, which is closed")
    data = _read_to_end(sys.stdin.buffer)
    try:
        prompt = data.decode("utf-8").rstrip("\n")
    except UnicodeDecodeError as exc:  # `git diff | deployai chat -` over a file in another encoding
        raise InvalidParameterError("prompt", f"{len(data)} bytes on stdin", f"UTF-8 text ({exc.reason})") from None
    if not prompt.strip():  # `git diff | deployai chat -` with nothing to diff: no call to pay for
        raise InvalidParameterError("prompt", "-", "text on stdin, which was empty")
    return prompt


def _read_to_end(stdin: Any) -> bytes:
    """All of `stdin`, to its end, even if it was left non-blocking (by a parent, or a crashed program)."""
    try:
        descriptor = stdin.fileno()
        blocking = os.get_blocking(descriptor)
    except (OSError, AttributeError, ValueError):  # a stand-in for stdin (a test's), or no such question here
        blocking = True
    if blocking:  # Python's own reading, which on a Windows console decodes what is typed there
        return bytes(stdin.read())
    pieces: list[bytes] = []
    while True:
        try:
            # Bytes not through Python's buffer: a non-blocking read there gives what has come so
            # far (a prompt cut short, silently) or None.
            piece = os.read(descriptor, _READ_SIZE)
        except BlockingIOError:
            select.select([descriptor], [], [])
            continue
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)


_READ_SIZE: Final = 1 << 20


def _models(args: argparse.Namespace, out: _Output) -> None:
    with _client(args) as client:
        models = client.models.list()
    if args.json:
        out.write(json.dumps([model.model_dump(mode="json") for model in models], indent=2) + "\n")
        return
    rows = [("ID", "PROVIDER", "CONTEXT")]
    # A server's names, as its error messages: a table line is no place for control sequences.
    rows += [
        (_printable(m.id), _printable(m.provider or ""), f"{m.context_window:,}" if m.context_window else "")
        for m in models
    ]
    # Columns as wide as their widest cell on a terminal: a CJK character takes two places there.
    widths = [max(_shown_width(row[i]) for row in rows) for i in range(3)]
    for model_id, provider, context in rows:
        out.write(
            f"{_pad(model_id, widths[0])}  {_pad(provider, widths[1])}  {' ' * (widths[2] - len(context))}{context}\n"
        )


def _shown_width(text: str) -> int:
    """How many places `text` takes on a terminal: two for a wide (CJK) character, none for a mark or a format one."""
    if text.isascii():
        return len(text)
    import unicodedata  # only for a table with such names

    # Thai and Devanagari vowel signs are marks of combining class 0: their category tells them.
    return sum(
        0 if unicodedata.category(c) in _NO_PLACE else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


_NO_PLACE: Final = frozenset(("Mn", "Me", "Cf"))


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _shown_width(text))


@contextlib.contextmanager
def _ctrl_c_exits() -> Iterator[None]:
    """Within, Ctrl+C ends the process at once: one line on stderr, exit status 130.

    Python's own Ctrl+C raises `KeyboardInterrupt` wherever the main thread happens to be: inside a
    finalizer, where it is ignored and the command goes on waiting for the server, or between taking
    a lock and the `try` that releases it, after which closing the client waits on that lock for
    ever. The process exits instead (the system closes its connections). Only for the command run
    as a process, and only if Ctrl+C is Python's own: a shell that starts it in the background with
    Ctrl+C ignored keeps it ignored.
    """
    if (
        threading.current_thread() is not threading.main_thread()  # only the main thread handles signals
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    # Where the line goes: stderr's descriptor as it is now. Started with stderr closed, descriptor 2
    # may since have become a connection to the server, which must not receive it.
    try:
        err: int | None = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # None, or a stand-in with no descriptor
        err = None

    def interrupted() -> None:
        if os.isatty(1):  # a terminal: end the line the answer was on (a full pipe could block here)
            with contextlib.suppress(Exception):  # the main thread may have been writing to stdout
                sys.stdout.flush()
            with contextlib.suppress(OSError):
                os.write(1, b"\n")
        if err is not None:
            with contextlib.suppress(OSError):
                os.write(err, b"deployai: interrupted\n")
        os._exit(INTERRUPTED)

    if not hasattr(signal, "pthread_sigmask"):  # Windows: the handler, run by the main thread
        previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted())
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
        return

    # A handler runs when the main thread next looks for signals: a Ctrl+C that lands just before it
    # blocks in a read of the answer is seen only once the read ends (up to its read timeout). So
    # Ctrl+C is held back from every thread, and one thread of its own waits for it.
    def watch() -> None:
        signal.sigwait({signal.SIGINT})
        # A second Ctrl+C ends the process whatever the first one waits on below (a full pipe).
        threading.Thread(target=lambda: (signal.sigwait({signal.SIGINT}), os._exit(INTERRUPTED)), daemon=True).start()
        interrupted()

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        threading.Thread(target=watch, name="deployai-ctrl-c", daemon=True).start()  # it inherits the mask
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def main(argv: Sequence[str] | None = None, *, exit_on_ctrl_c: bool = False) -> int:
    """Run the `deployai` command; returns its exit status.

    Ctrl+C makes it return 130. With `exit_on_ctrl_c` (the command run as a process), Ctrl+C during
    `chat` or `models` ends the process at once with 130 instead (see `_ctrl_c_exits`), and output
    that could not be written is dropped, so that Python's own last flush at exit cannot fail too and
    change the exit status.
    """
    args = None
    try:
        parser = _parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # reported by the command's own parser, with its usage (`deployai chat: error: ...`)
            command = parser.commands[args.command]
            if isinstance(command, _Parser):
                command._typed = parser._typed  # a key typed before the command is taken out too
            command.error("unrecognized arguments: " + " ".join(unknown))
        if args.command == "emulator":
            from .testing.__main__ import serve

            _stdout()  # where its base URL goes
            return serve(args, "deployai emulator")
        with _ctrl_c_exits() if exit_on_ctrl_c else contextlib.nullcontext():
            out = _stdout()
            (_chat if args.command == "chat" else _models)(args, out)
            out.flush()  # here, where a failure gets its exit status, not at exit
    except KeyboardInterrupt:
        _say("deployai: interrupted")
        return INTERRUPTED
    except DeployAIError as error:
        try:
            sys.stdout.flush()  # the answer so far, if it can still be written
        except (OSError, AttributeError):
            _drop_stdout(exit_on_ctrl_c)
        one_line = " ".join(str(error).split())  # a server's message may hold line breaks
        if not isinstance(error, APIError):  # the SDK's own words, for Python code (never a server's)
            for advice, option in _CLI_ADVICE:
                one_line = one_line.replace(advice, option)
        if isinstance(error, InvalidParameterError) and getattr(args, error.param, None) is not None:
            # "max_retries must be ..." names the Python parameter; the user typed `--max-retries`
            # (a `base_url` from $DEPLOYAI_BASE_URL keeps its name: no option was typed).
            one_line = one_line.replace(error.param, _OPTION_OF_PARAMETER.get(error.param, error.param), 1)
        _say(f"deployai: {type(error).__name__}: {_printable(one_line)}")
        return _exit_code(error)
    except BrokenPipeError:  # `deployai models | head`: the reader left, which is not an error
        _drop_stdout(exit_on_ctrl_c)
        with contextlib.suppress(OSError, AttributeError):
            sys.stderr.close()
        return 0
    except OSError as error:  # stdout closed, a full disk
        _drop_stdout(exit_on_ctrl_c)
        _say(f"deployai: {error.strerror or error}")
        return IO_ERROR
    except _UnwritableError as error:
        _say(
            f"deployai: the output holds characters that stdout's encoding ({error}) cannot write; "
            "set PYTHONIOENCODING=utf-8"
        )
        return IO_ERROR
    return 0


_CLI_ADVICE: Final = (
    ("pass allow_insecure_http=True to the client", "pass --allow-insecure-http"),
    ("pass api_key=... to the client", "pass --api-key"),
    ("check api_key or DEPLOYAI_API_KEY", "check --api-key or DEPLOYAI_API_KEY"),
    (", an httpx.Timeout, or None for no limit", ""),
)

# The client's and the request's parameters that `chat` and `models` take as options.
_OPTION_OF_PARAMETER: Final = {
    "base_url": "--base-url",
    "timeout": "--timeout",
    "max_retries": "--max-retries",
    "model": "--model",
    "temperature": "--temperature",
    "max_tokens": "--max-tokens",
}


def _printable(text: str) -> str:
    r"""`text` with what a terminal would act on written out as escapes (`\x1b`, `\u202e`).

    A server's message may hold control sequences: they would retitle the terminal, erase the line,
    or write a line of their own over it. Text with escapes written out has its own backslashes
    doubled, so that a server's literal `\x1b` does not read as an escape it never sent.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode("ascii") for char in text
    )


class _UnwritableError(Exception):
    """The output holds characters that stdout's encoding (the message) cannot write."""


class _Output:
    """Where `chat` and `models` write: stdout, whose encoding errors are told apart from any other's."""

    __slots__ = ("_stream",)

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        """Write `text`; `_UnwritableError` if stdout's encoding (a Windows code page, ascii) has no room for it."""
        try:
            self._stream.write(text)
        except UnicodeEncodeError as error:
            raise _UnwritableError(error.encoding) from None

    def flush(self) -> None:
        """Flush stdout, so that a streamed answer shows as it arrives."""
        self._stream.flush()


def _stdout() -> _Output:
    if sys.stdout is None:  # started with it closed (`deployai chat ... >&-`): Python made it None
        raise OSError(errno.EBADF, "standard output is closed")
    return _Output(sys.stdout)


def _drop_stdout(as_a_process: bool) -> None:
    """Point stdout at the null device, so that what it still holds is dropped at exit (as a process only)."""
    if not as_a_process or sys.stdout is None:
        return
    with contextlib.suppress(OSError, ValueError):  # io.UnsupportedOperation: a stand-in for stdout
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)


def _say(line: str) -> None:
    """Write one line on stderr, if there is one (`2>&-` closes it too)."""
    with contextlib.suppress(OSError, AttributeError):
        sys.stderr.write(line + "\n")


def main_exit() -> None:
    """The console script's entry point: `main()`, then exit with its status."""
    sys.exit(main(exit_on_ctrl_c=True))
