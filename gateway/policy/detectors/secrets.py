"""The `secrets` check's detector: cloud and SaaS credentials, private keys, JWTs and secret-looking assignments.

Every kind has a *trigger*: a short literal that any instance must contain (a token prefix such as `ghp_` or
`AKIA`, `-----BEGIN `, `eyJ` for a JWT header, or a key name such as `password` for an assignment). A single
gate pass finds all triggers at once (google-re2 when installed: a DFA, so the union of ~20 literals costs
one linear scan of about 7 us per 4 KB; without re2, a `str.find` loop per probe literal). Text without
a trigger, which is most text, stops there. Each trigger then gets one anchored stdlib match at its
position, and the checks that a regex cannot express: word boundaries, randomness (Shannon entropy;
placeholders such as `sk-xxxx...`, `<your-key>`, `${VAR}`, `changeme` are rejected), a JWT header that
decodes to JSON with "alg", a PEM block's END line.

Assignments (`password = "..."`, `api_key: ...`, `"client_secret": "..."`, `--token=...`) are found from the
key name outwards, and the finding's span is the value only, so a redaction keeps the key and the operator:
`password = [GENERIC_SECRET_1]`.

Every anchored pattern is bounded (or a single class followed by a disjoint one), and a trigger that sits
inside the run it would start (`sk-sk-sk-...`, `eyJeyJ...`) is rejected by its boundary check before any
pattern runs, so adversarial input stays linear.

Limits, chosen for precision: an assignment's value must be a single word (a passphrase with spaces is not
reported); an unquoted value shaped like a code reference (`settings.KEY`, `OPENAI_API_KEY`, `some_variable`)
is taken for one; key names are recognised by their words (password, passwd, passphrase, secret, token,
api key), and names that hold something else (`password_hash`, `token_url`, `secret_file`, `max_tokens`) are
skipped; tokens need a digit and a random-looking body, so documentation placeholders are not reported
(except AWS's documented example keys, which have the real format and serve as fixtures).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable

from gateway.policy.detectors import Finding
from gateway.policy.detectors.pii import TextGate, resolve_overlaps

SECRET_KINDS: tuple[str, ...] = (
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GITHUB_TOKEN",
    "OPENAI_KEY",
    "ANTHROPIC_KEY",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "PRIVATE_KEY",
    "JWT",
    "GENERIC_SECRET",
)

# Of two overlapping findings the lower rank stays: a token with a known format inside `api_key = "..."` is
# reported as that token, not as a generic secret.
_RANK = {
    "PRIVATE_KEY": 0,
    "AWS_ACCESS_KEY": 1,
    "GITHUB_TOKEN": 1,
    "OPENAI_KEY": 1,
    "ANTHROPIC_KEY": 1,
    "SLACK_TOKEN": 1,
    "STRIPE_KEY": 1,
    "JWT": 2,
    "AWS_SECRET_KEY": 3,
    "GENERIC_SECRET": 4,
}

# The assignment key names that make a value worth checking (matched case-insensitively; `passw` covers
# password and passwd).
_KEY_TRIGGER = r"(?i:passw|passphrase|secret|token|api[_-]?key)"

# Trigger literals per kind. The gate has no groups (re2's wrapper is slow with them): a hit is dispatched
# on its text.
_TRIGGERS: dict[str, str] = {
    "AWS_ACCESS_KEY": r"A(?:KIA|SIA)",
    "GITHUB_TOKEN": r"gh[pousr]_|github_pat_",
    "OPENAI_KEY": r"sk-",
    "ANTHROPIC_KEY": r"sk-",
    "SLACK_TOKEN": r"xox[abprs]-|hooks\.slack\.com/",
    "STRIPE_KEY": r"[rs]k_(?:live|test)_",
    "PRIVATE_KEY": r"-----BEGIN ",
    "JWT": r"eyJ",
    "AWS_SECRET_KEY": _KEY_TRIGGER,
    "GENERIC_SECRET": _KEY_TRIGGER,
}

# The gate's fallback without re2 (sre has no fast path for a union of literals, least of all a case-insensitive
# one): `str.find` for short probes, each occurrence confirmed by an anchored match of the trigger union, so
# the spans are the ones the regex gate reports. Key-name probes are searched in the lowercased text, and
# probes with an underscore only when the text has one (prose rarely does).
_KEY_PROBES = ("pass", "secret", "token", "api")
_PROBES: dict[str, tuple[str, ...]] = {
    "AWS_ACCESS_KEY": ("AKIA", "ASIA"),
    "GITHUB_TOKEN": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    "OPENAI_KEY": ("sk-",),
    "ANTHROPIC_KEY": ("sk-",),
    "SLACK_TOKEN": ("xox", "hooks.slack.com/"),
    "STRIPE_KEY": ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    "PRIVATE_KEY": ("-----BEGIN ",),
    "JWT": ("eyJ",),
}

_BASE62 = "A-Za-z0-9"
_AWS_ACCESS = re.compile(r"A(?:KIA|SIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
# GitHub tokens are 36 characters after the prefix today, but GitHub reserves the right to make them longer
# (up to 255 in all), so longer bodies are accepted.
_GITHUB = re.compile(
    rf"gh[pousr]_[{_BASE62}]{{36,251}}(?![{_BASE62}_])|github_pat_[{_BASE62}_]{{60,244}}(?![{_BASE62}_])"
)
_ANTHROPIC = re.compile(r"sk-ant-[A-Za-z0-9_-]{32,400}(?![A-Za-z0-9_-])")
_OPENAI = re.compile(r"sk-(?:(?:proj|svcacct|admin)-)?(?P<body>[A-Za-z0-9_-]{20,300})(?![A-Za-z0-9_-])")
_SLACK_TOKEN = re.compile(r"xox[abprs]-(?P<body>[A-Za-z0-9-]{10,250})(?![A-Za-z0-9-])")
_SLACK_HOOK = re.compile(
    r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<path>[A-Za-z0-9_/-]{20,200})(?![A-Za-z0-9_/-])"
)
_STRIPE = re.compile(r"[rs]k_(?:live|test)_(?P<body>[A-Za-z0-9]{16,247})(?![A-Za-z0-9])")
_PEM_HEADER = re.compile(r"-----BEGIN (?P<label>(?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?)-----")
# A JWT: base64url header, payload and signature. An empty signature is an unsecured JWT (alg "none").
_JWT = re.compile(
    r"eyJ[A-Za-z0-9_-]{5,4096}\.(?P<payload>[A-Za-z0-9_-]{2,65536})\.(?P<sig>[A-Za-z0-9_-]{0,4096})(?![A-Za-z0-9_-])"
)

# Assignments: the key name around a key trigger, then what follows it.
_IDENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_IDENT_REST = re.compile(r"[A-Za-z0-9_.-]{0,64}")
_ASSIGN_TAIL = re.compile(
    r"""\\?["']?\]?[ \t]{0,16}(?:=>|:=|:(?!:)|=(?!=))[ \t]{0,16}
    (?:\\?"(?P<dq>[^"\\\r\n]{1,512})\\?"
      |'(?P<sq>[^'\\\r\n]{1,512})'
      |`(?P<bq>[^`\\\r\n]{1,512})`
      |(?P<bare>[^\s"'`,;(){}\[\]<>]{1,512}))""",
    re.VERBOSE,
)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SECRET_WORD_SUFFIXES = ("password", "passwd", "passphrase", "secret", "token", "apikey")
# Key names that contain a secret word but hold something else: a hash of a password, a file or URL where
# the secret lives, a token budget.
_NOT_SECRET_WORDS = frozenset(
    "hash hashed digest checksum sha sha1 sha256 md5 file path dir url uri endpoint name type length len count "
    "size min max limit limits policy field header prefix env arn id ttl expiry expires timeout label "
    "placeholder".split()
)
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")
# AWS's documented example credentials have the real format and are what policy packs and tests use as
# fixtures, so they are reported although the placeholder check (the word "example") would reject them.
_AWS_DOCUMENTED = frozenset({"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
_REFERENCE = re.compile(
    r"[A-Za-z_$][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+"  # settings.API_KEY, os.environ.get
    r"|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # OPENAI_API_KEY (an environment variable's name)
    r"|[a-z][a-z0-9]*(?:_[a-z0-9]+)+"  # access_token_value (a variable)
)
# Documentation placeholders and redactions, searched in the lowercased value (sre's IGNORECASE is twice as slow).
_PLACEHOLDER = re.compile(
    r"xxxx|\*\*\*\*|\.\.\.\.|change[_-]?me|your|example|placeholder|redacted|dummy|sample|replace|insert|fixme|"
    r"todo|fake|(?:secret|key|token)_here|here>"
)
_DIGIT = re.compile(r"[0-9]")

_MIN_ENTROPY = 3.5
_MIN_LENGTH = 12


class SecretsDetector:
    """Finds credentials in text; built once per policy load, then called on the hot path.

    `kinds` limits the search (None = all of `SECRET_KINDS`); the gate then holds only the triggers of the
    kinds asked for."""

    __slots__ = ("_kinds", "_gate", "_assignments")

    def __init__(self, kinds: Iterable[str] | None = None) -> None:
        if isinstance(kinds, str):
            raise TypeError("kinds must be a collection of secret kind names, not a single string")
        wanted = frozenset(SECRET_KINDS if kinds is None else kinds)
        unknown = sorted(wanted.difference(SECRET_KINDS))
        if unknown:
            raise ValueError(f"unknown secret kind {', '.join(map(repr, unknown))}; known: {', '.join(SECRET_KINDS)}")
        self._kinds = wanted
        self._assignments = bool(wanted & {"AWS_SECRET_KEY", "GENERIC_SECRET"})
        triggers = list(dict.fromkeys(_TRIGGERS[kind] for kind in SECRET_KINDS if kind in wanted))
        wanted_probes = (probe for kind in SECRET_KINDS if kind in wanted for probe in _PROBES.get(kind, ()))
        probes = tuple(dict.fromkeys(wanted_probes))
        fallback = functools.partial(
            _probe_spans,
            tuple(probe for probe in probes if "_" not in probe),
            tuple(probe for probe in probes if "_" in probe),
            _KEY_PROBES if self._assignments else (),
            re.compile("|".join(triggers)),
        )
        self._gate = TextGate("|".join(triggers), fallback) if triggers else None

    @property
    def kinds(self) -> frozenset[str]:
        return self._kinds

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings sorted by start; an assignment's span is its value only."""
        if self._gate is None:
            return []
        hits = self._gate.spans(text)
        if not hits:
            return []
        found: list[tuple[int, int, int, str]] = []
        skip_until = 0  # the end of the last assignment's value: triggers inside it were already looked at
        pem_ends: dict[str, int] = {}
        pem_starts: list[int] | None = None  # every "-----BEGIN " hit, built at the first one
        pem_index = 0
        for start, end in hits:
            # Dispatch on the trigger's text. Only 's' and 'A' are ambiguous: a key name (secret, API_KEY) may
            # start with them too.
            first = text[start]
            if first == "s" and text[start + 2] != "c":
                if text[start + 2] == "-":
                    _find_sk(text, start, found)
                else:
                    _find_stripe(text, start, found)
            elif first == "A" and end - start == 4:
                _find_aws_access(text, start, found)
            elif first == "g":
                _find_github(text, start, found)
            elif first == "e":
                _find_jwt(text, start, found)
            elif first == "-":
                if pem_starts is None:
                    pem_starts = [s for s, _ in hits if text[s] == "-"]
                pem_index += 1
                next_begin = pem_starts[pem_index] if pem_index < len(pem_starts) else len(text)
                _find_private_key(text, start, next_begin, pem_ends, found)
            elif first == "x":
                _find_slack_token(text, start, found)
            elif first == "h":
                _find_slack_hook(text, start, found)
            elif first == "r":
                _find_stripe(text, start, found)
            elif self._assignments and start >= skip_until:
                skip_until = max(skip_until, _find_assignment(text, start, end, found))
        if not found:
            return []
        return resolve_overlaps(found, self._kinds)


def _probe_spans(
    plain: tuple[str, ...],
    underscored: tuple[str, ...],
    keys: tuple[str, ...],
    triggers: re.Pattern[str],
    text: str,
) -> list[tuple[int, int]]:
    """The gate without re2: the trigger spans the regex gate would report (in order, non-overlapping)."""
    lowered = text.lower() if keys else text
    if len(lowered) != len(text):
        # Some characters lowercase to two (U+0130): offsets in `lowered` would not be offsets in `text`.
        return [m.span() for m in triggers.finditer(text)]
    probes = [(text, plain), (lowered, keys)]
    if "_" in text:
        probes.append((text, underscored))
    hits: list[tuple[int, int]] = []
    match = triggers.match
    for source, needles in probes:
        for needle in needles:
            at = source.find(needle)
            while at != -1:
                m = match(text, at)
                if m is not None:
                    hits.append(m.span())
                at = source.find(needle, at + 1)
    if len(hits) > 1:
        hits.sort(key=lambda hit: (hit[0], -hit[1]))
        kept = [hits[0]]
        for hit in hits:
            if hit[0] >= kept[-1][1]:
                kept.append(hit)
        hits = kept
    return hits


# -- token formats ---------------------------------------------------------------------------------------------
def _starts_word(text: str, start: int, extra: str = "") -> bool:
    """The trigger is not the middle of a longer token ("task-", "_ghp_", "KAKIA", "JeyJ")."""
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isascii() and (before.isalnum() or before in extra))


def _find_aws_access(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    if not _starts_word(text, start):
        return
    m = _AWS_ACCESS.match(text, start)
    if m is not None and (m.group() in _AWS_DOCUMENTED or _random_enough(m.group()[4:], 3.0)):
        found.append((start, m.end(), _RANK["AWS_ACCESS_KEY"], "AWS_ACCESS_KEY"))


def _find_github(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    if not _starts_word(text, start, "_"):
        return
    m = _GITHUB.match(text, start)
    if m is not None and _random_enough(m.group()[4:], 3.5):
        found.append((start, m.end(), _RANK["GITHUB_TOKEN"], "GITHUB_TOKEN"))


def _find_sk(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    if not _starts_word(text, start, "_-"):
        return
    if text.startswith("sk-ant-", start):
        m = _ANTHROPIC.match(text, start)
        if m is not None and _random_enough(m.group()[7:], 3.5):
            found.append((start, m.end(), _RANK["ANTHROPIC_KEY"], "ANTHROPIC_KEY"))
        return
    m = _OPENAI.match(text, start)
    # "sk-your-openai-key-goes-here" and "sk-learn" are words; a key's body is random and has digits.
    if m is not None and _random_enough(m.group("body"), 3.5):
        found.append((start, m.end(), _RANK["OPENAI_KEY"], "OPENAI_KEY"))


def _find_slack_token(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    if not _starts_word(text, start, "_-"):
        return
    m = _SLACK_TOKEN.match(text, start)
    if m is not None and _random_enough(m.group("body"), 3.0):
        found.append((start, m.end(), _RANK["SLACK_TOKEN"], "SLACK_TOKEN"))


def _find_slack_hook(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    m = _SLACK_HOOK.match(text, start)
    if m is None:
        return
    # The URL's last segment is the secret; T00000000/B00000000/XXXXXXXX... is the documentation's.
    if not _random_enough(m.group("path").rsplit("/", 1)[-1], 3.0):
        return
    begin = start
    for scheme in ("https://", "http://"):
        if text.startswith(scheme, start - len(scheme)):
            begin = start - len(scheme)
            break
    found.append((begin, m.end(), _RANK["SLACK_TOKEN"], "SLACK_TOKEN"))


def _find_stripe(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    if not _starts_word(text, start, "_"):
        return
    m = _STRIPE.match(text, start)
    if m is not None and _random_enough(m.group("body"), 3.0):
        found.append((start, m.end(), _RANK["STRIPE_KEY"], "STRIPE_KEY"))


def _find_private_key(
    text: str, start: int, next_begin: int, end_markers: dict[str, int], found: list[tuple[int, int, int, str]]
) -> None:
    """The whole block when its END line follows (before the next BEGIN), the header line alone otherwise.

    `end_markers` remembers, per END line, where it was last found (-1: nowhere after that point), so a text
    of many headers and no END is still scanned once, not once per header."""
    m = _PEM_HEADER.match(text, start)
    if m is None:
        return
    marker = f"-----END {m.group('label')}-----"
    position = end_markers.get(marker)
    if position is None or (position != -1 and position < m.end()):
        position = text.find(marker, m.end())
        end_markers[marker] = position
    if position != -1 and position < next_begin:
        found.append((start, position + len(marker), _RANK["PRIVATE_KEY"], "PRIVATE_KEY"))
    else:
        found.append((start, m.end(), _RANK["PRIVATE_KEY"], "PRIVATE_KEY"))


def _find_jwt(text: str, start: int, found: list[tuple[int, int, int, str]]) -> None:
    if not _starts_word(text, start, "_-"):
        return
    m = _JWT.match(text, start)
    if m is None:
        return
    header = _jwt_header(text[start : m.start("payload") - 1])
    if header is None:
        return
    if not m.group("sig") and str(header.get("alg", "")).lower() != "none":
        return  # two segments and a full stop: the end of a sentence, not an unsecured token
    found.append((start, m.end(), _RANK["JWT"], "JWT"))


def _jwt_header(segment: str) -> dict[str, object] | None:
    """The decoded JOSE header when it is a JSON object naming an "alg"; base64 of other JSON is not a JWT."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("alg"), str):
        return decoded
    return None


# -- assignments -----------------------------------------------------------------------------------------------
def _find_assignment(text: str, start: int, end: int, found: list[tuple[int, int, int, str]]) -> int:
    """Looks at the assignment whose key contains the trigger at `start:end`; returns where it was left off
    (the end of the key, or of the value when there is one), so later triggers inside it are skipped."""
    lo = start
    limit = max(0, start - 64)
    while lo > limit and text[lo - 1] in _IDENT_CHARS:
        lo -= 1
    key_end = _IDENT_REST.match(text, end)
    assert key_end is not None  # `{0,64}` always matches
    hi = key_end.end()
    tail = _ASSIGN_TAIL.match(text, hi)
    if tail is None:
        return hi
    words = _key_words(text[lo:hi])
    if not _is_secret_key(words):
        return tail.end()
    group = tail.lastgroup
    assert group is not None
    value = tail.group(group)
    value_start, value_end = tail.span(group)
    quoted = group != "bare"
    if "secret" in words and ("aws" in words or words[-3:] == ["secret", "access", "key"]):
        if _AWS_SECRET_VALUE.fullmatch(value) and (value in _AWS_DOCUMENTED or _random_enough(value, 4.0)):
            found.append((value_start, value_end, _RANK["AWS_SECRET_KEY"], "AWS_SECRET_KEY"))
            return value_end
    if _generic_secret(value, quoted):
        found.append((value_start, value_end, _RANK["GENERIC_SECRET"], "GENERIC_SECRET"))
    return value_end


def _key_words(key: str) -> list[str]:
    """`DB_PASSWORD` -> [db, password]; `apiKey` -> [api, key]; `SecretAccessKey` -> [secret, access, key]."""
    return [word.lower() for word in _WORDS.findall(key)]


def _is_secret_key(words: list[str]) -> bool:
    if not words or any(word in _NOT_SECRET_WORDS for word in words):
        return False
    for index, word in enumerate(words):
        if word.endswith(_SECRET_WORD_SUFFIXES):  # password, db_password, dbpassword, authtoken, clientsecret
            return True
        if word == "api" and index + 1 < len(words) and words[index + 1] == "key":
            return True
    return False  # max_tokens, tokenizer, secretary, passwords


def _generic_secret(value: str, quoted: bool) -> bool:
    """A value that looks like a credential rather than a placeholder, a reference to one, or prose."""
    if len(value) < _MIN_LENGTH or value.split() != [value]:
        return False  # prose, or a passphrase with spaces (not caught: see the module's limits)
    if value[0] in "$%{<[#" or "${" in value or "{{" in value or "://" in value:
        return False  # ${VAR}, %(name)s, {{ template }}, <your-key>, a URL
    if value.startswith(("/", "./", "../", "~/")) and value.count("/") >= 2:
        return False  # a path to where the secret is kept
    if _PLACEHOLDER.search(value.lower()):
        return False
    if not quoted and _REFERENCE.fullmatch(value):
        return False  # settings.API_KEY, OPENAI_API_KEY, access_token_value: code, not a literal
    return _shannon(value) >= _MIN_ENTROPY


# -- shared --------------------------------------------------------------------------------------------------
def _shannon(value: str) -> float:
    """Bits per character: about 4.7 for random base62, about 4 for random hex, under 3 for words and repeats.

    H = log2(n) - sum(c * log2(c)) / n over the character counts c, with c * log2(c) from a table: this runs
    for every candidate value on the hot path, and a per-character `log2` in Python costs microseconds."""
    length = len(value)
    return math.log2(length) - sum(map(_C_LOG2_C.__getitem__, Counter(value).values())) / length


# A count never exceeds the length of what is measured: at most 512 (an assignment's value; token bodies are
# shorter), so the table has room to spare.
_C_LOG2_C = [0.0] + [c * math.log2(c) for c in range(1, 1025)]


def _random_enough(body: str, bits: float) -> bool:
    """A token's random part: varied enough, with a digit, and no placeholder word (sk-xxxx..., ghp_your...)."""
    return _shannon(body) >= bits and _DIGIT.search(body) is not None and _PLACEHOLDER.search(body.lower()) is None
