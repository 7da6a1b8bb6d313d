/** Labels a prompt with the kind of reasoning it asks for, by keyword and pattern rules. The
 * rules are checked in order and the first match wins: code and tool prompts often contain
 * numbers too, so their specific signals come before MATH; MATH comes before LOGIC and
 * PLANNING because word problems are full of "if … then" and "plans to". */
export const REASONING_TYPES = ["MATH", "CODE", "LOGIC", "PLANNING", "TOOL_USE", "GENERAL"] as const;
export type ReasoningType = (typeof REASONING_TYPES)[number];

/** Code fences, definitions, arrows and programming words ("function" and "class" alone are
 * too common in math and school word problems). */
const CODE_WORDS =
  "code|coding|programming|python|javascript|typescript|java|rust|sql|regex|compiler?|debug|bug|script|snippet|implement";
const CODE = new RegExp(
  "```|" +
    String.raw`\bdef \w+\s*\(|\bfunction\s+\w*\s*\(|=>|\b(?:${CODE_WORDS})\b|\bwrite (?:a|an) (?:function|program|method|class)\b`,
  "i",
);
const TOOL_USE =
  /\b(?:tools?|apis?|endpoints?|web search|search the web|search online|look up|browse|fetch)\b|\bcall(?:ing)? (?:a|an|the) \w+/i;
/** Arithmetic between numbers, LaTeX, or mathematical words. */
const MATH_WORDS = [
  "calculate|compute|evaluate|simplify|solve|equation|sum|product|percent|percentage|fraction|average|probability",
  "integer|divisible|remainder|divisors?|factor|multiple|reciprocal|decimal|mean|median|area|perimeter|volume",
  "how many|how much|number",
].join("|");
const MATH = new RegExp(String.raw`\d\s*[-+*/×÷^=<>]\s*\d|\\frac|\\sqrt|\\\[|\$[^$\n]+\$|\b(?:${MATH_WORDS})\b`, "i");
/** A question about a quantity, counted as math when the prompt also has a number. */
const QUANTITY_WORDS = [
  "how (?:old|long|fast|far|tall|often)|total|difference|twice|times|half|more|less|fewer",
  "cost|speed|distance|weight|degrees|add|subtract|multiply|divide|divided",
].join("|");
const QUANTITY = new RegExp(String.raw`\b(?:${QUANTITY_WORDS})\b|%|\$\s?\d`, "i");
const LOGIC =
  /\b(?:puzzle|riddle|logic|logical|deduce|true|false|knights?|knaves?|liars?|implies)\b|\bif\b[^.?!]*\bthen\b/i;
const PLANNING = /\b(?:plan|plans|planning|steps|schedule|itinerary|agenda|roadmap|organi[sz]e|prioriti[sz]e)\b/i;

const RULES: [ReasoningType, (prompt: string) => boolean][] = [
  ["CODE", (p) => CODE.test(p)],
  ["TOOL_USE", (p) => TOOL_USE.test(p)],
  ["MATH", (p) => MATH.test(p) || (/\d/.test(p) && QUANTITY.test(p))],
  ["LOGIC", (p) => LOGIC.test(p)],
  ["PLANNING", (p) => PLANNING.test(p)],
];

export function classifyReasoningType(prompt: string): ReasoningType {
  return RULES.find(([, matches]) => matches(prompt))?.[0] ?? "GENERAL";
}
