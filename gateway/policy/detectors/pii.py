"""The `pii` check's detector: e-mail addresses, phone numbers, payment cards, IBANs, US SSNs and IP addresses.

This runs on every request and streamed reply, so it is built for the common case of text with no PII at all:

1. `str` prefilters that cost about a microsecond on 4 KB (`'@' in text`, "is there any digit at all").
   Without a digit, none of the numeric entities can be present, and we stop there.
2. One *gate* pass: the union of loose candidate shapes, run as a single DFA scan with google-re2 when it is
   installed (about 7 us per 4 KB whatever the pattern's size; without re2, a looser stdlib pattern built for
   sre does the same job, several times slower). Most prose with ordinary numbers ("in 2024", "HTTP 429",
   "Python 3.11") stops here.
3. Only in small windows around the gate's hits: the exact stdlib patterns (lookarounds keep spans tight and
   rule out version strings, UUID fragments and longer digit runs), followed by the validators that regexes
   cannot express (Luhn and IIN ranges, ISO 7064 mod-97 with the per-country length, SSN ranges, octets,
   `ipaddress`).

Every quantifier is bounded or applies to a class disjoint from what follows it, so 1 MB of adversarial input
('a@a@...', '1-1-1-...', ':::...') is scanned in linear time.

Limits, chosen for precision: a card needs a known issuer prefix (Visa, Mastercard, Amex, Discover, Diners,
JCB, UnionPay, Maestro, Mir) as well as Luhn; phone numbers are international ('+' and 8-15 digits) or in
the North American format (national formats of other countries without '+' are not recognised); nine bare
digits are an SSN only after "SSN"/"social security"; IBANs are matched in capitals, as they are printed;
an SSN-shaped number right after a label such as "order", "invoice" or "#" is not reported.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

from gateway.policy.detectors import Finding

try:  # An optional speed-up only: every result is the same with the stdlib fallback.
    import re2 as _re2
except ImportError:  # pragma: no cover - depends on the machine
    _re2 = None

PII_ENTITIES: tuple[str, ...] = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS")

# When two findings overlap, the lower rank wins: the more structured and validated entity is the better
# explanation of the span (a Luhn-valid card number is not also "a phone number").
_RANK = {"EMAIL": 0, "CREDIT_CARD": 1, "IBAN": 2, "US_SSN": 3, "IP_ADDRESS": 4, "PHONE": 5}

_NUMERIC_ENTITIES = frozenset({"PHONE", "CREDIT_CARD", "US_SSN", "IP_ADDRESS"})


class TextGate:
    """The cheap first pass of a detector: where in the text the candidates are, as (start, end) spans.

    With google-re2, `pattern` (no lookarounds, backreferences or groups) is one DFA scan, linear whatever its
    size, and ASCII text (the common case) is handed over as bytes so that offsets need no UTF-8 decoding;
    re2's wrapper costs microseconds per hit on `str` and on named groups, which is why callers classify a hit
    by its text rather than by a group. Without re2, `fallback` does the job: a stdlib pattern written for sre
    (which is fast only when a pattern starts with one character class) or a function. A fallback may report
    more than `pattern` (callers only use hits to decide where to look closer), never less. The engine is
    chosen when the gate is built, not at import, so tests can run a corpus through both. Shared with
    `secrets.py`."""

    __slots__ = ("_re2", "_scan")

    def __init__(self, pattern: str, fallback: str | Callable[[str], list[tuple[int, int]]] | None = None) -> None:
        self._re2: Any = None
        self._scan: Callable[[str], list[tuple[int, int]]]
        if _re2 is not None:
            self._re2 = _re2.compile(pattern)
            self._scan = self._re2_spans
        elif callable(fallback):
            self._scan = fallback
        else:
            finditer = re.compile(fallback if fallback is not None else pattern).finditer
            self._scan = lambda text: [m.span() for m in finditer(text)]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every non-overlapping hit, as character offsets into `text`."""
        return self._scan(text)

    def _re2_spans(self, text: str) -> list[tuple[int, int]]:
        if text.isascii():
            return [m.span() for m in self._re2.finditer(text.encode("ascii"))]
        return [m.span() for m in self._re2.finditer(text)]


# ---------------------------------------------------------------------------------------------------------
# Gate shapes: each is a superset of the start of the exact pattern it stands for (the exact scan starts a
# little before the gate hit, so a leading "1-", "+44 (" or IPv6 groups before the "::" are not lost).
_GATE_NUM = (
    r"[0-9](?:[ -]?[0-9]){12}"  # 13+ digits with single separators: a card
    r"|[0-9]{3}[ -][0-9]{2}[ -][0-9]{4}"  # SSN with separators
    r"|[0-9]{9}"  # bare 9 digits: SSN only with context, checked later
    r"|\+[1-9][0-9 .()-]{7}"  # international phone
    r"|\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}"  # (555) 123-4567
    r"|[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}"  # 555-123-4567
    r"|[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"  # IPv4
)
_GATE_IBAN = r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}"
# IPv6 needs a digit next to a "::", or "::" followed by a group and a colon, or six groups in a row; plain
# "std::vector", "Foo::Bar" and clock times "10:30:00" do not open the (slower) exact IPv6 scan.
_GATE_IP6 = (
    r"::[0-9A-Fa-f]{0,3}[0-9]|[0-9][0-9A-Fa-f]{0,3}::|::[0-9A-Fa-f]{1,4}:|(?:[0-9A-Fa-f]{1,4}:){5}[0-9A-Fa-f]"
)
# The same families for the stdlib fallback: looser shapes, each after one leading class that sre can skip
# to. A number is a run of digits and separators; IPv6 is a digit in a group next to a colon (or a first group
# followed by two colons), so that an address whose only digits are in its last group is still seen.
_STDLIB_GATE_NUM = ("0-9+(", r"(?<=[0-9+(])[0-9 ().+-]{6,}")
_STDLIB_GATE_IP6 = ("0-9:", r"(?<=[0-9])[0-9A-Fa-f]{0,3}:[0-9A-Fa-f]{0,4}:|(?<=:)[0-9A-Fa-f]{0,3}[0-9]")
_STDLIB_GATE_IBAN = ("A-Z", r"(?<=[A-Z])[A-Z][0-9]{2}")
# The exact patterns run only in a window around each gate hit: (chars before, chars after). "Before" covers
# what an exact match may have ahead of its gate shape ("1-" or "1 (" before a US number, up to 39 characters
# of IPv6 groups before a "::"); "after" only has to fit the shortest exact match that a gate hit starts (an
# IBAN needs two groups after the check digits), since a match reaching the window's end is re-matched.
_WINDOW = {"num": (4, 16), "iban": (2, 16), "ip6": (46, 16)}
# The exact patterns look at most 2 characters past a match: a match ending this close to a window's end
# (which the pattern sees as the end of the text) is re-matched against the whole text.
_EDGE = 3

# ---------------------------------------------------------------------------------------------------------
# Exact patterns (stdlib `re`). One combined pass for everything that starts with a digit, '+' or '(' keeps
# the scan's first-character set small; IBAN (uppercase start) and IPv6 (hex start) get their own passes
# because their first characters are common in prose and would slow the numeric scan down.
# sre only narrows its scan to a first-character set when the pattern starts with one class (or every branch
# with a literal): each pattern therefore consumes its first character before branching, and the boundary
# lookbehinds include that character ("not preceded by a word character" is `(?<![\w.]\d)` after a digit).
# Spans are the whole match; the branch is `lastgroup`.
_NUM = re.compile(
    r"""
    [0-9+(]
    (?:
      (?P<ipv4>(?<=\d)(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d))
    | (?P<cc>(?<=\d)(?<![\w.+/-]\d)(?<!\d[ ]\d)(?:[ -]?\d){12,18}(?!-?\d|\w|\.\d))
    | (?P<ssn>(?<=\d)(?<![\w.+/-]\d)(?<!\d[ ]\d)\d{2}(?P<ssep>[- ])\d{2}(?P=ssep)\d{4}(?![\w/-]|[ .]\d))
    | (?P<ssnbare>(?<=\d)(?<![\w.+/-]\d)\d{8}(?![\w/-]|\.\d))
    | (?P<e164>(?<=\+)(?<![\w+]\+)[1-9]\d{7,14}(?!\w|[.-]\d))
    | (?P<intl>(?<=\+)(?<![\w+]\+)[1-9]\d{0,3}(?:(?:[ .-]|[ .-]?\(\d{1,4}\)[ .-]?)\d{1,8}){1,6}(?!\w|[.-]\d))
    | (?P<nanp>(?<![\w.+/-].)
        (?:(?<=\()\d{3}\)[ ]?                              # (555) ...
          |(?<!\d[ .].)                                    # not the tail of "12 345 678 ..."
           (?:(?<=1)[ .-](?:\(\d{3}\)[ ]?|\d{3}[ .-])       # 1-555-..., 1 (555) ...
             |(?<=\d)\d\d[ .-]))                           # 555-...
        \d{3}[ .-]\d{4}(?!\w|[.-]\d))
    )
    """,
    re.VERBOSE | re.ASCII,
)
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?(?![A-Za-z0-9])", re.ASCII
)
_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w:.].)"
    r"(?:(?<=:)|(?<=[0-9A-Fa-f])[0-9A-Fa-f]{0,3}:)"  # the first group, or the first colon of a leading "::"
    r"(?:[0-9A-Fa-f]{0,4}:){1,6}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\w)",
    re.ASCII,
)

# E-mail is matched around each '@' rather than by scanning: an unanchored local-part pattern would try to
# start at every letter of the prose. The domain is matched forwards from the '@', the local part forwards in
# the reversed 65 characters before it (the run of local-part characters that ends at the '@'; 65 tells a
# local part longer than RFC 5321's 64 from one that fits).
# The domain may not run on into another label, and a ':' glued to it is scp syntax (git@github.com:org/repo).
_EMAIL_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}(?P<tld>[A-Za-z]{2,24})"
    r"(?![A-Za-z0-9-]|\.[A-Za-z0-9]|:\S)"
)
_EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+-]{1,65}")
# "icon@2x.png" and "logo@3x.svg" are asset names, not addresses.
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp ico pdf txt json yaml yml js jsx ts tsx css html lock log csv zip tar gz".split()
)

# Context for the bare 9-digit SSN form, and the labels that make an SSN-shaped number something else.
_SSN_CONTEXT = re.compile(
    r"(?i)\b(?:ssn|ss#|social\s+security(?:\s+(?:number|no\.?|num|#))?)[\s:#=.-]{0,6}(?:is\s+)?$"
)
_SSN_NOT = re.compile(
    r"(?i)(?:\b(?:order|invoice|inv|ref|reference|ticket|case|tracking|sku|part|model|serial|po|confirmation|"
    r"account|acct|routing)\b(?:\s*(?:no\.?|number|num|id))?[\s:#=.-]{0,4}|#\s*)$"
)
# "version 1.2.3.4" and "section 1.2.3.4" are dotted numbers, not addresses.
_IPV4_NOT = re.compile(
    r"(?i)\b(?:version|ver|release|build|rev|revision|section|chapter|step|clause|oid)[\s:=v.]{0,4}$"
)

_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28,
    "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22,
    "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


class PiiDetector:
    """Finds PII entities in text; built once per policy load, then called on the hot path.

    `entities` limits the search (None = all of `PII_ENTITIES`). A pattern family that serves none of them is
    not run at all (an e-mail-only detector never scans for digits); within a family, findings of unwanted
    entities are dropped before overlaps are resolved, so they never hide a wanted one."""

    __slots__ = ("_entities", "_email", "_numeric", "_iban", "_ip6", "_gate")

    _gate: TextGate | None

    def __init__(self, entities: Iterable[str] | None = None) -> None:
        if isinstance(entities, str):
            raise TypeError("entities must be a collection of entity names, not a single string")
        wanted = frozenset(PII_ENTITIES if entities is None else entities)
        unknown = sorted(wanted.difference(PII_ENTITIES))
        if unknown:
            raise ValueError(f"unknown PII entity {', '.join(map(repr, unknown))}; known: {', '.join(PII_ENTITIES)}")
        self._entities = wanted
        self._email = "EMAIL" in wanted
        self._numeric = bool(wanted & _NUMERIC_ENTITIES)
        self._iban = "IBAN" in wanted
        self._ip6 = "IP_ADDRESS" in wanted
        families = (
            (self._numeric, _GATE_NUM, _STDLIB_GATE_NUM),
            (self._ip6, _GATE_IP6, _STDLIB_GATE_IP6),
            (self._iban, _GATE_IBAN, _STDLIB_GATE_IBAN),
        )
        wanted_families = [(shape, stdlib) for on, shape, stdlib in families if on]
        self._gate = None
        if wanted_families:
            first = "".join(stdlib[0] for _, stdlib in wanted_families)
            stdlib_gate = f"[{first}](?:{'|'.join(stdlib[1] for _, stdlib in wanted_families)})"
            self._gate = TextGate("|".join(shape for shape, _ in wanted_families), stdlib_gate)

    @property
    def entities(self) -> frozenset[str]:
        return self._entities

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings sorted by start; `text[f.start:f.end]` is the entity as written."""
        found: list[tuple[int, int, int, str]] = []
        if self._email and "@" in text:
            self._find_emails(text, found)
        if self._gate is not None and _has_digit(text):
            self._find_gated(self._gate, text, found)
        if not found:
            return []
        return resolve_overlaps(found, self._entities)

    # -- e-mail ----------------------------------------------------------------------------------------------
    @staticmethod
    def _find_emails(text: str, found: list[tuple[int, int, int, str]]) -> None:
        at = text.find("@")
        while at != -1:
            next_from = at + 1
            domain = _EMAIL_DOMAIN.match(text, at + 1)
            if domain is not None and domain.group("tld").lower() not in _FILE_EXTENSIONS:
                stop = at - 66  # the reversed slice holds text[at-65:at], or all of text[:at]
                before = text[at - 1 : stop if stop >= 0 else None : -1] if at else ""
                local = _EMAIL_LOCAL_REVERSED.match(before)
                if local is not None and local.end() <= 64:
                    start = at - local.end()
                    while start < at and text[start] in "._%+-":
                        start += 1
                    local_part = text[start:at]
                    if local_part and not local_part.endswith(".") and ".." not in local_part:
                        found.append((start, domain.end(), _RANK["EMAIL"], "EMAIL"))
                        next_from = domain.end()
            at = text.find("@", next_from)

    # -- everything behind the gate ---------------------------------------------------------------------------
    def _find_gated(self, gate: TextGate, text: str, found: list[tuple[int, int, int, str]]) -> None:
        n = len(text)
        windows: dict[str, list[list[int]]] = {}
        for start, end in gate.spans(text):
            # The gate's shapes are told apart by their text: only IPv6 has a colon, only IBAN two capitals.
            if ":" in text[start:end]:
                family = "ip6"
            elif "A" <= text[start] <= "Z":
                family = "iban"
            else:
                family = "num"
            back, ahead = _WINDOW[family]
            lo = max(0, start - back)
            hi = min(n, end + ahead)
            spans = windows.get(family)
            if spans is None:
                windows[family] = [[lo, hi]]
            elif lo <= spans[-1][1]:
                spans[-1][1] = hi
            else:
                spans.append([lo, hi])
        for lo, hi in windows.get("num", ()):
            self._find_numeric(text, lo, hi, found)
        for lo, hi in windows.get("iban", ()):
            _find_ibans(text, lo, hi, found)
        for lo, hi in windows.get("ip6", ()):
            _find_ipv6(text, lo, hi, found)

    def _find_numeric(self, text: str, lo: int, hi: int, found: list[tuple[int, int, int, str]]) -> None:
        entities = self._entities
        for m in _window_matches(_NUM, text, lo, hi):
            kind = m.lastgroup
            start, end = m.span()
            if kind == "cc":
                if "CREDIT_CARD" in entities:
                    span = _card_span(m.group(), start)
                    if span is not None:
                        found.append((span[0], span[1], _RANK["CREDIT_CARD"], "CREDIT_CARD"))
            elif kind == "ssn":
                if "US_SSN" in entities and _ssn_ok(m.group()[:3], m.group()[4:6], m.group()[7:]):
                    if _SSN_NOT.search(text, max(0, start - 40), start) is None:
                        found.append((start, end, _RANK["US_SSN"], "US_SSN"))
            elif kind == "ssnbare":
                digits = m.group()
                if "US_SSN" in entities and _ssn_ok(digits[:3], digits[3:5], digits[5:]):
                    if _SSN_CONTEXT.search(text, max(0, start - 40), start) is not None:
                        found.append((start, end, _RANK["US_SSN"], "US_SSN"))
            elif kind == "ipv4":
                if "IP_ADDRESS" in entities and _ipv4_ok(m.group()):
                    if _IPV4_NOT.search(text, max(0, start - 24), start) is None:
                        found.append((start, end, _RANK["IP_ADDRESS"], "IP_ADDRESS"))
            elif "PHONE" in entities and _phone_ok(kind, m.group()):
                found.append((start, end, _RANK["PHONE"], "PHONE"))


def _window_matches(pattern: re.Pattern[str], text: str, lo: int, hi: int) -> list[re.Match[str]]:
    """`pattern`'s matches in `text[lo:hi]`, with lookbehinds seeing the text before `lo` and a match that may
    have been cut (or accepted) by the window's end taken again against the whole text."""
    matches = []
    whole = hi >= len(text)
    for m in pattern.finditer(text, lo, hi):
        if not whole and m.end() > hi - _EDGE:
            again = pattern.match(text, m.start())
            if again is None:
                continue
            m = again
        matches.append(m)
    return matches


def _has_digit(text: str) -> bool:
    """About 1 us on 4 KB: ten memchr-backed scans beat any regex scan of the whole text by an order of magnitude."""
    return (
        "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
        or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
    )  # fmt: skip


def resolve_overlaps(found: list[tuple[int, int, int, str]], entities: frozenset[str]) -> list[Finding]:
    """Sorted, non-overlapping findings of the wanted kinds from (start, end, rank, kind) candidates: of two
    overlapping ones the better-ranked (then the longer) stays. Linear after the sort, however many there are.
    Shared with `secrets.py`."""
    found.sort(key=lambda f: (f[0], f[2], f[0] - f[1]))
    kept: list[tuple[int, int, int, str]] = []
    for item in found:
        if item[3] not in entities:
            continue
        if kept and item[0] < kept[-1][1]:
            last = kept[-1]
            if (item[2], item[0] - item[1]) < (last[2], last[0] - last[1]):
                kept[-1] = item  # `last` started no later, so `item` cannot overlap anything before it
            continue
        kept.append(item)
    return [Finding(kind, start, end) for start, end, _, kind in kept]


# -- validators ------------------------------------------------------------------------------------------------
def _luhn_ok(digits: str) -> bool:
    total = sum(map(int, digits[-1::-2])) + sum(_LUHN_DOUBLE[c] for c in digits[-2::-2])
    return total % 10 == 0


_LUHN_DOUBLE = {str(d): (2 * d if d < 5 else 2 * d - 9) for d in range(10)}


def _iin_ok(digits: str) -> bool:
    """The number belongs to a card network that issues this length: Luhn alone passes one random digit run in
    ten, so without a known issuer prefix order numbers and millisecond timestamps would be reported as cards."""
    n = len(digits)
    d1 = digits[0]
    d2 = int(digits[:2])
    d3 = int(digits[:3])
    d4 = int(digits[:4])
    d6 = int(digits[:6])
    if d1 == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= d2 <= 55 or 2221 <= d4 <= 2720:  # Mastercard
        return n == 16
    if d2 in (34, 37):  # American Express
        return n == 15
    if 2200 <= d4 <= 2204:  # Mir
        return 16 <= n <= 19
    if 300 <= d3 <= 305 or d2 in (36, 38, 39) or d4 == 3095:  # Diners Club
        return 14 <= n <= 19
    if 3528 <= d4 <= 3589:  # JCB
        return 16 <= n <= 19
    if d4 == 6011 or 644 <= d3 <= 649 or d2 == 65 or 622126 <= d6 <= 622925:  # Discover
        return 16 <= n <= 19
    if d2 == 62:  # UnionPay
        return 16 <= n <= 19
    if d2 == 50 or 56 <= d2 <= 58 or d1 == "6":  # Maestro
        return 12 <= n <= 19
    return False


def _card_span(candidate: str, start: int) -> tuple[int, int] | None:
    """The card within a candidate, trimming trailing groups: "4111 1111 1111 1111 12/25" carries an expiry."""
    groups = candidate.replace("-", " ").split(" ")
    if len(groups) > 1 and min(len(g) for g in groups[:-1]) < 3:
        return None  # "4 1 1 1 ..." or "12-3-4567..." is not how cards are written
    for count in range(len(groups), 0, -1):
        digits = "".join(groups[:count])
        if len(digits) < 13:
            break
        if len(digits) <= 19 and _luhn_ok(digits) and _iin_ok(digits):
            length = sum(len(g) for g in groups[:count]) + count - 1
            return start, start + length
    return None


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    return area != "000" and area != "666" and area[0] != "9" and group != "00" and serial != "0000"


def _ipv4_ok(candidate: str) -> bool:
    for octet in candidate.split("."):
        if len(octet) > 1 and octet[0] == "0":
            return False  # "01.02.03.04" is not how addresses are written (and is ambiguous octal)
        if int(octet) > 255:
            return False
    return True


def _phone_ok(kind: str | None, candidate: str) -> bool:
    digits = "".join(filter(str.isdigit, candidate))
    if kind == "nanp":
        ok = len(digits) in (10, 11)
    else:  # e164, intl: E.164 allows up to 15 digits; fewer than 8 is a short code or an extension
        ok = 8 <= len(digits) <= 15
    return ok and digits.count(digits[0]) != len(digits)  # "000-000-0000" is a placeholder


def _find_ibans(text: str, lo: int, hi: int, found: list[tuple[int, int, int, str]]) -> None:
    for m in _window_matches(_IBAN, text, lo, hi):
        candidate = m.group()
        expected = _IBAN_LENGTHS.get(candidate[:2])
        if expected is None:
            continue
        compact = candidate.replace(" ", "")
        if len(compact) < expected:
            continue
        end = m.end()
        if len(compact) > expected:
            # A following group of digits ("... 7034 2024") was taken in: keep the country's length.
            seen = 0
            for index, char in enumerate(candidate):
                if char != " ":
                    seen += 1
                    if seen == expected:
                        end = m.start() + index + 1
                        break
            compact = compact[:expected]
        if _mod97_ok(compact):
            found.append((m.start(), end, _RANK["IBAN"], "IBAN"))


def _mod97_ok(iban: str) -> bool:
    """ISO 7064 MOD 97-10: the country code and check digits moved to the end, letters as 10..35, mod 97 == 1."""
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _find_ipv6(text: str, lo: int, hi: int, found: list[tuple[int, int, int, str]]) -> None:
    for m in _window_matches(_IPV6, text, lo, hi):
        candidate = m.group()
        # A digit is required: "cafe::bad" or "Add::Face" in code are words, and no deployed address is all letters.
        if not any(c.isdigit() for c in candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        found.append((m.start(), m.end(), _RANK["IP_ADDRESS"], "IP_ADDRESS"))
