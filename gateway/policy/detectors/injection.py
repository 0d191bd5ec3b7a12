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

Speed. The stdlib `re` tries an alternation at every character, at ~50 ns a character for patterns of
this size: far too slow to run the detailed patterns over a whole prompt. So the work is split:

1. The text is folded once (`bytes.translate`: ASCII case folded; letters, digits and "_" kept; every other
   character a space) and ONE regex pass finds the *anchors* at word starts: rare words or short phrases
   that every detailed pattern contains ("ignor", "disregard", "instruc", "prompt", "jailbr", "you are
   now", "developer mode", "system message", ...). The pattern begins with a literal space, so `re` jumps
   from word to word; a lookahead on the anchors' first letters rejects most words (t-, a-, w-, c-words)
   after one test, and the anchors are a trie (shared prefixes compared once). Multi-word anchors allow
   any number of separators between their words. With google-re2 installed (an optional speed-up, as for
   the `pii` detector) a DFA first says whether there is any anchor at all. Anchors made of punctuation
   ("<|", "@", "![", "system" inside "<system>" or "### system") are looked for with `str.find`, and only
   when their first character, rare in prose, occurs in the text at all (a `memchr`-speed `in`).
2. Near each anchor only: the candidate starts are the word starts, up to the family's reach before the
   anchor, whose first word can begin one of the family's patterns ("reveal", "print", "what", "you",
   ...), found by a second literal-prefixed pass over that stretch of folded bytes; at each candidate, the
   alternatives that can begin with that word are tried with `match` (no scanning). Patterns that begin with
   punctuation are searched in a small window around their anchor. Windows of one family are merged, so no
   stretch is scanned twice per family however many anchors there are. A test compares the result with an
   unanchored scan of every pattern at every word start, and another checks each family's reach against
   the longest text its patterns can match.
3. Base64: when the text has a digit (base64 of any sentence has some), one more translation finds runs of
   32+ base64 characters; each is decoded at its four possible alignments, and if it decodes to readable
   text that text is scored by the same scorer (two levels deep at most). A run that decodes to binary
   scores nothing; readable text with nothing suspicious in it scores 0.2, never decisive.

Windows do not multiply the work: the whole text is scanned once, and window scores are computed from the
match positions. Every quantifier is bounded (or separates disjoint classes), so 1 MB of adversarial input is
processed in linear time.

Limits, by construction: the anchors are ASCII words, so a non-ASCII letter inside one (homoglyphs, "İgnore")
hides it; "_" joins words like `re`'s `\\b` does, so "_ignore_ all previous instructions" is not an order;
only standard base64 is decoded (not hex, URL-safe base64, ROT13 or leetspeak); and the heuristics read
English, Spanish, French, German and Italian overrides, not paraphrases outside their word lists.

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
# "print the system prompt" without "your" or "hidden": as often a developer's question as an attack.
_EXFIL_SYSTEM_WEIGHT: Final = 0.6
# "what are your instructions?": curious or probing, never decisive alone.
_EXFIL_QUESTION_WEIGHT: Final = 0.55
# Sending something that is not sensitive (a report, a file) to a URL or an address.
_SEND_OTHER_WEIGHT: Final = 0.45
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
# "(", "." or "_", so code such as `print(system_prompt)` or `ignore_previous_instructions=True` is not an
# order to anyone.

_SP = r"[\s*`\"'\u201c\u201d\u2018\u2019]{1,6}"


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
    r"filters?|messages?|system[\s-]{1,3}prompts?|(?:system|initial|original)\s{1,3}messages?)\b"
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
    r"citations?|headings?|tables?|markdown|word\s{1,3}count)\b"
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
    + r"(?=[\s*\"'`]{0,6}(?:[.,;:!\-\n)]|and\b|then\b|$))"
    + r"(?:[\s*\"'`.,;:!\-]{0,6}(?:i\b|sorry|oops|typo|wrong|"
    + _seq("my", "mistake") + "|" + _seq("(?:that|it)", "was") + "|"
    + _seq(r"(?:here" + _SP + r"is|here['\u2019]s)", "the", "(?:correct|corrected|right|updated|fixed|revised|new)")
    + "))?"
)


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
# Verbs that are also everyday code words ("return", "state", "read", "type", "echo") are left out: they
# would make every line of pasted code a candidate, for attacks that are rarely phrased with them.
_EX_VERB = _alt(
    "reveal", "print", "repeat", "show", "display", "output", "tell", "give", "leak", "dump", "share",
    "disclose", "expose", "recite", "list", "provide", "copy", "reproduce", "quote", "summari[sz]e", "translate",
    "send", "spell" + _SP + "out", "write" + _SP + "(?:out|down)",
)
_EX_QUAL = _alt(
    "all", "of", "the", "your", "entire", "full", "whole", "exact", "complete", "original", "initial", "hidden",
    "secret", "internal", "confidential", "verbatim", "above", "previous", "prior", "earlier", "first",
    "current", "real", "actual", "raw", "underlying", "very", "word-for-word", "system", "developer",
    "starting", "opening", "given", "these", "those", "that", "this", "everything", "in", "private", "core",
    "base", "default", "own",
)
_EX_HEAD = r"\b" + _EX_VERB + _SP + "(?:(?:me|us|back|out)" + _SP + ")?" + _opt_words(_EX_QUAL, 4)
_EX_TAIL = (
    "(?:" + _SP + "(?:" + _seq(r"you(?:['\u2019]ve|" + _SP + "have)?", "(?:been|were)", "(?:given|told)")
    + "|above|verbatim|" + _seq("word", "for", "word") + "))?"
)
_Q_HEAD = r"\b" + _seq("(?:what|which)", "(?:is|was|are|were)", "(?:your|the)") + _SP + _opt_words(_EX_QUAL, 3)

# Tool hijack: sending something to a URL or an address.
_SEND_VERB = _alt(
    "send", "post", "upload", "forward", "transmit", "leak", "email", "mail", "submit", "exfiltrate",
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
    """How the weight of one alternative's match is decided, and for which signal."""

    signal: str
    kind: int
    strong: float
    weak: float = 0.0


@dataclass(frozen=True, slots=True)
class _Alt:
    """One alternative of a family. `starts` lists lower-case ASCII prefixes that every match of a word-start
    alternative begins with (its first words: the verbs of "reveal ... system prompt"); an empty tuple marks an
    alternative that begins with punctuation ("<|im_start|>", "</system>", "### system")."""

    name: str
    pattern: str
    rule: _Rule
    starts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _FamilySpec:
    """Patterns that share anchors. A match must contain one of the anchors; a word-start match begins at most
    `before` characters before it, a punctuation-start match at most `punct_before` before it and ends at most
    `after` after it. The tests check these reaches against the longest text each pattern can match, and the
    whole scheme against an unanchored scan of the corpus."""

    name: str
    anchors: tuple[str, ...]  # word prefixes found at word starts by the anchor pass ("ignor", "dan ")
    # (gate characters, literal): the literal is looked for in the lower-cased text with str.find, and only
    # when one of the gate characters (rare in prose: "<", "@", "#") occurs in the text at all.
    gated: tuple[tuple[str, str], ...]
    before: int
    alts: tuple[_Alt, ...]
    punct_before: int = 0
    after: int = 0
    # A punctuation window is searched only when the last non-blank character before the anchor is one of
    # these ("<" of "<system>", "#" of "### system"); empty: always (the anchor is the punctuation itself).
    punct_chars: str = ""


def _r(signal: str, kind: int, strong: float, weak: float = 0.0) -> _Rule:
    return _Rule(signal, kind, strong, weak)


_IGN = IGNORE_INSTRUCTIONS
_EXF = SYSTEM_PROMPT_EXFILTRATION
_OVR_STRONG = 0.9
_OVR_WEAK = 0.45

_OVR_STARTS = (
    "ignor", "disregard", "forget", "overrid", "bypass", "skip", "discard", "abandon", "drop", "scrap", "cancel",
    "nullify", "replace", "throw", "set", "do", "don", "stop", "no", "never",
)
_EX_STARTS = (
    "reveal", "print", "repeat", "show", "display", "output", "tell", "give", "leak", "dump", "share", "disclose",
    "expose", "recite", "list", "provide", "copy", "reproduce", "quote", "summari", "translate", "send", "spell",
    "write",
)
_Q_STARTS = ("what", "which")
_SEND_STARTS = (
    "send", "post", "upload", "forward", "transmit", "leak", "email", "mail", "submit", "exfiltrate", "relay", "pipe",
    "export", "dump", "share", "write", "copy", "append", "include", "encode",
)
_TOOL_VERB = "(?:call|invoke|use|run|execute|trigger)"
# The word right before "rules" in an exfiltration attempt ("reveal your hidden rules"): also the anchors.
# Persona modes that only exist in jailbreaks ("unrestricted mode" and "jailbreak mode" belong to the
# families of their first word).
_BAD_MODES = ("god", "evil", "unlocked")
_RULE_OWNERS = ("your", "hidden", "secret", "internal", "original", "initial")
_TOOL_STARTS = ("call", "invoke", "use", "run", "execute", "trigger")
_TOOL_HEAD = (
    r"\b" + _TOOL_VERB + _SP + "(?:(?:the|your|a)" + _SP + r")?(?:[\w.-]{1,30}" + _SP
    + r")?(?:tool|function|plugin|api|action|browser|fetch|webhook|command)\b"
)


def _override_alts(prefix: str, verb: str, start: str) -> list[_Alt]:
    """The three English override shapes for one verb: "<verb> [qualifiers] <noun>", "<verb> everything
    above", "<verb> the above"."""
    head = r"\b" + verb
    return [
        _Alt(
            f"{prefix}_en",
            head + _SP + _opt_words(_OVR_QUAL, 5) + _OVR_NOUN + _GIVEN_TAIL + _SELF_TAIL,
            _r(_IGN, _OVERRIDE, _OVR_STRONG, _OVR_WEAK),
            (start,),
        ),
        _Alt(f"{prefix}_all", head + _ALL_TAIL, _r(_IGN, _OVERRIDE, 0.85, _OVR_WEAK), (start,)),
        _Alt(f"{prefix}_above", head + _ABOVE_TAIL, _r(_IGN, _OVERRIDE, 0.85, _OVR_WEAK), (start,)),
    ]


def _ml(name: str, pattern: str, starts: tuple[str, ...], strong: float = 0.9) -> _Alt:
    return _Alt(name, pattern, _r(_IGN, _OVERRIDE, strong, _OVR_WEAK), starts)


# Each entry: _FamilySpec(name, word anchors, gated literals, before, alternatives[, punct_before, after,
# punct_chars]). Weights: _r(signal, kind, strong[, weak]); see `_weigh` for what each kind does.
_FAMILIES: Final[tuple[_FamilySpec, ...]] = (
    _FamilySpec(
        "ignore",
        ("ignor",),
        (),
        0,
        (
            *_override_alts("ign", r"ignor(?:e|es|ed|ing)?", "ignor"),
            _ml("ign_es", r"\bignor(?:a|ad|ar|en|e)" + _SP + _ES, ("ignor",)),
            _ml("ign_fr", r"\bignor(?:e|ez|er|es)" + _SP + _FR, ("ignor",)),
            _ml("ign_de", r"\bignorier(?:e|en|t|st)?" + _SP + _DE, ("ignor",)),
            _ml("ign_it", r"\bignora(?:re|te)?" + _SP + _IT, ("ignor",)),
        ),
    ),
    _FamilySpec(
        "disregard", ("disregard",), (), 0, tuple(_override_alts("dis", r"disregard(?:s|ed|ing)?", "disregard"))
    ),
    _FamilySpec(
        "forget",
        ("forget",),
        (),
        0,
        (
            *_override_alts("fgt", r"forget(?:ting)?", "forget"),
            _Alt(
                "fgt_ai",
                r"\bforget(?:ting)?" + _SP + "(?:that" + _SP + ")?"
                + r"(?:you(?:['\u2019]re|" + _SP + "are)|your" + _SP + "(?:role|identity|persona)(?:" + _SP + "as)?)"
                + _SP + "(?:(?:an?|the)" + _SP + ")?"
                + r"(?:ai|assistant|language" + _SP + r"model|chatbot|llm|bot|chatgpt|claude|gpt)\b",
                _r(ROLE_OVERRIDE, _IMPERATIVE_KIND, 0.6, 0.25),
                ("forget",),
            ),
        ),
    ),
    _FamilySpec(
        "multilingual",
        ("olvid", "oubli", "vergiss", "missacht", "dimentica"),
        (),
        0,
        (
            _ml("ml_es", r"\bolvid(?:a|e|ad|en|ar|ate)" + _SP + _ES, ("olvid",)),
            _ml(
                "ml_es_all",
                r"\bolvid\w{0,3}" + _SP + "todo" + _SP + "(?:lo" + _SP + "(?:anterior|de" + _SP + "arriba)|"
                + _seq("lo", "que", "te", r"(?:dije|dijeron|han" + _SP + "dicho)") + r")\b",
                ("olvid",),
                0.85,
            ),
            _ml("ml_fr", r"\boubli(?:e|ez|er|es)" + _SP + _FR, ("oubli",)),
            _ml(
                "ml_fr_all",
                r"\boubli\w{0,3}" + _SP + "tout" + _SP + "(?:" + _seq("ce", "qui", r"pr[e\u00e9]c[e\u00e8]de") + "|"
                + _seq("ce", r"qu['\u2019]on", r"t['\u2019]a", "dit") + ")",
                ("oubli",),
                0.85,
            ),
            _ml("ml_de", r"\b(?:vergiss|missachte|missachten)" + _SP + _DE, ("vergiss", "missacht")),
            _ml(
                "ml_de_all",
                r"\bvergiss" + _SP + "alles(?:" + _SP + r"(?:bisherige|vorherige|obige))?\b",
                ("vergiss",),
                0.85,
            ),
            _ml("ml_it", r"\bdimentica(?:re|te)?" + _SP + _IT, ("dimentica",)),
        ),
    ),
    _FamilySpec(
        "instructions",
        ("instruc",),
        (),
        150,
        (
            _Alt(
                "ins_ovr",
                r"\b" + _OVR_VERB + _SP + _opt_words(_OVR_QUAL, 5) + r"instructions?\b" + _GIVEN_TAIL + _SELF_TAIL,
                _r(_IGN, _OVERRIDE, _OVR_STRONG, _OVR_WEAK),
                _OVR_STARTS,
            ),
            _Alt(
                "ins_new",
                r"\b(?:new|updated|revised|real|actual|true|secret|hidden|priority|override|overriding|urgent)"
                r"[ \t]{1,3}(?:system[ \t]{1,3})?instructions?[ \t]{0,3}(?::|-{1,3}|=|\bare\b|\bfollow\b|\n)",
                _r(_IGN, _FIXED, 0.6),
                ("new", "updated", "revised", "real", "actual", "true", "secret", "hidden", "priority", "overrid",
                 "urgent"),
            ),
            _Alt(
                "ins_exfil",
                _EX_HEAD + r"(?:system[\s-]{1,3})?instructions?\b" + _EX_TAIL,
                _r(_EXF, _EXFIL, 0.85, 0.3),
                _EX_STARTS,
            ),
            _Alt("ins_q", _Q_HEAD + r"instructions?\b", _r(_EXF, _EXFIL_Q, 0.8, 0.5), _Q_STARTS),
            _ml(
                "ins_es",
                r"\b(?:olvid\w{0,3}|omit\w{0,3}|descart\w{0,3}|ignor\w{0,3}|desobedec\w{0,3}|"
                + _seq("no", "(?:sigas|sigan|obedezcas)") + ")" + _SP + _opt_words(_ES_DET, 3)
                + r"instrucci(?:ones|[o\u00f3]n)\b" + _ES_AFTER,
                ("olvid", "omit", "descart", "ignor", "desobedec", "no"),
            ),
            _ml(
                "ins_fr",
                r"\b(?:oubli\w{0,3}|ignor\w{0,3}|" + _seq("ne", "(?:suis|suivez|suivre)", "pas")
                + ")" + _SP + _opt_words(_FR_DET, 3) + r"instructions?\b" + _FR_AFTER,
                ("oubli", "ignor", "ne"),
            ),
            _Alt(
                "ins_hdr",
                r"(?:^|\n)[ \t]{0,3}(?:#{2,6}[ \t]{0,3}(?:(?:new|system|admin|developer|updated)[ \t]{1,3})?"
                r"instructions?[ \t]{0,3}:?"
                r"|[\[<][ \t]{0,3}/?(?:(?:new|system)[ \t]{1,3})?instructions?[ \t]{0,3}[\]>])",
                _r(DELIMITER_INJECTION, _FIXED, 0.5),
            ),
        ),
        punct_before=42,
        after=45,
        punct_chars="#[</",
    ),
    _FamilySpec(
        "prompt",
        ("prompt",),
        (),
        150,
        (
            _Alt(
                "pr_exfil",
                _EX_HEAD + r"(?:system[\s-]{1,3}|pre-?|meta-?|initial[\s-]{1,3}|original[\s-]{1,3})?prompts?\b"
                + _EX_TAIL,
                _r(_EXF, _EXFIL, 0.85, 0.3),
                _EX_STARTS,
            ),
            _Alt(
                "pr_q",
                _Q_HEAD + r"(?:system[\s-]{1,3}|pre-?|initial[\s-]{1,3}|original[\s-]{1,3})?prompts?\b",
                _r(_EXF, _EXFIL_Q, 0.8, 0.45),
                _Q_STARTS,
            ),
            _Alt(
                "pr_del",
                r"\b(?:begin|start|end)(?:" + _SP + "of)?(?:" + _SP + "the)?" + _SP + r"system[\s-]{1,3}prompt\b",
                _r(DELIMITER_INJECTION, _FIXED, 0.6),
                ("begin", "start", "end"),
            ),
            _Alt(
                "pr_new",
                r"\b(?:new|updated|revised|real|actual)[ \t]{1,3}system[\s-]{1,3}prompt[ \t]{0,3}(?::|-|=|\bis\b)",
                _r(_IGN, _FIXED, 0.5),
                ("new", "updated", "revised", "real", "actual"),
            ),
            _Alt(
                "pr_ovr",
                r"\b" + _OVR_VERB + _SP + _opt_words(_OVR_QUAL, 5) + r"(?:system[\s-]{1,3})?prompts?\b" + _SELF_TAIL,
                _r(_IGN, _OVERRIDE, _OVR_STRONG, _OVR_WEAK),
                _OVR_STARTS,
            ),
        ),
    ),
    _FamilySpec(
        "system",
        tuple(f"system {word}" for word in ("message", "config", "setting", "rule", "guideline", "directive",
                                             "override", "alert", "notice", "admin", "command")),
        (),
        110,
        (
            _Alt(
                "sy_ovr",
                r"\bsystem[ \t]{1,3}(?:override|alert|notice|admin|command)[ \t]{0,3}:",
                _r(DELIMITER_INJECTION, _FIXED, 0.5),
                ("system",),
            ),
            _Alt(
                "sy_exfil",
                _EX_HEAD + r"system[\s-]{1,3}(?:message|configuration|settings|rules|guidelines|directives)\b"
                + _EX_TAIL,
                _r(_EXF, _EXFIL, 0.85, 0.3),
                _EX_STARTS,
            ),
            _Alt(
                "sy_q",
                _Q_HEAD + r"system[\s-]{1,3}(?:message|rules|guidelines)\b",
                _r(_EXF, _EXFIL_Q, 0.8, 0.45),
                _Q_STARTS,
            ),
        ),
    ),
    _FamilySpec(
        "system_tags",
        (),
        (("<[#", "system"),),
        0,
        (
            _Alt(
                "sy_reopen",
                r"</[ \t]{0,3}system[ \t]{0,3}>\s{0,8}<[ \t]{0,3}system[ \t]{0,3}>",
                _r(DELIMITER_INJECTION, _FIXED, 0.85),
            ),
            _Alt(
                "sy_tag",
                r"</?[ \t]{0,3}system(?:[_-]?(?:prompt|message|instructions?))?[ \t]{0,3}>",
                _r(DELIMITER_INJECTION, _FIXED, 0.6),
            ),
            _Alt(
                "sy_brk",
                r"\[[ \t]{0,3}/?system(?:[ \t]{1,3}(?:message|prompt|note|override|instructions?))?[ \t]{0,3}\]",
                _r(DELIMITER_INJECTION, _FIXED, 0.45),
            ),
            _Alt(
                "sy_hdr",
                r"(?:^|\n)[ \t]{0,3}#{1,6}[ \t]{0,3}system(?:[ \t]{1,3}(?:prompt|message|instructions?|override|note))?"
                r"[ \t]{0,3}:?[ \t]{0,3}(?=\n|$)",
                _r(DELIMITER_INJECTION, _FIXED, 0.5),
            ),
        ),
        punct_before=16,
        after=60,
        punct_chars="#[</",
    ),
    _FamilySpec(
        "llama",
        ("sys ", "inst "),
        (),
        0,
        (
            _Alt("tk_llama", r"<<[ \t]{0,3}/?sys[ \t]{0,3}>>", _r(DELIMITER_INJECTION, _FIXED, 0.7)),
            _Alt(
                "tk_inst_sys",
                r"\[[ \t]{0,3}inst[ \t]{0,3}\]\s{0,4}<<[ \t]{0,3}sys[ \t]{0,3}>>",
                _r(DELIMITER_INJECTION, _FIXED, 0.85),
            ),
            _Alt("tk_inst", r"\[[ \t]{0,3}/?inst[ \t]{0,3}\]", _r(DELIMITER_INJECTION, _FIXED, 0.55)),
        ),
        punct_before=8,
        after=40,
        punct_chars="<[/",
    ),
    _FamilySpec(
        "special_tokens",
        (),
        (("<", "<|"),),
        0,
        (
            _Alt(
                "tk_sys",
                r"<\|(?:im_start|start_header_id)\|>[ \t]{0,3}system\b|<\|system\|>",
                _r(DELIMITER_INJECTION, _FIXED, 0.85),
            ),
            _Alt("tk_any", r"<\|[a-z_]{1,24}\|>", _r(DELIMITER_INJECTION, _FIXED, 0.6)),
        ),
        after=60,
    ),
    _FamilySpec(
        "rules",
        tuple(f"{word} rule" for word in _RULE_OWNERS) + ("new rule",),
        (),
        175,
        (
            _Alt(
                "ru_exfil",
                _EX_HEAD + _alt(*_RULE_OWNERS) + _SP + r"(?:rules?|guidelines?)\b" + _EX_TAIL,
                _r(_EXF, _EXFIL, 0.85, 0.3),
                _EX_STARTS,
            ),
            _Alt(
                "ru_q",
                r"\b" + _seq("(?:what|which)", "(?:are|were)", "your") + "(?:" + _SP + _alt(*_RULE_OWNERS[1:]) + ")?"
                + _SP + r"rules\b",
                _r(_EXF, _EXFIL_Q, 0.8, 0.45),
                _Q_STARTS,
            ),
            _Alt("ru_new", r"\bnew[ \t]{1,3}rules?[ \t]{0,3}:", _r(_IGN, _FIXED, 0.45), ("new",)),
        ),
    ),
    _FamilySpec(
        "above",
        ("everything above", "messages above", "verbatim", "starting with", "starting from"),
        (),
        115,
        (
            _Alt(
                "ab_all",
                r"\b(?:" + _EX_VERB + "|repeat)" + _SP + "(?:(?:me|us|back|out)" + _SP + ")?"
                + _opt_words("(?:all|of|the|entire|full|whole|exact|complete|very)", 3)
                + r"(?:everything|messages)" + _SP + r"above\b",
                _r(_EXF, _EXFIL, 0.85, 0.3),
                _EX_STARTS,
            ),
            # "Print the text above this line verbatim", "repeat the words above starting with 'You are'":
            # strong only with an exfiltration word in the clause (above, your, initial...), else weak.
            _Alt(
                "ab_tail",
                r"\b(?:" + _EX_VERB + r"|repeat)\b[^.\n]{0,80}?\b(?:verbatim|starting" + _SP + r"(?:with|from))\b",
                _r(_EXF, _EXFIL, 0.85, 0.3),
                _EX_STARTS,
            ),
        ),
    ),
    _FamilySpec(
        "now",
        ("you are now", "you re now", "from now on", "do anything"),
        (),
        0,
        (
            _Alt(
                "now_you",
                r"\byou(?:" + _SP + r"are|['\u2019]re)" + _SP + r"now\b",
                _r(ROLE_OVERRIDE, _PERSONA_TAIL, 0.85, 0.3),
                ("you",),
            ),
            _Alt(
                "now_from",
                r"\b" + _seq("from", "now", "on") + r"\b[,:]?[ \t]{0,3}(?:you|your|act|respond|answer|behave|pretend|"
                r"ignore|only|always|never|reply|talk|speak|write)\b",
                _r(ROLE_OVERRIDE, _PERSONA_TAIL, 0.8, 0.3),
                ("from",),
            ),
            _Alt(
                "now_dan", r"\b" + _seq("do", "anything", "now") + r"\b", _r(JAILBREAK_PERSONA, _FIXED, 0.85), ("do",)
            ),
        ),
    ),
    _FamilySpec(
        "mode",
        tuple(f"{word} mode" for word in _BAD_MODES) + ("developer mode",),
        (),
        75,
        (
            _Alt(
                "mode_dev",
                r"(?:\b(?:you" + _SP + r"are|you['\u2019]re|act|acting|respond|behave|pretend|stay|remain|simulate|"
                r"emulate|chatgpt|gpt|assistant|ai)\b[^.\n]{0,40}?\b(?:in|with|using|into|on)" + _SP + ")?"
                + "(?:the" + _SP + r")?developer[\s-]{1,3}mode\b(?:" + _SP
                + r"(?:enabled|activated|on|output|responses?|is" + _SP + r"(?:enabled|on|active)))?",
                _r(JAILBREAK_PERSONA, _DEV_MODE, 0.75, 0.3),
                ("you", "act", "respond", "behave", "pretend", "stay", "remain", "simulate", "emulate", "chatgpt",
                 "gpt", "assistant", "ai", "the", "developer"),
            ),
            _Alt(
                "mode_bad",
                r"\b" + _alt(*_BAD_MODES) + _SP + r"mode\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.55),
                _BAD_MODES,
            ),
        ),
    ),
    _FamilySpec(
        "jailbreak",
        ("jailbr",),
        (),
        55,
        (
            _Alt(
                "jb_you",
                r"\byou(?:" + _SP + r"are|['\u2019]re|" + _SP + "have" + _SP + "been)" + _SP
                + "(?:now" + _SP + ")?(?:(?:fully|completely)" + _SP + r")?jailbr\w{0,6}",
                _r(JAILBREAK_PERSONA, _FIXED, 0.85),
                ("you",),
            ),
            _Alt(
                "jb_ai",
                r"\bjailbr\w{0,6}" + _SP + r"(?:ai|assistant|model|chatbot|version|mode|gpt|chatgpt|llm|persona|"
                r"character|bot)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.7),
                ("jailbr",),
            ),
            _Alt("jb_plain", r"\bjailbr\w{0,6}", _r(JAILBREAK_PERSONA, _FIXED, 0.35), ("jailbr",)),
        ),
    ),
    _FamilySpec(
        "dan",
        ("dan ",),
        (),
        50,
        (
            _Alt("dan_mode", r"\bdan" + _SP + r"mode\b", _r(JAILBREAK_PERSONA, _DAN, 0.85, 0.35), ("dan",)),
            _Alt(
                "dan_act",
                r"\b(?:act|acting|behave|respond|answer|reply|roleplay|role-play|"
                + _seq("pretend", "to", "be") + "|" + _seq("pretend", r"you(?:" + _SP + r"are|['\u2019]re)")
                + "|" + _seq("you", "are") + r"|you['\u2019]re|" + _seq("you", "will", "be")
                + "|become|stay|remain|named|called|" + _seq("known", "as") + "|persona(?:" + _SP + "of)?|"
                + "character(?:" + _SP + "of)?|hello|hi|hey|dear)"
                + "(?:" + _SP + "as)?(?:" + _SP + "an?)?" + _SP + r"dan\b(?!['\u2019]s)",
                _r(JAILBREAK_PERSONA, _DAN, 0.85, 0.35),
                ("act", "behave", "respond", "answer", "reply", "role", "pretend", "you", "become", "stay", "remain",
                 "named", "called", "known", "persona", "character", "hello", "hi", "hey", "dear"),
            ),
        ),
    ),
    _FamilySpec(
        "restrictions",
        ("restrict", "unrestrict", "unfilter", "uncensor"),
        (),
        100,
        (
            _Alt(
                "rs_act",
                r"\b(?:act|acting|behave|respond|answer|roleplay|role-play|" + _seq("pretend", "to", "be")
                + "|become)" + _SP + "(?:as" + _SP + ")?(?:(?:an?|the|my)" + _SP + ")?"
                + r"(?:unrestricted|unfiltered|uncensored)" + _SP
                + r"(?:ai|assistant|model|chatbot|version|gpt|chatgpt|llm|bot|persona|character)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.85),
                ("act", "behave", "respond", "answer", "role", "pretend", "become"),
            ),
            _Alt(
                "rs_you",
                r"\byou(?:" + _SP + r"are|['\u2019]re|" + _SP + "have)" + _SP
                + "(?:(?:now|completely|totally|fully)" + _SP + ")?"
                + r"(?:unrestricted|unfiltered|uncensored|no" + _SP + r"restrictions)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.55),
                ("you",),
            ),
            _Alt(
                "rs_un",
                r"\bun(?:restricted|filtered|censored)" + _SP + r"(?:ai|assistant|model|chatbot|version|mode|persona|"
                r"gpt|chatgpt|llm|bot|character|responses?|answers?|output)\b",
                _r(JAILBREAK_PERSONA, _FIXED, 0.6),
                ("un",),
            ),
            _Alt(
                "rs_no",
                r"\b(?:no|without|" + _seq("free", "(?:from|of)") + "|" + _seq("not", "bound", "by")
                + "|remove|disable|bypass|ignore|lift|drop|" + _seq("turn", "off") + ")" + _SP
                + _opt_words("(?:any|all|your|the|of|its|these|those)", 3)
                + _opt_words(
                    "(?:ethical|moral|content|safety|openai|anthropic|usual|normal|typical|built-in|programmed|"
                    "previous|ai)",
                    2,
                )
                + r"restrictions\b",
                _r(JAILBREAK_PERSONA, _IMPERATIVE_KIND, 0.45, 0.2),
                ("no", "without", "free", "not", "remove", "disable", "bypass", "ignore", "lift", "drop", "turn"),
            ),
        ),
    ),
    _FamilySpec(
        "exfiltrate",
        ("exfiltrat",),
        (),
        0,
        (_Alt("ex_verb", r"\bexfiltrat(?:e|es|ing)\b", _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.35), ("exfiltrat",)),),
    ),
    _FamilySpec(
        "url",
        ("http",),
        (),
        215,
        (
            _Alt("url_send", _SEND_HEAD + _SEND_TO + r"https?://", _r(TOOL_HIJACK, _SEND, 0.85, 0.4), _SEND_STARTS),
            _Alt(
                "url_tool",
                _TOOL_HEAD + r"(?=[^\n]{0,100}?https?://)",
                _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.3),
                _TOOL_STARTS,
            ),
        ),
    ),
    _FamilySpec(
        "email",
        (),
        (("@", "@"),),
        235,
        (
            _Alt(
                "mail_send",
                _SEND_HEAD + r"\b(?:to|at)" + _SP + r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,63}",
                _r(TOOL_HIJACK, _SEND, 0.85, 0.4),
                _SEND_STARTS,
            ),
            _Alt(
                "mail_tool",
                _TOOL_HEAD + r"(?=[^\n]{0,100}?[\w.+-]@[\w-]{1,63}\.)",
                _r(TOOL_HIJACK, _IMPERATIVE_KIND, 0.7, 0.3),
                _TOOL_STARTS,
            ),
        ),
    ),
    _FamilySpec(
        "markdown_image",
        (),
        (("!", "!["),),
        0,
        (
            _Alt(
                "md_exfil",
                r"!\[[^\]\n]{0,100}\]\([ \t]{0,3}" + _URL_PLACEHOLDER,
                _r(TOOL_HIJACK, _FIXED, 0.85),
            ),
        ),
        after=420,
    ),
)


# ---------------------------------------------------------------------------------------------------------
# Byte tables for the two translations.


def _word_table() -> bytes:
    """Case folded, letters, digits and "_" kept, everything else (ASCII punctuation, '?' standing for
    non-ASCII) a space: a word start is then b" " + letter, and anchors are found as b" " + word prefix.
    "_" is a word character for `re` too ("\\bignore" does not match in "_ignore"), and keeping it makes
    `system_prompt` and `tenant_instructions` in pasted code one identifier each, not anchor hits."""
    table = bytearray(b" " * 256)
    table[ord("_")] = ord("_")
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


def _lower(text: str) -> str:
    """`text.lower()` with the same length, so offsets in the result are offsets in `text`."""
    low = text.lower()
    if len(low) == len(text):
        return low
    # U+0130 (capital I with dot) is the only code point whose lower case is two characters long.
    return text.replace("\u0130", "i").lower()


_SEP: Final = "\x00"  # in an anchor: one or more separators between two words


def _anchor_key(anchor: str) -> str:
    """An anchor as the trie sees it: the spaces between its words become `_SEP` (so that "you  are now" with
    two separators, or "you **are** now", still matches), a leading or trailing space stays one literal
    separator ("dan " is the whole word "dan", not the start of "danger")."""
    lead = len(anchor) - len(anchor.lstrip(" "))
    trail = len(anchor) - len(anchor.rstrip(" "))
    return " " * lead + _SEP.join(anchor.split()) + " " * trail


# Letters by how often English words start with them (then the rest of the alphabet, digits, punctuation).
_LETTER_RANK: Final = {char: rank for rank, char in enumerate("tasowifcbrmphenludgyqkjvzx")}


def _trie(words: Iterable[str]) -> str:
    """An alternation of `words` factored by common prefixes ("ign(?:or|ite)"): `re` tries alternatives one
    by one, so a shared first character is then compared once instead of once per word."""
    unique = sorted(set(words))
    if not unique:
        return "(?!)"
    if unique == [""]:
        return ""
    optional = "" in unique
    groups: dict[str, list[str]] = {}
    for word in unique:
        if word:
            groups.setdefault(word[0], []).append(word[1:])
    # Most frequent word-initial letters first: `re` tries the alternatives in order.
    ordered = sorted(groups.items(), key=lambda item: _LETTER_RANK.get(item[0], len(_LETTER_RANK)))
    parts = [(" +" if first == _SEP else re.escape(first)) + _trie(rests) for first, rests in ordered]
    body = parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"
    if optional:
        return "(?:" + body + ")?"
    return body


def _minimal_prefixes(starts: Iterable[str], length: int = 4) -> list[str]:
    """The distinct prefixes (at most `length` characters, ASCII only) such that every start begins with one:
    enough for the candidate pass to reject other words after a comparison or two."""
    prefixes = set()
    for start in starts:
        cut = start[:length]
        for i, char in enumerate(cut):
            if not ("a" <= char <= "z" or "0" <= char <= "9"):
                cut = cut[:i]
                break
        if not cut:
            raise ValueError(f"a start must begin with an ASCII letter or digit: {start!r}")
        prefixes.add(cut)
    return [p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes)]


@dataclass(frozen=True, slots=True)
class _Family:
    """A compiled `_FamilySpec`."""

    name: str
    before: int
    punct_before: int
    after: int
    punct_chars: str
    gated: tuple[tuple[str, str], ...]
    words: re.Pattern[str] | None  # all word-start alternatives (the unanchored reference scan uses it)
    starts: re.Pattern[bytes] | None  # b" " + first-word prefixes, over the folded bytes: the candidates
    by_prefix: dict[bytes, re.Pattern[str]]  # candidate prefix -> only the alternatives that can start with it
    punct: re.Pattern[str] | None  # punctuation-start alternatives, searched in a small window
    rules: dict[str, _Rule]


def _compile_family(spec: _FamilySpec) -> _Family:
    word_alts = [alt for alt in spec.alts if alt.starts]
    punct_alts = [alt for alt in spec.alts if not alt.starts]

    def union(alts: list[_Alt]) -> re.Pattern[str] | None:
        if not alts:
            return None
        return re.compile("|".join(f"(?P<{alt.name}>{alt.pattern})" for alt in alts))

    starts = None
    by_prefix: dict[bytes, re.Pattern[str]] = {}
    if word_alts:
        prefixes = _minimal_prefixes(start for alt in word_alts for start in alt.starts)
        firsts = re.escape("".join(sorted({prefix[0] for prefix in prefixes})))
        starts = re.compile((" (?=[" + firsts + "])" + _trie(prefixes)).encode("ascii"))
        for prefix in prefixes:
            # A candidate whose first word begins with `prefix` can only start the alternatives listing a start
            # that begins with `prefix` (or that `prefix` begins with: "no" stands for "not" and "nor").
            group = [
                alt
                for alt in word_alts
                if any(start.startswith(prefix) or prefix.startswith(start[: len(prefix)]) for start in alt.starts)
            ]
            by_prefix[(" " + prefix).encode("ascii")] = union(group) or re.compile("(?!)")
    return _Family(
        spec.name,
        spec.before,
        spec.punct_before,
        spec.after,
        spec.punct_chars,
        spec.gated,
        union(word_alts),
        starts,
        by_prefix,
        union(punct_alts),
        {alt.name: alt.rule for alt in spec.alts},
    )


Hit = tuple[int, int, str, float]  # (start, end, signal, weight)


class InjectionScorer:
    """Scores text for prompt injection; see the module docstring for the method and its limits.

    Build once (patterns are compiled here), call from any thread: `assess` and `find` keep no state."""

    __slots__ = (
        "threshold", "window", "overlap", "_step", "_families", "_gated", "_anchor_family", "_anchors", "_gate_re2",
    )

    def __init__(self, threshold: float = 0.8, window: int = 512, overlap: int = 128) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"prompt_injection threshold must be a number between 0 and 1, got {threshold!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(
                "prompt_injection threshold must be in (0, 1]: a score of 0 means nothing was found, so a "
                f"threshold of 0 would flag every text; got {threshold!r}"
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

        self._families: tuple[_Family, ...] = tuple(_compile_family(spec) for spec in _FAMILIES)
        self._gated = tuple(
            (index, gate, literal) for index, spec in enumerate(_FAMILIES) for gate, literal in spec.gated
        )
        # The anchor pass: b" " (a word start) + any anchor. A hit is mapped back to its family by its words.
        anchor_family: dict[bytes, int] = {}
        keys: list[str] = []
        for index, spec in enumerate(_FAMILIES):
            for anchor in spec.anchors:
                name = anchor.split()
                if not name or not all(word.isascii() and word.isalnum() for word in name):  # pragma: no cover
                    raise AssertionError(f"anchor {anchor!r} must be ASCII words")
                words = (" " + " ".join(name)).encode("ascii")
                if words in anchor_family:  # pragma: no cover - a table error, caught at import by the tests
                    raise AssertionError(f"anchor {anchor!r} belongs to two families")
                anchor_family[words] = index
                if anchor.endswith(" "):  # the whole word "dan": the match includes its separator
                    anchor_family[words + b" "] = index
                keys.append(_anchor_key(anchor))
        self._anchor_family = anchor_family
        trie = _trie(keys)
        # A lookahead on the possible first characters rejects most words (those starting with t, a, w, c, b,
        # l...) after one set-membership test, before the alternation is tried.
        firsts = "".join(sorted({key[0] for key in keys}))
        self._anchors: re.Pattern[bytes] = re.compile((" (?=[" + re.escape(firsts) + "])" + trie).encode("ascii"))
        # With google-re2 the anchor pass first asks the DFA whether there is any anchor at all: clean text
        # stops there. Positions still come from `re` (re2's wrapper costs microseconds per match object).
        self._gate_re2: Any = _re2.compile((" " + trie).encode("ascii")) if _re2 is not None else None

    # -- public API -----------------------------------------------------------------------------------------

    def assess(self, text: str) -> InjectionAssessment:
        """The score of the whole `text` (its best window), the signals that fired there, and where."""
        return self._assess(text, 0)

    def find(self, text: str) -> list[Finding]:
        """`[Finding("PROMPT_INJECTION", start, end)]` over the best window when its score reaches the
        threshold, else `[]`."""
        assessment = self.assess(text)
        if assessment.score >= self.threshold:
            return [Finding(KIND, assessment.start, assessment.end)]
        return []

    # -- internals ------------------------------------------------------------------------------------------

    def _assess(self, text: str, depth: int) -> InjectionAssessment:
        if not text:
            return _NOTHING
        raw = text.encode("ascii", "replace")  # one byte per character: byte offsets are character offsets
        hits = self._text_hits(text, raw)
        if depth < _MAX_DECODE_DEPTH and _has_digit(text):
            hits.extend(self._encoded_hits(raw, depth))
        if not hits:
            return _NOTHING
        return self._best_window(hits, len(text))

    def _anchor_positions(self, folded: bytes) -> dict[int, list[int]]:
        """Start offsets of the word anchors, by family: one pass over the folded bytes."""
        positions: dict[int, list[int]] = {}
        if self._gate_re2 is not None and self._gate_re2.search(folded) is None:
            return positions
        anchor_family = self._anchor_family
        for match in self._anchors.finditer(folded):
            # The match starts on the separator before the word: folded[i] stands for text[i - 1], so the
            # match's start is the word's offset in `text`.
            found = match.group()
            family = anchor_family.get(found)
            if family is None:  # a multi-word anchor with extra separators: "you  are now"
                family = anchor_family[b" " + b" ".join(found.split())]
            positions.setdefault(family, []).append(match.start())
        return positions

    def _text_hits(self, text: str, raw: bytes) -> list[Hit]:
        # A separator before the first word and after the last one: every word, the last included, is then
        # b" " + word + b" ", so whole-word anchors ("dan ") also match at the very end of the text.
        folded = (b" " + raw + b" ").translate(_WORD_TABLE)
        positions = self._anchor_positions(folded)
        low = ""
        for index, gate, literal in self._gated:
            for char in gate:
                if char in text:
                    break
            else:
                continue
            low = low or _lower(text)
            at = low.find(literal)
            while at >= 0:
                positions.setdefault(index, []).append(at)
                at = low.find(literal, at + 1)
        if not positions:
            return []
        low = low or _lower(text)
        n = len(text)
        hits: list[Hit] = []
        for index, anchors in positions.items():
            family = self._families[index]
            anchors.sort()
            if family.words is not None:
                self._word_hits(family, text, low, folded, anchors, hits)
            if family.punct is not None:
                self._punct_hits(family, text, low, anchors, n, hits)
        return hits

    def _word_hits(
        self, family: _Family, text: str, low: str, folded: bytes, anchors: list[int], hits: list[Hit]
    ) -> None:
        """Try the word-start alternatives at every candidate word start up to `before` characters before
        each anchor (each candidate once)."""
        assert family.starts is not None
        # Windows [anchor - before, anchor + 1] merged into regions; `+ 8` lets the last candidate's prefix
        # be read in full (a candidate may then start just after the anchor: harmless, it is a real match).
        starts, by_prefix, before = family.starts, family.by_prefix, family.before
        regions: list[tuple[int, int]] = []
        for at in anchors:
            lo = at - before
            if regions and lo <= regions[-1][1]:
                regions[-1] = (regions[-1][0], at + 8)
            else:
                regions.append((max(lo, 0), at + 8))
        for lo, hi in regions:
            for candidate in starts.finditer(folded, lo, hi):
                match = by_prefix[candidate.group()].match(low, candidate.start())
                if match is not None:
                    self._add(family, match, text, low, hits)

    def _punct_hits(self, family: _Family, text: str, low: str, anchors: list[int], n: int, hits: list[Hit]) -> None:
        """Search the punctuation-start alternatives in small merged windows around the anchors that have one
        of the family's punctuation characters just before them."""
        assert family.punct is not None
        region_start = region_end = -1
        for at in anchors:
            lo = max(0, at - family.punct_before)
            if family.punct_chars and text[lo:at].rstrip(" \t")[-1:] not in family.punct_chars:
                continue
            hi = min(n, at + family.after)
            if lo <= region_end:
                region_end = max(region_end, hi)
                continue
            if region_end >= 0:
                for match in family.punct.finditer(low, region_start, region_end):
                    self._add(family, match, text, low, hits)
            region_start, region_end = lo, hi
        if region_end >= 0:
            for match in family.punct.finditer(low, region_start, region_end):
                self._add(family, match, text, low, hits)

    @staticmethod
    def _add(family: _Family, match: re.Match[str], text: str, low: str, hits: list[Hit]) -> None:
        name = match.lastgroup
        assert name is not None  # every alternative is a named group
        rule = family.rules[name]
        start, end = match.span()
        weight = _weigh(rule, text, low, start, end)
        if weight > 0.0:
            hits.append((start, end, rule.signal, weight))

    def _encoded_hits(self, raw: bytes, depth: int) -> list[Hit]:
        """Base64 runs that decode to readable text, scored by what that text says."""
        classes = raw.translate(_B64_TABLE)
        hits: list[Hit] = []
        at = classes.find(_B64_RUN)
        while at >= 0:
            end_match = _B64_RUN_END.match(classes, at)
            assert end_match is not None  # `a*` always matches
            end = end_match.end()
            weight = self._decoded_weight(raw[at:end], depth)
            if weight > 0.0:
                hits.append((at, end, ENCODING_EVASION, weight))
            at = classes.find(_B64_RUN, end)
        return hits

    def _decoded_weight(self, blob: bytes, depth: int) -> float:
        text = _decode_base64_text(blob)
        if text is None:
            return 0.0
        inner = self._assess(text, depth + 1).score
        if inner <= 0.0:
            return _ENCODED_PLAIN_TEXT_WEIGHT
        return 1.0 - (1.0 - inner) * (1.0 - _ENCODED_BONUS)

    def _best_window(self, hits: list[Hit], n: int) -> InjectionAssessment:
        """Max over windows of the combined weights of the distinct signals whose matches start inside."""
        window, step = self.window, self._step
        if n <= window:  # one window: the whole text
            best: dict[str, float] = {}
            for _, _, signal, weight in hits:
                if weight > best.get(signal, 0.0):
                    best[signal] = weight
            remaining = 1.0
            for weight in best.values():
                remaining *= 1.0 - weight
            ordered = tuple(sorted(best, key=lambda s: (-best[s], s)))
            return InjectionAssessment(round(1.0 - remaining, 6), ordered, 0, n)
        last = -(-(n - window) // step)
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
        """Every family's alternatives at every word start (and the punctuation ones everywhere), without the
        anchor pass: slow, for the tests that check that anchors, reaches and first words lose nothing."""
        low = _lower(text)
        folded = (b" " + text.encode("ascii", "replace") + b" ").translate(_WORD_TABLE)
        word_starts = [i for i in range(len(text)) if folded[i] == 32 and folded[i + 1] != 32]
        hits: list[Hit] = []
        for family in self._families:
            if family.words is not None:
                for start in word_starts:
                    match = family.words.match(low, start)
                    if match is not None:
                        self._add(family, match, text, low, hits)
            if family.punct is not None:
                for match in family.punct.finditer(low):
                    self._add(family, match, text, low, hits)
        return hits


def _has_digit(text: str) -> bool:
    # Ten memchr-speed scans; base64 of any sentence has digits, prose often has none.
    return (
        "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
        or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
    )


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
            weight = _EXFIL_SYSTEM_WEIGHT
        else:
            weight = rule.weak
    elif kind == _EXFIL_Q:
        if "your" not in matched:
            weight = rule.weak
        elif _EXFIL_HIDDEN.search(matched):
            weight = rule.strong
        else:
            weight = _EXFIL_QUESTION_WEIGHT
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
        else:  # "send the weekly report to https://...": an ordinary request unless more comes with it
            weight = _SEND_OTHER_WEIGHT if imperative else _SEND_OTHER_WEIGHT / 2
    else:  # pragma: no cover - a table error
        raise AssertionError(f"unknown rule kind {kind}")
    if rule.signal in _QUOTABLE and _is_quoted_example(low, start, end):
        weight *= _QUOTED_EXAMPLE_FACTOR
    return weight


__all__ = ["InjectionAssessment", "InjectionScorer", "KIND", "SIGNALS"]
