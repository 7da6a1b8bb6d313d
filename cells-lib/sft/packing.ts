/** Packing short SFT examples into fewer, fuller sequences: less padding, more tokens per step.
 * Packed examples are concatenated and stay isolated: `forwardBackward` sends where each starts
 * (`starts`), and the bridge restarts positions at each example and masks attention
 * block-diagonally, so every example gets exactly the loss and gradients it would get alone.
 * Each example's own tokens and weights are unchanged except its first token, which has
 * nothing before it to be predicted from and is not trained. */
import { z } from "zod";
import { parseOptions } from "../util/options.ts";

export interface PackableExample {
  tokens: readonly number[];
  weights: readonly number[];
}

export interface PackedExample {
  tokens: number[];
  weights: number[];
  /** Indices of the packed examples in the input, in sequence order. */
  sources: number[];
  /** Where each of them starts in `tokens` (TrainingExample's `starts`: attention stays inside each). */
  starts: number[];
}

export interface PackResult {
  sequences: PackedExample[];
  /** Tokens / (sequences × maxLength): the share of the packed batch that is not padding. */
  efficiency: number;
}

const PackOptions = z
  .object({
    /** Longest packed sequence in tokens; no example may be longer (cut them at tokenization). */
    maxLength: z.number().int().min(2),
  })
  .strict();
export type PackOptions = z.input<typeof PackOptions>;

/** First-fit decreasing: longest examples first (ties in input order), each into the first
 * sequence with room. Deterministic: the same examples give the same packing. */
export function packExamples(examples: readonly PackableExample[], options: PackOptions): PackResult {
  const { maxLength } = parseOptions(PackOptions, options, "packExamples");
  examples.forEach((e, i) => {
    if (e.tokens.length === 0) throw new Error(`packExamples: example ${i} has no tokens`);
    if (e.weights.length !== e.tokens.length) {
      throw new Error(
        `packExamples: example ${i} has ${e.weights.length} weights for ${e.tokens.length} tokens (one per token)`,
      );
    }
    if (e.tokens.length > maxLength) {
      throw new Error(
        `packExamples: example ${i} has ${e.tokens.length} tokens, more than maxLength ${maxLength}; tokenize with cutoffLength ≤ maxLength`,
      );
    }
  });
  const order = examples
    .map((_, i) => i)
    .sort((a, b) => examples[b]!.tokens.length - examples[a]!.tokens.length || a - b);
  const bins: { sources: number[]; length: number }[] = [];
  for (const i of order) {
    const length = examples[i]!.tokens.length;
    const bin = bins.find((b) => b.length + length <= maxLength);
    if (bin) {
      bin.sources.push(i);
      bin.length += length;
    } else {
      bins.push({ sources: [i], length });
    }
  }
  const sequences = bins.map(({ sources }) => concatenate(examples, sources));
  const tokens = bins.reduce((sum, b) => sum + b.length, 0);
  return { sequences, efficiency: bins.length === 0 ? 0 : tokens / (bins.length * maxLength) };
}

// The weight at t belongs to predicting token t from the tokens before it: an example's first
// token has none in its own example (the bridge ignores it too), so it gets weight 0.
function concatenate(examples: readonly PackableExample[], sources: number[]): PackedExample {
  const packed: PackedExample = { tokens: [], weights: [], sources, starts: [] };
  for (const i of sources) {
    const { tokens, weights } = examples[i]!;
    packed.starts.push(packed.tokens.length);
    packed.tokens.push(...tokens);
    packed.weights.push(0, ...weights.slice(1));
  }
  return packed;
}
