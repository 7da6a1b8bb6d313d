/** Stopping a training loop between its requests to the bridge. */
import type { Model } from "../cells/model.ts";
import { discardGradients } from "../cells/train.ts";

/** Throws the signal's reason when it is aborted, first dropping the gradients of the step's
 * micro-batches already sent (`midStep`): the next step must not inherit them. */
export async function stopIfAborted(model: Model, signal: AbortSignal | undefined, midStep: boolean): Promise<void> {
  if (!signal?.aborted) return;
  if (midStep) await discardGradients(model);
  signal.throwIfAborted();
}
