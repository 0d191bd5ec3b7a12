"""Microbenchmark of the built-in `pii` and `secrets` detectors on 4 KB prompts: median microseconds per `find`.

Prompts (each exactly 4096 characters of English):
  clean            prose with ordinary numbers (years, versions, counts, status codes) and no PII or secret
  clean+keywords   the same prose mentioning tokens, passwords and secrets (assignment triggers, no secret)
  findings         the clean prose with a few findings (e-mail, card, phone, IP; API key, GitHub token, AWS key)

The budget is the clean prompt: each detector well under 25 us median. Every call is timed on its own with
`time.perf_counter_ns`; the table shows the median over all calls and the range of per-round medians (a
shared or virtual machine is noisy: compare rounds, not single figures).

    python loadtest/detectors_bench.py                   # 5 rounds of 2000 calls per prompt and detector
    python loadtest/detectors_bench.py --engine stdlib   # without google-re2 (the fallback gate)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.policy.detectors import Finding, pii  # noqa: E402
from gateway.policy.detectors.pii import PiiDetector  # noqa: E402
from gateway.policy.detectors.secrets import SecretsDetector  # noqa: E402

PROSE = (
    "You are reviewing a pull request for our billing service. The service was migrated to Python 3.11 in "
    "March 2024 and now runs on 12 pods behind the load balancer. Please focus on the retry loop in the HTTP "
    "client: when the upstream answers 429 or 503 we back off exponentially, starting at 200 ms and doubling "
    "up to 5 attempts, but the jitter is computed before the sleep, which means that two workers started in the "
    "same second retry in lockstep. Explain whether this matters at our scale of roughly 300 requests per "
    "second, and suggest a fix that keeps the total wait under 10 seconds. Also look at how errors are "
    "reported to the caller: a timeout currently surfaces as a generic exception with no context, and the "
    "on-call engineer has to dig through the logs to find which of the 3 upstreams failed. We would like the "
    "final error to name the upstream, the number of attempts and the last status code. Keep the public "
    "interface unchanged, since 4 other teams depend on it, and write the answer as a short review with a "
    "summary first and then one section per issue, each with a code suggestion where it helps. "
)
KEYWORDS = (
    "The session token is refreshed every 15 minutes, and the password policy requires a secret question "
    "for accounts older than 2 years; the API key rotation job runs nightly. "
)


def _prompt(*parts: str) -> str:
    text = "".join(parts)
    while len(text) < 4096:
        text += PROSE
    return text[:4096]


def prompts() -> dict[str, str]:
    clean = _prompt(PROSE)
    pii_findings = (
        " Contact jane.doe@example.com or call (415) 555-2671; the card on file is 4111 1111 1111 1111 and "
        "the host is 10.20.30.40. "
    )
    secret_findings = (
        ' config: OPENAI_API_KEY="sk-proj-' + "Zoz6fidpP8qnQH6Ph9IG0cjt0o20TCoq2vLS0jzU9eOnvxd6" + '" '
        "token: ghp_" + "EtUaAxSUwssrenwRce1jneI7keDiON5s7MAT" + " aws_access_key_id = AKIA" + "IEQH746Y4G7BY3A4 "
    )
    return {
        "clean": clean,
        "clean+keywords": _prompt(KEYWORDS, PROSE),
        "findings": _prompt(PROSE[:1500], pii_findings, secret_findings, PROSE),
    }


def measure(find: Callable[[str], list[Finding]], text: str, calls: int, rounds: int) -> tuple[float, float, float]:
    """(median over all calls, lowest and highest per-round median), in microseconds."""
    for _ in range(200):
        find(text)
    samples: list[int] = []
    round_medians: list[float] = []
    gc.disable()
    try:
        for _ in range(rounds):
            times = []
            for _ in range(calls):
                started = time.perf_counter_ns()
                find(text)
                times.append(time.perf_counter_ns() - started)
            samples.extend(times)
            round_medians.append(statistics.median(times) / 1000)
    finally:
        gc.enable()
    return statistics.median(samples) / 1000, min(round_medians), max(round_medians)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    parser.add_argument("--engine", choices=("re2", "stdlib"), default="re2", help="gate engine (default re2)")
    args = parser.parse_args()
    if args.engine == "stdlib":
        pii._re2 = None
    elif pii._re2 is None:
        parser.error("google-re2 is not installed: pip install google-re2, or use --engine stdlib")

    detectors = {"PiiDetector": PiiDetector(), "SecretsDetector": SecretsDetector()}
    texts = prompts()
    print(f"engine: {args.engine}; {args.rounds} rounds x {args.calls} calls; prompts of {len(texts['clean'])} chars")
    print(f"{'detector':<16} {'prompt':<15} {'findings':>8} {'median us':>10} {'round medians us':>18}")
    for name, detector in detectors.items():
        for label, text in texts.items():
            median, low, high = measure(detector.find, text, args.calls, args.rounds)
            found = len(detector.find(text))
            print(f"{name:<16} {label:<15} {found:>8} {median:>10.1f} {f'{low:.1f} - {high:.1f}':>18}")


if __name__ == "__main__":
    main()
