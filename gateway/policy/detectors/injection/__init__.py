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

Layout. The package's modules, one job each; only the names below are its API, the modules are internals:

* `signals` names what is found (`KIND`, the signals); `scoring` combines weights into window scores and
  the `InjectionAssessment`; `scorer` is the `InjectionScorer` that ties the passes together;
* `vocabulary` holds the regex building blocks, `rules` the shape of a family table and of a weight rule,
  `overrides` and `personas` the family tables themselves (`families` puts them in order), `weights` what a
  match is worth in its context;
* `compiled` turns the tables into patterns, `scan` runs the anchored pass and the candidate matching, and
  `encoded` finds and decodes base64.
"""

from __future__ import annotations

from gateway.policy.detectors.injection.scorer import InjectionScorer
from gateway.policy.detectors.injection.scoring import InjectionAssessment
from gateway.policy.detectors.injection.signals import (
    DELIMITER_INJECTION,
    ENCODING_EVASION,
    IGNORE_INSTRUCTIONS,
    JAILBREAK_PERSONA,
    KIND,
    ROLE_OVERRIDE,
    SIGNALS,
    SYSTEM_PROMPT_EXFILTRATION,
    TOOL_HIJACK,
)

__all__ = [
    "DELIMITER_INJECTION",
    "ENCODING_EVASION",
    "IGNORE_INSTRUCTIONS",
    "JAILBREAK_PERSONA",
    "KIND",
    "ROLE_OVERRIDE",
    "SIGNALS",
    "SYSTEM_PROMPT_EXFILTRATION",
    "TOOL_HIJACK",
    "InjectionAssessment",
    "InjectionScorer",
]
