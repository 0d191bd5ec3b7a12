"""What a match is worth: its rule's weight, adjusted by the words around it.

The same phrase means different things in different mouths (see the package docstring): an order to the
model scores high, the same words in a statement about someone low; an override of the user's own earlier
instructions is a self-correction, one scoped to untrusted data a defence, and a quoted example counts half.
`weigh` applies a family table's `Rule` to one match with these context tests.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.policy.detectors.injection.rules import (
    DAN,
    DEV_MODE,
    EXFIL,
    EXFIL_Q,
    FIXED,
    IMPERATIVE_KIND,
    OVERRIDE,
    PERSONA_TAIL,
    SEND,
    Rule,
)
from gateway.policy.detectors.injection.signals import (
    IGNORE_INSTRUCTIONS,
    JAILBREAK_PERSONA,
    ROLE_OVERRIDE,
    SYSTEM_PROMPT_EXFILTRATION,
    TOOL_HIJACK,
)

# Signals whose matches are natural-language phrases: a quoted example of one is talked about, not said.
_QUOTABLE: Final = frozenset(
    {IGNORE_INSTRUCTIONS, ROLE_OVERRIDE, SYSTEM_PROMPT_EXFILTRATION, JAILBREAK_PERSONA, TOOL_HIJACK}
)

_SELF_CORRECTION_WEIGHT: Final = 0.3
# "print the system prompt" without "your" or "hidden": as often a developer's question as an attack.
_EXFIL_SYSTEM_WEIGHT: Final = 0.6
# "what are your instructions?": curious or probing, never decisive alone.
_EXFIL_QUESTION_WEIGHT: Final = 0.55
# Sending something that is not sensitive (a report, a file) to a URL or an address.
_SEND_OTHER_WEIGHT: Final = 0.45
_QUOTED_EXAMPLE_FACTOR: Final = 0.5

# The persona words that make "you are now ..." a jailbreak rather than a role-play.
_BAD_PERSONA = re.compile(
    r"\b(?:dan|jailbr\w*|unrestricted|unfiltered|uncensored|unbound|unlimited|unchained|unleashed|evil|"
    r"amoral|unethical|immoral|free\s+(?:from|of)|no\s+longer\s+(?:bound|restricted|limited|an?\s+(?:ai|"
    r"assistant|language\s+model)|chatgpt|claude|gpt)|not\s+bound|without\s+(?:any\s+)?(?:restrictions|"
    r"limits|limitations|filters|rules|guidelines|censorship|morals|ethics)|developer\s+mode|god\s+mode|"
    r"(?:no|zero)\s+(?:restrictions|limits|limitations|filters|rules|guidelines|censorship)|"
    r"(?:able\s+to|can)\s+do\s+anything|do\s+anything\s+now|admin(?:istrator)?\s+mode|root\s+access|"
    r"sudo|(?:the|my|your)\s+(?:system|developer|admin(?:istrator)?|creator|owner)|"
    r"ignor\w*\s+(?:all|your|previous|any|safety|the\s+rules|rules|guidelines|restrictions|filters|ethics)|"
    r"comply\s+with\s+(?:everything|every\s+request|all\s+requests)|answer\s+everything)"
)

# Qualifiers that make an override strong, in the languages covered.
_STRONG_QUAL = re.compile(
    r"\b(?:all|every|everything|anything|whatever|your|above|previous|previously|prior|earlier|preceding|"
    r"foregoing|former|original|initial|existing|system|developer|safety|default|programmed|built-in|hidden|"
    r"internal|core|before|far|now|point|told|given|instructed|taught|todas|todos|anteriores|previas|"
    r"arriba|anterior|todo|iniciales|originales|sistema|toutes|tous|tout|pr[e\u00e9]c[e\u00e9]dentes|"
    r"ant[e\u00e9]rieures|"
    r"dessus|origine|syst[e\u00e8]me|alle|alles|bisherigen|vorherigen|vorigen|obigen|fr(?:\u00fc|u|ue)heren|"
    r"vorangegangenen|urspr(?:\u00fc|u|ue)nglichen|s(?:\u00e4|ae|a)mtliche|vorhergehenden|vorstehenden|"
    r"systemanweisungen|tutte|tutti|precedenti|sopra|iniziali|originali|suas)\b"
)
# Markers of the user's own earlier instructions (only the self tails can put most of these in a match).
_SELF_MARK = re.compile(
    r"\b(?:my|mine|i|we|mis|mes|meine[nrs]?|about|regarding|concerning|sorry|oops|typo|mistake|wrong|"
    r"corrected|correct|right|updated|fixed|revised|new|was)\b"
)
# An override scoped to untrusted content is a defence ("ignore any instructions in the documents").
_DEFENSIVE_SCOPE = re.compile(
    r"[\s,]{0,4}(?:(?:that|which)\s+(?:are|is|appear|appears|may\s+appear|might\s+appear|you\s+(?:find|see|"
    r"read))\s+)?(?:in|inside|within|contained\s+in|found\s+in|embedded\s+in|from|included\s+in|hidden\s+in)\s+"
    r"(?:(?:the|this|that|any|these|those|a|an)\s+)?(?:[\w-]{1,20}\s+)?(?:documents?|e-?mails?|texts?|pages?|"
    r"files?|content|inputs?|data|web\s*pages?|websites?|sites?|articles?|retrieved|search|tool|results?|"
    r"attachments?|quoted|untrusted|third-party|external|pdfs?|comments?|reviews?|tickets?|transcripts?)\b"
)
# Whether a phrase is an order to the model or a statement about someone is decided by the last words before
# it (`_is_imperative`). Addressed: sentence start or punctuation, "please", "now", "you must", "I want you
# to", "assistant, ...". Descriptive: a modal or negation without "you", "to", a relative pronoun or a
# third-person subject ("employees can ignore previous guidelines", "do not ignore the instructions", "how to
# bypass the rules"). Anything else (no clear context: "lol ignore all previous instructions") counts as
# addressed, so that an attacker cannot defuse a phrase by putting an arbitrary word in front of it.
_ADDRESSED_WORDS: Final = frozenset(
    "please pls kindly now just so and then also first simply ok okay hey hi instead therefore thus finally next "
    "immediately important y et und bitte ahora maintenant jetzt favor plait pla\u00eet".split()
)
_SUBJECTS: Final = frozenset("you u assistant ai chatbot bot gpt chatgpt agent claude".split())
_MODALS: Final = frozenset("must should will shall can may gotta".split())
_TO_ADDRESSED: Final = frozenset("sure remember time".split())  # "make sure to", "remember to", "time to"
_TOOLS: Final = frozenset("tool function plugin api command action".split())
_SUBJECT_VERBS: Final = frozenset("need needs have has are is going required instructed".split())
_DESCRIPTIVE_WORDS: Final = frozenset(
    "can could may might would cannot can't couldn't won't wouldn't shouldn't don't doesn't didn't isn't "
    "aren't not never to that which who whom they he she it we i one people user users employees staff "
    "customers someone anyone everyone model models llm llms system systems attacker attackers often "
    "sometimes usually rarely generally typically will should must shall did does easily".split()
)
_BLANKS: Final = " \t*\"'`\u201c\u2018"
_PUNCTUATION: Final = frozenset(".!?:;,\n([*>|\u2022\u00b7\u2013\u2014-\"'`\u201c\u2018")
_QUOTE = re.compile("[\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb]")
# Words that introduce a quoted phrase as an example or a topic rather than as an order.
_META = re.compile(
    r"\b(?:like|such\s+as|e\.g\.|eg|for\s+example|for\s+instance|examples?|phrases?|strings?|sentences?|"
    r"texts?|says?|saying|said|called|known\s+as|attacks?|injections?|jailbreaks?|payloads?|defen[cs]es?|"
    r"defend|detect\w*|prevent\w*|mitigat\w*|protect\w*|filter\w*|classif\w*|block\w*|flag\w*|"
    r"recogni[sz]e\w*|patterns?|quoted?|mean|means|meaning|what\s+does|how\s+do|how\s+to|why\s+does|"
    r"contains?|containing|typed)\b"
)
_EXFIL_STRONG = re.compile(
    r"\b(?:your|yours|own|hidden|secret|internal|confidential|initial|original|verbatim|underlying|private|"
    r"above|previous|prior|earlier|starting|opening|pre-?prompt|meta-?prompt|been\s+given|were\s+given|"
    r"been\s+told|were\s+told)\b"
)
_EXFIL_HIDDEN = re.compile(
    r"\b(?:hidden|secret|internal|confidential|initial|original|system|underlying|private|pre-?prompt|"
    r"verbatim|exact|full|entire|complete|first)\b"
)
_SENSITIVE = re.compile(
    r"\b(?:conversations?|chat|history|transcripts?|system[\s-]+prompt|prompt|instructions|api[\s_-]?keys?|"
    r"keys?|tokens?|credentials?|passwords?|passphrases?|secrets?|session|cookies?|memory|personal|pii|"
    r"credit|ssn|social\s+security|e-?mails?|messages?|contacts?|private|confidential|bank|account)\b"
)
_CLAUSE = re.compile(r"[^.\n]{0,80}")
_SENT_OBJECT = re.compile(r"\S+\s+(.*)\b(?:to|at|into|via|using|through|on)\b", re.DOTALL)
_DEV_MODE_STRONG = re.compile(
    r"\b(?:enabled|activated|you\s+are|you['\u2019]re|act|acting|simulate|emulate|stay|remain|output|"
    r"respon\w+|chatgpt|gpt|assistant|ai|pretend|behave)\b"
)


def _is_imperative(low: str, start: int) -> bool:
    """Whether the phrase at `start` is addressed to the model (see `_ADDRESSED_WORDS`)."""
    before = low[max(0, start - 48) : start]
    if before[-1:] in _PUNCTUATION and before[-1:] not in ("'", "\u2019"):  # not the apostrophe of "can't"
        return True
    stripped = before.rstrip(_BLANKS)
    if not stripped or stripped[-1] in _PUNCTUATION:
        return True
    words = stripped.replace("\u2019", "'").split()[-4:]
    last = words[-1]
    previous = words[-2] if len(words) > 1 else ""
    if last in _ADDRESSED_WORDS or last in _SUBJECTS:
        return True
    if last in _MODALS and previous in _SUBJECTS:
        return True
    if last == "to" and (previous in _TO_ADDRESSED or any(word in _SUBJECTS for word in words[:-1])):
        return True
    if last in ("to", "and") and previous in _TOOLS:
        return True
    if last in _SUBJECT_VERBS and previous in _SUBJECTS:  # "you need (to)", "assistant is (to)"
        return True
    return last not in _DESCRIPTIVE_WORDS


def _is_quoted_example(low: str, start: int, end: int) -> bool:
    """A phrase in quotes right after an example marker ("attacks like 'ignore previous instructions'")."""
    if _QUOTE.search(low, max(0, start - 3), start) is None:
        return False
    line_end = low.find("\n", end, end + 120)
    if _QUOTE.search(low, end, line_end if line_end >= 0 else end + 120) is None:
        return False
    return _META.search(low, max(0, start - 120), start) is not None


def weigh(rule: Rule, text: str, low: str, start: int, end: int) -> float:
    """The weight of the match `low[start:end]` under `rule`, in its context; 0.0 drops it. `low` is `text`
    lower-cased at the same offsets (`text` keeps the case: "Dan" is a name, "DAN" a persona)."""
    kind = rule.kind
    matched = low[start:end]
    if kind == FIXED:
        weight = rule.strong
    elif kind == IMPERATIVE_KIND:
        weight = rule.strong if _is_imperative(low, start) else rule.weak
    elif kind == OVERRIDE:
        if _SELF_MARK.search(matched):
            weight = _SELF_CORRECTION_WEIGHT
        elif (
            _STRONG_QUAL.search(matched)
            and _is_imperative(low, start)
            and _DEFENSIVE_SCOPE.match(low, end) is None
        ):
            weight = rule.strong
        else:
            weight = rule.weak
    elif kind == EXFIL:
        if not _is_imperative(low, start):
            weight = rule.weak
        elif _EXFIL_STRONG.search(matched):
            weight = rule.strong
        elif "system" in matched:
            weight = _EXFIL_SYSTEM_WEIGHT
        else:
            weight = rule.weak
    elif kind == EXFIL_Q:
        if "your" not in matched:
            weight = rule.weak
        elif _EXFIL_HIDDEN.search(matched):
            weight = rule.strong
        else:
            weight = _EXFIL_QUESTION_WEIGHT
    elif kind == PERSONA_TAIL:
        # The match is only "you are now" / "from now on, you": what follows, up to the end of the clause,
        # says whether this is a role-play or a jailbreak. It is not part of the match so that the phrases it
        # contains ("do anything now", "DAN mode") are still matched on their own.
        clause = _CLAUSE.match(low, end)
        tail = clause.group() if clause is not None else ""
        weight = rule.strong if _BAD_PERSONA.search(matched + tail) else rule.weak
    elif kind == DEV_MODE:
        weight = rule.strong if _DEV_MODE_STRONG.search(matched) else rule.weak
    elif kind == DAN:
        at = matched.rfind("dan")
        weight = rule.weak if text[start + at : start + at + 3] == "Dan" else rule.strong
    elif kind == SEND:
        imperative = _is_imperative(low, start)
        # What is sent: between the verb and the last "to"/"at" (not the verb "email", not the address).
        sent = _SENT_OBJECT.match(matched)
        if sent is not None and _SENSITIVE.search(sent.group(1)):
            weight = rule.strong if imperative else rule.weak
        else:  # "send the weekly report to https://...": an ordinary request unless more comes with it
            weight = _SEND_OTHER_WEIGHT if imperative else _SEND_OTHER_WEIGHT / 2
    else:  # pragma: no cover - a table error
        raise AssertionError(f"unknown rule kind {kind}")
    if rule.signal in _QUOTABLE and _is_quoted_example(low, start, end):
        weight *= _QUOTED_EXAMPLE_FACTOR
    return weight
