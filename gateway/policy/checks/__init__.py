"""The check kinds a rule can name, one module per family; `CHECKS` maps each name to its class."""

from __future__ import annotations

from gateway.policy.checks.base import Check, Hit, SpanCheck, Subject
from gateway.policy.checks.detectors import PiiCheck, PromptInjectionCheck, SecretsCheck
from gateway.policy.checks.patterns import KeywordsCheck, RegexCheck
from gateway.policy.checks.reply import JsonSchemaCheck
from gateway.policy.checks.shape import LimitsCheck, ModelsCheck
from gateway.policy.checks.webhook import WebhookCheck, WebhookError

CHECKS: dict[str, type[Check]] = {
    check.kind: check
    for check in (
        RegexCheck,
        KeywordsCheck,
        PiiCheck,
        SecretsCheck,
        PromptInjectionCheck,
        LimitsCheck,
        ModelsCheck,
        JsonSchemaCheck,
        WebhookCheck,
    )
}

__all__ = ["CHECKS", "Check", "Hit", "SpanCheck", "Subject", "WebhookError"]
