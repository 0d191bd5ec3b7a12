"""Policy evaluation benchmark: what the engine adds per request, measured in-process (no HTTP).

Two questions, each answered by median microseconds per request over repeated rounds:

* **The shipped packs** (`policies/`) on a 4 KB chat prompt: the request phase plus the response phase
  of a 1 KB reply, as the server runs them. Target: under 100 us at p50.
* **Rule count**: 10 vs 1,000 regex/keyword rules on the same prompt (all quiet, as in real traffic,
  and one firing). Target: 1,000 rules cost under 3x what 10 rules cost (the shared RE2 prefilter makes
  clean text one pass, whatever the number of patterns).

    python loadtest/policy_bench.py            # 5 rounds of 2,000 requests per case
    python loadtest/policy_bench.py --rounds 9 --requests 5000

Speed targets live here, never in timed unit tests.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.exchange import Endpoint, Exchange  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402
from gateway.policy.compiler import compile_bundle  # noqa: E402
from gateway.policy.policy_set import PolicySet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROSE = (
    "You are reviewing a pull request for our billing service. The service was migrated to Python 3.11 in "
    "March 2024 and now runs on 12 pods behind the load balancer. Please focus on the retry loop in the HTTP "
    "client: when the upstream answers 429 or 503 we back off exponentially, starting at 200 ms and doubling "
    "up to 5 attempts, but the jitter is computed before the sleep, which means that two workers started in "
    "the same second retry in lockstep. Explain whether this matters at our scale, and suggest a fix. "
)
PROMPT = (PROSE * 12)[:4096]
REPLY = (PROSE * 3)[:1024]


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never awaits I/O (no webhook rules) without an event loop's overhead."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the policy set awaited I/O; this benchmark has no event loop")


def one_request(policies: PolicySet, prompt: str) -> None:
    body = {"model": "mock-gpt", "max_tokens": 256, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]}
    exchange = Exchange("bench", Endpoint.CHAT, body=body, model="mock-gpt")
    run(policies.check_request(exchange))
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}]}
    run(policies.check_response(exchange, reply))


def median_us(policies: PolicySet, prompt: str, rounds: int, requests: int) -> tuple[float, float, float]:
    """Median per-request microseconds over all rounds, and the lowest and highest round median."""
    medians = []
    gc.collect()
    for _ in range(rounds):
        samples = []
        for _ in range(requests):
            started = time.perf_counter_ns()
            one_request(policies, prompt)
            samples.append(time.perf_counter_ns() - started)
        medians.append(statistics.median(samples) / 1000)
    return statistics.median(medians), min(medians), max(medians)


def rules_bundle(directory: Path, count: int) -> PolicySet:
    lines = ["apiVersion: gateway/v1", "kind: Policy", "metadata: {name: many}", "spec:", "  rules:"]
    for index in range(count):
        if index % 2:
            check = f"{{keywords: {{words: [forbidden{index}, banned-term-{index}]}}}}"
        else:
            check = f"{{regex: {{pattern: 'ticket-{index}-[0-9]{{6}}'}}}}"
        lines.append(f"    - {{id: rule-{index}, phase: request, check: {check}, action: flag}}")
    (directory / "many.yaml").write_text("\n".join(lines) + "\n")
    return compile_bundle(directory, Metrics()).policies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    shipped = compile_bundle(REPO / "policies", Metrics()).policies
    none = PolicySet((), "none", Metrics())
    rows = [("no policies", none, PROMPT), (f"shipped packs ({shipped.rule_count} rules)", shipped, PROMPT)]
    with tempfile.TemporaryDirectory() as ten_dir, tempfile.TemporaryDirectory() as thousand_dir:
        ten, thousand = rules_bundle(Path(ten_dir), 10), rules_bundle(Path(thousand_dir), 1000)
        firing = PROMPT[:-40] + " see ticket-8-123456 and forbidden9 here"
        rows += [
            ("10 regex/keyword rules, quiet", ten, PROMPT),
            ("1,000 regex/keyword rules, quiet", thousand, PROMPT),
            ("10 rules, two firing", ten, firing),
            ("1,000 rules, two firing", thousand, firing),
        ]
        print(f"policy evaluation per request: 4 KB prompt + 1 KB reply, {args.rounds} rounds x {args.requests} requests")
        print(f"{'case':<36} {'p50 us':>8} {'rounds':>16}")
        results = {}
        for name, policies, prompt in rows:
            p50, low, high = median_us(policies, copy.copy(prompt), args.rounds, args.requests)
            results[name] = p50
            print(f"{name:<36} {p50:>8.1f} {f'{low:.1f}-{high:.1f}':>16}")
    base = results["no policies"]
    shipped_cost = results[rows[1][0]] - base
    quiet_ratio = (results["1,000 regex/keyword rules, quiet"] - base) / (results["10 regex/keyword rules, quiet"] - base)
    firing_ratio = (results["1,000 rules, two firing"] - base) / (results["10 rules, two firing"] - base)
    print()
    print(f"shipped packs add {shipped_cost:.1f} us per request at p50 (target < 100 us)")
    print(f"1,000 rules cost {quiet_ratio:.2f}x what 10 rules cost, quiet; {firing_ratio:.2f}x with two firing (target < 3x)")


if __name__ == "__main__":
    main()
