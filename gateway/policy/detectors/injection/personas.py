"""The families that change who the model is, or where the data goes.

Role overrides and jailbreak personas ("you are now DAN", "developer mode enabled", "act as an unrestricted
AI") and tool hijack (sending the conversation to a URL or an address, a markdown image whose URL the model
is meant to fill in). See `families` for the table format and `weights.weigh` for the rule kinds.
"""

from __future__ import annotations

from typing import Final

from gateway.policy.detectors.injection.rules import (
    DAN,
    DEV_MODE,
    FIXED,
    IMPERATIVE_KIND,
    PERSONA_TAIL,
    SEND,
    Alt,
    FamilySpec,
    Rule,
)
from gateway.policy.detectors.injection.signals import JAILBREAK_PERSONA, ROLE_OVERRIDE, TOOL_HIJACK
from gateway.policy.detectors.injection.vocabulary import (
    SEND_HEAD,
    SEND_STARTS,
    SEND_TO,
    SP,
    TOOL_HEAD,
    TOOL_STARTS,
    URL_PLACEHOLDER,
    alt,
    opt_words,
    seq,
)

# Persona modes that only exist in jailbreaks ("unrestricted mode" and "jailbreak mode" belong to the
# families of their first word).
_BAD_MODES = ("god", "evil", "unlocked")

# The table format: see `families`.
PERSONA_FAMILIES: Final[tuple[FamilySpec, ...]] = (
    FamilySpec(
        "now",
        ("you are now", "you re now", "from now on", "do anything"),
        (),
        0,
        (
            Alt(
                "now_you",
                r"\byou(?:" + SP + r"are|['\u2019]re)" + SP + r"now\b",
                Rule(ROLE_OVERRIDE, PERSONA_TAIL, 0.85, 0.3),
                ("you",),
            ),
            Alt(
                "now_from",
                r"\b" + seq("from", "now", "on") + r"\b[,:]?[ \t]{0,3}(?:you|your|act|respond|answer|behave|pretend|"
                r"ignore|only|always|never|reply|talk|speak|write)\b",
                Rule(ROLE_OVERRIDE, PERSONA_TAIL, 0.8, 0.3),
                ("from",),
            ),
            Alt(
                "now_dan", r"\b" + seq("do", "anything", "now") + r"\b", Rule(JAILBREAK_PERSONA, FIXED, 0.85), ("do",)
            ),
        ),
    ),
    FamilySpec(
        "mode",
        tuple(f"{word} mode" for word in _BAD_MODES) + ("developer mode",),
        (),
        75,
        (
            Alt(
                "mode_dev",
                r"(?:\b(?:you" + SP + r"are|you['\u2019]re|act|acting|respond|behave|pretend|stay|remain|simulate|"
                r"emulate|chatgpt|gpt|assistant|ai)\b[^.\n]{0,40}?\b(?:in|with|using|into|on)" + SP + ")?"
                + "(?:the" + SP + r")?developer[\s-]{1,3}mode\b(?:" + SP
                + r"(?:enabled|activated|on|output|responses?|is" + SP + r"(?:enabled|on|active)))?",
                Rule(JAILBREAK_PERSONA, DEV_MODE, 0.75, 0.3),
                ("you", "act", "respond", "behave", "pretend", "stay", "remain", "simulate", "emulate", "chatgpt",
                 "gpt", "assistant", "ai", "the", "developer"),
            ),
            Alt(
                "mode_bad",
                r"\b" + alt(*_BAD_MODES) + SP + r"mode\b",
                Rule(JAILBREAK_PERSONA, FIXED, 0.55),
                _BAD_MODES,
            ),
        ),
    ),
    FamilySpec(
        "jailbreak",
        ("jailbr",),
        (),
        55,
        (
            Alt(
                "jb_you",
                r"\byou(?:" + SP + r"are|['\u2019]re|" + SP + "have" + SP + "been)" + SP
                + "(?:now" + SP + ")?(?:(?:fully|completely)" + SP + r")?jailbr\w{0,6}",
                Rule(JAILBREAK_PERSONA, FIXED, 0.85),
                ("you",),
            ),
            Alt(
                "jb_ai",
                r"\bjailbr\w{0,6}" + SP + r"(?:ai|assistant|model|chatbot|version|mode|gpt|chatgpt|llm|persona|"
                r"character|bot)\b",
                Rule(JAILBREAK_PERSONA, FIXED, 0.7),
                ("jailbr",),
            ),
            Alt("jb_plain", r"\bjailbr\w{0,6}", Rule(JAILBREAK_PERSONA, FIXED, 0.35), ("jailbr",)),
        ),
    ),
    FamilySpec(
        "dan",
        ("dan ",),
        (),
        50,
        (
            Alt("dan_mode", r"\bdan" + SP + r"mode\b", Rule(JAILBREAK_PERSONA, DAN, 0.85, 0.35), ("dan",)),
            Alt(
                "dan_act",
                r"\b(?:act|acting|behave|respond|answer|reply|roleplay|role-play|"
                + seq("pretend", "to", "be") + "|" + seq("pretend", r"you(?:" + SP + r"are|['\u2019]re)")
                + "|" + seq("you", "are") + r"|you['\u2019]re|" + seq("you", "will", "be")
                + "|become|stay|remain|named|called|" + seq("known", "as") + "|persona(?:" + SP + "of)?|"
                + "character(?:" + SP + "of)?|hello|hi|hey|dear)"
                + "(?:" + SP + "as)?(?:" + SP + "an?)?" + SP + r"dan\b(?!['\u2019]s)",
                Rule(JAILBREAK_PERSONA, DAN, 0.85, 0.35),
                ("act", "behave", "respond", "answer", "reply", "role", "pretend", "you", "become", "stay", "remain",
                 "named", "called", "known", "persona", "character", "hello", "hi", "hey", "dear"),
            ),
        ),
    ),
    FamilySpec(
        "restrictions",
        ("restrict", "unrestrict", "unfilter", "uncensor"),
        (),
        100,
        (
            Alt(
                "rs_act",
                r"\b(?:act|acting|behave|respond|answer|roleplay|role-play|" + seq("pretend", "to", "be")
                + "|become)" + SP + "(?:as" + SP + ")?(?:(?:an?|the|my)" + SP + ")?"
                + r"(?:unrestricted|unfiltered|uncensored)" + SP
                + r"(?:ai|assistant|model|chatbot|version|gpt|chatgpt|llm|bot|persona|character)\b",
                Rule(JAILBREAK_PERSONA, FIXED, 0.85),
                ("act", "behave", "respond", "answer", "role", "pretend", "become"),
            ),
            Alt(
                "rs_you",
                r"\byou(?:" + SP + r"are|['\u2019]re|" + SP + "have)" + SP
                + "(?:(?:now|completely|totally|fully)" + SP + ")?"
                + r"(?:unrestricted|unfiltered|uncensored|no" + SP + r"restrictions)\b",
                Rule(JAILBREAK_PERSONA, FIXED, 0.55),
                ("you",),
            ),
            Alt(
                "rs_un",
                r"\bun(?:restricted|filtered|censored)" + SP + r"(?:ai|assistant|model|chatbot|version|mode|persona|"
                r"gpt|chatgpt|llm|bot|character|responses?|answers?|output)\b",
                Rule(JAILBREAK_PERSONA, FIXED, 0.6),
                ("un",),
            ),
            Alt(
                "rs_no",
                r"\b(?:no|without|" + seq("free", "(?:from|of)") + "|" + seq("not", "bound", "by")
                + "|remove|disable|bypass|ignore|lift|drop|" + seq("turn", "off") + ")" + SP
                + opt_words("(?:any|all|your|the|of|its|these|those)", 3)
                + opt_words(
                    "(?:ethical|moral|content|safety|openai|anthropic|usual|normal|typical|built-in|programmed|"
                    "previous|ai)",
                    2,
                )
                + r"restrictions\b",
                Rule(JAILBREAK_PERSONA, IMPERATIVE_KIND, 0.45, 0.2),
                ("no", "without", "free", "not", "remove", "disable", "bypass", "ignore", "lift", "drop", "turn"),
            ),
        ),
    ),
    FamilySpec(
        "exfiltrate",
        ("exfiltrat",),
        (),
        0,
        (Alt("ex_verb", r"\bexfiltrat(?:e|es|ing)\b", Rule(TOOL_HIJACK, IMPERATIVE_KIND, 0.7, 0.35), ("exfiltrat",)),),
    ),
    FamilySpec(
        "url",
        ("http",),
        (),
        215,
        (
            Alt("url_send", SEND_HEAD + SEND_TO + r"https?://", Rule(TOOL_HIJACK, SEND, 0.85, 0.4), SEND_STARTS),
            Alt(
                "url_tool",
                TOOL_HEAD + r"(?=[^\n]{0,100}?https?://)",
                Rule(TOOL_HIJACK, IMPERATIVE_KIND, 0.7, 0.3),
                TOOL_STARTS,
            ),
        ),
    ),
    FamilySpec(
        "email",
        (),
        (("@", "@"),),
        235,
        (
            Alt(
                "mail_send",
                SEND_HEAD + r"\b(?:to|at)" + SP + r"[\w.+-]{1,64}@[\w-]{1,63}\.[\w.-]{1,63}",
                Rule(TOOL_HIJACK, SEND, 0.85, 0.4),
                SEND_STARTS,
            ),
            Alt(
                "mail_tool",
                TOOL_HEAD + r"(?=[^\n]{0,100}?[\w.+-]@[\w-]{1,63}\.)",
                Rule(TOOL_HIJACK, IMPERATIVE_KIND, 0.7, 0.3),
                TOOL_STARTS,
            ),
        ),
    ),
    FamilySpec(
        "markdown_image",
        (),
        (("!", "!["),),
        0,
        (
            Alt(
                "md_exfil",
                r"!\[[^\]\n]{0,100}\]\([ \t]{0,3}" + URL_PLACEHOLDER,
                Rule(TOOL_HIJACK, FIXED, 0.85),
            ),
        ),
        after=420,
    ),
)
