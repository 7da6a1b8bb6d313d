r"""thinkcells' correctness reward, ported to Python for TRL's GRPOTrainer.

A line-by-line port of `correctnessReward()` (cells-lib/rewards/correctness.ts) and what it calls:
`finalAnswer` (rewards/answer.ts), `parseReasoning` (reasoning/markers.ts), `extractAnswer` and
`answersMatch` (reasoning/answer.ts), `normalizeAnswer` and `parseNumber` (reasoning/normalize.ts),
`findBoxes` (reasoning/latex.ts). test/peers-reward.test.ts scores the same completions with both.

JavaScript's regular expressions and `trim()` differ from Python's, so the differences are spelled
out rather than left to flags: `\d` and `\w` are ASCII classes (JavaScript's are ASCII, Python's
match any Unicode digit), `\s` and trimming use JavaScript's whitespace set (`_SPACE`), and `$`
anchors are `\Z` or `fullmatch` (Python's `$` also matches before a final newline).
"""

from __future__ import annotations

import re

RELATIVE_TOLERANCE = 1e-9

# JavaScript's whitespace (what `\s` matches and `trim()` removes): Python's `\s` and `strip()` add
# U+001C-U+001F and U+0085 and lack U+FEFF.
_SPACE = "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000\ufeff"
_S = f"[{_SPACE}]"


def _trim(s: str) -> str:
    return s.strip(_SPACE)


# --- reasoning/latex.ts -------------------------------------------------------------------

_BOX_COMMAND = re.compile(rf"\\(?:boxed|fbox){_S}*\{{")


def find_boxes(text: str) -> list[dict]:
    """Every `\\boxed{…}`/`\\fbox{…}`: start, end (past the closing brace), content, closed."""
    boxes = []
    pos = 0
    while (match := _BOX_COMMAND.search(text, pos)) is not None:
        opening = match.end()
        close = _matching_brace(text, opening)
        end = len(text) if close < 0 else close + 1
        content = text[opening : len(text) if close < 0 else close]
        boxes.append({"start": match.start(), "end": end, "content": content, "closed": close >= 0})
        pos = end
    return boxes


def _matching_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 1  # an escaped character is literal
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


# --- reasoning/normalize.ts ---------------------------------------------------------------


def normalize_answer(answer: str) -> str:
    s = _trim(answer).replace("−", "-")
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", lambda _: "\\frac", s)
    s = re.sub(rf"\\(?:text|textbf|textrm|mathrm|mbox){_S}*\{{([^{{}}]*)\}}", lambda m: m.group(1), s)
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = re.sub(r"(?<!\\)\\[!,;: ]", "", s)
    s = s.replace("{,}", ",")
    s = re.sub(r"\\?\$", "", s)
    s = re.sub(rf"\^{_S}*\{{?{_S}*\\circ{_S}*\}}?|°", "", s)
    s = re.sub(r"\\?%", "", s)
    s = re.sub(rf"\\frac{_S}*([^{_SPACE}{{\\])", lambda m: "\\frac{" + m.group(1) + "}", s)
    s = re.sub(
        rf"\\frac\{{([^{{}}]*)\}}{_S}*([^{_SPACE}{{\\])", lambda m: "\\frac{" + m.group(1) + "}{" + m.group(2) + "}", s
    )
    s = re.sub(rf"\\sqrt{_S}*([^{_SPACE}{{\\\[])", lambda m: "\\sqrt{" + m.group(1) + "}", s)
    s = re.sub(f"{_S}+", "", s)
    s = re.sub(r"\.\Z", "", s)
    s = re.sub(r"\A\+", "", s)
    if re.fullmatch(r"[a-zA-Z]=[^=]*", s):
        s = s[2:]
    if re.fullmatch(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?", s):
        s = s.replace(",", "")
    return s


_DECIMAL = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PLAIN = re.compile(rf"-?{_DECIMAL}")
_SLASH = re.compile(rf"(-?)({_DECIMAL})/({_DECIMAL})")
_FRAC = re.compile(rf"(-?)\\frac\{{(-?{_DECIMAL})\}}\{{(-?{_DECIMAL})\}}")
_MIXED = re.compile(r"(-?)([0-9]+)\\frac\{([0-9]+)\}\{([0-9]+)\}")


def parse_number(answer: str) -> float | None:
    s = normalize_answer(answer)
    if _PLAIN.fullmatch(s):
        return float(s)
    ratio = _SLASH.fullmatch(s) or _FRAC.fullmatch(s)
    if ratio:
        return _signed(ratio.group(1), _divide(float(ratio.group(2)), float(ratio.group(3))))
    mixed = _MIXED.fullmatch(s)
    if mixed:
        part = _divide(float(mixed.group(3)), float(mixed.group(4)))
        return _signed(mixed.group(1), None if part is None else float(mixed.group(2)) + part)
    return None


def _divide(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _signed(sign: str, value: float | None) -> float | None:
    return None if value is None else -value if sign == "-" else value


# --- reasoning/answer.ts ------------------------------------------------------------------


def extract_answer(text: str) -> str | None:
    for find in (_boxed_answer, _tagged_answer, _hashes_answer, _last_number):
        found = find(text)
        if found is not None:
            return found
    return None


def answers_match(predicted: str | None, reference: str) -> bool:
    if predicted is None:
        return False
    a = parse_number(predicted)
    b = parse_number(reference)
    if a is not None and b is not None:
        return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b))
    normalized = normalize_answer(predicted)
    return normalized != "" and normalized == normalize_answer(reference)


def _non_empty(s: str | None) -> str | None:
    trimmed = _trim(s) if s is not None else None
    return trimmed or None


def _boxed_answer(text: str) -> str | None:
    closed = [box for box in find_boxes(text) if box["closed"]]
    return _non_empty(closed[-1]["content"] if closed else None)


def _tagged_answer(text: str) -> str | None:
    at = text.rfind("<answer>")
    if at < 0:
        return None
    rest = text[at + len("<answer>") :]
    close = rest.find("</answer>")
    return _non_empty(rest if close < 0 else rest[:close])


def _hashes_answer(text: str) -> str | None:
    found = re.findall(r"####([^\n]*)", text)
    return _non_empty(found[-1] if found else None)


# A minus is a sign only where it cannot be subtraction (not after a word, digit or `)`).
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.)])-?(?:[0-9]+/[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+)"
)


def _last_number(text: str) -> str | None:
    found = [m.group(0) for m in _NUMBER.finditer(text)]
    return found[-1].replace(",", "") if found else None


# --- reasoning/markers.ts (the answer half of parseReasoning) -----------------------------

_REASONING_TAGS = {
    "think": ("<think>", "</think>"),
    "thinking": ("<thinking>", "</thinking>"),
    "reasoning_answer": ("<reasoning>", "</reasoning>"),
}
_ANSWER_TAGS = ("<answer>", "</answer>")
_STYLE_OF_MARKER = [
    ("<think>", "think"),
    ("</think>", "think"),
    ("<thinking>", "thinking"),
    ("</thinking>", "thinking"),
    ("<reasoning>", "reasoning_answer"),
    ("</reasoning>", "reasoning_answer"),
    ("<answer>", "reasoning_answer"),
    ("</answer>", "reasoning_answer"),
]


def parse_reasoning(text: str) -> tuple[str | None, str]:
    """(style, answer section) as parseReasoning gives them; style None when there are no markers."""
    style = _detect_style(text)
    if style is None:
        return None, _trim(text)
    return style, _answer_as(text, style)


def _detect_style(text: str) -> str | None:
    first: tuple[int, str] | None = None
    for marker, style in _STYLE_OF_MARKER:
        at = text.find(marker)
        if at >= 0 and (first is None or at < first[0]):
            first = (at, style)
    if first:
        return first[1]
    return "boxed" if find_boxes(text) else None


def _answer_as(text: str, style: str) -> str:
    if style == "boxed":
        boxes = find_boxes(text)
        return _trim(boxes[-1]["content"]) if boxes else ""
    tags = _REASONING_TAGS[style]
    if style != "reasoning_answer":
        return _remove_tags(_after_block(text, tags, None), tags)
    # An unclosed <reasoning> still ends where the <answer> block starts.
    after = _after_block(text, tags, _ANSWER_TAGS[0])
    return _inner_block(after, _ANSWER_TAGS)


def _block(text: str, tags: tuple[str, str], stop: str | None) -> tuple[int, int, int]:
    """splitBlock's cut points: (inner start, inner end, where `after` starts)."""
    opening, closing = tags
    open_at = text.find(opening)
    start = 0 if open_at < 0 else open_at + len(opening)
    close_at = text.rfind(closing)
    if close_at >= start:
        return start, close_at, close_at + len(closing)
    stop_at = -1 if stop is None else text.find(stop, start)
    end = len(text) if stop_at < 0 else stop_at
    return start, end, end


def _after_block(text: str, tags: tuple[str, str], stop: str | None) -> str:
    return text[_block(text, tags, stop)[2] :]


def _inner_block(text: str, tags: tuple[str, str]) -> str:
    start, end, _ = _block(text, tags, None)
    return _remove_tags(text[start:end], tags)


def _remove_tags(text: str, tags: tuple[str, str]) -> str:
    return _trim(text.replace(tags[0], "\n").replace(tags[1], "\n"))


# --- rewards/answer.ts and rewards/correctness.ts -----------------------------------------


def final_answer(completion: str) -> str | None:
    style, answer = parse_reasoning(completion)
    if not answer:
        return None
    return answer if style == "boxed" or parse_number(answer) is not None else extract_answer(answer)


def correctness(completion: str, reference: str | None) -> float | None:
    """1.0 when the final answer matches the reference, 0.0 when not, None without a reference."""
    if reference is None or not _trim(reference):
        return None
    return 1.0 if answers_match(final_answer(completion), reference) else 0.0


def correctness_reward(completions: list[str], reference: list[str], **_: object) -> list[float | None]:
    """The reward as TRL calls it: the dataset's `reference` column arrives as a keyword."""
    return [correctness(c, r) for c, r in zip(completions, reference)]


if __name__ == "__main__":
    # Scores [{"completion", "reference"}, ...] from stdin, with the final answer each was read as:
    # test/peers-reward.test.ts compares both with thinkcells'.
    import json
    import sys

    cases = json.load(sys.stdin)
    out = [
        {"score": correctness(c["completion"], c.get("reference")), "answer": final_answer(c["completion"])}
        for c in cases
    ]
    json.dump(out, sys.stdout)
