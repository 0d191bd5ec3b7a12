"""The audit hash chain: sealed trails verify, and each kind of tampering is reported at the right record."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any

import orjson

from gateway.audit.chain import GENESIS_HASH, ChainState, canonical_bytes, record_hash, verify
from gateway.audit.record import SCHEMA_VERSION, AuditRecord
from gateway.exchange import Attempt, Decision, Usage

A = "gw-a.internal:101"
B = "gw-b.internal:202"


def audit_record(instance: str, n: int, *, kind: str = "exchange") -> AuditRecord:
    """A realistic record, built the way RecordBuilder builds one (dataclasses inside)."""
    blocked = n % 5 == 0
    return AuditRecord(
        v=SCHEMA_VERSION,
        id=f"{instance}-rec-{n:06d}",
        ts=1_717_000_000.0 + n * 0.137,
        kind=kind,
        request_id=f"req-{instance}-{n}",
        instance=instance,
        principal={"app": "billing", "tenant": f"t{n % 3}", "sub": None},
        endpoint="chat.completions",
        model="gpt-test",
        stream=n % 2 == 0,
        route=[Attempt(target="openai/gpt-test", status=200, latency_ms=12.5 + n, error=None)],
        policy_version="bundle-7f3a",
        decisions=[
            Decision("pii", "email", "request", "redact", verdict="match", detail="1 email", latency_us=41.0),
            Decision("guard", "injection", "request", "block" if blocked else "allow", latency_us=0.1),
        ],
        degraded=False,
        outcome="blocked" if blocked else "ok",
        http_status=403 if blocked else 200,
        error={"type": "policy", "code": "blocked"} if blocked else None,
        usage=Usage(prompt_tokens=10 + n, completion_tokens=5),
        stream_chunks=7 if n % 2 == 0 else None,
        latency_ms={"total": 1e-7, "upstream": 0.1, "policy": 0.333},
        content={"request_hmac": "ab" * 32, "response_hmac": None},
    )


def as_dict(record: AuditRecord) -> dict[str, Any]:
    """The record as the writer would hand it to the chain: a dict whose values are still dataclasses."""
    return {name: getattr(record, name) for name in record.__slots__}


def written(record: dict[str, Any]) -> dict[str, Any]:
    """What a reader gets back from the stream or a JSONL export."""
    loaded: dict[str, Any] = orjson.loads(orjson.dumps(record))
    return loaded


def trail(per_instance: int = 8) -> list[dict[str, Any]]:
    """Two instances' sealed records, interleaved irregularly, as read back from the stream."""
    chains = {A: ChainState(), B: ChainState()}
    counters = {A: 0, B: 0}
    order = [A, B, A, A, B, A, B, B, A, B, A, A, B, B, A, B]
    records = []
    for instance in order[: 2 * per_instance]:
        counters[instance] += 1
        kind = "policy_reload" if counters[instance] == 4 else "exchange"
        sealed = chains[instance].seal(as_dict(audit_record(instance, counters[instance], kind=kind)))
        records.append(written(sealed))
    return records


def position(records: list[dict[str, Any]], instance: str, seq: int) -> int:
    return next(i for i, r in enumerate(records) if r["instance"] == instance and r["seq"] == seq)


def reseal(record: dict[str, Any]) -> dict[str, Any]:
    """What a forger can do: the chain is unkeyed, so a changed record can be given a valid hash."""
    record["hash"] = record_hash(record, record["prev_hash"])
    return record


def test_an_untouched_trail_verifies() -> None:
    records = trail()
    report = verify(records)
    assert report.ok and report.first_break is None
    assert (report.records, report.duplicates, report.instances) == (16, 0, 2)
    assert report.chains[A].first_seq == 1 and report.chains[A].last_seq == 8 and report.chains[A].count == 8
    assert not report.chains[A].trimmed_start
    assert any(r["kind"] == "policy_reload" for r in records)  # other kinds are chained like exchanges


def test_seal_links_records_and_tracks_state() -> None:
    chain = ChainState()
    assert (chain.seq, chain.last_hash) == (0, GENESIS_HASH)
    first = chain.seal(as_dict(audit_record(A, 1)))
    second = chain.seal(as_dict(audit_record(A, 2)))
    assert (first["seq"], first["prev_hash"]) == (1, GENESIS_HASH)
    assert (second["seq"], second["prev_hash"]) == (2, first["hash"])
    assert (chain.seq, chain.last_hash) == (2, second["hash"])
    assert first["hash"] == record_hash(first, GENESIS_HASH)
    assert list(second)[-3:] == ["seq", "prev_hash", "hash"]


def test_dataclass_values_hash_like_the_dicts_they_are_read_back_as() -> None:
    sealed = ChainState().seal(as_dict(audit_record(A, 1)))
    assert canonical_bytes(sealed) == canonical_bytes(written(sealed))


def test_seal_json_writes_a_line_that_verifies() -> None:
    chain = ChainState()
    lines = [chain.seal_json(as_dict(audit_record(A, n))) for n in range(1, 4)]
    records = [json.loads(line) for line in lines]
    assert verify(records).ok
    assert records[-1]["hash"] == chain.last_hash


def test_an_edited_decision_is_reported_at_that_record() -> None:
    records = trail()
    target = position(records, A, 3)
    records[target]["decisions"][1]["action"] = "allow" if records[target]["decisions"][1]["action"] == "block" else "block"
    brk = verify(records).first_break
    assert brk is not None
    assert (brk.kind, brk.instance, brk.seq, brk.record_id, brk.index) == ("edited", A, 3, records[target]["id"], target)
    assert A in brk.message and "seq 3" in brk.message and records[target]["id"] in brk.message


def test_edited_status_and_nested_values_are_reported() -> None:
    edits: list[Callable[[dict[str, Any]], object]] = [
        lambda r: r.update(http_status=200 if r["http_status"] != 200 else 500),
        lambda r: r["principal"].update(tenant="someone-else"),
        lambda r: r["route"][0].update(status=429),
        lambda r: r["latency_ms"].update(total=0.2),
        lambda r: r.update(extra_field=True),
    ]
    for edit in edits:
        records = trail()
        edit(records[position(records, B, 2)])
        brk = verify(records).first_break
        assert brk is not None and (brk.kind, brk.instance, brk.seq) == ("edited", B, 2)


def test_an_edit_resealed_by_a_forger_breaks_the_link_to_the_next_record() -> None:
    records = trail()
    target = records[position(records, A, 3)]
    target["outcome"] = "ok" if target["outcome"] != "ok" else "error"
    reseal(target)
    brk = verify(records).first_break
    assert brk is not None and (brk.kind, brk.instance, brk.seq) == ("deleted", A, 4)
    assert "prev_hash" in brk.message


def test_a_deleted_record_is_reported_at_the_next_seq() -> None:
    records = trail()
    removed = records.pop(position(records, A, 3))
    brk = verify(records).first_break
    assert brk is not None
    assert (brk.kind, brk.instance, brk.seq) == ("deleted", A, 4)
    assert "seq 3" in brk.message and removed["id"] not in brk.message


def test_deleting_a_record_and_renumbering_the_rest_is_still_caught() -> None:
    records = [r for r in trail() if r["instance"] == A]
    del records[2]
    for record in records[2:]:
        record["seq"] -= 1
        reseal(record)
    brk = verify(records).first_break
    assert brk is not None and (brk.kind, brk.seq) == ("deleted", 3)


def test_two_swapped_records_are_reordered() -> None:
    records = trail()
    third, fourth = position(records, A, 3), position(records, A, 4)
    records[third], records[fourth] = records[fourth], records[third]
    brk = verify(records).first_break
    assert brk is not None
    assert (brk.kind, brk.instance, brk.seq, brk.index) == ("reordered", A, 3, fourth)


def test_a_record_moved_to_the_end_is_reordered_not_deleted() -> None:
    records = trail()
    records.append(records.pop(position(records, B, 2)))
    brk = verify(records).first_break
    assert brk is not None and (brk.kind, brk.instance, brk.seq, brk.index) == ("reordered", B, 2, len(records) - 1)


def test_a_forged_record_with_a_taken_seq_is_a_fork() -> None:
    records = trail()
    original = position(records, A, 3)
    forged = copy.deepcopy(records[original])
    forged.update(id="forged-0001", http_status=200, outcome="ok")
    records.insert(original + 1, reseal(forged))
    brk = verify(records).first_break
    assert brk is not None
    assert (brk.kind, brk.instance, brk.seq, brk.record_id) == ("forked", A, 3, "forged-0001")


def test_a_record_claiming_the_previous_records_predecessor_is_a_fork() -> None:
    records = trail()
    third = records[position(records, A, 3)]
    forged = copy.deepcopy(third)
    forged.update(id="forged-0002", seq=4)  # prev_hash still that of seq 2: a sibling of seq 3
    records.insert(position(records, A, 3) + 1, reseal(forged))
    brk = verify(records).first_break
    assert brk is not None and (brk.kind, brk.seq, brk.record_id) == ("forked", 4, "forged-0002")


def test_an_exact_replay_duplicate_is_collapsed() -> None:
    records = trail()
    records.insert(position(records, A, 5), copy.deepcopy(records[position(records, A, 4)]))  # replayed right away
    records.append(copy.deepcopy(records[0]))  # and much later
    report = verify(records)
    assert report.ok, report.first_break
    assert (report.records, report.duplicates) == (16, 2)


def test_same_id_with_different_content_is_a_conflicting_duplicate() -> None:
    records = trail()
    copied = copy.deepcopy(records[position(records, B, 2)])
    copied["http_status"] = 418
    records.append(reseal(copied))
    brk = verify(records).first_break
    assert brk is not None
    assert (brk.kind, brk.instance, brk.seq, brk.record_id) == ("conflicting_duplicate", B, 2, copied["id"])


def test_an_edited_replay_copy_is_an_edit_not_a_duplicate() -> None:
    records = trail()
    copied = copy.deepcopy(records[position(records, B, 2)])
    copied["http_status"] = 418  # hash left as it was
    records.append(copied)
    brk = verify(records).first_break
    assert brk is not None and (brk.kind, brk.index) == ("edited", len(records) - 1)


def shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {key: shuffled(item, rng) for key, item in items}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


def test_key_order_does_not_matter() -> None:
    rng = random.Random(7)
    records = [json.loads(json.dumps(shuffled(r, rng))) for r in trail()]
    assert any(list(r) != list(t) for r, t in zip(records, trail(), strict=True))
    assert verify(records).ok


def test_a_trimmed_start_is_not_a_break() -> None:
    records = trail()
    for seq in (1, 2, 3):
        records.pop(position(records, B, seq))
    report = verify(records)
    assert report.ok
    assert report.chains[B].trimmed_start and report.chains[B].first_seq == 4 and report.chains[B].count == 5
    assert not report.chains[A].trimmed_start


def test_a_trimmed_start_is_a_break_when_disallowed() -> None:
    records = trail()
    for seq in (1, 2, 3):
        records.pop(position(records, B, seq))
    brk = verify(records, allow_trimmed_start=False).first_break
    assert brk is not None and (brk.kind, brk.instance, brk.seq) == ("deleted", B, 4)


def test_missing_chain_fields_are_malformed() -> None:
    records = trail()
    target = position(records, A, 2)
    del records[target]["prev_hash"]
    brk = verify(records).first_break
    assert brk is not None
    assert (brk.kind, brk.instance, brk.seq, brk.index) == ("malformed", A, 2, target)
    assert "prev_hash" in brk.message


def test_badly_typed_chain_fields_are_malformed() -> None:
    for field, value in (("seq", "2"), ("seq", 0), ("seq", True), ("hash", None), ("id", 5)):
        records = trail()
        records[3][field] = value
        brk = verify(records).first_break
        assert brk is not None and (brk.kind, brk.index) == ("malformed", 3), (field, value)
    brk = verify([["not", "an", "object"]]).first_break  # type: ignore[list-item]
    assert brk is not None and brk.kind == "malformed"


def test_a_first_record_not_linked_to_genesis_is_malformed() -> None:
    records = trail()
    records[0]["prev_hash"] = "1" * 64
    brk = verify([reseal(records[0])]).first_break
    assert brk is not None and brk.kind == "malformed"


def test_floats_round_trip() -> None:
    record = as_dict(audit_record(A, 1))
    record["latency_ms"] = {"total": 0.1, "upstream": 1e-7, "policy": 5e-324, "big": 1.7976931348623157e308, "one": 1.0}
    sealed = ChainState().seal(record)
    via_stdlib = json.loads(json.dumps(written(sealed)))  # json writes 1e-07 and reads back the same double
    assert verify([written(sealed)]).ok and verify([via_stdlib]).ok
    assert via_stdlib["latency_ms"]["upstream"] == 1e-7


def test_the_report_is_json_ready() -> None:
    records = trail()
    records.pop(position(records, A, 3))
    out = json.loads(json.dumps(verify(records).as_dict()))
    assert out["ok"] is False and out["first_break"]["kind"] == "deleted" and out["chains"][A]["last_seq"] == 2
    assert json.loads(json.dumps(verify(trail()).as_dict()))["first_break"] is None


def test_a_deleted_tail_needs_an_anchor() -> None:
    records = trail()
    anchor = verify(records).chains[A]
    records.pop(position(records, A, 8))
    report = verify(records)
    assert report.ok  # not visible in the trail alone...
    assert (report.chains[A].last_seq, report.chains[A].last_hash) != (anchor.last_seq, anchor.last_hash)  # ...but against an anchor


def test_ten_thousand_records_verify() -> None:
    chains = [ChainState() for _ in range(4)]
    instances = [f"host-{n}:1" for n in range(4)]
    rng = random.Random(1)
    records = []
    for n in range(10_000):
        which = rng.randrange(4)
        records.append(written(chains[which].seal(as_dict(audit_record(instances[which], n)))))
    report = verify(records)
    assert report.ok and report.records == 10_000 and report.instances == 4
    assert sum(summary.count for summary in report.chains.values()) == 10_000
