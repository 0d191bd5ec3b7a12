"""`PiiDetector`: a labelled corpus (precision and recall per entity), exact spans, options, linear time.

The corpus is module-level data so that `loadtest/detection_quality.py` can print the same figures: each
entity has its own list of cases, positives and hard negatives (the near misses a naive pattern would
report: bad check digits, invalid ranges, dates, versions, UUIDs, order numbers...). A case's expected
kinds are a multiset: two e-mail addresses in one text are ("EMAIL", "EMAIL").
"""

from __future__ import annotations


import pytest

from detection_support import mistakes, score

from gateway.policy.detectors import Finding
from gateway.policy.detectors import pii
from gateway.policy.detectors.pii import PII_ENTITIES, PiiDetector

Case = tuple[str, tuple[str, ...]]

EMAIL_CASES: list[Case] = [
    ("Contact me at jane.doe@example.com for details.", ("EMAIL",)),
    ("Send the invoice to billing+invoices@acme-corp.co.uk today.", ("EMAIL",)),
    ("<mailto:support@mail.example.org>", ("EMAIL",)),
    ("ADMIN@EXAMPLE.COM wrote:", ("EMAIL",)),
    ("user_name-1@sub.domain.example.io is the bot", ("EMAIL",)),
    ("(first.last@university.edu)", ("EMAIL",)),
    ("Emails: a@b.co, c.d@e.fr", ("EMAIL", "EMAIL")),
    ("my email is john_smith99@gmail.com.", ("EMAIL",)),
    ("ping x%y@example.net please", ("EMAIL",)),
    ('"bob@example.com"', ("EMAIL",)),
    ("Message from 田中 tanaka@example.jp about the release", ("EMAIL",)),
    ("CC: ops-team@corp.example.com; dev@example.dev", ("EMAIL", "EMAIL")),
    # hard negatives
    ("Use the @dataclass decorator and @property.", ()),
    ("Mention @alice and @bob in the PR.", ()),
    ("Install lodash@4.17.21 and react@18.2.0.", ()),
    ("The assets icon@2x.png and logo@3x.svg are missing.", ()),
    ("git clone git@github.com:org/repo.git", ()),
    ("user@localhost can log in", ()),
    ("SELECT * FROM t WHERE tags @> ARRAY['a']", ()),
    ("email: john.doe(at)example.com", ()),
    ("Ping me @ 5pm", ()),
    ("the price is 3 @ $4.99", ()),
    ("name@.com and @example.com are invalid", ()),
    ("john..doe@example.com has a double dot", ()),
]

PHONE_CASES: list[Case] = [
    ("Call me at (555) 123-4567.", ("PHONE",)),
    ("Office: 555-123-4567", ("PHONE",)),
    ("Mobile 555.123.4567", ("PHONE",)),
    ("Reach the desk on +44 20 7946 0958.", ("PHONE",)),
    ("WhatsApp +14155552671", ("PHONE",)),
    ("Toll free 1-800-555-0199", ("PHONE",)),
    ("+1 (415) 555-2671 is the main line", ("PHONE",)),
    ("Paris office: +33 1 42 68 53 00", ("PHONE",)),
    ("Call 212 555 0147 after lunch", ("PHONE",)),
    ("India: +91 98765 43210", ("PHONE",)),
    ("tel:+61-2-9374-4000", ("PHONE",)),
    ("Berlin +49 30 901820, ask for Anna", ("PHONE",)),
    # hard negatives
    ("Released on 2024-01-15 at 10:30:00.", ()),
    ("Upgrade from version 1.2.3 to 10.20.30.", ()),
    ("Request id 550e8400-e29b-41d4-a716-446655440000", ()),
    ("Order number 1234567890 shipped", ()),
    ("Invoice INV-2024-000123 is overdue", ()),
    ("Server 192.168.100.200 is down", ("IP_ADDRESS",)),
    ("Card 4111 1111 1111 1111", ("CREDIT_CARD",)),
    ("Timestamp 1700000000000 ms", ()),
    ("ISBN 978-0-306-40615-7", ()),
    ("Scores 12-15 in the 2023-24 season", ()),
    ("Math: 2+2=4 and 10+20=30", ()),
    ("Coordinates 40.7128, -74.0060", ()),
    ("Build 20240115.1234 finished", ()),
    ("Placeholder 000-000-0000", ()),
]

CREDIT_CARD_CASES: list[Case] = [
    ("Visa 4111 1111 1111 1111", ("CREDIT_CARD",)),
    ("card: 4012888888881881", ("CREDIT_CARD",)),
    ("MC 5555-5555-5555-4444", ("CREDIT_CARD",)),
    ("5105 1051 0510 5100 is on file", ("CREDIT_CARD",)),
    ("Amex 3782 822463 10005", ("CREDIT_CARD",)),
    ("amex 371449635398431", ("CREDIT_CARD",)),
    ("Discover 6011 1111 1111 1117", ("CREDIT_CARD",)),
    ("6011000990139424", ("CREDIT_CARD",)),
    ("JCB 3530 1113 3330 0000", ("CREDIT_CARD",)),
    ("Diners 3056 930902 5904", ("CREDIT_CARD",)),
    ("MC 2-series 2223 0031 2200 3222", ("CREDIT_CARD",)),
    ("old Visa 4222222222222", ("CREDIT_CARD",)),
    ("Card 4111111111111111 exp 12/25", ("CREDIT_CARD",)),
    # hard negatives
    ("4111 1111 1111 1112 fails Luhn", ()),
    ("5555-5555-5555-4445", ()),
    ("1234 5678 9012 3456", ()),
    ("Order 9999999999999995 (Luhn-valid, no card network)", ()),
    ("Timestamp 1700000000000", ()),
    ("UUID 12345678-1234-1234-1234-123456789012", ()),
    ("ISBN 9780306406157", ()),
    ("Account 0012 3456 7890 1234", ()),
    ("Serial 6011-1111-1111-1118", ()),
    ("Tracking 1Z999AA10123456784", ()),
    ("a 12-digit run 411111111111", ()),
    ("Digits 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1", ()),
]

IBAN_CASES: list[Case] = [
    ("IBAN DE89 3704 0044 0532 0130 00", ("IBAN",)),
    ("Pay to GB82 WEST 1234 5698 7654 32 by Friday", ("IBAN",)),
    ("FR1420041010050500013M02606", ("IBAN",)),
    ("NL91 ABNA 0417 1643 00", ("IBAN",)),
    ("BE68 5390 0754 7034", ("IBAN",)),
    ("Spain: ES91 2100 0418 4502 0005 1332.", ("IBAN",)),
    ("IT60X0542811101000000123456", ("IBAN",)),
    ("CH93 0076 2011 6238 5295 7", ("IBAN",)),
    ("Norway NO93 8601 1117 947", ("IBAN",)),
    ("AT611904300234573201", ("IBAN",)),
    ("PL61 1090 1014 0000 0712 1981 2874", ("IBAN",)),
    ("SE45 5000 0000 0583 9825 7466", ("IBAN",)),
    ("Danish DK50 0040 0440 1162 43", ("IBAN",)),
    ("IE29 AIBK 9311 5212 3456 78", ("IBAN",)),
    ("BE68 5390 0754 7034 2024 (ref. year after it)", ("IBAN",)),
    # hard negatives
    ("DE89 3704 0044 0532 0130 01", ()),
    ("GB82 WEST 1234 5698 7654 33", ()),
    ("DE8937040044053201300 is one digit short", ()),
    ("XX89 3704 0044 0532 0130 00", ()),
    ("NL91ABNA0417164301", ()),
    ("SKU AB12CDEF34567890 is discontinued", ()),
    ("FR14 2004 1010 0505 0001 3M02 607", ()),
    ("Model ES91 2100 0418", ()),
    ("GB00 WEST 1234 5698 7654 32", ()),
    ("CH93 0076 2011 6238 5295 8", ()),
    ("Part number DE12 ABCD", ()),
]

US_SSN_CASES: list[Case] = [
    ("SSN: 219-09-9999", ("US_SSN",)),
    ("social security number 536-22-1234", ("US_SSN",)),
    ("My SSN is 457-55-5462.", ("US_SSN",)),
    ("ssn 123-45-6789", ("US_SSN",)),
    ("Employee SSN 524 71 0925", ("US_SSN",)),
    ("SSN#: 001-01-0001", ("US_SSN",)),
    ("social security: 123456789", ("US_SSN",)),
    ("SSN 665-12-3456", ("US_SSN",)),
    ("her ssn was 899-99-1234", ("US_SSN",)),
    ("taxpayer 234-56-7890 filed late", ("US_SSN",)),
    ("Applicant John, 321-54-9876, DOB 1990-01-01", ("US_SSN",)),
    ("SSN is 772341234", ("US_SSN",)),
    # hard negatives
    ("SSN 000-12-3456", ()),
    ("SSN 666-12-3456", ()),
    ("SSN 900-12-3456", ()),
    ("SSN 123-00-4567", ()),
    ("SSN 123-45-0000", ()),
    ("Order #123-45-6789 shipped", ()),
    ("Invoice 234-56-7890", ()),
    ("Call 123456789 now", ()),
    ("Account number 536221234", ()),
    ("Part no. 555-55-5555", ()),
    ("ref: 321-54-9876", ()),
    ("zip 12345-6789", ()),
    ("Date 2024-01-15", ()),
]

IP_ADDRESS_CASES: list[Case] = [
    ("Server at 192.168.1.10 is down", ("IP_ADDRESS",)),
    ("connect to 10.0.0.1:8080", ("IP_ADDRESS",)),
    ("DNS 8.8.8.8 and 1.1.1.1", ("IP_ADDRESS", "IP_ADDRESS")),
    ("netmask 255.255.255.0", ("IP_ADDRESS",)),
    ("http://172.16.254.1/admin", ("IP_ADDRESS",)),
    ("IPv6 2001:db8::8a2e:370:7334", ("IP_ADDRESS",)),
    ("loopback ::1 works", ("IP_ADDRESS",)),
    ("link-local fe80::1ff:fe23:4567:890a%eth0", ("IP_ADDRESS",)),
    ("mapped ::ffff:192.0.2.128", ("IP_ADDRESS",)),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", ("IP_ADDRESS",)),
    ("client IP: 203.0.113.45.", ("IP_ADDRESS",)),
    ("[2001:db8::1]:443", ("IP_ADDRESS",)),
    # hard negatives
    ("version 1.2.3.4 released", ()),
    ("1.2.3.4.5 is a long version", ()),
    ("Use std::vector and std::map", ()),
    ("Timestamp 10:30:45", ()),
    ("MAC 00:1A:2B:3C:4D:5E", ()),
    ("999.1.1.1 is not an address", ()),
    ("v1.2.3.4", ()),
    ("Section 4.2.1.3 of the spec", ()),
    ("Date 15.01.2024", ()),
    ("01.02.03.04 has padded octets", ()),
    ("Rust path Foo::Bar::baz", ()),
    ("ratio 1:2:3", ()),
]

MIXED_CASES: list[Case] = [
    (
        "Customer Jane (jane@example.com, +1 (415) 555-2671) paid with 4111 1111 1111 1111 from 10.1.2.3.",
        ("EMAIL", "PHONE", "CREDIT_CARD", "IP_ADDRESS"),
    ),
    ("Wire to DE89 3704 0044 0532 0130 00, SSN 536-22-1234.", ("IBAN", "US_SSN")),
    ("Please summarise the quarterly report for the team meeting on Monday.", ()),
    ("We shipped 3 releases in 2024; p99 latency fell from 420 ms to 95 ms.", ()),
]

CASES_BY_ENTITY: dict[str, list[Case]] = {
    "EMAIL": EMAIL_CASES,
    "PHONE": PHONE_CASES,
    "CREDIT_CARD": CREDIT_CARD_CASES,
    "IBAN": IBAN_CASES,
    "US_SSN": US_SSN_CASES,
    "IP_ADDRESS": IP_ADDRESS_CASES,
}
CORPUS: list[Case] = [case for cases in CASES_BY_ENTITY.values() for case in cases] + MIXED_CASES


def make_detector() -> PiiDetector:
    return PiiDetector()


def precision_recall(detector: PiiDetector, corpus: list[Case]) -> dict[str, tuple[int, int, int]]:
    """(true positives, false positives, false negatives) per entity (what detection_quality.py prints)."""
    return score(detector, corpus, PII_ENTITIES)


@pytest.mark.parametrize("entity", PII_ENTITIES)
def test_corpus_has_enough_positives_and_hard_negatives(entity: str) -> None:
    cases = CASES_BY_ENTITY[entity]
    assert sum(entity in expected for _, expected in cases) >= 10
    assert sum(entity not in expected for _, expected in cases) >= 10


@pytest.mark.parametrize("entity", PII_ENTITIES)
def test_precision_and_recall_are_perfect_on_the_corpus(entity: str) -> None:
    detector = make_detector()
    tp, fp, fn = precision_recall(detector, CORPUS)[entity]
    assert tp > 0
    assert (fp, fn) == (0, 0), mistakes(detector, CORPUS, entity)


def test_the_stdlib_fallback_finds_exactly_what_re2_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    with_re2 = make_detector()
    monkeypatch.setattr(pii, "_re2", None)
    without = make_detector()
    for text, _ in CORPUS:
        assert without.find(text) == with_re2.find(text), text


# -- spans --------------------------------------------------------------------------------------------------
SPAN_CASES: list[tuple[str, list[tuple[str, str]]]] = [
    ("mail: <jane.doe@example.com>.", [("EMAIL", "jane.doe@example.com")]),
    ("card 4111 1111 1111 1111 exp 12/25", [("CREDIT_CARD", "4111 1111 1111 1111")]),
    ("4111111111111111 12/25", [("CREDIT_CARD", "4111111111111111")]),
    ("IBAN BE68 5390 0754 7034 2024", [("IBAN", "BE68 5390 0754 7034")]),
    ("SSN: 123456789.", [("US_SSN", "123456789")]),
    ("call 1 (555) 123-4567 now", [("PHONE", "1 (555) 123-4567")]),
    ("call +44 20 7946 0958.", [("PHONE", "+44 20 7946 0958")]),
    ("at 192.168.1.1.", [("IP_ADDRESS", "192.168.1.1")]),
    ("[2001:db8::1]:443", [("IP_ADDRESS", "2001:db8::1")]),
    ("::ffff:192.0.2.1", [("IP_ADDRESS", "::ffff:192.0.2.1")]),
    (
        "é→ a@b.io 4111-1111-1111-1111 (555) 123-4567",
        [("EMAIL", "a@b.io"), ("CREDIT_CARD", "4111-1111-1111-1111"), ("PHONE", "(555) 123-4567")],
    ),
]


@pytest.mark.parametrize(("text", "expected"), SPAN_CASES)
def test_spans_are_exactly_the_entity(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(f.kind, text[f.start : f.end]) for f in make_detector().find(text)] == expected


def test_findings_are_sorted_and_do_not_overlap() -> None:
    text = " ".join(text for text, _ in CORPUS)
    findings = make_detector().find(text)
    assert len(findings) >= 60
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:]))


def test_exact_offsets() -> None:
    assert make_detector().find("x john@example.com y") == [Finding("EMAIL", 2, 18)]
    # Offsets are characters, not UTF-8 bytes, when the text is not ASCII (re2 works on bytes).
    assert make_detector().find("ééé 10.0.0.1") == [Finding("IP_ADDRESS", 4, 12)]


def test_clean_text_finds_nothing() -> None:
    prose = "Please review the retry loop; Python 3.11 in 2024 gave HTTP 429 on 3 of 10 runs. " * 50
    assert make_detector().find(prose) == []
    assert make_detector().find("") == []


# -- options ----------------------------------------------------------------------------------------------
def test_entities_limit_what_is_found() -> None:
    text = "a@b.io 4111 1111 1111 1111 10.0.0.1 (555) 123-4567"
    assert [f.kind for f in PiiDetector(["EMAIL"]).find(text)] == ["EMAIL"]
    assert [f.kind for f in PiiDetector(["IP_ADDRESS", "PHONE"]).find(text)] == ["IP_ADDRESS", "PHONE"]
    assert PiiDetector([]).find(text) == []


def test_an_excluded_entity_does_not_hide_a_wanted_one() -> None:
    # Unwanted kinds are dropped before overlaps are resolved, so they never win a span from a wanted one.
    text = "IBAN DE89 3704 0044 0532 0130 00 card 4111 1111 1111 1111"
    assert [f.kind for f in PiiDetector(["CREDIT_CARD"]).find(text)] == ["CREDIT_CARD"]


def test_unknown_entity_is_an_error_naming_it_and_the_known_ones() -> None:
    with pytest.raises(ValueError) as raised:
        PiiDetector(["EMAIL", "PASSPORT"])
    message = str(raised.value)
    assert "'PASSPORT'" in message
    assert all(entity in message for entity in PII_ENTITIES)


def test_a_single_string_is_not_a_list_of_entities() -> None:
    with pytest.raises(TypeError):
        PiiDetector("EMAIL")


# -- linear time --------------------------------------------------------------------------------------------
ADVERSARIAL = [
    "a@" * 100_000,
    "a" * 200_000 + "@",
    "a.a." * 50_000 + "@x",
    "1-" * 100_000,
    "1" * 200_000,
    "1 " * 100_000,
    "+1 " * 66_000,
    "(555) " * 33_000,
    "1." * 100_000,
    "1:" * 100_000,
    ":" * 200_000,
    "DE89 " * 40_000,
    "DE89" * 50_000,
    "4111 " * 40_000,
]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("engine", ["re2", "stdlib"])
@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda text: repr(text[:6]))
def test_adversarial_input_is_scanned_in_linear_time(text: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if engine == "stdlib":
        monkeypatch.setattr(pii, "_re2", None)
    elif pii._re2 is None:
        pytest.skip("google-re2 is not installed")
    make_detector().find(text)
