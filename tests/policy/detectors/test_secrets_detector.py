"""`SecretsDetector`: a labelled corpus (precision and recall per kind), value-only spans, options, linear time.

The corpus is module-level data so that `loadtest/detection_quality.py` can print the same figures. Tokens
are made up from a seeded generator at import, never written out: the source then holds no string that
a repository's secret scanning would (rightly) stop. Hard negatives are what a naive pattern would report:
documentation placeholders, truncated or malformed tokens, prose about passwords, references to secrets
kept elsewhere, hashes, base64 image data.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter

import pytest

from detection_support import mistakes, score

from gateway.policy.detectors import Finding
from gateway.policy.detectors import pii
from gateway.policy.detectors.secrets import SECRET_KINDS, SecretsDetector

Case = tuple[str, tuple[str, ...]]

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
BASE64 = ALNUM + "+/"
BASE64URL = ALNUM + "-_"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def fake(length: int, seed: int, alphabet: str = ALNUM) -> str:
    """A reproducible random string with at least one digit (as real tokens of these lengths have)."""
    rng = random.Random(seed)
    chars = [rng.choice(alphabet) for _ in range(length)]
    digits = [c for c in alphabet if c.isdigit()]
    chars[length // 2] = rng.choice(digits)
    return "".join(chars)


def b64url(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(header: dict[str, object], payload: dict[str, object], seed: int, signature: bool = True) -> str:
    return f"{b64url(header)}.{b64url(payload)}.{fake(43, seed, BASE64URL) if signature else ''}"


def pem(label: str, seed: int, lines: int = 4) -> str:
    body = "\n".join(fake(64, seed + i, BASE64) for i in range(lines))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def aws_key(seed: int, prefix: str = "AKIA") -> str:
    return prefix + fake(16, seed, BASE32)


def slack_hook(seed: int) -> str:
    workspace, channel, secret = fake(8, seed, BASE32), fake(10, seed + 1, BASE32), fake(24, seed + 2)
    return f"https://hooks.slack.com/services/T{workspace}/B{channel}/{secret}"


def digits(length: int, seed: int) -> str:
    return fake(length, seed, "0123456789")


AWS_ACCESS_KEY_CASES: list[Case] = [
    (f"aws_access_key_id = {aws_key(1)}", ("AWS_ACCESS_KEY",)),
    (f"export AWS_ACCESS_KEY_ID={aws_key(2)}", ("AWS_ACCESS_KEY",)),
    (f'{{"AccessKeyId": "{aws_key(3, "ASIA")}", "Expiration": "2025-01-01T00:00:00Z"}}', ("AWS_ACCESS_KEY",)),
    (f"The key {aws_key(4)} was leaked in the logs.", ("AWS_ACCESS_KEY",)),
    (f"[default]\naws_access_key_id={aws_key(5)}\nregion=eu-west-1\n", ("AWS_ACCESS_KEY",)),
    (f"https://bucket.s3.amazonaws.com/file?AWSAccessKeyId={aws_key(6)}&Expires=1700000000", ("AWS_ACCESS_KEY",)),
    (f"temporary creds {aws_key(7, 'ASIA')} expire in 1h", ("AWS_ACCESS_KEY",)),
    (f"keys: [{aws_key(8)}, {aws_key(9)}]", ("AWS_ACCESS_KEY", "AWS_ACCESS_KEY")),
    (f"AWS_ACCESS_KEY_ID: '{aws_key(10)}'", ("AWS_ACCESS_KEY",)),
    (f"({aws_key(11)})", ("AWS_ACCESS_KEY",)),
    # AWS's documented example: the real format, and the fixture of policy packs (policies/secrets.yaml).
    ("debug this: AKIAIOSFODNN7EXAMPLE", ("AWS_ACCESS_KEY",)),
    # hard negatives
    ("aws_access_key_id = AKIA0000000000000000", ()),
    ("aws_access_key_id = AKIAXXXXXXXXXXXXXXXX", ()),
    ("AKIA1234 is too short", ()),
    (f"MY{aws_key(12)} is glued to a word", ()),
    (f"{aws_key(13)}X is one character too long", ()),
    ("the AKIA prefix identifies long-term keys, ASIA temporary ones", ()),
    (f"lowercase {aws_key(14).lower()}", ()),
    ("ASIA is a continent; AKIAN is not a word", ()),
    ("git sha 3F786850E387550FDAB836ED7E6DC881DE23001B", ()),
    ("AKIAABCDEFGHIJKLMNOP has no digit at all", ()),
]

AWS_SECRET_KEY_CASES: list[Case] = [
    (f"aws_secret_access_key = {fake(40, 101, BASE64)}", ("AWS_SECRET_KEY",)),
    (f'AWS_SECRET_ACCESS_KEY="{fake(40, 102, BASE64)}"', ("AWS_SECRET_KEY",)),
    (f'{{"SecretAccessKey": "{fake(40, 103, BASE64)}"}}', ("AWS_SECRET_KEY",)),
    (f"aws_secret_key: {fake(40, 104, BASE64)}", ("AWS_SECRET_KEY",)),
    (f"aws_secret = '{fake(40, 105, BASE64)}'", ("AWS_SECRET_KEY",)),
    (f"  AWS_SECRET_ACCESS_KEY: {fake(40, 106, BASE64)}\n", ("AWS_SECRET_KEY",)),
    (f"export AWS_SECRET_ACCESS_KEY={fake(40, 107, BASE64)}", ("AWS_SECRET_KEY",)),
    (f"awsSecretAccessKey: '{fake(40, 108, BASE64)}',", ("AWS_SECRET_KEY",)),
    (
        f"[default]\naws_access_key_id={aws_key(109)}\naws_secret_access_key={fake(40, 110, BASE64)}",
        ("AWS_ACCESS_KEY", "AWS_SECRET_KEY"),
    ),
    (f'"aws_secret_access_key": "{fake(40, 111, BASE64)}"', ("AWS_SECRET_KEY",)),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ("AWS_SECRET_KEY",)),
    # hard negatives
    ("aws_secret_access_key = " + "A1" * 20, ()),
    ("aws_secret_access_key = <your-secret-access-key>", ()),
    ("aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}", ()),
    ("aws_secret_access_key = " + "x" * 40, ()),
    (f"checksum = {fake(40, 112, BASE64)}", ()),
    ("The secret access key is a 40 character string shown once.", ()),
    (f"aws_access_key_id = {fake(40, 113, BASE64)}", ()),
    ("aws_secret_access_key = os.environ", ()),
    # Not 40 characters: not an AWS secret, but still a random value under a secret's name.
    (f"aws_secret_access_key = {fake(39, 114, BASE64)}", ("GENERIC_SECRET",)),
    (f"aws_secret_access_key_file = /run/secrets/{fake(40, 115)}", ()),
]

GITHUB_TOKEN_CASES: list[Case] = [
    (f"token: ghp_{fake(36, 201)}", ("GITHUB_TOKEN",)),
    (f"git clone https://ghp_{fake(36, 202)}@github.com/org/repo.git", ("GITHUB_TOKEN",)),
    (f"GITHUB_TOKEN=gho_{fake(36, 203)}", ("GITHUB_TOKEN",)),
    (f"user-to-server ghu_{fake(36, 204)}", ("GITHUB_TOKEN",)),
    (f"installation token ghs_{fake(36, 205)} expires", ("GITHUB_TOKEN",)),
    (f"refresh ghr_{fake(36, 206)}", ("GITHUB_TOKEN",)),
    (f"github_pat_{fake(22, 207)}_{fake(59, 208)}", ("GITHUB_TOKEN",)),
    (f"Authorization: Bearer github_pat_{fake(22, 209)}_{fake(59, 210)}", ("GITHUB_TOKEN",)),
    (f'{{"token": "ghp_{fake(36, 211)}"}}', ("GITHUB_TOKEN",)),
    (f"(ghp_{fake(36, 212)})", ("GITHUB_TOKEN",)),
    (f"a longer future format ghp_{fake(41, 217)}", ("GITHUB_TOKEN",)),
    # hard negatives
    (f"ghp_{fake(35, 213)} is one short", ()),
    ("ghp_" + "x" * 36, ()),
    ("ghp_<your-token>", ()),
    (f"my_ghp_{fake(36, 214)}", ()),
    ("github_pat_" + fake(20, 215), ()),
    (f"ghx_{fake(36, 216)}", ()),
    ("the ghp_ prefix marks classic personal access tokens", ()),
    ("run gh pr create --fill", ()),
    ("ghp_YOUR_PERSONAL_ACCESS_TOKEN_HERE_00", ()),
    ("commit 3f786850e387550fdab836ed7e6dc881de23001b", ()),
]

OPENAI_KEY_CASES: list[Case] = [
    (f"OPENAI_API_KEY=sk-{fake(48, 301)}", ("OPENAI_KEY",)),
    (f"sk-proj-{fake(48, 302, BASE64URL)}{fake(40, 303)}", ("OPENAI_KEY",)),
    (f'client = OpenAI(api_key="sk-proj-{fake(64, 304, BASE64URL)}")', ("OPENAI_KEY",)),
    (f"service account sk-svcacct-{fake(60, 305, BASE64URL)}", ("OPENAI_KEY",)),
    (f"admin key sk-admin-{fake(60, 306, BASE64URL)}", ("OPENAI_KEY",)),
    (f"key: 'sk-{fake(48, 307)}'", ("OPENAI_KEY",)),
    (f"curl -H 'Authorization: Bearer sk-{fake(48, 308)}'", ("OPENAI_KEY",)),
    (f"sk-{fake(32, 309)}", ("OPENAI_KEY",)),
    (f"keys sk-{fake(48, 310)} and sk-proj-{fake(56, 311)}", ("OPENAI_KEY", "OPENAI_KEY")),
    (f"export OPENAI_KEY='sk-{fake(48, 312)}'", ("OPENAI_KEY",)),
    # hard negatives
    ("sk-your-api-key-here", ()),
    ("sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ()),
    ("api_key = 'sk-...'", ()),
    ("task-management-system-for-teams-2024-edition", ()),
    ("pip install sk-learn is a typo for scikit-learn", ()),
    (f"desk-{fake(30, 313)} is a desk id", ()),
    (f"sk-{fake(19, 314)} is too short", ()),
    ("sk-<OPENAI_API_KEY>", ()),
    ("sk-proj-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", ()),
    ("risk-adjusted-return-on-capital-2024-q3-final", ()),
]

ANTHROPIC_KEY_CASES: list[Case] = [
    (f"ANTHROPIC_API_KEY=sk-ant-api03-{fake(93, 401, BASE64URL)}", ("ANTHROPIC_KEY",)),
    (f"sk-ant-api03-{fake(93, 402, BASE64URL)}", ("ANTHROPIC_KEY",)),
    (f"admin key sk-ant-admin01-{fake(93, 403, BASE64URL)}", ("ANTHROPIC_KEY",)),
    (f'anthropic.Anthropic(api_key="sk-ant-api03-{fake(93, 404, BASE64URL)}")', ("ANTHROPIC_KEY",)),
    (f"x-api-key: sk-ant-api03-{fake(93, 405, BASE64URL)}", ("ANTHROPIC_KEY",)),
    (f"'sk-ant-{fake(40, 406)}'", ("ANTHROPIC_KEY",)),
    (f"key=sk-ant-api03-{fake(93, 407, BASE64URL)}&other=1", ("ANTHROPIC_KEY",)),
    (f"old key sk-ant-{fake(64, 408, BASE64URL)}", ("ANTHROPIC_KEY",)),
    (f"(sk-ant-api03-{fake(93, 409, BASE64URL)})", ("ANTHROPIC_KEY",)),
    (
        f"two: sk-ant-api03-{fake(93, 410, BASE64URL)} sk-ant-api03-{fake(93, 411, BASE64URL)}",
        ("ANTHROPIC_KEY", "ANTHROPIC_KEY"),
    ),
    # hard negatives
    ("sk-ant-...", ()),
    ("sk-ant-api03-" + "x" * 93, ()),
    ("sk-ant-your-key-here-please-replace-it", ()),
    (f"sk-ant-{fake(20, 412)} is too short", ()),
    ("the sk-ant- prefix marks Anthropic keys", ()),
    (f"mask-ant-api03-{fake(93, 413, BASE64URL)}", ()),
    ("sk-ant-api03-<redacted>", ()),
    ("ANTHROPIC_API_KEY=${ANTHROPIC_API_KEY}", ()),
    ("Set ANTHROPIC_API_KEY in your shell.", ()),
    ("sk-ant-api03-YOUR-KEY-HERE-000000000000000000000000000000", ()),
]

SLACK_TOKEN_CASES: list[Case] = [
    (f"SLACK_BOT_TOKEN=xoxb-{digits(13, 501)}-{digits(13, 502)}-{fake(24, 503)}", ("SLACK_TOKEN",)),
    (f"xoxp-{digits(12, 504)}-{digits(12, 505)}-{digits(13, 506)}-{fake(32, 507, '0123456789abcdef')}", ("SLACK_TOKEN",)),
    (f"app token xoxa-2-{fake(40, 508)}", ("SLACK_TOKEN",)),
    (f"refresh xoxr-{fake(40, 509)}", ("SLACK_TOKEN",)),
    (f"xoxs-{digits(12, 510)}-{fake(30, 511)}", ("SLACK_TOKEN",)),
    (f"webhook: {slack_hook(512)}", ("SLACK_TOKEN",)),
    (f'curl -X POST -d \'{{"text":"hi"}}\' {slack_hook(515)}', ("SLACK_TOKEN",)),
    (
        f"hooks.slack.com/workflows/T{fake(8, 518, BASE32)}/A{fake(10, 519, BASE32)}/{digits(9, 520)}/{fake(24, 521)}",
        ("SLACK_TOKEN",),
    ),
    (f'{{"token": "xoxb-{digits(12, 522)}-{fake(24, 523)}"}}', ("SLACK_TOKEN",)),
    (f"(xoxb-{digits(12, 524)}-{digits(12, 525)}-{fake(24, 526)})", ("SLACK_TOKEN",)),
    # hard negatives
    ("xoxb-your-bot-token", ()),
    ("xoxb-xxxxxxxxxx-xxxxxxxxxxxx", ()),
    ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", ()),
    ("Create an incoming webhook at hooks.slack.com/services/", ()),
    (f"xoxz-{digits(12, 527)}-{fake(24, 528)}", ()),
    ("the xoxb- prefix marks bot tokens, xoxp- user tokens", ()),
    ("https://api.slack.com/apps/A0123456789", ()),
    ("xox-123-456", ()),
    (f"linux-xoxb-{fake(24, 529)} is a package name", ()),
    ("SLACK_BOT_TOKEN=${SLACK_BOT_TOKEN}", ()),
]

STRIPE_KEY_CASES: list[Case] = [
    (f"STRIPE_SECRET_KEY=sk_live_{fake(99, 601)}", ("STRIPE_KEY",)),
    (f"stripe.api_key = 'sk_live_{fake(24, 602)}'", ("STRIPE_KEY",)),
    (f"restricted rk_live_{fake(24, 603)}", ("STRIPE_KEY",)),
    (f"test mode sk_test_{fake(24, 604)}", ("STRIPE_KEY",)),
    (f"rk_test_{fake(30, 605)}", ("STRIPE_KEY",)),
    (f'{{"secret_key": "sk_live_{fake(48, 606)}"}}', ("STRIPE_KEY",)),
    (f"curl https://api.stripe.com/v1/charges -u sk_live_{fake(24, 607)}:", ("STRIPE_KEY",)),
    (f"(sk_test_{fake(24, 608)})", ("STRIPE_KEY",)),
    (f"keys: sk_live_{fake(24, 609)}, rk_live_{fake(24, 610)}", ("STRIPE_KEY", "STRIPE_KEY")),
    (f"Stripe::Key = sk_live_{fake(32, 611)}", ("STRIPE_KEY",)),
    # hard negatives
    (f"publishable pk_live_{fake(24, 612)}", ()),
    (f"pk_test_{fake(24, 613)}", ()),
    ("sk_live_" + "x" * 24, ()),
    ("sk_live_<your key>", ()),
    (f"sk_live_{fake(10, 614)} is too short", ()),
    (f"ask_live_{fake(24, 615)}", ()),
    (f"sk_prod_{fake(24, 616)}", ()),
    ("the sk_live_ prefix marks live-mode secret keys", ()),
    ("STRIPE_SECRET_KEY=${STRIPE_SECRET_KEY}", ()),
    ("sk_test_YOUR_SECRET_KEY_HERE_0000", ()),
]

PRIVATE_KEY_CASES: list[Case] = [
    (pem("RSA PRIVATE KEY", 701), ("PRIVATE_KEY",)),
    (pem("PRIVATE KEY", 710), ("PRIVATE_KEY",)),
    (pem("EC PRIVATE KEY", 720, 2), ("PRIVATE_KEY",)),
    (pem("OPENSSH PRIVATE KEY", 730), ("PRIVATE_KEY",)),
    (pem("ENCRYPTED PRIVATE KEY", 740), ("PRIVATE_KEY",)),
    (pem("DSA PRIVATE KEY", 750), ("PRIVATE_KEY",)),
    (pem("PGP PRIVATE KEY BLOCK", 760), ("PRIVATE_KEY",)),
    (f"Here is the key:\n{pem('RSA PRIVATE KEY', 770)}\nthanks", ("PRIVATE_KEY",)),
    (f"-----BEGIN RSA PRIVATE KEY-----\n{fake(64, 780, BASE64)}\n(truncated)", ("PRIVATE_KEY",)),
    (f'key = """{pem("PRIVATE KEY", 790)}"""', ("PRIVATE_KEY",)),
    (f"{pem('EC PRIVATE KEY', 800, 1)}\n\n{pem('RSA PRIVATE KEY', 810, 1)}", ("PRIVATE_KEY", "PRIVATE_KEY")),
    # hard negatives
    (pem("PUBLIC KEY", 820), ()),
    (pem("CERTIFICATE", 830), ()),
    ("Search for BEGIN RSA PRIVATE KEY in the repo", ()),
    (pem("RSA PUBLIC KEY", 840), ()),
    (pem("CERTIFICATE REQUEST", 850), ()),
    ("Never paste a private key into a chat.", ()),
    ("-----END RSA PRIVATE KEY-----", ()),
    (f"ssh-rsa AAAAB3NzaC1yc2E{fake(200, 860, BASE64)} user@host", ()),
    (pem("PGP PUBLIC KEY BLOCK", 870), ()),
    ("-----BEGIN ----- private key -----", ()),
]

# A 1x1 PNG as a data URL: base64 that is neither a token nor a JWT.
_IMAGE = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
JWT_CASES: list[Case] = [
    (jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "1234567890", "name": "John Doe", "iat": 1516239022}, 901), ("JWT",)),
    (f"Authorization: Bearer {jwt({'alg': 'RS256', 'kid': 'k1'}, {'sub': 'u1', 'exp': 1700000000}, 902)}", ("JWT",)),
    (f'{{"id_token": "{jwt({"alg": "ES256", "typ": "JWT"}, {"aud": "app", "iss": "https://id"}, 903)}"}}', ("JWT",)),
    (f"unsecured {jwt({'alg': 'none'}, {'sub': 'x'}, 904, signature=False)} token", ("JWT",)),
    (f"https://app.example.com/cb?token={jwt({'alg': 'HS512'}, {'sub': 'abc'}, 905)}&state=1", ("JWT",)),
    (f"cookie session={jwt({'typ': 'JWT', 'alg': 'HS256'}, {'uid': 42}, 906)}; Path=/", ("JWT",)),
    (f"({jwt({'alg': 'PS256'}, {'scope': 'read'}, 907)})", ("JWT",)),
    (f"jwt: {jwt({'alg': 'EdDSA'}, {'sub': 'device-7'}, 908)}", ("JWT",)),
    (f"access {jwt({'alg': 'HS256'}, {'a': 1}, 909)} refresh {jwt({'alg': 'HS256'}, {'b': 2}, 910)}", ("JWT", "JWT")),
    (f"'{jwt({'alg': 'RS384', 'x5t': 'abc'}, {'roles': ['admin']}, 911)}'", ("JWT",)),
    # hard negatives
    (f"header only {b64url({'alg': 'HS256', 'typ': 'JWT'})}", ()),
    (f"{b64url({'alg': 'HS256'})}.{b64url({'sub': 'x'})}. ends a sentence", ()),
    (f"{b64url({'foo': 1})}.{b64url({'bar': 2})}.{fake(43, 912, BASE64URL)}", ()),
    (f"image {_IMAGE}", ()),
    ("eyJzzzzz.abc.def is not base64 JSON", ()),
    ("a.b.c and file.name.ext and version 1.2.3", ()),
    (f"x{jwt({'alg': 'HS256'}, {'sub': 'x'}, 913)}", ()),
    ("JWTs look like eyJhbGciOi... with three parts", ()),
    (f"{b64url(['alg', 'HS256'])}.{b64url({'sub': 'x'})}.{fake(43, 914, BASE64URL)}", ()),
    ("The JWT header names the alg; the signature is base64url.", ()),
]

GENERIC_SECRET_CASES: list[Case] = [
    ('password = "Tr0ub4dor&3xK9!z"', ("GENERIC_SECRET",)),
    ("DB_PASSWORD=hR7#kL2$mP9@qW4x", ("GENERIC_SECRET",)),
    (f'api_key: "{fake(20, 1001)}"', ("GENERIC_SECRET",)),
    (f'{{"client_secret": "{fake(24, 1002)}"}}', ("GENERIC_SECRET",)),
    (f"token={fake(32, 1003, '0123456789abcdef')}", ("GENERIC_SECRET",)),
    ("passwd: Xy7!kP2#mN9$qL4", ("GENERIC_SECRET",)),
    (f"mysql --password={fake(16, 1004)} -u root", ("GENERIC_SECRET",)),
    (f"secret = '{fake(24, 1005, BASE64)}'", ("GENERIC_SECRET",)),
    (f"apiKey: '{fake(20, 1006)}',", ("GENERIC_SECRET",)),
    (f"X-Api-Key: {fake(20, 1007)}", ("GENERIC_SECRET",)),
    (f"headers['X-Auth-Token'] = '{fake(20, 1008)}'", ("GENERIC_SECRET",)),
    (f"passphrase => '{fake(18, 1009)}'", ("GENERIC_SECRET",)),
    (f'\\"password\\": \\"{fake(16, 1010)}\\"', ("GENERIC_SECRET",)),
    # hard negatives
    ('password = "changeme"', ()),
    ('password: "<your-password>"', ()),
    ('api_key = "xxxxxxxxxxxxxxxx"', ()),
    ('token = "${GITHUB_TOKEN}"', ()),
    ("secret: {{ vault_secret }}", ()),
    ("the password must be 12 characters", ()),
    ("Reset your password: click the link below and choose a new one.", ()),
    ("max_tokens = 4096", ()),
    ("tokenizer = AutoTokenizer.from_pretrained('bert-base-uncased')", ()),
    ("api_key = os.environ['OPENAI_API_KEY']", ()),
    ("api_key = settings.OPENAI_API_KEY", ()),
    ("password_hash = 5f4dcc3b5aa765d61d8327deb882cf99", ()),
    ("token_url = https://auth.example.com/oauth/token", ()),
    ("secret_file = /etc/app/secrets/db-password.txt", ()),
    ('password = "password123"', ()),
    ("passwords: [alice, bob]", ()),
    ("token_count: 1500", ()),
    ("password: str = Field(min_length=12)", ()),
    ("token = get_token()", ()),
    ("api_key: YOUR_API_KEY_HERE", ()),
    ("password = '****************'", ()),
    ("secret: 'correct horse battery staple'", ()),
    ("commit = 3f786850e387550fdab836ed7e6dc881de23001b", ()),
    (f"avatar: {_IMAGE}", ()),
    ("api_key = OPENAI_API_KEY", ()),
]

MIXED_CASES: list[Case] = [
    (
        f'OPENAI_API_KEY="sk-proj-{fake(56, 1101)}"\nGITHUB_TOKEN=ghp_{fake(36, 1102)}\nDB_PASSWORD={fake(20, 1103)}',
        ("OPENAI_KEY", "GITHUB_TOKEN", "GENERIC_SECRET"),
    ),
    (f"token = '{jwt({'alg': 'HS256'}, {'sub': 'x'}, 1104)}'", ("JWT",)),
    ("Please summarise the security review: rotate every token and never reuse a password.", ()),
    ("The API key, the client secret and the session token are configured in the vault.", ()),
]

CASES_BY_KIND: dict[str, list[Case]] = {
    "AWS_ACCESS_KEY": AWS_ACCESS_KEY_CASES,
    "AWS_SECRET_KEY": AWS_SECRET_KEY_CASES,
    "GITHUB_TOKEN": GITHUB_TOKEN_CASES,
    "OPENAI_KEY": OPENAI_KEY_CASES,
    "ANTHROPIC_KEY": ANTHROPIC_KEY_CASES,
    "SLACK_TOKEN": SLACK_TOKEN_CASES,
    "STRIPE_KEY": STRIPE_KEY_CASES,
    "PRIVATE_KEY": PRIVATE_KEY_CASES,
    "JWT": JWT_CASES,
    "GENERIC_SECRET": GENERIC_SECRET_CASES,
}
CORPUS: list[Case] = [case for cases in CASES_BY_KIND.values() for case in cases] + MIXED_CASES


def make_detector() -> SecretsDetector:
    return SecretsDetector()


def precision_recall(detector: SecretsDetector, corpus: list[Case]) -> dict[str, tuple[int, int, int]]:
    """(true positives, false positives, false negatives) per kind (what detection_quality.py prints)."""
    return score(detector, corpus, SECRET_KINDS)


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_corpus_has_enough_positives_and_hard_negatives(kind: str) -> None:
    cases = CASES_BY_KIND[kind]
    assert sum(kind in expected for _, expected in cases) >= 10
    assert sum(kind not in expected for _, expected in cases) >= 10


@pytest.mark.parametrize("kind", SECRET_KINDS)
def test_precision_and_recall_are_perfect_on_the_corpus(kind: str) -> None:
    detector = make_detector()
    tp, fp, fn = precision_recall(detector, CORPUS)[kind]
    assert tp > 0
    assert (fp, fn) == (0, 0), mistakes(detector, CORPUS, kind)


def test_the_stdlib_fallback_finds_exactly_what_re2_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    with_re2 = make_detector()
    monkeypatch.setattr(pii, "_re2", None)  # the gate engine is chosen in `gateway.policy.detectors.pii`
    without = make_detector()
    for text, _ in CORPUS:
        assert without.find(text) == with_re2.find(text), text


def test_entropy_matches_the_textbook_formula() -> None:
    import math

    from gateway.policy.detectors.secrets import _shannon

    for value in ("aaaa", "abcd", "Tr0ub4dor&3xK9!z", fake(512, 1, BASE64), "x" * 512):
        counts = Counter(value)
        expected = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())
        assert _shannon(value) == pytest.approx(expected, abs=1e-9)


# -- spans --------------------------------------------------------------------------------------------------
def _spans(text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in make_detector().find(text)]


def test_an_assignment_span_is_the_value_only() -> None:
    value = fake(20, 1201)
    for template in ('password = "{}"', "password={}", "api_key: '{}'", '"client_secret": "{}"', "--token={} next"):
        text = template.format(value)
        assert _spans(text) == [("GENERIC_SECRET", value)], text
    secret = fake(40, 1202, BASE64)
    assert _spans(f"aws_secret_access_key = {secret}\n") == [("AWS_SECRET_KEY", secret)]


def test_redacting_the_value_keeps_the_key_and_operator() -> None:
    text = f'password = "{fake(20, 1203)}"'
    (finding,) = make_detector().find(text)
    assert text[: finding.start] + "[GENERIC_SECRET_1]" + text[finding.end :] == 'password = "[GENERIC_SECRET_1]"'


def test_a_known_token_under_a_secret_name_is_reported_as_that_token() -> None:
    token = f"sk-proj-{fake(48, 1204)}"
    assert _spans(f'OPENAI_API_KEY="{token}"') == [("OPENAI_KEY", token)]


def test_a_private_key_block_is_one_span_and_a_header_alone_is_the_header_line() -> None:
    block = pem("RSA PRIVATE KEY", 1205)
    assert _spans(f"key:\n{block}\nbye") == [("PRIVATE_KEY", block)]
    header = "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert _spans(f"{header}\n{fake(64, 1206, BASE64)}\n...") == [("PRIVATE_KEY", header)]
    # A header without END, then a complete block: the first END belongs to the second block only.
    second = pem("RSA PRIVATE KEY", 1207, 1)
    assert _spans(f"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n{second}") == [
        ("PRIVATE_KEY", "-----BEGIN RSA PRIVATE KEY-----"),
        ("PRIVATE_KEY", second),
    ]


def test_token_spans() -> None:
    hook = slack_hook(1208)
    assert _spans(f"post to {hook}.") == [("SLACK_TOKEN", hook)]
    token = jwt({"alg": "HS256"}, {"sub": "x"}, 1209)
    assert _spans(f"Bearer {token}, then") == [("JWT", token)]
    key = aws_key(1210)
    assert make_detector().find(f"é {key} é") == [Finding("AWS_ACCESS_KEY", 2, 22)]  # characters, not bytes


def test_findings_are_sorted_and_do_not_overlap() -> None:
    text = "\n".join(text for text, _ in CORPUS)
    findings = make_detector().find(text)
    assert len(findings) >= 100
    assert all(a.end <= b.start for a, b in zip(findings, findings[1:]))


def test_clean_text_finds_nothing() -> None:
    prose = "Please review the retry loop and rotate the API token; the password policy is unchanged. " * 50
    assert make_detector().find(prose) == []
    assert make_detector().find("") == []


# -- options ----------------------------------------------------------------------------------------------
def test_kinds_limit_what_is_found() -> None:
    text = f"ghp_{fake(36, 1301)} AKIA{fake(16, 1302, BASE32)} password={fake(20, 1303)}"
    assert [f.kind for f in SecretsDetector(["GITHUB_TOKEN"]).find(text)] == ["GITHUB_TOKEN"]
    assert [f.kind for f in SecretsDetector(["GENERIC_SECRET", "AWS_ACCESS_KEY"]).find(text)] == [
        "AWS_ACCESS_KEY",
        "GENERIC_SECRET",
    ]
    assert SecretsDetector([]).find(text) == []


def test_an_unwanted_specific_kind_leaves_the_generic_finding() -> None:
    text = f'api_key = "sk-proj-{fake(48, 1304)}"'
    assert [f.kind for f in SecretsDetector(["GENERIC_SECRET"]).find(text)] == ["GENERIC_SECRET"]


def test_unknown_kind_is_an_error_naming_it_and_the_known_ones() -> None:
    with pytest.raises(ValueError) as raised:
        SecretsDetector(["JWT", "AZURE_KEY"])
    message = str(raised.value)
    assert "'AZURE_KEY'" in message
    assert all(kind in message for kind in SECRET_KINDS)


def test_a_single_string_is_not_a_list_of_kinds() -> None:
    with pytest.raises(TypeError):
        SecretsDetector("JWT")


# -- linear time --------------------------------------------------------------------------------------------
ADVERSARIAL = [
    "sk-" * 70_000,
    "sk-ant-" * 30_000,
    "eyJ" * 70_000,
    "eyJhbGciOiJIUzI1NiJ9." * 10_000,
    "eyJhbGciOiJIUzI1NiJ9." + "a" * 200_000,
    "token=" * 35_000,
    "password = \"" * 18_000,
    "passw" * 40_000,
    "secret: " + "A1b2" * 50_000,
    "-----BEGIN RSA PRIVATE KEY-----\n" * 6_500,
    "-----BEGIN " * 20_000,
    "AKIA" * 50_000,
    "ghp_" * 50_000,
    "github_pat_" * 20_000,
    "xoxb-" * 40_000,
    "hooks.slack.com/services/" * 8_000,
    "sk_live_" * 25_000,
    "a" * 200_000,
]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("engine", ["re2", "stdlib"])
@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda text: repr(text[:8]))
def test_adversarial_input_is_scanned_in_linear_time(text: str, engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if engine == "stdlib":
        monkeypatch.setattr(pii, "_re2", None)
    elif pii._re2 is None:
        pytest.skip("google-re2 is not installed")
    make_detector().find(text)
