"""What the `prompt_injection` detector reports: the finding kind and the names of its signals.

A signal is one family of heuristics (an override of the instructions, a fake delimiter, a jailbreak
persona...); `InjectionAssessment.signals` lists the ones that fired, so these names are part of the API.
"""

from __future__ import annotations

from typing import Final

KIND: Final = "PROMPT_INJECTION"

IGNORE_INSTRUCTIONS: Final = "ignore_instructions"
ROLE_OVERRIDE: Final = "role_override"
SYSTEM_PROMPT_EXFILTRATION: Final = "system_prompt_exfiltration"
JAILBREAK_PERSONA: Final = "jailbreak_persona"
DELIMITER_INJECTION: Final = "delimiter_injection"
ENCODING_EVASION: Final = "encoding_evasion"
TOOL_HIJACK: Final = "tool_hijack"

SIGNALS: Final[tuple[str, ...]] = (
    IGNORE_INSTRUCTIONS,
    ROLE_OVERRIDE,
    SYSTEM_PROMPT_EXFILTRATION,
    JAILBREAK_PERSONA,
    DELIMITER_INJECTION,
    ENCODING_EVASION,
    TOOL_HIJACK,
)
