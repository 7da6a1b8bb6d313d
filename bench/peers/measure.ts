/** What both sides' trained models are scored with: the same thinkcells code on the same held-out data,
 * each model loaded from the Hugging Face directory its side wrote. */
import type { BridgeClient } from "../../cells-lib/bridge/client.ts";
import { evaluate, loadModel, logprobs, type Model, sequenceLogprob, type Tokenizer } from "../../cells-lib/index.ts";
import { validationLoss } from "../../cells-lib/training/validation-loss.ts";
import type { ArithmeticRow, TokenizedPair } from "./data.ts";
import type { TokenizedExample } from "./jobs.ts";

export class Evaluator {
  constructor(
    private readonly client: BridgeClient,
    private readonly tokenizer: Tokenizer,
  ) {}

  private load(dir: string): Promise<Model> {
    return loadModel(dir, { client: this.client, name: "peers-eval" });
  }

  /** Greedy accuracy on the held-out problems, as the demo measures it. */
  async accuracy(dir: string, rows: readonly ArithmeticRow[], maxNewTokens: number) {
    const r = await evaluate(await this.load(dir), this.tokenizer, rows, { maxNewTokens });
    return { accuracy: r.accuracy, formatAccuracy: r.formatAccuracy };
  }

  /** Token-mean cross-entropy on the completion tokens of held-out examples (trainSft's validation loss). */
  async loss(dir: string, examples: readonly TokenizedExample[]): Promise<number> {
    return validationLoss(await this.load(dir), examples);
  }

  /** Sequence log-probs of each pair's completions: [chosen, rejected] per pair. */
  async pairLogprobs(dir: string, pairs: readonly TokenizedPair[]): Promise<number[]> {
    const model = await this.load(dir);
    const sequences = pairs.flatMap((p) => [p.chosen, p.rejected]);
    const out: number[] = [];
    for (let start = 0; start < sequences.length; start += 64) {
      const batch = sequences.slice(start, start + 64);
      const scored = await logprobs(
        model,
        batch.map((s) => s.tokens),
      );
      batch.forEach((s, i) => out.push(sequenceLogprob(scored[i]!, s.mask)));
    }
    return out;
  }
}

/** DPO's reward accuracy on held-out pairs: the share whose implicit reward margin against the reference,
 * (log π − log π_ref)(chosen) − (log π − log π_ref)(rejected), is positive (β > 0 leaves the sign alone). */
export function rewardAccuracy(policy: readonly number[], reference: readonly number[]): number {
  let right = 0;
  for (let i = 0; i < policy.length; i += 2) {
    const margin = policy[i]! - reference[i]! - (policy[i + 1]! - reference[i + 1]!);
    if (margin > 0) right++;
  }
  return right / (policy.length / 2);
}
