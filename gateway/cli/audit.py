"""`gateway audit tail|show|verify|export`: the audit trail read back, from the store the config names.

Times (`--since`, `--until`) are ISO 8601 (`2026-11-27T09:00:00Z`), unix seconds, or an age such as
`15m`, `2h` or `7d`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from gateway.audit.chain import verify
from gateway.audit.reader import AuditReader, LocalFileReader, Record, reader_for, unique
from gateway.config import load_config

_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class AuditCommandFailed(Exception):
    """One-line failure of an audit command (exit 1)."""


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("audit", help="read and verify the audit trail", description=__doc__)
    actions = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    def action(name: str, help_text: str, run: Any) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help="config file whose store to read (default: $GATEWAY_CONFIG or ./gateway.yaml)")
        sub.set_defaults(run=run)
        return sub

    tail = action("tail", "the newest records, one line each (and new ones as they come with --follow)", _tail)
    tail.add_argument("-n", "--lines", type=int, default=20, help="how many of the newest records to show first (default 20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    tail.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE", help="only records where KEY (dotted, e.g. principal.app or decisions.rule) is VALUE; repeatable")
    tail.add_argument("--json", action="store_true", help="print the records as JSON lines")
    show = action("show", "everything recorded about one request: the exchange, its decisions, attempts and reviews", _show)
    show.add_argument("request_id")
    show.add_argument("--json", action="store_true")
    check = action("verify", "check every instance's hash chain; exit 1 at the first break", _verify)
    check.add_argument("--file", help="verify a JSONL export instead of the configured store")
    check.add_argument("--json", action="store_true")
    check.add_argument("--strict", action="store_true", help="a chain whose start was trimmed is a break too")
    export = action("export", "records in a time range as JSON lines (replayed duplicates collapsed)", _export)
    export.add_argument("--since", required=True)
    export.add_argument("--until")


def parse_time(text: str, *, now: float | None = None) -> float:
    now = time.time() if now is None else now
    age = _AGE.fullmatch(text.strip())
    if age:
        return now - float(age.group(1)) * _UNITS[age.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AuditCommandFailed(f"{text!r}: not a time (use ISO 8601, unix seconds, or an age like 15m, 2h, 7d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _run(args: argparse.Namespace, work: Any) -> int:
    config = load_config(args.config)
    reader = reader_for(config)

    async def main() -> int:
        try:
            return int(await work(reader))
        except OSError as exc:
            raise AuditCommandFailed(f"cannot read the audit trail: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - redis errors and the like: one line, no traceback
            if type(exc).__module__.startswith("redis"):
                raise AuditCommandFailed(f"cannot read the audit trail from {config.store.redis_url}: {exc}") from None
            raise
        finally:
            await reader.close()

    return asyncio.run(main())


# -- tail ------------------------------------------------------------------------------------------------
def _filters(pairs: list[str]) -> list[tuple[list[str], str]]:
    parsed = []
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise AuditCommandFailed(f"--filter {pair!r}: expected KEY=VALUE")
        parsed.append((key.split("."), value))
    return parsed


def _values(node: Any, path: list[str]) -> list[Any]:
    """Every value at a dotted path; lists along the way match any element (decisions.rule)."""
    if not path:
        return node if isinstance(node, list) else [node]
    if isinstance(node, list):
        return [value for item in node for value in _values(item, path)]
    if isinstance(node, dict) and path[0] in node:
        return _values(node[path[0]], path[1:])
    return []


def matches(record: Record, filters: list[tuple[list[str], str]]) -> bool:
    return all(any(str(value) == expected or (value is None and expected in ("null", "none")) for value in _values(record, path)) for path, expected in filters)


def one_line(record: Record) -> str:
    when = dt.datetime.fromtimestamp(float(record.get("ts") or 0), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
    kind = record.get("kind", "?")
    if kind != "exchange":
        event = record.get("event") or {}
        summary = " ".join(f"{key}={event[key]}" for key in ("action", "scope", "model", "reason", "actor", "ok", "error") if key in event and event[key] is not None)
        return f"{when}  {kind:<15} {record.get('outcome', '')}  {summary}"
    principal = record.get("principal") or {}
    fired = ",".join(f"{d.get('rule')}:{d.get('verdict')}" for d in record.get("decisions") or ())
    latency = (record.get("latency_ms") or {}).get("total")
    return (
        f"{when}  {record.get('request_id')}  {principal.get('app')}  {record.get('model')}  "
        f"{record.get('http_status')} {record.get('outcome')}  {latency}ms" + (f"  [{fired}]" if fired else "")
    )


def _tail(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)

    def emit(record: Record) -> None:
        print(orjson.dumps(record).decode() if args.json else one_line(record), flush=True)

    async def work(reader: AuditReader) -> int:
        newest = [record for record in unique(await reader.last(max(args.lines * 10, args.lines) if filters else args.lines)) if matches(record, filters)]
        shown = set()
        for record in newest[-args.lines:] if args.lines else []:
            shown.add(record.get("id"))
            emit(record)
        if args.follow:
            since = float(newest[-1]["ts"]) if newest else time.time()
            async for record in reader.follow(since=since):
                if record.get("id") in shown or not matches(record, filters):
                    continue
                shown.add(record.get("id"))
                emit(record)
        return 0

    return _run(args, work)


# -- show -------------------------------------------------------------------------------------------------
def _show(args: argparse.Namespace) -> int:
    async def work(reader: AuditReader) -> int:
        records = list(unique(await reader.find(args.request_id)))
        if not records:
            raise AuditCommandFailed(f"no audit record for request {args.request_id!r}")
        if args.json:
            print(json.dumps(records, indent=2))
            return 0
        for record in records:
            print(describe(record))
        return 0

    return _run(args, work)


def describe(record: Record) -> str:
    """A record as a person reads it: what happened, to whom, under which policy, and how."""
    lines = [one_line(record), f"  record {record.get('id')}  instance {record.get('instance')}  seq {record.get('seq')}"]
    if record.get("kind") == "exchange":
        principal = record.get("principal") or {}
        lines.append(f"  principal  app={principal.get('app')} tenant={principal.get('tenant')} sub={principal.get('sub')}")
        lines.append(f"  model      {record.get('model')} ({record.get('endpoint')}{', streamed' if record.get('stream') else ''})")
        lines.append(f"  policy     {record.get('policy_version')}" + ("  DEGRADED" if record.get("degraded") else ""))
        for decision in record.get("decisions") or ():
            lines.append(
                f"  decision   {decision.get('phase')}: {decision.get('policy')}/{decision.get('rule')} -> {decision.get('verdict')}"
                f" ({decision.get('mode')}{', step ' + str(decision['step']) if decision.get('step') else ''}) {decision.get('detail') or ''}".rstrip()
            )
        for attempt in record.get("route") or ():
            lines.append(f"  attempt    {attempt.get('target')} status={attempt.get('status')} {attempt.get('latency_ms')}ms" + (f" error={attempt['error']}" if attempt.get("error") else ""))
        latency = record.get("latency_ms") or {}
        lines.append(f"  latency    total {latency.get('total')}ms, upstream {latency.get('upstream')}ms, policy {latency.get('policy')}ms")
        if record.get("usage"):
            lines.append(f"  usage      {record['usage']}")
        if record.get("error"):
            lines.append(f"  error      {record['error']}")
        if record.get("content"):
            lines.append(f"  content    {json.dumps(record['content'])[:200]}")
    elif record.get("event"):
        lines.append(f"  event      {json.dumps(record['event'])[:400]}")
    review = record.get("review")
    if review:
        by = f" by {review['reviewer']}" if review.get("reviewer") else ""
        comment = f": {review['comment']}" if review.get("comment") else ""
        later = " (carried out for the app's later fetch)" if review.get("carried_out") else ""
        lines.append(f"  review     {review.get('id')} ({review.get('queue')}) {review.get('decision')}{by}{comment}{later}")
    return "\n".join(lines)


# -- verify and export --------------------------------------------------------------------------------------
def _verify(args: argparse.Namespace) -> int:
    async def work(reader: AuditReader) -> int:
        records = [record async for record in reader.read()]
        report = verify(records, allow_trimmed_start=not args.strict)
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        elif report.ok:
            print(f"ok: {report.records} records from {report.instances} instances, {report.duplicates} replayed duplicates collapsed")
        else:
            assert report.first_break is not None
            print(f"BROKEN ({report.first_break.kind}): {report.first_break.message}", file=sys.stderr)
        return 0 if report.ok else 1

    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise AuditCommandFailed(f"{path}: no such file")
        reader = LocalFileReader(path)

        async def standalone() -> int:
            return int(await work(reader))

        return asyncio.run(standalone())
    return _run(args, work)


def _export(args: argparse.Namespace) -> int:
    since = parse_time(args.since)
    until = parse_time(args.until) if args.until else None

    async def work(reader: AuditReader) -> int:
        seen: set[Any] = set()
        out = sys.stdout.buffer
        async for record in reader.read(since=since, until=until):
            key = record.get("id")
            if key in seen:
                continue
            seen.add(key)
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        out.flush()
        return 0

    return _run(args, work)

