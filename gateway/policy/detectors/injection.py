"""The `prompt_injection` check's detector: a scored heuristic for text that tries to take over the model.

`check: {prompt_injection: {threshold: 0.8}}` builds one `InjectionScorer` per policy load and calls
`find` (or `assess`, for the score and the reasons) on every request on the hot path of the proxy, so the
design starts from the common case: a prompt with no injection at all.

Scoring. Each heuristic that fires is a *signal* with a weight in (0, 1); the weights of the distinct
signals that fire close together combine as `1 - prod(1 - w)`. A single strong signal ("ignore all previous
instructions", weight 0.9) is enough to reach the default threshold of 0.8 on its own; weaker ones (a fake
`### system` header, "you are now ...", "jailbreak") stay below it unless they come with company. Only the
strongest hit of each signal counts, so repeating one phrase a hundred times does not raise the score.
"Close together" means inside one window of `window` characters; windows start every `window - overlap`
characters and cover the WHOLE text (no truncated prefix: an attack at the end of a 100 KB prompt is seen);
the text's score is the best window's. A match belongs to the window(s) its first character is in, so a
phrase that runs over a window's end is never lost, and the overlap lets two signals a few characters apart
on either side of a window start still combine.

The same phrase means different things in different mouths, so the weight of a match is adjusted by context:

* it must be addressed to the model (the imperative: sentence start, "please", "you must", "I want you
  to"...) to score high: "employees can ignore previous guidelines" is prose, "Ignore previous guidelines" is
  an order;
* an override of the *user's own* earlier instructions ("forget my previous instructions", "... the
  instructions I gave you about formatting", "ignore the above, I pasted the wrong file") is a self-correction
  and scores 0.3;
* an override scoped to untrusted data ("ignore any instructions found in the retrieved documents") is a
  defence, not an attack;
* a *quoted* phrase introduced as an example ("attacks like 'ignore previous instructions'") is talked about,
  not said, and counts half: 0.45, so prose about prompt injection lands mid-range (visible in `assess`,
  not blocked) while an attack that merely quotes itself still needs a second signal to hide behind, and
  usually has one.

Speed. Scanning the whole text with the detailed patterns would cost tens of microseconds per 4 KB in the
stdlib `re` (an alternation is tried at every character), so the work is split:

1. One byte translation (`bytes.translate`: case folded, separators turned into spaces) and ONE regex pass
   that finds the anchor words at word starts (" ignor", " instruc", " system", " now", ...): a literal
   space prefix lets `re` skip from word to word. With google-re2 installed (an optional speed-up, as for the
   `pii` detector) this pass is a DFA scan. Characters that never occur in clean prose (`<`, `@`) gate their
   own anchors with a `memchr`-speed `in` test.
2. Only around the anchor hits, in merged regions a few hundred characters wide: the detailed pattern of that
   anchor's family, compiled once per scorer as one alternation of named groups. Regions are merged before
   scanning, so no character is scanned twice per family however many anchors there are.
3. Base64: one more translation finds runs of 32+ base64 characters (only when the text has a digit: base64
   of any sentence has digits); each run is decoded at its four possible alignments, and if it decodes to
   readable text that text is scored by the same scorer (two levels deep at most). A run that decodes to
   binary, or to text with nothing suspicious in it, never reaches the threshold.

Windows do not multiply the work: the whole text is scanned once, and window scores are computed from the
match positions. Every quantifier is bounded (or separates disjoint classes), so 1 MB of adversarial input is
processed in linear time.

The text arrives normalised (NFKC, invisible characters removed; see `gateway.policy.text`); case is folded
here, keeping character offsets (`str.lower` preserves lengths except for U+0130, handled).
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.policy.detectors import Finding

try:  # An optional speed-up of the anchor pass only: the anchors found, and so every result, are the same.
    import re2 as _re2
except ImportError:  # pragma: no cover - depends on the machine
    _re2 = None

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

# Signals whose matches are natural-language phrases: a quoted example of one is talked about, not said.
_QUOTABLE: Final = frozenset(
    {IGNORE_INSTRUCTIONS, ROLE_OVERRIDE, SYSTEM_PROMPT_EXFILTRATION, JAILBREAK_PERSONA, TOOL_HIJACK}
)

_SELF_CORRECTION_WEIGHT: Final = 0.3
_QUOTED_EXAMPLE_FACTOR: Final = 0.5
_ENCODED_BONUS: Final = 0.5  # hiding text in base64 is itself suspicious: the decoded score is raised by this
_ENCODED_PLAIN_TEXT_WEIGHT: Final = 0.2  # readable text with nothing suspicious in it: noted, never decisive
_MAX_DECODE_DEPTH: Final = 2
_B64_MIN_RUN: Final = 32  # 24 decoded bytes: shorter than any useful instruction
_MIN_WINDOW: Final = 64


@dataclass(frozen=True, slots=True)
class InjectionAssessment:
    """How much `text` looks like a prompt injection, and why.

    `score` (0..1) is the best window's; `signals` names the heuristics that fired in that window, strongest
    first; `text[start:end]` is that window (widened to the end of a match that started inside it and ran
    past it). Nothing fired: score 0.0, no signals, an empty span at 0."""

    score: float
    signals: tuple[str, ...]
    start: int
    end: int


_NOTHING: Final = InjectionAssessment(0.0, (), 0, 0)


# ---------------------------------------------------------------------------------------------------------
# Pattern pieces. Everything runs on lower-cased text. `_SP` is the gap between two words: whitespace, plus
# the emphasis and quote characters an attacker may wrap words in ("**ignore** all ..."). It does not include
# "(" or ".", so code such as `print(system_prompt)` is not an order to print the system prompt.

_SP = r"[\s*_`\"'\u201c\u201d\u2018\u2019]{1,6}"


def _alt(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


def _seq(*parts: str) -> str:
    """Words separated by `_SP`."""
    return _SP.join(parts)


def _opt_words(words: str, most: int) -> str:
    """Up to `most` words from `words`, each followed by a gap."""
    return "(?:" + words + _SP + "){0," + str(most) + "}"


_OVR_VERB = _alt(
    r"ignor(?:e|es|ed|ing)?",
    r"disregard(?:s|ed|ing)?",
    r"forget(?:ting)?",
    r"overrid(?:e|es|ing)",
    r"bypass(?:ing)?",
    r"skip(?:ping)?",
    r"discard(?:ing)?",
    r"abandon(?:ing)?",
    r"drop(?:ping)?",
    r"scrap",
    r"cancel",
    r"nullify",
    r"replace",
    _seq("throw", r"(?:out|away)"),
    _seq("set", "aside"),
    _seq("do", "not", r"(?:follow|obey|heed)"),
    _seq(r"don['\u2019]?t", r"(?:follow|obey|heed)"),
    _seq("stop", r"(?:following|obeying)"),
    _seq("no", "longer", r"(?:follow|obey)"),
    _seq("never", r"(?:follow|obey)"),
)
_OVR_QUAL = _alt(
    "all", "any", "every", "each", "of", "the", "your", "these", "those", "this", "that", "its", "their",
    "such", "above", "previous", "prior", "earlier", "preceding", "foregoing", "former", "original",
    "initial", "old", "older", "existing", "current", "given", "system", "developer", "safety", "default",
    "other", "said", "last", "first", "my", "our", "standing", "aforementioned", "above-mentioned", "base",
    "core", "built-in", "internal", "hidden", "programmed", "preset", "pre-set",
)
_OVR_NOUN = (
    r"(?:instructions?|rules?|directions?|directives?|guidelines?|guidance|prompts?|commands?|orders|"
    r"context|constraints?|guardrails?|polic(?:y|ies)|programming|training|restrictions?|safeguards?|"
    r"filters?|messages?|system[\s-]+prompts?|(?:system|initial|original)\s+messages?)\b"
)
# "... any instructions you were given before this message", "... the rules above": makes an override strong.
_GIVEN_TAIL = (
    "(?:" + _SP + "(?:(?:that|which)" + _SP + ")?"
    + _seq(r"you(?:['\u2019]ve|" + _SP + "have)?", "(?:been|were)", "(?:given|told|provided|taught)")
    + "(?:" + _SP + "(?:before|earlier|previously|so" + _SP + "far|until" + _SP + "now))?"
    + "|" + _SP + "(?:above|before|so" + _SP + "far|until" + _SP + r"now)\b)?"
)
# "... the instructions I gave you", "... the previous instructions about formatting": the user's own.
_SELF_TAIL = (
    "(?:"
    + _SP + "(?:(?:that|which)" + _SP + ")?(?:i|we)" + _SP
    + "(?:(?:just|previously|earlier|already|had|have)" + _SP + ")?"
    + r"(?:gave|give|given|wrote|written|sent|provided|mentioned|listed|said|asked|typed|shared|specified|"
    r"added|put|made|posted)\b"
    + "|" + _SP + "(?:about|regarding|concerning|on|for)" + _SP + "(?:(?:the|my)" + _SP + ")?"
    + r"(?:format\w{0,4}|style|tone|length|layout|structure|language|wording|bullet\w{0,6}|spelling|fonts?|"
    r"citations?|headings?|tables?|markdown|word\s+count)\b"
    + ")?"
)
# "ignore everything above", "disregard anything you were told before", "forget everything I said".
_ALL_TAIL = (
    _SP
    + "(?:"
    + "(?:all" + _SP + "of" + _SP + ")?(?:everything|anything|whatever)"
    + "(?:" + _SP + "(?:that|which|else))?"
    + "(?:" + _SP + "(?:"
    + _seq(r"you(?:['\u2019]ve|" + _SP + "have)?", "(?:been|were)", "(?:told|given|instructed|taught|programmed)")
    + "|" + _seq("(?:i|we)", r"(?:just" + _SP + ")?(?:said|wrote|asked|mentioned|typed|sent|told" + _SP + "you)")
    + "|" + _seq("(?:was|were|has" + _SP + "been|have" + _SP + "been)", "(?:said|written|told|given|stated)")
    + "))?"
    + "(?:" + _SP + "(?:above|before|prior|previously|earlier|"
    + _seq("so", "far") + "|" + _seq("up", "to", "(?:now|this" + _SP + "point)") + "|" + _seq("until", "now")
    + "))?"
    + "|what" + _SP + "(?:that" + _SP + ")?"
    + "(?:" + _seq(r"you(?:['\u2019]ve|" + _SP + "have)?", "(?:been|were)", "(?:told|given|instructed)")
    + "|" + _seq("(?:i|we)", "(?:said|wrote|asked|told" + _SP + "you)")
    + ")"
    + r")\b"
)
# "ignore the above and ...", "disregard the previous." (but not "ignore the previous email").
_ABOVE_TAIL = (
    _SP
    + _opt_words("(?:all|the|of|everything|anything)", 3)
    + "(?:above|preceding|foregoing|previous|prior|earlier)"
    + "(?:" + _SP + r"(?:text|content|input|lines?|paragraphs?|conversation|context|ones?|parts?|sections?))?"
    + r"(?=[\s*_\"'`]*(?:[.,;:!\-\n)]|and\b|then\b|$))"
    + r"(?:[\s*_\"'`.,;:!\-]{0,6}(?:i\b|sorry|oops|typo|wrong|"
    + _seq("my", "mistake") + "|" + _seq("(?:that|it)", "was") + "|"
    + _seq(r"(?:here" + _SP + r"is|here['\u2019]s)", "the", "(?:correct|corrected|right|updated|fixed|revised|new)")
    + "))?"
)


def _override(verb: str) -> list[tuple[str, str]]:
    """The three English override shapes for one verb, as (suffix, pattern) pairs."""
    return [
        ("en", verb + _SP + _opt_words(_OVR_QUAL, 5) + _OVR_NOUN + _GIVEN_TAIL + _SELF_TAIL),
        ("all", verb + _ALL_TAIL),
        ("above", verb + _ABOVE_TAIL),
    ]


# Spanish / Portuguese, French, German, Italian.
_ES_DET = _alt("todas", "todos", "las", "los", "tus", "sus", "esas", "estas", "cualquier", "mis", "as", "os", "suas")
_ES_NOUN = (
    r"(?:instrucciones|instrucci[o\u00f3]n|indicaciones|reglas|[o\u00f3]rdenes|directrices|normas|"
    r"instru[c\u00e7][o\u00f5]es|regras)\b"
)
_ES_AFTER = (
    "(?:" + _SP + "(?:anteriores|previas|iniciales|originales|" + _seq("de", "arriba") + "|"
    + _seq("del", "sistema") + "|" + _seq("que", "(?:te|se)", "(?:dieron|dio|han" + _SP + "dado)") + "))?"
)
_FR_DET = _alt("toutes", "tous", "les", "vos", "tes", "ces", "des", "mes", "la", "le")
_FR_NOUN = r"(?:instructions?|consignes?|r[e\u00e8]gles?|directives?|indications?|ordres)\b"
_FR_AFTER = (
    "(?:" + _SP + "(?:pr[e\u00e9]c[e\u00e9]dentes|ant[e\u00e9]rieures|ci-dessus|initiales|originales|"
    + r"d['\u2019]origine|" + _seq("du", "syst[e\u00e8]me") + "))?"
)
_DE_DET = _alt(
    "alle", "alles", "die", "deine", "ihre", "s[\u00e4a]mtliche", "saemtliche", "bisherigen", "vorherigen",
    "vorigen", "obigen", "fr(?:\u00fc|u|ue)heren", "vorangegangenen", "urspr(?:\u00fc|u|ue)nglichen", "meine",
    "der", "den", "vorhergehenden", "vorstehenden",
)
_DE_NOUN = (
    r"(?:system)?(?:anweisungen|anweisung|instruktionen|regeln|befehle|vorgaben|richtlinien|anordnungen|"
    r"eingaben)\b"
)
_IT_DET = _alt("tutte", "tutti", "le", "gli", "i", "tue", "queste", "quelle")
_IT_NOUN = r"(?:istruzioni|regole|indicazioni|direttive)\b"
_IT_AFTER = "(?:" + _SP + "(?:precedenti|iniziali|originali|sopra|" + _seq("del", "sistema") + "))?"

_ES = _opt_words(_ES_DET, 3) + _ES_NOUN + _ES_AFTER
_FR = _opt_words(_FR_DET, 3) + _FR_NOUN + _FR_AFTER
_DE = _opt_words(_DE_DET, 4) + _DE_NOUN
_IT = _opt_words(_IT_DET, 3) + _IT_NOUN + _IT_AFTER

# System-prompt exfiltration: verb, an optional "me", qualifiers, object.
_EX_VERB = _alt(
    "reveal", "print", "repeat", "show", "display", "output", "tell", "give", "leak", "dump", "share",
    "disclose", "expose", "recite", "list", "provide", "paste", "copy", "return", "echo", "state", "reproduce",
    "quote", "summari[sz]e", "translate", "send", "spell" + _SP + "out", "write" + _SP + "(?:out|down)",
    "read" + _SP + "(?:back|out)", "type" + _SP + "out",
)
_EX_QUAL = _alt(
    "all", "of", "the", "your", "entire", "full", "whole", "exact", "complete", "original", "initial", "hidden",
    "secret", "internal", "confidential", "verbatim", "above", "previous", "prior", "earlier", "first",
    "current", "real", "actual", "raw", "underlying", "very", "word-for-word", "system", "developer",
    "starting", "opening", "given", "these", "those", "that", "this", "everything", "in", "private", "core",
    "base", "default", "own",
)
_EX_HEAD = r"\b" + _EX_VERB + _SP + "(?:(?:me|us|back)" + _SP + ")?" + _opt_words(_EX_QUAL, 5)
_EX_TAIL = (
    "(?:" + _SP + "(?:" + _seq(r"you(?:['\u2019]ve|" + _SP + "have)?", "(?:been|were)", "(?:given|told)")
    + "|above|verbatim|" + _seq("word", "for", "word") + "))?"
)
_Q_HEAD = r"\b" + _seq("(?:what|which)", "(?:is|was|are|were)", "(?:your|the)") + _SP + _opt_words(_EX_QUAL, 3)

# Tool hijack: sending something to a URL or an address.
_SEND_VERB = _alt(
    "send", "post", "upload", "forward", "transmit", "leak", "e-?mail", "mail", "submit", "exfiltrate",
    "relay", "pipe", "export", "dump", "share", "write", "copy", "append", "include", "encode",
)
_SEND_DET = _alt(
    "me", "us", "all", "the", "your", "this", "of", "entire", "full", "whole", "complete", r"user['\u2019]?s?",
    "previous", "current", "our", "any", "every", "these", "those", "a", "an", "copy", "summary", "list",
    "contents", "content", "in", "it", "them", "my",
)
# The gap between the verb and "to" is one bounded lazy run: every attempt costs at most ~70 steps.
_SEND_HEAD = r"\b" + _SEND_VERB + _SP + _opt_words(_SEND_DET, 5) + r"[^\n]{0,70}?"
_SEND_TO = (
    r"\b(?:to|at|into|via|using|through|on)" + _SP
    + _opt_words("(?:the|my|this|our|an?|following|external|remote|url|endpoint|server|webhook|address|site|page)", 3)
)
# A URL with a template placeholder the model is meant to fill in: ...?q={conversation}, /${secret}, %7Bdata%7D.
_URL_PLACEHOLDER = r"https?://[^\s)]{0,300}?(?:\{|\$\{|%7b|<[a-z_]|\[[a-z_])"

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
    r"arriba|iniciales|originales|sistema|toutes|tous|pr[e\u00e9]c[e\u00e9]dentes|ant[e\u00e9]rieures|"
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
# Whether a phrase is an order to the model or a statement about someone is decided by the words just before
# it. Addressed: sentence start, "please", "you must", "I want you to", "assistant, ..." (checked first).
_ADDRESSED = re.compile(
    r"(?:^|[.!?:;,\n\"'`(\[*>|\u2022\u00b7\u2013\u2014\u201c\u2018-]"
    r"|\b(?:please|pls|kindly|now|just|so|and|then|also|first|simply|ok|okay|hey|hi|instead|therefore|thus|"
    r"finally|next|immediately|important|y|et|und|bitte|ahora|maintenant|jetzt|favor|plait|pla\u00eet|"
    r"(?:you|u|assistant|ai|chatbot|bot|gpt|chatgpt|agent|claude)"
    r"(?:\s+(?:must|should|will|shall|can|may|need\s+to|needs\s+to|have\s+to|has\s+to|are\s+to|is\s+to|"
    r"are\s+going\s+to|are\s+required\s+to|is\s+required\s+to|are\s+instructed\s+to|gotta))?(?:\s+now)?"
    r"(?:\s+to)?|(?:i\s+(?:want|need|order|command|instruct|ask|urge|require)|i['\u2019]d\s+like)\s+you\s+to"
    r"|(?:make\s+sure|be\s+sure|remember|time)\s+to"
    r"|(?:tool|function|plugin|api|command|action)\s+(?:to|and)))"
    r"[\s*_\"'`\u201c\u2018]*$"
)
# Descriptive: a modal, a negation, "to", a relative pronoun or a third-person subject ("employees can
# ignore previous guidelines", "do not ignore the instructions", "how to bypass the rules"). Anything else
# (including no clear context: "lol ignore all previous instructions") counts as addressed, so that an
# attacker cannot defuse a phrase by putting an arbitrary word in front of it.
_DESCRIPTIVE = re.compile(
    r"\b(?:can|could|may|might|would|cannot|can['\u2019]t|couldn['\u2019]t|won['\u2019]t|wouldn['\u2019]t|"
    r"shouldn['\u2019]t|don['\u2019]t|doesn['\u2019]t|didn['\u2019]t|isn['\u2019]t|aren['\u2019]t|not|never|to|"
    r"that|which|who|whom|they|he|she|it|we|i|one|people|users?|employees|staff|customers|someone|anyone|"
    r"everyone|models?|llms?|systems?|attackers?|often|sometimes|usually|rarely|generally|typically|will|"
    r"should|must|shall|did|does|easily|also|then)[\s*_\"'`]*$"
)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"
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

# Weight rules ("kinds"): how a match's weight is decided.
_FIXED = 0  # always `strong`
_IMPERATIVE_KIND = 1  # `strong` when addressed to the model, else `weak`
_OVERRIDE = 2  # self-correction 0.3; strong when imperative, with a strong qualifier and not defensive
_EXFIL = 3  # imperative + your/hidden/... 0.85; "the system prompt" 0.6; otherwise weak
_EXFIL_Q = 4  # "what is your (hidden) system prompt"
_PERSONA_TAIL = 5  # "you are now" / "from now on": strong with a jailbreak persona word, else weak
_DEV_MODE = 6
_DAN = 7  # strong unless the original text writes "Dan", a person's name
_SEND = 8  # sensitive data (conversation, keys, system prompt) sent out: strong when imperative


@dataclass(frozen=True, slots=True)
class _Rule:
    """One alternative of a family's pattern: which signal it is and how its weight is decided."""

    signal: str
    kind: int
    strong: float
    weak: float = 0.0


@dataclass(frozen=True, slots=True)
class _FamilySpec:
    """A family of patterns sharing anchors: the detailed patterns run only `before`/`after` characters
    around an anchor hit, so every alternative must contain one of the anchors and fit in that reach."""

    name: str
    word_anchors: tuple[str, ...]  # word prefixes, found by the anchor pass at word starts
    literal_anchors: tuple[str, ...]  # found with str.find, each gated by its first character
    before: int
    after: int
    alternatives: tuple[tuple[str, str, _Rule], ...]  # (group name, pattern, rule)


def _r(signal: str, kind: int, strong: float, weak: float = 0.0) -> _Rule:
    return _Rule(signal, kind, strong, weak)


_IGN = IGNORE_INSTRUCTIONS
_OVR_STRONG = 0.9
_OVR_WEAK = 0.45


def _override_family(name: str, anchor: str, verb: str, extra: Iterable[tuple[str, str, _Rule]] = ()) -> _FamilySpec:
    alts: list[tuple[str, str, _Rule]] = []
    for suffix, pattern in _override(r"\b" + verb):
        strong = 0.85 if suffix != "en" else _OVR_STRONG
        alts.append((f"{name}_{suffix}", pattern, _r(_IGN, _OVERRIDE, strong, _OVR_WEAK)))
    alts.extend(extra)
    return _FamilySpec(name, (anchor,), (), 0, 240, tuple(alts))


_FAMILIES: Final[tuple[_FamilySpec, ...]] = (
    _override_family(
        "ign",
        "ignor",
        r"ignor(?:e|es|ed|ing)?",
        (
            ("ign_es", r"\bignor(?:a|ad|ar|en|e)" + _SP + _ES, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
            ("ign_fr", r"\bignor(?:e|ez|er|es)" + _SP + _FR, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
            ("ign_de", r"\bignorier(?:e|en|t|st)?" + _SP + _DE, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
            ("ign_it", r"\bignora(?:re|te)?" + _SP + _IT, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
        ),
    ),
    _override_family("dis", "disregard", r"disregard(?:s|ed|ing)?"),
    _override_family(
        "fgt",
        "forget",
        r"forget(?:ting)?",
        (
            (
                "fgt_ai",
                r"\bforget(?:ting)?" + _SP + "(?:that" + _SP + ")?"
                + r"(?:you(?:['\u2019]re|" + _SP + "are)|your" + _SP + "(?:role|identity|persona)(?:" + _SP + "as)?)"
                + _SP + "(?:(?:an?|the)" + _SP + ")?"
                + r"(?:ai|assistant|language" + _SP + r"model|chatbot|llm|bot|chatgpt|claude|gpt)\b",
                _r(ROLE_OVERRIDE, _IMPERATIVE_KIND, 0.6, 0.25),
            ),
        ),
    ),
    _FamilySpec(
        "multilingual",
        ("olvid", "oubli", "vergiss", "anweisung", "missacht", "dimentica"),
        (),
        0,
        200,
        (
            ("ml_es", r"\bolvid(?:a|e|ad|en|ar|ate|ate)" + _SP + _ES, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
            (
                "ml_es_all",
                r"\bolvid\w{0,3}" + _SP + "todo" + _SP + "(?:lo" + _SP + "(?:anterior|de" + _SP + "arriba)|"
                + _seq("lo", "que", "te", r"(?:dije|dijeron|han" + _SP + "dicho)") + r")\b",
                _r(_IGN, _OVERRIDE, 0.85, _OVR_WEAK),
            ),
            ("ml_fr", r"\boubli(?:e|ez|er|es)" + _SP + _FR, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
            (
                "ml_fr_all",
                r"\boubli\w{0,3}" + _SP + "tout" + _SP + "(?:" + _seq("ce", "qui", r"pr[e\u00e9]c[e\u00e8]de") + "|"
                + _seq("ce", r"qu['\u2019]on", r"t['\u2019]a", "dit") + r"|ce\s+que\s+je\s+t['\u2019]ai\s+dit)",
                _r(_IGN, _OVERRIDE, 0.85, _OVR_WEAK),
            ),
            ("ml_de", r"\b(?:vergiss|vergesse|missachte|missachten)" + _SP + _DE, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
            (
                "ml_de_all",
                r"\bvergiss" + _SP + "alles" + "(?:" + _SP + r"(?:bisherige|vorherige|obige|was" + _SP + r"(?:dir|du|man)\b[^.\n]{0,40}))?",
                _r(_IGN, _OVERRIDE, 0.85, _OVR_WEAK),
            ),
            ("ml_it", r"\bdimentica(?:re|te)?" + _SP + _IT, _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK)),
        ),
    ),
    _FamilySpec(
        "instruc",
        ("instruc",),
        (),
        150,
        100,
        (
            (
                "ins_ovr",
                r"\b" + _OVR_VERB + _SP + _opt_words(_OVR_QUAL, 5) + r"instructions?\b" + _GIVEN_TAIL + _SELF_TAIL,
                _r(_IGN, _OVERRIDE, _OVR_STRONG, _OVR_WEAK),
            ),
            (
                "ins_new",
                r"\b(?:new|updated|revised|real|actual|true|secret|hidden|priority|override|overriding|urgent)"
                r"[ \t]+(?:system[ \t]+)?instructions?[ \t]*(?::|-{1,3}|=|\bare\b|\bfollow\b|\n)",
                _r(_IGN, _FIXED, 0.6),
            ),
            (
                "ins_exfil",
                _EX_HEAD + r"(?:system[\s-]+)?instructions?\b" + _EX_TAIL,
                _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL, 0.85, 0.3),
            ),
            ("ins_q", _Q_HEAD + r"instructions?\b", _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL_Q, 0.8, 0.5)),
            (
                "ins_es",
                r"\b(?:olvid\w{0,3}|omit\w{0,3}|descart\w{0,3}|ignor\w{0,3}|desobedec\w{0,3}|"
                + _seq("no", "(?:sigas|sigan|obedezcas)") + ")" + _SP + _opt_words(_ES_DET, 3)
                + r"instrucci(?:ones|[o\u00f3]n)\b" + _ES_AFTER,
                _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK),
            ),
            (
                "ins_fr",
                r"\b(?:oubli\w{0,3}|ignor\w{0,3}|n[e\u00e9]glig\w{0,3}|" + _seq("ne", "(?:suis|suivez|suivre)", "pas")
                + ")" + _SP + _opt_words(_FR_DET, 3) + r"instructions?\b" + _FR_AFTER,
                _r(_IGN, _OVERRIDE, 0.9, _OVR_WEAK),
            ),
            (
                "ins_hdr",
                r"(?:^|\n)[ \t]{0,3}(?:#{2,6}[ \t]*(?:(?:new|system|admin|developer|updated)[ \t]+)?instructions?"
                r"[ \t]*:?|[\[<][ \t]*/?(?:(?:new|system)[ \t]+)?instructions?[ \t]*[\]>])",
                _r(DELIMITER_INJECTION, _FIXED, 0.5),
            ),
        ),
    ),
    _FamilySpec(
        "prompt",
        ("prompt",),
        (),
        150,
        80,
        (
            (
                "pr_exfil",
                _EX_HEAD + r"(?:system[\s-]+|pre-?|meta-?|initial[\s-]+|original[\s-]+)?prompts?\b" + _EX_TAIL,
                _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL, 0.85, 0.3),
            ),
            (
                "pr_q",
                _Q_HEAD + r"(?:system[\s-]+|pre-?|initial[\s-]+|original[\s-]+)?prompts?\b",
                _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL_Q, 0.8, 0.45),
            ),
            (
                "pr_del",
                r"\b(?:begin|start|end)(?:" + _SP + "of)?(?:" + _SP + "the)?" + _SP + r"system[\s-]+prompt\b",
                _r(DELIMITER_INJECTION, _FIXED, 0.6),
            ),
            (
                "pr_new",
                r"\b(?:new|updated|revised|real|actual)[ \t]+system[\s-]+prompt[ \t]*(?::|-|=|\bis\b)",
                _r(_IGN, _FIXED, 0.5),
            ),
            (
                "pr_ovr",
                r"\b" + _OVR_VERB + _SP + _opt_words(_OVR_QUAL, 5) + r"(?:system[\s-]+)?prompts?\b" + _SELF_TAIL,
                _r(_IGN, _OVERRIDE, _OVR_STRONG, _OVR_WEAK),
            ),
        ),
    ),
    _FamilySpec(
        "system",
        ("system", "sys "),
        (),
        150,
        70,
        (
            ("sy_chatml", r"<\|im_start\|>[ \t]*system\b", _r(DELIMITER_INJECTION, _FIXED, 0.85)),
            (
                "sy_reopen",
                r"</[ \t]*system[ \t]*>\s{0,8}<[ \t]*system[ \t]*>",
                _r(DELIMITER_INJECTION, _FIXED, 0.85),
            ),
            (
                "sy_tag",
                r"</?[ \t]*system(?:[_-]?(?:prompt|message|instructions?))?[ \t]*>",
                _r(DELIMITER_INJECTION, _FIXED, 0.6),
            ),
            ("sy_llama", r"<<[ \t]*/?sys[ \t]*>>", _r(DELIMITER_INJECTION, _FIXED, 0.7)),
            (
                "sy_brk",
                r"\[[ \t]*/?system(?:[ \t]+(?:message|prompt|note|override|instructions?))?[ \t]*\]",
                _r(DELIMITER_INJECTION, _FIXED, 0.45),
            ),
            (
                "sy_hdr",
                r"(?:^|\n)[ \t]{0,3}#{1,6}[ \t]*system(?:[ \t]+(?:prompt|message|instructions?|override|note))?"
                r"[ \t]*:?[ \t]*(?=\n|$)",
                _r(DELIMITER_INJECTION, _FIXED, 0.5),
            ),
            ("sy_role", r"(?:^|\n)[ \t]{0,3}[*_]{0,2}system[*_]{0,2}[ \t]*:", _r(DELIMITER_INJECTION, _FIXED, 0.35)),
            (
                "sy_ovr",
                r"\bsystem[ \t]+(?:override|alert|notice|admin|command|instruction)[ \t]*:",
                _r(DELIMITER_INJECTION, _FIXED, 0.5),
            ),
            (
                "sy_exfil",
                _EX_HEAD + r"system[\s-]+(?:message|instructions?|configuration|settings|rules|guidelines|directives)\b"
                + _EX_TAIL,
                _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL, 0.85, 0.3),
            ),
            (
                "sy_q",
                _Q_HEAD + r"system[\s-]+(?:message|instructions?|rules|guidelines)\b",
                _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL_Q, 0.8, 0.45),
            ),
        ),
    ),
    _FamilySpec(
        "rule",
        ("rule",),
        (),
        150,
        70,
        (
            (
                "ru_exfil",
                _EX_HEAD + r"(?:rules?|guidelines?)\b" + _EX_TAIL,
                _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL, 0.85, 0.3),
            ),
            ("ru_q", _Q_HEAD + r"rules?\b", _r(SYSTEM_PROMPT_EXFILTRATION, _EXFIL_Q, 0.8, 0.45)),
            (
                "ru_ovr",
                r"\b" + _OVR_VERB + _SP + _opt_words(_OVR_QUAL, 5) + r"rules?\b" + _GIVEN_TAIL + _SELF_TAIL,
                _r(_IGN, _OVERRIDE, _OVR_STRONG, _OVR_WEAK),
            ),
            ("ru_new", r"\bnew[ \t]+rules?[ \t]*:", _r(_IGN, _FIXED, 0.45)),
        ),
    ),
    _FamilySpec(
        "now",
        ("now",),
        (),
        30,
        100,
        (
            (
                "now_you",
                r"\byou(?:" + _SP + r"are|['\u2019]re|" + _SP + "r)" + _SP + r"now\b",
                _r(ROLE_OVERRIDE, _PERSONA_TAIL, 0.85, 0.3),
            ),
            (
                "now_from",
                r"\b" + _seq("from", "now", "on") + r"\b[,:]?[ \t]*(?:you|your|act|respond|answer|behave|pretend|"
                r"ignore|only|always|never|reply|talk|speak|write)\b",
                _r(ROLE_OVERRIDE, _PERSONA_TAIL, 0.8, 0.3),
            ),
            ("now_dan", r"\b" + _seq("do", "anything", "now") + r"\b", _r(JAILBREAK_PERSONA, _FIXED, 0.85)),
        ),
    ),
    _FamilySpec(
        "mode",
        ("mode",),
        (),
        80,
        40,
        (
            ("mode_dan", r"\bdan" + _SP + r"mode\b", _r(JAILBREAK_PERSONA, _DAN, 0.85, 0.35)),
            (
                "mode_dev",
                r"(?:\b(?:you" + _SP + r"are|you['\u2019]re|act|acting|respond|behave|pretend|stay|remain|simulate|"
                r"emulate|chatgpt|gpt|assistant|ai)\b[^.\n]{0,40}?\b(?:in|with|using|into|on)" + _SP + ")?"
                + "(?:the" + _SP + r")?developer[\s-]+mode\b(?:" + _SP
                + r"(?:enabled|activated|on|output|responses?|is" + _SP + r"(?:enabled|on|active)))?",
                _r(JAILBREAK_PERSONA, _DEV_MODE, 0.75, 0.3),
            ),
            (
                "mode_bad",
                r"\b(?:god|evil|unrestricted|unfiltered|uncensored|jailbreak|jailbroken|chaos|anarchy|unlocked|"
                r"limitless|dude|stan|opposite|amoral)" + _SP + r"mode\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.55),
            ),
        ),
    ),
    _FamilySpec(
        "jailbreak",
        ("jailbr",),
        (),
        50,
        50,
        (
            (
                "jb_you",
                r"\byou(?:" + _SP + r"are|['\u2019]re|" + _SP + "have" + _SP + "been)" + _SP
                + "(?:now" + _SP + ")?(?:(?:fully|completely)" + _SP + r")?jailbr\w{0,6}",
                _r(JAILBREAK_PERSONA, _FIXED, 0.85),
            ),
            (
                "jb_ai",
                r"\bjailbr\w{0,6}" + _SP + r"(?:ai|assistant|model|chatbot|version|mode|gpt|chatgpt|llm|persona|"
                r"character|bot)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.7),
            ),
            ("jb_plain", r"\bjailbr\w{0,6}", _r(JAILBREAK_PERSONA, _FIXED, 0.35)),
        ),
    ),
    _FamilySpec(
        "dan",
        ("dan",),
        (),
        50,
        20,
        (
            (
                "dan_act",
                r"\b(?:act|acting|behave|respond|answer|reply|roleplay|role-play|"
                + _seq("pretend", "to", "be") + "|" + _seq("pretend", r"you(?:" + _SP + r"are|['\u2019]re)")
                + "|" + _seq("you", "are") + r"|you['\u2019]re|" + _seq("you", "will", "be")
                + "|become|stay|remain|named|called|" + _seq("known", "as") + "|persona(?:" + _SP + "of)?|"
                + "character(?:" + _SP + "of)?|hello|hi|hey|dear)"
                + "(?:" + _SP + "as)?(?:" + _SP + "an?)?" + _SP + r"dan\b(?!['\u2019]s)",
                _r(JAILBREAK_PERSONA, _DAN, 0.85, 0.35),
            ),
        ),
    ),
    _FamilySpec(
        "restrict",
        ("restrict", "unrestrict", "unfilter", "uncensor"),
        (),
        90,
        50,
        (
            (
                "rs_you",
                r"\byou(?:" + _SP + r"are|['\u2019]re|" + _SP + "have)" + _SP
                + "(?:(?:now|completely|totally|fully)" + _SP + ")?"
                + r"(?:unrestricted|unfiltered|uncensored|no" + _SP + r"restrictions)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.55),
            ),
            (
                "rs_un",
                r"\bun(?:restricted|filtered|censored)" + _SP + r"(?:ai|assistant|model|chatbot|version|mode|persona|"
                r"gpt|chatgpt|llm|bot|character|responses?|answers?|output)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.6),
            ),
            (
                "rs_no",
                r"\b(?:no|without|" + _seq("free", "(?:from|of)") + "|" + _seq("not", "bound", "by")
                + "|remove|disable|bypass|ignore|lift|drop|" + _seq("turn", "off") + ")" + _SP
                + _opt_words("(?:any|all|your|the|of|its|these|those)", 3)
                + _opt_words("(?:ethical|moral|content|safety|openai|anthropic|usual|normal|typical|built-in|"
                             "programmed|previous|ai)", 2)
                + r"restrictions\b",
                _r(JAILBREAK_PERSONA, _IMPERATIVE_KIND, 0.45, 0.2),
            ),
        ),
    ),
    _FamilySpec(
        "exfiltrate",
        ("exfiltrat",),
        (),
        0,
        20,
        (("ex_plain", r"\bexfiltrat\w{0,5}", _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.35)),),
    ),
    _FamilySpec(
        "url",
        ("http",),
        (),
        300,
        320,
        (
            (
                "url_send",
                _SEND_HEAD + _SEND_TO + r"https?://",
                _r(TOOL_HIJACK, _SEND, 0.85, 0.4),
            ),
            (
                "url_tool",
                r"\b(?:call|invoke|use|run|execute|trigger)" + _SP + "(?:(?:the|your|a)" + _SP + r")?(?:[\w.-]{1,30}"
                + _SP + r")?(?:tool|function|plugin|api|action|browser|fetch|webhook|command)\b"
                r"(?=[^\n]{0,100}?https?://)",
                _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.3),
            ),
            (
                "url_md",
                r"!\[[^\]\n]{0,100}\]\([ \t]*" + _URL_PLACEHOLDER,
                _r(TOOL_HIJACK, _FIXED, 0.85),
            ),
            (
                "url_visit",
                r"\b(?:visit|open|fetch|load|curl|wget|request|call|" + _seq("browse", "to") + "|"
                + _seq("navigate", "to") + ")" + _SP + _opt_words("(?:the|this|that|url|link|page|site)", 2)
                + _URL_PLACEHOLDER,
                _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.3),
            ),
        ),
    ),
    _FamilySpec(
        "email",
        (),
        ("@",),
        300,
        140,
        (
            (
                "mail_tool",
                r"\b(?:call|invoke|use|run|execute|trigger)" + _SP + "(?:(?:the|your|a)" + _SP + r")?(?:[\w.-]{1,30}"
                + _SP + r")?(?:tool|function|plugin|api|action|command)\b"
                r"(?=[^\n]{0,100}?[\w.+-]@[\w-]{1,63}\.)",
                _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.3),
            ),
            (
                "mail_send",
                _SEND_HEAD + r"\b(?:to|at)" + _SP + r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,63}",
                _r(TOOL_HIJACK, _SEND, 0.85, 0.4),
            ),
        ),
    ),
    _FamilySpec(
        "special_tokens",
        ("inst ",),
        ("<|",),
        3,
        50,
        (
            (
                "tk_sys",
                r"<\|(?:im_start|start_header_id)\|>[ \t]*system\b|<\|system\|>",
                _r(DELIMITER_INJECTION, _FIXED, 0.85),
            ),
            ("tk_any", r"<\|[a-z_]{1,24}\|>", _r(DELIMITER_INJECTION, _FIXED, 0.6)),
            (
                "tk_inst_sys",
                r"\[[ \t]*inst[ \t]*\]\s{0,4}<<[ \t]*sys[ \t]*>>",
                _r(DELIMITER_INJECTION, _FIXED, 0.85),
            ),
            ("tk_inst", r"\[[ \t]*/?inst[ \t]*\]", _r(DELIMITER_INJECTION, _FIXED, 0.55)),
        ),
    ),
)


# ---------------------------------------------------------------------------------------------------------
# Byte tables for the two translations.


def _word_table() -> bytes:
    """Case folded, letters and digits kept, everything else (ASCII punctuation, '?' standing for non-ASCII)
    a space: anchors are then found as b" " + word prefix."""
    table = bytearray(b" " * 256)
    for c in range(ord("0"), ord("9") + 1):
        table[c] = c
    for c in range(ord("a"), ord("z") + 1):
        table[c] = c
        table[c - 32] = c
    return bytes(table)


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64_table() -> bytes:
    """Base64 characters become b'a', '=' stays, everything else a space: a long run is `b'a' * n`."""
    table = bytearray(b" " * 256)
    for c in _B64_ALPHABET:
        table[c] = ord("a")
    table[ord("=")] = ord("=")
    return bytes(table)


_WORD_TABLE: Final = _word_table()
_B64_TABLE: Final = _b64_table()
_B64_RUN: Final = b"a" * _B64_MIN_RUN
_B64_RUN_END: Final = re.compile(rb"a*={0,2}")
# Bytes that readable text (ASCII or UTF-8) never contains: controls other than \t \n \r.
_TEXT_BYTES: Final = bytes([9, 10, 13, *range(32, 127), *range(128, 256)])
_DIGITS: Final = "0123456789"


def _lower(text: str) -> str:
    """`text.lower()` with the same length, so offsets in the result are offsets in `text`."""
    low = text.lower()
    if len(low) == len(text):
        return low
    # U+0130 (capital I with dot) is the only code point whose lower case is two characters long.
    return text.replace("\u0130", "i").lower()


def _anchor_pattern(words: Iterable[str]) -> str:
    """`" (?:w1|w2|...)"` with the words grouped by first letter, so a word start that begins with no anchor's
    letter fails after one comparison per group instead of one per anchor."""
    by_first: dict[str, list[str]] = {}
    for word in sorted(set(words)):
        by_first.setdefault(word[0], []).append(re.escape(word[1:]))
    groups = []
    for first, rests in sorted(by_first.items()):
        rests.sort(key=len, reverse=True)  # longest first: "unrestrict" before a shorter prefix of it
        groups.append(re.escape(first) + ("(?:" + "|".join(rests) + ")" if len(rests) > 1 else rests[0]))
    return " (?:" + "|".join(groups) + ")"


@dataclass(frozen=True, slots=True)
class _Family:
    """A compiled `_FamilySpec`."""

    name: str
    before: int
    after: int
    literal_anchors: tuple[str, ...]
    pattern: re.Pattern[str]
    rules: dict[str, _Rule]


Hit = tuple[int, int, str, float]  # (start, end, signal, weight)


class InjectionScorer:
    """Scores text for prompt injection; see the module docstring for the method and its limits.

    Build once (patterns are compiled here), call from any thread: `assess` and `find` keep no state."""

    __slots__ = ("threshold", "window", "overlap", "_step", "_families", "_anchor_family", "_anchors", "_anchors_re2")

    def __init__(self, threshold: float = 0.8, window: int = 512, overlap: int = 128) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"prompt_injection threshold must be a number between 0 and 1, got {threshold!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(
                f"prompt_injection threshold must be in (0, 1] (a score of 0 means nothing was found), got {threshold!r}"
            )
        if isinstance(window, bool) or not isinstance(window, int) or window < _MIN_WINDOW:
            raise ValueError(
                f"prompt_injection window must be an integer of at least {_MIN_WINDOW} characters "
                f"(the length of a typical signal phrase), got {window!r}"
            )
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < window:
            raise ValueError(
                f"prompt_injection overlap must be an integer with 0 <= overlap < window ({window}), got {overlap!r}"
            )
        self.threshold = float(threshold)
        self.window = window
        self.overlap = overlap
        self._step = window - overlap

        families: list[_Family] = []
        anchor_family: dict[bytes, int] = {}
        for index, spec in enumerate(_FAMILIES):
            pattern = "|".join(f"(?P<{name}>{body})" for name, body, _ in spec.alternatives)
            rules = {name: rule for name, _, rule in spec.alternatives}
            families.append(_Family(spec.name, spec.before, spec.after, spec.literal_anchors, re.compile(pattern), rules))
            for word in spec.word_anchors:
                key = b" " + word.encode("ascii")
                if key in anchor_family:  # pragma: no cover - a table error, caught by the tests
                    raise AssertionError(f"anchor {word!r} belongs to two families")
                anchor_family[key] = index
        self._families: tuple[_Family, ...] = tuple(families)
        self._anchor_family = anchor_family
        anchor_regex = _anchor_pattern(word.decode("ascii")[1:] for word in anchor_family)
        self._anchors: re.Pattern[bytes] = re.compile(anchor_regex.encode("ascii"))
        self._anchors_re2: Any = _re2.compile(anchor_regex.encode("ascii")) if _re2 is not None else None

    # -- public API -----------------------------------------------------------------------------------------

    def assess(self, text: str) -> InjectionAssessment:
        """The score of the whole `text` (its best window), the signals that fired there, and where."""
        return self._assess(text, 0, self._anchors_re2)

    def find(self, text: str) -> list[Finding]:
        """`[Finding("PROMPT_INJECTION", start, end)]` over the best window when its score reaches the
        threshold, else `[]`."""
        assessment = self.assess(text)
        if assessment.score >= self.threshold:
            return [Finding(KIND, assessment.start, assessment.end)]
        return []

    # -- internals ------------------------------------------------------------------------------------------

    def _assess(self, text: str, depth: int, engine: Any) -> InjectionAssessment:
        if not text:
            return _NOTHING
        raw = text.encode("ascii", "replace")  # one byte per character: byte offsets are character offsets
        hits = self._text_hits(text, raw, engine)
        if depth < _MAX_DECODE_DEPTH and any(d in text for d in _DIGITS):
            hits.extend(self._encoded_hits(raw, depth, engine))
        if not hits:
            return _NOTHING
        return self._best_window(hits, len(text))

    def _anchor_positions(self, raw: bytes, engine: Any) -> dict[int, list[int]]:
        """Start offsets of the word anchors, by family: one pass over the folded bytes."""
        folded = (b" " + raw).translate(_WORD_TABLE)
        finder = engine.finditer if engine is not None else self._anchors.finditer
        positions: dict[int, list[int]] = {}
        anchor_family = self._anchor_family
        for match in finder(folded):
            # The match starts on the space before the word; that space is at index (word start - 1) + 1.
            positions.setdefault(anchor_family[match.group()], []).append(match.start())
        return positions

    def _text_hits(self, text: str, raw: bytes, engine: Any) -> list[Hit]:
        positions = self._anchor_positions(raw, engine)
        for index, family in enumerate(self._families):
            for literal in family.literal_anchors:
                if literal[0] in text and literal in text:
                    found = positions.setdefault(index, [])
                    at = text.find(literal)
                    while at >= 0:
                        found.append(at)
                        at = text.find(literal, at + 1)
        if not positions:
            return []
        low = _lower(text)
        hits: list[Hit] = []
        n = len(text)
        for index, starts in positions.items():
            family = self._families[index]
            starts.sort()
            before, after = family.before, family.after
            region_start = region_end = -1
            for at in starts:
                lo, hi = at - before, at + after
                if lo <= region_end:
                    region_end = max(region_end, hi)
                    continue
                if region_end >= 0:
                    self._scan(family, text, low, max(region_start, 0), min(region_end, n), hits)
                region_start, region_end = lo, hi
            self._scan(family, text, low, max(region_start, 0), min(region_end, n), hits)
        return hits

    def _scan(self, family: _Family, text: str, low: str, lo: int, hi: int, hits: list[Hit]) -> None:
        for match in family.pattern.finditer(low, lo, hi):
            name = match.lastgroup
            assert name is not None  # every alternative is a named group
            rule = family.rules[name]
            start, end = match.span()
            weight = _weigh(rule, text, low, start, end)
            if weight > 0.0:
                hits.append((start, end, rule.signal, weight))

    def _encoded_hits(self, raw: bytes, depth: int, engine: Any) -> list[Hit]:
        """Base64 runs that decode to readable text, scored by what that text says."""
        classes = raw.translate(_B64_TABLE)
        hits: list[Hit] = []
        at = classes.find(_B64_RUN)
        while at >= 0:
            end_match = _B64_RUN_END.match(classes, at)
            assert end_match is not None  # `a*` always matches
            end = end_match.end()
            weight = self._decoded_weight(raw[at:end], depth, engine)
            if weight > 0.0:
                hits.append((at, end, ENCODING_EVASION, weight))
            at = classes.find(_B64_RUN, end)
        return hits

    def _decoded_weight(self, blob: bytes, depth: int, engine: Any) -> float:
        text = _decode_base64_text(blob)
        if text is None:
            return 0.0
        inner = self._assess(text, depth + 1, engine).score
        if inner <= 0.0:
            return _ENCODED_PLAIN_TEXT_WEIGHT
        return 1.0 - (1.0 - inner) * (1.0 - _ENCODED_BONUS)

    def _best_window(self, hits: list[Hit], n: int) -> InjectionAssessment:
        """Max over windows of the combined weights of the distinct signals whose matches start inside."""
        window, step = self.window, self._step
        last = 0 if n <= window else -(-(n - window) // step)
        per_window: dict[int, dict[str, float]] = {}
        reach: dict[int, int] = {}
        for start, end, signal, weight in hits:
            first = max(0, (start - window) // step + 1)
            for k in range(first, min(start // step, last) + 1):
                signals = per_window.setdefault(k, {})
                if weight > signals.get(signal, 0.0):
                    signals[signal] = weight
                if end > reach.get(k, 0):
                    reach[k] = end
        best_k, best_score = -1, -1.0
        for k in sorted(per_window):
            remaining = 1.0
            for weight in per_window[k].values():
                remaining *= 1.0 - weight
            score = round(1.0 - remaining, 6)
            if score > best_score:
                best_k, best_score = k, score
        signals = per_window[best_k]
        named = tuple(sorted(signals, key=lambda s: (-signals[s], s)))
        start = best_k * step
        end = max(min(start + window, n), reach[best_k])
        return InjectionAssessment(best_score, named, start, end)

    def _hits_unanchored(self, text: str) -> list[Hit]:
        """Every family's pattern over the whole text, without the anchor pass: slow, for tests that check
        the anchors and reaches lose nothing."""
        low = _lower(text)
        hits: list[Hit] = []
        for family in self._families:
            self._scan(family, text, low, 0, len(text), hits)
        return hits


def _decode_base64_text(blob: bytes) -> str | None:
    """The readable text a base64 run decodes to at one of its four alignments, or None (binary, not base64)."""
    core = blob.rstrip(b"=")
    for offset in range(4):
        part = core[offset:]
        if len(part) % 4 == 1:
            part = part[:-1]
        if len(part) < _B64_MIN_RUN - 4:
            return None
        try:
            data = binascii.a2b_base64(part + b"=" * (-len(part) % 4))
        except binascii.Error:
            continue
        if b" " not in data or len(data.translate(None, _TEXT_BYTES)) * 20 > len(data):
            continue
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _is_imperative(low: str, start: int) -> bool:
    lo = max(0, start - 48)
    if _ADDRESSED.search(low, lo, start) is not None:
        return True
    return _DESCRIPTIVE.search(low, lo, start) is None


def _is_quoted_example(low: str, start: int, end: int) -> bool:
    """A phrase in quotes right after an example marker ("attacks like 'ignore previous instructions'")."""
    if not any(q in low[max(0, start - 3) : start] for q in _QUOTES):
        return False
    after = low[end : end + 120].split("\n", 1)[0]
    if not any(q in after for q in _QUOTES):
        return False
    return _META.search(low, max(0, start - 120), start) is not None


def _weigh(rule: _Rule, text: str, low: str, start: int, end: int) -> float:
    kind = rule.kind
    matched = low[start:end]
    if kind == _FIXED:
        weight = rule.strong
    elif kind == _IMPERATIVE_KIND:
        weight = rule.strong if _is_imperative(low, start) else rule.weak
    elif kind == _OVERRIDE:
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
    elif kind == _EXFIL:
        if not _is_imperative(low, start):
            weight = rule.weak
        elif _EXFIL_STRONG.search(matched):
            weight = rule.strong
        elif "system" in matched:
            weight = 0.6
        else:
            weight = rule.weak
    elif kind == _EXFIL_Q:
        if "your" not in matched:
            weight = rule.weak
        elif _EXFIL_HIDDEN.search(matched):
            weight = rule.strong
        else:
            weight = 0.55  # "what are your instructions?": curious or probing, never decisive alone
    elif kind == _PERSONA_TAIL:
        # The match is only "you are now" / "from now on, you": what follows, up to the end of the clause,
        # says whether this is a role-play or a jailbreak. It is not part of the match so that the phrases it
        # contains ("do anything now", "DAN mode") are still matched on their own.
        clause = _CLAUSE.match(low, end)
        tail = clause.group() if clause is not None else ""
        weight = rule.strong if _BAD_PERSONA.search(matched + tail) else rule.weak
    elif kind == _DEV_MODE:
        weight = rule.strong if _DEV_MODE_STRONG.search(matched) else rule.weak
    elif kind == _DAN:
        at = matched.rfind("dan")
        weight = rule.weak if text[start + at : start + at + 3] == "Dan" else rule.strong
    elif kind == _SEND:
        imperative = _is_imperative(low, start)
        # What is sent: between the verb and the last "to"/"at" (not the verb "email", not the address).
        sent = _SENT_OBJECT.match(matched)
        if sent is not None and _SENSITIVE.search(sent.group(1)):
            weight = rule.strong if imperative else rule.weak
        else:
            weight = 0.45 if imperative else 0.25
    else:  # pragma: no cover - a table error
        raise AssertionError(f"unknown rule kind {kind}")
    if rule.signal in _QUOTABLE and _is_quoted_example(low, start, end):
        weight *= _QUOTED_EXAMPLE_FACTOR
    return weight


__all__ = ["InjectionAssessment", "InjectionScorer", "KIND", "SIGNALS"]
