import { describe, expect, it } from "vitest";
import {
  checkFormat,
  convertReasoning,
  formatReasoning,
  parseReasoning,
  REASONING_STYLES,
} from "../cells-lib/reasoning/index.ts";
import { OptionsError } from "../cells-lib/util/options.ts";

const parts = { reasoning: "3+5=8, 2+4=6", answer: "68" };

describe("reasoning markers: formatting", () => {
  it("renders each style", () => {
    expect(formatReasoning(parts, "think")).toBe("<think>3+5=8, 2+4=6</think>68");
    expect(formatReasoning(parts, "thinking")).toBe("<thinking>3+5=8, 2+4=6</thinking>68");
    expect(formatReasoning(parts, "reasoning_answer")).toBe("<reasoning>3+5=8, 2+4=6</reasoning><answer>68</answer>");
    expect(formatReasoning(parts, "boxed")).toBe("3+5=8, 2+4=6 \\boxed{68}");
  });

  it("pads inside tags and between blocks", () => {
    expect(formatReasoning(parts, "think", { pad: " " })).toBe("<think> 3+5=8, 2+4=6 </think> 68");
    expect(formatReasoning(parts, "reasoning_answer", { pad: "\n" })).toBe(
      "<reasoning>\n3+5=8, 2+4=6\n</reasoning>\n<answer>\n68\n</answer>",
    );
    expect(formatReasoning(parts, "boxed", { pad: "\n" })).toBe("3+5=8, 2+4=6\n\\boxed{68}");
  });

  it("rejects unknown styles and bad options", () => {
    expect(() => formatReasoning(parts, "xml" as never)).toThrow(OptionsError);
    expect(() => formatReasoning(parts, "xml" as never)).toThrow(/unknown style "xml"/);
    expect(() => formatReasoning(parts, "think", { pad: "x" })).toThrow(
      'formatReasoning: option "pad": must be whitespace',
    );
  });
});

describe("reasoning markers: parsing", () => {
  it("round-trips every style, with and without padding", () => {
    for (const style of REASONING_STYLES) {
      for (const pad of ["", " ", "\n"]) {
        const parsed = parseReasoning(formatReasoning(parts, style, { pad }));
        expect(parsed).toEqual({ ...parts, style, wellFormed: true, problems: [] });
      }
    }
  });

  it("converts between all styles without losing the parts", () => {
    for (const from of REASONING_STYLES) {
      for (const to of REASONING_STYLES) {
        const converted = convertReasoning(formatReasoning(parts, from), to, { pad: " " });
        expect(converted).toBe(formatReasoning(parts, to, { pad: " " }));
      }
    }
    expect(() => convertReasoning("just 68", "think")).toThrow(/no reasoning markers/);
  });

  it("treats the rest of the text as reasoning when the closing tag is missing", () => {
    expect(parseReasoning("<think>abc then 42")).toEqual({
      reasoning: "abc then 42",
      answer: "",
      style: "think",
      wellFormed: false,
      problems: ["missing </think>"],
    });
  });

  it("takes everything before a closing tag as reasoning when the opening tag is missing", () => {
    const parsed = parseReasoning("3+5=8\n</think>\n\n8");
    expect(parsed).toMatchObject({
      reasoning: "3+5=8",
      answer: "8",
      style: "think",
      wellFormed: false,
      problems: ["missing <think>"],
    });
  });

  it("survives duplicate and stray markers", () => {
    const twice = parseReasoning("<think>a</think><think>b</think> 5");
    expect(twice).toMatchObject({ reasoning: "a\n\nb", answer: "5", wellFormed: false });
    expect(twice.problems).toEqual(["2 <think> markers", "2 </think> markers"]);
    const nested = parseReasoning("<think><think>a</think>5");
    expect(nested).toMatchObject({ reasoning: "a", answer: "5", problems: ["2 <think> markers"] });
  });

  it("ignores surrounding whitespace but reports text before the opening tag", () => {
    expect(parseReasoning("\n  <thinking>\n a \n</thinking>\n\n b \n")).toEqual({
      reasoning: "a",
      answer: "b",
      style: "thinking",
      wellFormed: true,
      problems: [],
    });
    expect(parseReasoning("Sure! <think>a</think>b")).toMatchObject({
      reasoning: "a",
      answer: "b",
      problems: ["text before <think>"],
    });
  });

  it("detects the style from the first marker; <think> is not mistaken for <thinking>", () => {
    expect(parseReasoning("<thinking>a</thinking>b").style).toBe("thinking");
    expect(parseReasoning("<think>a</think>so \\boxed{3}")).toMatchObject({ style: "think", answer: "so \\boxed{3}" });
    expect(parseReasoning("I think <answer>5</answer>")).toMatchObject({
      style: "reasoning_answer",
      reasoning: "I think",
      answer: "5",
    });
  });

  it("parses the reasoning/answer style leniently", () => {
    expect(parseReasoning("<reasoning>abc<answer>5</answer>")).toMatchObject({
      reasoning: "abc",
      answer: "5",
      problems: ["missing </reasoning>"],
    });
    expect(parseReasoning("<reasoning>abc</reasoning><answer>5")).toMatchObject({
      reasoning: "abc",
      answer: "5",
      problems: ["missing </answer>"],
    });
    expect(parseReasoning("<reasoning>abc</reasoning> 5")).toMatchObject({
      answer: "5",
      problems: ["missing <answer>", "missing </answer>"],
    });
    expect(parseReasoning("<reasoning>a</reasoning> so <answer>5</answer> done").problems).toEqual([
      "text between </reasoning> and <answer>",
      "text after </answer>",
    ]);
  });

  it("parses boxed answers with nested braces and math delimiters around them", () => {
    expect(parseReasoning("So the sum is $\\boxed{\\frac{1}{2}}$.")).toEqual({
      reasoning: "So the sum is",
      answer: "\\frac{1}{2}",
      style: "boxed",
      wellFormed: true,
      problems: [],
    });
    expect(parseReasoning("Thus \\fbox{7}")).toMatchObject({ answer: "7", style: "boxed", wellFormed: true });
    expect(parseReasoning("first \\boxed{1}, then \\boxed{2} and more")).toMatchObject({
      answer: "2",
      problems: ["2 \\boxed{} answers", "text after \\boxed{}"],
    });
    expect(parseReasoning("so \\boxed{\\frac{1}{2}")).toMatchObject({
      answer: "\\frac{1}{2}",
      problems: ["unclosed \\boxed{"],
    });
  });

  it("reports text without markers", () => {
    expect(parseReasoning(" 68 ")).toEqual({
      reasoning: "",
      answer: "68",
      style: null,
      wellFormed: false,
      problems: ["no reasoning markers"],
    });
  });
});

describe("reasoning markers: strict format check", () => {
  it("accepts well-formed completions in the expected style", () => {
    expect(checkFormat("<think> 3+5=8 </think> 8", "think")).toEqual({ ok: true, problems: [] });
    expect(checkFormat("<reasoning>\na\n</reasoning>\n<answer>\n5\n</answer>\n", "reasoning_answer")).toEqual({
      ok: true,
      problems: [],
    });
    expect(checkFormat("a so $\\boxed{5}$.", "boxed")).toEqual({ ok: true, problems: [] });
  });

  it("rejects each kind of malformed completion", () => {
    const problems = (text: string, style: Parameters<typeof checkFormat>[1]) => checkFormat(text, style).problems;
    expect(problems("<think>a</think><think>b</think>5", "think")).toEqual(["2 <think> markers", "2 </think> markers"]);
    expect(problems("<think> </think>5", "think")).toEqual(["empty reasoning"]);
    expect(problems("<think>a</think>  ", "think")).toEqual(["empty answer"]);
    expect(problems("ok <think>a</think>5", "think")).toEqual(["text before <think>"]);
    expect(problems("<think>a", "think")).toEqual(["missing </think>", "empty answer"]);
    expect(problems("<thinking>a</thinking>5", "think")).toEqual([
      "missing <think>",
      "missing </think>",
      "empty answer",
    ]);
    expect(problems("<reasoning>a</reasoning>5", "reasoning_answer")).toEqual([
      "missing <answer>",
      "missing </answer>",
    ]);
    expect(problems("<reasoning>a</reasoning><answer>5", "reasoning_answer")).toEqual(["missing </answer>"]);
    expect(problems("<reasoning>a</reasoning><answer></answer>", "reasoning_answer")).toEqual(["empty answer"]);
    expect(problems("a \\boxed{1} \\boxed{2}", "boxed")).toEqual(["2 \\boxed{} answers"]);
    expect(problems("\\boxed{2}", "boxed")).toEqual(["empty reasoning"]);
    expect(problems("a \\boxed{2} because", "boxed")).toEqual(["text after \\boxed{}"]);
    expect(problems("a 2", "boxed")).toEqual(["missing \\boxed{}", "empty answer"]);
  });
});
