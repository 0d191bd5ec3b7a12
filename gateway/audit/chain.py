"""The per-instance hash chain over audit records (DESIGN.md "Audit record": `seq`, `prev_hash` -> `hash`).

Each gateway instance numbers the records it writes 1, 2, 3... and links each to the previous one by hash, so
that `gateway audit verify` can tell when a record of the trail was edited, deleted, reordered or forged.
Records of many instances interleave in one stream; each instance's chain is checked on its own.

What the chain does and does not prove: it is unkeyed, so someone who can rewrite a record AND every later
record of that instance can re-seal them undetected, and removing the newest records of a chain (its tail) is
invisible. Both are caught only by comparing a chain's `last_seq`/`last_hash` (see `ChainSummary`) with a copy
kept elsewhere (an anchor). What it does catch is any change in the middle of a trail that was not
re-sealed to its end.

Requirements on the writer (the chain can only vouch for what it is given):
- one `ChainState` per `instance` value, used by one task; an `instance` must never restart its chain. A
  restarted process that reuses its instance name (a container where the pid is always 1 and the hostname
  survives a restart) begins again at seq 1, which `verify` reports as a fork.
- records are sealed in the order they are written, and the spool replays before newer records are sent,
  so each instance's records appear in the stream in seq order (replayed duplicates are fine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, Literal

import orjson

GENESIS_HASH = "0" * 64  # the `prev_hash` of every chain's seq 1
# Domain separation: a chain hash can never be confused with a sha256 of the same bytes computed for
# another purpose (content digests, ids), and `v1` leaves room to change the construction.
CHAIN_PREFIX = b"gateway-audit-chain/v1\x00"
CHAIN_FIELDS = ("seq", "prev_hash", "hash")
HASH_HEX_LENGTH = 64

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
_BASE = sha256(CHAIN_PREFIX)
_DATACLASS_FIELDS: dict[type, tuple[str, ...]] = {}

BreakKind = Literal["edited", "deleted", "reordered", "forked", "conflicting_duplicate", "malformed"]


def _plain(value: Any) -> dict[str, Any]:
    """orjson `default`: a dataclass as the dict it becomes once written and read back.

    orjson's native dataclass output keeps field order even with OPT_SORT_KEYS, so a record holding the
    gateway's Decision/Attempt/Usage objects would hash differently from the same record read back from
    JSON (where they are dicts, which are sorted). Passing dataclasses through here makes both sort alike.
    """
    kind = type(value)
    names = _DATACLASS_FIELDS.get(kind)
    if names is None:
        if not dataclasses.is_dataclass(value):
            raise TypeError(f"{kind.__name__} is not JSON serialisable")
        names = _DATACLASS_FIELDS[kind] = tuple(field.name for field in dataclasses.fields(value))
    return {name: getattr(value, name) for name in names}


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash covers: its JSON without the `hash` key, keys sorted at every level.

    Sorted keys make the hash independent of key order, which JSON tools are free to change. Values need no
    normalising: orjson writes the shortest representation that parses back to the same float (0.1, 1e-7,
    5e-324), and any conforming JSON reader (orjson, the stdlib json) returns that exact float, so a
    record survives export and re-import. What does break it is a tool that changes a number's type or
    value (1.0 rewritten as 1, big integers rounded through a double), and that is an edit.
    Non-finite floats are written as null by orjson and so hash as null.
    """
    body = dict(record)
    body.pop("hash", None)
    return orjson.dumps(body, default=_plain, option=_OPTIONS)


def _digest(prev_hash: str, body: bytes) -> str:
    hasher = _BASE.copy()
    hasher.update(prev_hash.encode())
    hasher.update(b"\x00")
    hasher.update(body)
    return hasher.hexdigest()


def record_hash(record: Mapping[str, Any], prev_hash: str) -> str:
    """sha256 hex of prefix + prev_hash + NUL + canonical bytes.

    `prev_hash` (and `seq`) are also inside the canonical record; hashing the link explicitly as well keeps
    the construction obviously chained even if the record's own fields were ever left out.
    """
    return _digest(prev_hash, canonical_bytes(record))


class ChainState:
    """One instance's chain, in memory: the last `seq` and `hash` it sealed."""

    __slots__ = ("_last_hash", "_seq")

    def __init__(self, seq: int = 0, last_hash: str = GENESIS_HASH) -> None:
        """Defaults start a new chain; pass a chain's last seq and hash to continue it."""
        self._seq = seq
        self._last_hash = last_hash

    @property
    def seq(self) -> int:
        """The seq of the last record sealed (0 before the first)."""
        return self._seq

    @property
    def last_hash(self) -> str:
        return self._last_hash

    def seal(self, record: dict[str, Any]) -> dict[str, Any]:
        """Sets `seq`, `prev_hash` and `hash` on the record in place and returns it.

        Runs in the audit writer for every record, so it costs one dumps and one sha256 and copies nothing.
        Values may be the gateway's dataclasses (Decision, Attempt, Usage): they hash as the dicts they are
        written as. The chain only advances once the hash is made, so a record that cannot be serialised
        raises without using up a seq.
        """
        self._seal(record)
        return record

    def seal_json(self, record: dict[str, Any]) -> bytes:
        """`seal`, also returning the record's JSON (no newline), so the writer need not serialise it again.

        The canonical bytes already are the record without its hash; the hash is spliced in as the last key.
        Keys come out sorted except `hash`, which verification does not mind.
        """
        body, digest = self._seal(record)
        return b'%s,"hash":"%s"}' % (body[:-1], digest.encode())

    def _seal(self, record: dict[str, Any]) -> tuple[bytes, str]:
        seq = self._seq + 1
        record["seq"] = seq
        record["prev_hash"] = self._last_hash
        record.pop("hash", None)
        body = orjson.dumps(record, default=_plain, option=_OPTIONS)
        digest = _digest(self._last_hash, body)
        record["hash"] = digest
        self._seq = seq
        self._last_hash = digest
        return body, digest


@dataclass(frozen=True, slots=True)
class Break:
    """Where a trail stops being trustworthy; `index` is the record's 0-based position in the input
    (duplicates included), i.e. the line number minus one in a JSONL export without blank lines."""

    instance: str | None
    seq: int | None
    record_id: str | None
    kind: BreakKind
    message: str
    index: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """One instance's chain as far as it was verified.

    `trimmed_start`: the first record seen had seq > 1; Redis MAXLEN trimming removes the oldest records,
    so this is expected on a live stream. `last_seq`/`last_hash` are what to compare with an anchor kept
    elsewhere to detect a deleted tail.
    """

    first_seq: int
    last_seq: int
    count: int
    trimmed_start: bool
    last_hash: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of `verify`. Counts cover the records read before the first break (all of them when ok)."""

    ok: bool
    records: int  # unique records, duplicates collapsed
    duplicates: int  # exact copies (same id, same hash) collapsed, e.g. spool replays
    instances: int
    first_break: Break | None
    chains: dict[str, ChainSummary]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (orjson or json) output for `gateway audit verify --json`."""
        return {
            "ok": self.ok,
            "records": self.records,
            "duplicates": self.duplicates,
            "instances": self.instances,
            "first_break": self.first_break.as_dict() if self.first_break else None,
            "chains": {instance: summary.as_dict() for instance, summary in self.chains.items()},
        }


class _Chain:
    """What `verify` remembers per instance: constant size, however long the chain."""

    __slots__ = ("count", "first_seq", "last_hash", "last_id", "last_prev_hash", "last_seq")

    def __init__(self, seq: int, record_id: str, prev_hash: str, digest: str) -> None:
        self.first_seq = seq
        self.last_seq = seq
        self.last_id = record_id
        self.last_prev_hash = prev_hash
        self.last_hash = digest
        self.count = 1

    def advance(self, seq: int, record_id: str, prev_hash: str, digest: str) -> None:
        self.last_seq = seq
        self.last_id = record_id
        self.last_prev_hash = prev_hash
        self.last_hash = digest
        self.count += 1


def _where(record_id: str | None, instance: str | None, seq: int | None, index: int) -> str:
    return f"record {record_id} (instance {instance}, seq {seq}, index {index})"


def _malformed(record: Any, index: int) -> Break:
    """A break for a record whose chain fields are unusable; names whatever of them it does have."""
    fields: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
    record_id, instance, seq = fields.get("id"), fields.get("instance"), fields.get("seq")
    record_id = record_id if isinstance(record_id, str) else None
    instance = instance if isinstance(instance, str) else None
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
    why = _fields_problem(record) or "chain fields unusable"
    return Break(instance, seq, record_id, "malformed", f"{_where(record_id, instance, seq, index)}: {why}", index)


def _fields_problem(record: Any) -> str | None:
    """Why a record's chain fields are unusable, or None when they are fine; the slow path, for messages."""
    if not isinstance(record, Mapping):
        return f"not a JSON object ({type(record).__name__})"
    missing = [name for name in ("id", "instance", *CHAIN_FIELDS) if name not in record]
    if missing:
        return f"missing chain fields: {', '.join(missing)}"
    if not isinstance(record["id"], str) or not isinstance(record["instance"], str):
        return "id and instance must be strings"
    seq = record["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return f"seq must be a positive integer, not {seq!r}"
    for name in ("prev_hash", "hash"):
        value = record[name]
        if not isinstance(value, str) or len(value) != HASH_HEX_LENGTH:
            return f"{name} must be a {HASH_HEX_LENGTH}-character hex string"
    return None


def verify(records: Iterable[Mapping[str, Any]], *, allow_trimmed_start: bool = True) -> VerifyReport:
    """Checks every instance's chain in one pass over the records in stream order; stops at the first break.

    Linear time; memory is a few fields per instance plus one entry per record id (for collapsing replay
    duplicates, roughly 150 bytes per record). Checks, per record:
    - chain fields present and well typed, else `malformed` (also seq 1 not linked to the genesis hash);
    - the hash matches the content, else `edited` (duplicates are checked too: an edited copy is an edit);
    - an id seen before: same hash is a duplicate (counted, skipped), another hash `conflicting_duplicate`;
    - seq follows the instance's last seq and prev_hash is its hash, else: a seq already taken, or a
      prev_hash the previous record also claims, is `forked`; a prev_hash matching nothing is `deleted`; a
      seq that skips ahead is `deleted`, unless a skipped seq turns up later in the stream, which makes it
      `reordered` (so a gap reads the rest of the input before it is reported); a seq older than the
      chain's first seen record is `reordered`.
    A chain whose first record has seq > 1 was trimmed at its start (Redis MAXLEN): noted in its
    `ChainSummary`, and a `deleted` break only when `allow_trimmed_start` is False.
    """
    chains: dict[str, _Chain] = {}
    seen: dict[str, int] = {}  # id -> first 64 bits of its hash: enough to tell a replay from a conflict
    duplicates = 0
    first_break: Break | None = None
    stream: Iterator[Mapping[str, Any]] = iter(records)

    for index, record in enumerate(stream):
        try:
            record_id = record["id"]
            instance = record["instance"]
            seq = record["seq"]
            prev_hash = record["prev_hash"]
            claimed = record["hash"]
        except (KeyError, TypeError, IndexError):
            first_break = _malformed(record, index)
            break
        if not (
            isinstance(record_id, str) and isinstance(instance, str) and isinstance(seq, int) and not isinstance(seq, bool)
            and seq >= 1 and isinstance(prev_hash, str) and len(prev_hash) == HASH_HEX_LENGTH
            and isinstance(claimed, str) and len(claimed) == HASH_HEX_LENGTH
        ):
            first_break = _malformed(record, index)
            break

        kind: BreakKind | None = None
        why = ""
        skipped_from = seq
        try:
            digest = _digest(prev_hash, canonical_bytes(record))
        except (orjson.JSONEncodeError, UnicodeEncodeError) as error:
            kind, why = "malformed", f"cannot be serialised ({error})"
        else:
            if digest != claimed:
                kind, why = "edited", "content does not match its hash"
        if kind is None:
            fingerprint = int(digest[:16], 16)
            earlier = seen.get(record_id)
            if earlier == fingerprint:
                duplicates += 1
                continue
            if earlier is not None:
                kind, why = "conflicting_duplicate", "the same id was seen earlier with different content"
            else:
                seen[record_id] = fingerprint
                chain = chains.get(instance)
                if chain is None:
                    if seq == 1 and prev_hash != GENESIS_HASH:
                        kind, why = "malformed", "seq 1 must link to the genesis hash"
                    elif seq > 1 and not allow_trimmed_start:
                        kind, why = "deleted", f"the chain starts at seq {seq}: seqs 1-{seq - 1} missing (trimmed or deleted)"
                    else:
                        chains[instance] = _Chain(seq, record_id, prev_hash, digest)
                        continue
                elif seq == chain.last_seq + 1 and prev_hash == chain.last_hash:
                    chain.advance(seq, record_id, prev_hash, digest)
                    continue
                else:
                    kind, why = _link_problem(chain, seq, prev_hash)
                    skipped_from = chain.last_seq + 1  # a jump ahead: was it a deletion, or a reordering?

        where = _where(record_id, instance, seq, index)
        first_break = Break(instance, seq, record_id, kind, f"{where}: {why}", index)
        if skipped_from < seq:
            first_break = _gap(stream, index + 1, instance, skipped_from, seq, first_break)
        break

    summaries = {
        instance: ChainSummary(chain.first_seq, chain.last_seq, chain.count, chain.first_seq > 1, chain.last_hash)
        for instance, chain in chains.items()
    }
    return VerifyReport(
        ok=first_break is None,
        records=len(seen),
        duplicates=duplicates,
        instances=len(chains),
        first_break=first_break,
        chains=summaries,
    )


def _link_problem(chain: _Chain, seq: int, prev_hash: str) -> tuple[BreakKind, str]:
    """Why a record does not extend its instance's chain (its own hash is fine)."""
    expected = chain.last_seq + 1
    if seq == expected:
        if prev_hash == chain.last_prev_hash:
            return "forked", f"claims the same predecessor as seq {chain.last_seq} (record {chain.last_id})"
        return "deleted", (
            f"prev_hash is not the hash of seq {chain.last_seq} (record {chain.last_id}): "
            "a record was removed and the rest renumbered, or one was edited and re-sealed"
        )
    if seq > expected:
        return "deleted", (f"seq {expected}" if seq == expected + 1 else f"seqs {expected}-{seq - 1}") + " of this instance missing"
    if seq >= chain.first_seq:
        taken_by = f"record {chain.last_id}" if seq == chain.last_seq else "an earlier record"
        return "forked", f"seq {seq} of this instance was already taken by {taken_by}"
    return "reordered", f"arrives after seq {chain.last_seq}, but the chain was first seen at seq {chain.first_seq}"


def _gap(rest: Iterator[Mapping[str, Any]], start: int, instance: str, expected: int, seq: int, jumped: Break) -> Break:
    """Classifies a forward jump in seq: `reordered` if a skipped seq of the instance appears later in the
    input, else the `deleted` break given.

    Only instance and seq are read in the rest of the input: whatever else is wrong there comes after this
    break, which is reported first either way.
    """
    for index, record in enumerate(rest, start):
        if not isinstance(record, Mapping) or record.get("instance") != instance:
            continue
        late = record.get("seq")
        if isinstance(late, int) and expected <= late < seq:
            late_id = record.get("id")
            late_id = late_id if isinstance(late_id, str) else None
            message = f"{_where(late_id, instance, late, index)}: arrives after seq {seq} (record {jumped.record_id})"
            return Break(instance, late, late_id, "reordered", message, index)
    return jumped
