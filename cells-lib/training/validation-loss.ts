/** Held-out loss without touching gradients: teacher-forced log-probs from the bridge, weighted
 * like the cross-entropy training loss (the weight at token t belongs to predicting t). */

import type { Model } from "../cells/model.ts";
import { logprobs } from "../cells/sample.ts";
import type { TrainingExample } from "../cells/train.ts";

/** An aborted `signal` stops it before its next request to the bridge. */
export async function validationLoss(
  model: Model,
  examples: readonly TrainingExample[],
  { batchSize = 64, signal }: { batchSize?: number; signal?: AbortSignal } = {},
): Promise<number> {
  let loss = 0;
  let weight = 0;
  for (let start = 0; start < examples.length; start += batchSize) {
    signal?.throwIfAborted();
    const batch = examples.slice(start, start + batchSize);
    const scored = await logprobs(
      model,
      batch.map((e) => e.tokens),
    );
    batch.forEach((e, i) => {
      scored[i]!.forEach((lp, t) => {
        const w = e.weights?.[t + 1] ?? 1;
        loss -= w * lp;
        weight += w;
      });
    });
  }
  if (weight === 0) throw new Error("validationLoss: the examples have no weighted (trainable) tokens");
  return loss / weight;
}
