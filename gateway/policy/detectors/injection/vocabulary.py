"""Regex building blocks for the family tables: word gaps, override verbs and qualifiers, the multilingual
overrides, the exfiltration and sending phrases.

They are pattern *strings*, assembled into the alternatives of `overrides` and `personas` and compiled only
there (by `compiled`). Each `*_STARTS` tuple lists the first words its head can begin with: the candidate
pass of `scan` tries an alternative only at a word that begins like one of them, so a verb added to a head
must be added to its starts too (a test checks every match against them).
"""

from __future__ import annotations

# Everything runs on lower-cased text. `SP` is the gap between two words: whitespace, plus the emphasis and
# quote characters an attacker may wrap words in ("**ignore** all ..."). It does not include "(", "." or
# "_", so code such as `print(system_prompt)` or `ignore_previous_instructions=True` is not an order to
# anyone.

SP = r"[\s*`\"'\u201c\u201d\u2018\u2019]{1,6}"


def alt(*words: str) -> str:
    """A non-capturing alternation of `words` (pattern strings)."""
    return "(?:" + "|".join(words) + ")"


def seq(*parts: str) -> str:
    """Words separated by `SP`."""
    return SP.join(parts)


def opt_words(words: str, most: int) -> str:
    """Up to `most` words from `words`, each followed by a gap."""
    return "(?:" + words + SP + "){0," + str(most) + "}"


# -- overrides: "<verb> [qualifiers] <noun> [tail]" ----------------------------------------------------------

OVR_VERB = alt(
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
    seq("throw", r"(?:out|away)"),
    seq("set", "aside"),
    seq("do", "not", r"(?:follow|obey|heed)"),
    seq(r"don['\u2019]?t", r"(?:follow|obey|heed)"),
    seq("stop", r"(?:following|obeying)"),
    seq("no", "longer", r"(?:follow|obey)"),
    seq("never", r"(?:follow|obey)"),
)
# The first words of `OVR_VERB`, for the candidate pass.
OVR_STARTS = (
    "ignor", "disregard", "forget", "overrid", "bypass", "skip", "discard", "abandon", "drop", "scrap", "cancel",
    "nullify", "replace", "throw", "set", "do", "don", "stop", "no", "never",
)
OVR_QUAL = alt(
    "all", "any", "every", "each", "of", "the", "your", "these", "those", "this", "that", "its", "their",
    "such", "above", "previous", "prior", "earlier", "preceding", "foregoing", "former", "original",
    "initial", "old", "older", "existing", "current", "given", "system", "developer", "safety", "default",
    "other", "said", "last", "first", "my", "our", "standing", "aforementioned", "above-mentioned", "base",
    "core", "built-in", "internal", "hidden", "programmed", "preset", "pre-set",
)
OVR_NOUN = (
    r"(?:instructions?|rules?|directions?|directives?|guidelines?|guidance|prompts?|commands?|orders|"
    r"context|constraints?|guardrails?|polic(?:y|ies)|programming|training|restrictions?|safeguards?|"
    r"filters?|messages?|system[\s-]{1,3}prompts?|(?:system|initial|original)\s{1,3}messages?)\b"
)
# "... any instructions you were given before this message", "... the rules above": makes an override strong.
GIVEN_TAIL = (
    "(?:" + SP + "(?:(?:that|which)" + SP + ")?"
    + seq(r"you(?:['\u2019]ve|" + SP + "have)?", "(?:been|were)", "(?:given|told|provided|taught)")
    + "(?:" + SP + "(?:before|earlier|previously|so" + SP + "far|until" + SP + "now))?"
    + "|" + SP + "(?:above|before|so" + SP + "far|until" + SP + r"now)\b)?"
)
# "... the instructions I gave you", "... the previous instructions about formatting": the user's own.
SELF_TAIL = (
    "(?:"
    + SP + "(?:(?:that|which)" + SP + ")?(?:i|we)" + SP
    + "(?:(?:just|previously|earlier|already|had|have)" + SP + ")?"
    + r"(?:gave|give|given|wrote|written|sent|provided|mentioned|listed|said|asked|typed|shared|specified|"
    r"added|put|made|posted)\b"
    + "|" + SP + "(?:about|regarding|concerning|on|for)" + SP + "(?:(?:the|my)" + SP + ")?"
    + r"(?:format\w{0,4}|style|tone|length|layout|structure|language|wording|bullet\w{0,6}|spelling|fonts?|"
    r"citations?|headings?|tables?|markdown|word\s{1,3}count)\b"
    + ")?"
)
# "ignore everything above", "disregard anything you were told before", "forget everything I said".
ALL_TAIL = (
    SP
    + "(?:"
    + "(?:all" + SP + "of" + SP + ")?(?:everything|anything|whatever)"
    + "(?:" + SP + "(?:that|which|else))?"
    + "(?:" + SP + "(?:"
    + seq(r"you(?:['\u2019]ve|" + SP + "have)?", "(?:been|were)", "(?:told|given|instructed|taught|programmed)")
    + "|" + seq("(?:i|we)", r"(?:just" + SP + ")?(?:said|wrote|asked|mentioned|typed|sent|told" + SP + "you)")
    + "|" + seq("(?:was|were|has" + SP + "been|have" + SP + "been)", "(?:said|written|told|given|stated)")
    + "))?"
    + "(?:" + SP + "(?:above|before|prior|previously|earlier|"
    + seq("so", "far") + "|" + seq("up", "to", "(?:now|this" + SP + "point)") + "|" + seq("until", "now")
    + "))?"
    + "|what" + SP + "(?:that" + SP + ")?"
    + "(?:" + seq(r"you(?:['\u2019]ve|" + SP + "have)?", "(?:been|were)", "(?:told|given|instructed)")
    + "|" + seq("(?:i|we)", "(?:said|wrote|asked|told" + SP + "you)")
    + ")"
    + r")\b"
)
# "ignore the above and ...", "disregard the previous." (but not "ignore the previous email").
ABOVE_TAIL = (
    SP
    + opt_words("(?:all|the|of|everything|anything)", 3)
    + "(?:above|preceding|foregoing|previous|prior|earlier)"
    + "(?:" + SP + r"(?:text|content|input|lines?|paragraphs?|conversation|context|ones?|parts?|sections?))?"
    + r"(?=[\s*\"'`]{0,6}(?:[.,;:!\-\n)]|and\b|then\b|$))"
    + r"(?:[\s*\"'`.,;:!\-]{0,6}(?:i\b|sorry|oops|typo|wrong|"
    + seq("my", "mistake") + "|" + seq("(?:that|it)", "was") + "|"
    + seq(r"(?:here" + SP + r"is|here['\u2019]s)", "the", "(?:correct|corrected|right|updated|fixed|revised|new)")
    + "))?"
)


# -- the same in Spanish / Portuguese, French, German, Italian: [determiners] <noun> [after] -----------------

ES_DET = alt("todas", "todos", "las", "los", "tus", "sus", "esas", "estas", "cualquier", "mis", "as", "os", "suas")
_ES_NOUN = (
    r"(?:instrucciones|instrucci[o\u00f3]n|indicaciones|reglas|[o\u00f3]rdenes|directrices|normas|"
    r"instru[c\u00e7][o\u00f5]es|regras)\b"
)
ES_AFTER = (
    "(?:" + SP + "(?:anteriores|previas|iniciales|originales|" + seq("de", "arriba") + "|"
    + seq("del", "sistema") + "|" + seq("que", "(?:te|se)", "(?:dieron|dio|han" + SP + "dado)") + "))?"
)
FR_DET = alt("toutes", "tous", "les", "vos", "tes", "ces", "des", "mes", "la", "le")
_FR_NOUN = r"(?:instructions?|consignes?|r[e\u00e8]gles?|directives?|indications?|ordres)\b"
FR_AFTER = (
    "(?:" + SP + "(?:pr[e\u00e9]c[e\u00e9]dentes|ant[e\u00e9]rieures|ci-dessus|initiales|originales|"
    + r"d['\u2019]origine|" + seq("du", "syst[e\u00e8]me") + "))?"
)
_DE_DET = alt(
    "alle", "alles", "die", "deine", "ihre", "s[\u00e4a]mtliche", "saemtliche", "bisherigen", "vorherigen",
    "vorigen", "obigen", "fr(?:\u00fc|u|ue)heren", "vorangegangenen", "urspr(?:\u00fc|u|ue)nglichen", "meine",
    "der", "den", "vorhergehenden", "vorstehenden",
)
_DE_NOUN = (
    r"(?:system)?(?:anweisungen|anweisung|instruktionen|regeln|befehle|vorgaben|richtlinien|anordnungen|"
    r"eingaben)\b"
)
_IT_DET = alt("tutte", "tutti", "le", "gli", "i", "tue", "queste", "quelle")
_IT_NOUN = r"(?:istruzioni|regole|indicazioni|direttive)\b"
_IT_AFTER = "(?:" + SP + "(?:precedenti|iniziali|originali|sopra|" + seq("del", "sistema") + "))?"

ES = opt_words(ES_DET, 3) + _ES_NOUN + ES_AFTER
FR = opt_words(FR_DET, 3) + _FR_NOUN + FR_AFTER
DE = opt_words(_DE_DET, 4) + _DE_NOUN
IT = opt_words(_IT_DET, 3) + _IT_NOUN + _IT_AFTER

# -- system-prompt exfiltration: verb, an optional "me", qualifiers, object ----------------------------------

# Verbs that are also everyday code words ("return", "state", "read", "type", "echo") are left out: they
# would make every line of pasted code a candidate, for attacks that are rarely phrased with them.
EX_VERB = alt(
    "reveal", "print", "repeat", "show", "display", "output", "tell", "give", "leak", "dump", "share",
    "disclose", "expose", "recite", "list", "provide", "copy", "reproduce", "quote", "summari[sz]e", "translate",
    "send", "spell" + SP + "out", "write" + SP + "(?:out|down)",
)
# The first words of `EX_VERB`.
EX_STARTS = (
    "reveal", "print", "repeat", "show", "display", "output", "tell", "give", "leak", "dump", "share", "disclose",
    "expose", "recite", "list", "provide", "copy", "reproduce", "quote", "summari", "translate", "send", "spell",
    "write",
)
_EX_QUAL = alt(
    "all", "of", "the", "your", "entire", "full", "whole", "exact", "complete", "original", "initial", "hidden",
    "secret", "internal", "confidential", "verbatim", "above", "previous", "prior", "earlier", "first",
    "current", "real", "actual", "raw", "underlying", "very", "word-for-word", "system", "developer",
    "starting", "opening", "given", "these", "those", "that", "this", "everything", "in", "private", "core",
    "base", "default", "own",
)
EX_HEAD = r"\b" + EX_VERB + SP + "(?:(?:me|us|back|out)" + SP + ")?" + opt_words(_EX_QUAL, 4)
EX_TAIL = (
    "(?:" + SP + "(?:" + seq(r"you(?:['\u2019]ve|" + SP + "have)?", "(?:been|were)", "(?:given|told)")
    + "|above|verbatim|" + seq("word", "for", "word") + "))?"
)
Q_HEAD = r"\b" + seq("(?:what|which)", "(?:is|was|are|were)", "(?:your|the)") + SP + opt_words(_EX_QUAL, 3)
Q_STARTS = ("what", "which")

# -- tool hijack: sending something to a URL or an address, calling a tool -----------------------------------

_SEND_VERB = alt(
    "send", "post", "upload", "forward", "transmit", "leak", "email", "mail", "submit", "exfiltrate",
    "relay", "pipe", "export", "dump", "share", "write", "copy", "append", "include", "encode",
)
# The first words of `_SEND_VERB`.
SEND_STARTS = (
    "send", "post", "upload", "forward", "transmit", "leak", "email", "mail", "submit", "exfiltrate", "relay", "pipe",
    "export", "dump", "share", "write", "copy", "append", "include", "encode",
)
_SEND_DET = alt(
    "me", "us", "all", "the", "your", "this", "of", "entire", "full", "whole", "complete", r"user['\u2019]?s?",
    "previous", "current", "our", "any", "every", "these", "those", "a", "an", "copy", "summary", "list",
    "contents", "content", "in", "it", "them", "my",
)
# The gap between the verb and "to" is one bounded lazy run: every attempt costs at most ~70 steps.
SEND_HEAD = r"\b" + _SEND_VERB + SP + opt_words(_SEND_DET, 5) + r"[^\n]{0,70}?"
SEND_TO = (
    r"\b(?:to|at|into|via|using|through|on)" + SP
    + opt_words("(?:the|my|this|our|an?|following|external|remote|url|endpoint|server|webhook|address|site|page)", 3)
)
# A URL with a template placeholder the model is meant to fill in: ...?q={conversation}, /${secret}, %7Bdata%7D.
URL_PLACEHOLDER = r"https?://[^\s)]{0,300}?(?:\{|\$\{|%7b|<[a-z_]|\[[a-z_])"

_TOOL_VERB = "(?:call|invoke|use|run|execute|trigger)"
# The first words of `_TOOL_VERB`.
TOOL_STARTS = ("call", "invoke", "use", "run", "execute", "trigger")
TOOL_HEAD = (
    r"\b" + _TOOL_VERB + SP + "(?:(?:the|your|a)" + SP + r")?(?:[\w.-]{1,30}" + SP
    + r")?(?:tool|function|plugin|api|action|browser|fetch|webhook|command)\b"
)
