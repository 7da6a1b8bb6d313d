/** GSM8K solutions as reasoning + answer: the dataset's `<<48/2=24>>` calculator notes are
 * annotations for a tool, not text a model should learn to write. */
import type { ReasoningParts } from "./markers.ts";

export function gsm8kToCot(solution: string): ReasoningParts {
  const at = solution.lastIndexOf("####");
  if (at < 0)
    throw new Error(`gsm8kToCot: the solution has no "#### answer" line: ${JSON.stringify(solution.slice(0, 80))}`);
  return {
    reasoning: solution
      .slice(0, at)
      .replace(/<<[^>]*>>/g, "")
      .trim(),
    answer: solution
      .slice(at + 4)
      .trim()
      .replace(/,/g, ""),
  };
}
