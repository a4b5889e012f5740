"""transcribe: submit audio or video to the transcription service and get the transcript.

    transcribe submit talk.mp3 --output srt --wait     # progress bar, then talk.srt beside you
    transcribe submit https://example.com/talk.mp3 --wait --save talk.srt
    transcribe list --status finished                  # your jobs, newest first
    transcribe status JOB_ID
    transcribe result JOB_ID --format vtt > talk.vtt
    transcribe cancel JOB_ID                           # stop a queued or running job
    transcribe delete JOB_ID                           # delete a job's input and results
    transcribe models
    transcribe stats

The server is --server or TRANSCRIBE_URL (default http://127.0.0.1:8000), the API key
--api-key or TRANSCRIBE_API_KEY. Exit status: 0 done, 1 the job failed, was cancelled or deleted,
2 bad usage, 3 the server cannot be reached or failed, 4 the server refused the request,
130 interrupted (the job goes on).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from httpx_sse import SSEError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from transcribe_cli.client import REFUSED, Client, CliError

FORMATS = ("srt", "vtt", "txt", "tsv", "json")
ENDED = {"finished", "failed", "cancelled", "deleted"}
err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    client = Client(args.server, args.api_key)
    try:
        return int(args.command(client, args))
    except CliError as exc:
        err.print(f"[red]error:[/] {exc}")
        return exc.status
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="transcribe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    main_parser.add_argument("--server", default=os.environ.get("TRANSCRIBE_URL", "http://127.0.0.1:8000"))
    main_parser.add_argument("--api-key", default=os.environ.get("TRANSCRIBE_API_KEY"))
    commands = main_parser.add_subparsers(required=True, metavar="COMMAND")

    submit_parser = commands.add_parser("submit", help="submit a file or a URL")
    submit_parser.add_argument("source", help="a local audio or video file, or an http(s) URL")
    submit_parser.add_argument("--output", default="srt", help="srt, vtt, txt, tsv or json; several: srt,vtt")
    submit_parser.add_argument("--language", help="ISO 639-1 code such as en; detected if left out")
    submit_parser.add_argument("--model", help="a model the workers serve (see the server's /v1/models)")
    submit_parser.add_argument("--task", choices=("transcribe", "translate"))
    submit_parser.add_argument("--callback-url", help="receives a signed POST when the job ends")
    submit_parser.add_argument("--db-id", help="your own reference for the job, given back in its webhook")
    submit_parser.add_argument(
        "--vad-filter", action=argparse.BooleanOptionalAction, help="skip silence before decoding (default: on)"
    )
    submit_parser.add_argument(
        "--initial-prompt", "--prompt", help="text the decoder starts from: names, terms, the style of the text"
    )
    submit_parser.add_argument(
        "--word-timestamps", action="store_true", default=None, help="a start and end for each word"
    )
    submit_parser.add_argument(
        "--language-confidence-threshold",
        type=float,
        help="with no --language: fail the job if the language is detected with a lower probability (0-1)",
    )
    submit_parser.add_argument(
        "--multichannel",
        action="store_true",
        default=None,
        help="each audio channel on its own (a call, a party per channel)",
    )
    submit_parser.add_argument(
        "--speaker-labels", help="with --multichannel: the speakers' names by channel, such as agent,customer"
    )
    submit_parser.add_argument(
        "--idempotency-key",
        type=_idempotency_key,
        help="the same key again gives back the same job, not a second one (safe to retry)",
    )
    submit_parser.add_argument("--wait", action="store_true", help="show the progress, then save the result")
    submit_parser.add_argument(
        "--save", type=Path, help="where --wait saves the first format (-: stdout, it alone); the others go beside it"
    )
    submit_parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between progress checks, if the event stream fails"
    )
    submit_parser.set_defaults(command=submit)

    status_parser = commands.add_parser("status", help="status and progress of a job")
    status_parser.add_argument("job_id")
    status_parser.add_argument("--json", action="store_true", help="the API's answer as it is")
    status_parser.set_defaults(command=status)

    result_parser = commands.add_parser("result", help="the transcript of a finished job")
    result_parser.add_argument("job_id")
    result_parser.add_argument("--format", choices=FORMATS, help="default: the job's first output format")
    result_parser.add_argument("--save", type=Path, help="write it to this file instead of stdout")
    result_parser.set_defaults(command=result)

    list_parser = commands.add_parser("list", help="your jobs, newest first")
    list_parser.add_argument("--status", choices=sorted(ENDED | {"queued", "started"}))
    list_parser.add_argument("--source", choices=("upload", "url", "inbox"))
    list_parser.add_argument("--model", help="only jobs for this model")
    list_parser.add_argument("--db-id", help="only jobs with this db_id")
    list_parser.add_argument("--since", help="only jobs made at or after this time, ISO 8601 (2026-12-01T09:00)")
    list_parser.add_argument("--until", help="only jobs made at or before this time, ISO 8601")
    list_parser.add_argument("--limit", type=int, default=20, help="how many to show (default 20); 0: all")
    list_parser.add_argument("--json", action="store_true", help="one JSON object per line, as the API answers")
    list_parser.set_defaults(command=list_jobs)

    for name, help_text, command in (
        ("cancel", "stop a queued or running job", cancel),
        ("delete", "delete a job's input, status and results, cancelling it first if it runs", delete),
    ):
        job_parser = commands.add_parser(name, help=help_text)
        job_parser.add_argument("job_id")
        job_parser.set_defaults(command=command)

    models_parser = commands.add_parser("models", help="the models live workers serve now")
    models_parser.set_defaults(command=models)

    stats_parser = commands.add_parser("stats", help="jobs by status, and live workers")
    stats_parser.add_argument("--json", action="store_true", help="the API's answer as it is")
    stats_parser.set_defaults(command=stats)
    return main_parser


def _idempotency_key(value: str) -> str:
    """What an HTTP header can carry, as the server takes it: 1 to 255 printable ASCII characters."""
    if not value or len(value) > 255 or not value.isascii() or not value.isprintable():
        raise argparse.ArgumentTypeError("give 1 to 255 printable ASCII characters")
    return value


# The submission's fields (POST /v1/transcribe), each an option of ``submit`` named as in the API.
SUBMITTED = (
    "output", "language", "model", "task", "callback_url", "db_id", "vad_filter", "initial_prompt", "word_timestamps",
    "language_confidence_threshold", "multichannel", "speaker_labels",
)  # fmt: skip


def submit(client: Client, args: argparse.Namespace) -> int:
    options = {
        name: value
        for name in SUBMITTED
        if (value := getattr(args, name)) is not None  # left out: the server's default
    }
    key = args.idempotency_key
    if urlparse(args.source).scheme in ("http", "https"):
        accepted = client.submit_url(args.source, options, key)
    else:
        accepted = upload(client, Path(args.source), options, key)
    job_id = accepted["job_id"]
    if not args.wait:
        print(job_id)
        return 0
    err.print(f"job {job_id}")
    view = follow(client, job_id, args.poll)
    warn(view)
    if view["status"] != "finished":
        err.print(f"[red]job {job_id} {view['status']}[/]: {view.get('error') or 'no result'}")
        return 1
    # Every format asked for: the first where --save says, the others beside it (stdout: the first).
    main, *others = [fmt.strip() for fmt in args.output.split(",") if fmt.strip()]
    target = args.save or Path(f"{_stem(args.source, job_id)}.{main}")
    save(client.result(job_id, main), target)
    for fmt in others if str(target) != "-" else []:
        save(client.result(job_id, fmt), target.with_suffix(f".{fmt}"))
    return 0


def upload(client: Client, path: Path, options: dict[str, object], key: str | None) -> dict:
    if path.is_dir():
        raise CliError(f"{path} is a folder: give one file (drop folders into the inbox instead)", 2)
    if not path.is_file():
        raise CliError(f"{path}: no such file (give a file or an http(s) URL)", 2)
    with _progress(DownloadColumn()) as progress:
        task = progress.add_task(f"uploading {path.name}", total=path.stat().st_size)
        return client.submit_file(path, options, lambda sent: progress.advance(task, sent), key)


def follow(client: Client, job_id: str, poll: float) -> dict:
    """Follow the job until it ends, showing its real progress (the worker's share of the audio
    done): from its event stream, or by polling every ``poll`` seconds where the stream fails."""
    lines = not err.is_terminal  # in a log or a pipe: a line per change instead of a redrawn bar
    last: tuple[str, float] | None = None
    with _progress(TaskProgressColumn(), TimeElapsedColumn(), disable=lines) as progress:
        task = progress.add_task("queued", total=100)

        def show(view: dict) -> bool:
            nonlocal last
            state = (view["status"], float(view["progress"]))
            progress.update(task, description=view["status"], completed=state[1])
            if lines and state != last:
                err.print(f"{state[0]} {state[1]:.0f}%")
            last = state
            return view["status"] in ENDED

        try:
            for view in _streamed_or_polled(client, job_id, poll):
                if show(view):
                    return view
        except KeyboardInterrupt:
            err.print(f"\nstopped waiting; the job goes on: transcribe status {job_id}")
            raise
    raise AssertionError("unreachable: polling ends only with the job")


def _streamed_or_polled(client: Client, job_id: str, poll: float) -> Iterator[dict]:
    """The job's views from its event stream, connected again each time the server ends it before
    the job (EVENTS_IDLE_SECONDS); polled where the stream fails, or ends having said nothing."""
    try:
        said = True
        while said:
            said = False
            for view in client.events(job_id):
                said = True
                yield view
    except (CliError, SSEError) as exc:
        if isinstance(exc, CliError) and exc.status == REFUSED and exc.http_status != 429:
            raise  # an answer about the job (no such job, a wrong key): polling would hear the same
        err.print(f"[dim]the event stream failed ({exc}); polling instead[/]")
    while True:  # the stream failed, or gave nothing
        yield client.job(job_id)
        time.sleep(poll)


def status(client: Client, args: argparse.Namespace) -> int:
    view = client.job(args.job_id)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    facts = [f"{view['status']}", f"{view['progress']:.0f}%"]
    if view.get("language"):
        facts.append(f"language {view['language']}")
    if view.get("duration") is not None:
        facts.append(f"{view['duration']:.1f} s of audio")
    print(f"job {view['job_id']}: {', '.join(facts)}")
    if view.get("error"):
        print(f"error: {view['error']}")
    for warning in view.get("warnings") or []:
        print(f"warning: {warning}")
    return 1 if view["status"] in ("failed", "cancelled", "deleted") else 0


def warn(view: dict) -> None:
    """The job's warnings, on standard error, where the progress went: the transcript goes on."""
    for warning in view.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)


def result(client: Client, args: argparse.Namespace) -> int:
    save(client.result(args.job_id, args.format), args.save or Path("-"))
    return 0


def list_jobs(client: Client, args: argparse.Namespace) -> int:
    query = {
        "status": args.status,
        "source": args.source,
        "model": args.model,
        "db_id": args.db_id,
        "since": args.since,
        "until": args.until,
        "limit": min(args.limit, 200) if args.limit > 0 else 200,
    }
    jobs = client.jobs(query)
    shown = itertools.islice(jobs, args.limit) if args.limit > 0 else jobs
    if args.json:
        for view in shown:
            print(json.dumps(view))
        return 0
    print(f"{'job':<32}  {'status':<14}  {'made':<19}  {'audio':>7}  file")
    for view in shown:
        made = (view.get("created_at") or "")[:19].replace("T", " ")
        progress = f" {view['progress']:.0f}%" if view["status"] == "started" else ""
        duration = f"{view['duration']:.0f} s" if view.get("duration") is not None else ""
        state = view["status"] + progress
        print(f"{view['job_id']:<32}  {state:<14}  {made:<19}  {duration:>7}  {view.get('filename') or ''}")
    return 0


def cancel(client: Client, args: argparse.Namespace) -> int:
    try:
        view = client.cancel(args.job_id)
    except CliError as exc:
        if exc.http_status != 409:
            raise
        # The server's reason names its own parameter for deleting (delete_objects=true): say ours.
        reason = str(exc).split(" (delete_objects=true", 1)[0]
        raise CliError(f"{reason}; 'transcribe delete {args.job_id}' deletes it and its results", exc.status) from exc
    print(f"job {view['job_id']}: {view['status']}")
    return 0


def delete(client: Client, args: argparse.Namespace) -> int:
    view = client.cancel(args.job_id, delete=True)
    print(f"job {view['job_id']}: {view['status']}; its input and results are gone")
    return 0


def models(client: Client, args: argparse.Namespace) -> int:
    served = client.models()
    if not served:
        err.print("no live worker serves any model now")
        return 1
    print("\n".join(served))
    return 0


def stats(client: Client, args: argparse.Namespace) -> int:
    counts = client.stats()
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    for name in ("queued", "started", "finished", "failed", "cancelled", "deleted", "workers"):
        print(f"{name:<10}{counts.get(name, 0):>8}")
    return 0


def save(content: bytes, target: Path) -> None:
    if str(target) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
        return
    target.write_bytes(content)
    err.print(f"saved {target}")


def _stem(source: str, job_id: str) -> str:
    name = Path(urlparse(source).path if "://" in source else source).stem
    return name or job_id


def _progress(*columns: ProgressColumn, disable: bool = False) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), *columns, console=err, disable=disable, transient=False
    )


if __name__ == "__main__":
    sys.exit(main())
