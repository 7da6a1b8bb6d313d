/** What trainDpo reports of the DPO loss, and the sequence log-prob its reference is made of.
 * The loss and rewards themselves are computed once, by the bridge's `dpo` loss (forward_backward
 * in training, forward on the validation pairs): implicit rewards r = β·(logπ − logπ_ref) for the
 * chosen and the rejected completion, margin r_c − r_r, loss −log σ(margin), reward accuracy the
 * fraction of pairs with margin > 0 (a tie, e.g. every pair before the first update of
 * zero-initialised adapters, counts as not won). */

export interface DpoMetrics {
  /** Mean −log σ(β·Δ). */
  loss: number;
  /** Fraction of pairs whose chosen reward beats the rejected one (Δ > 0). */
  rewardAccuracy: number;
  /** Mean β·Δ: chosen reward − rejected reward. */
  margin: number;
  /** Mean β·(logπ(chosen) − logπ_ref(chosen)). */
  chosenReward: number;
  /** Mean β·(logπ(rejected) − logπ_ref(rejected)). */
  rejectedReward: number;
}

/** Σ_t mask[t]·logp(token t) for one sequence. `logprobs` are `logprobs()`'s: one per token
 * after the first (logprobs[t − 1] belongs to token t); `mask` has one value per token (1 on
 * completion tokens; index 0 is never predicted and ignored). */
export function sequenceLogprob(logprobs: readonly number[], mask: readonly number[]): number {
  if (mask.length !== logprobs.length + 1) {
    throw new Error(
      `sequenceLogprob: ${logprobs.length} log-probs need a mask of ${logprobs.length + 1} values (one per token), got ${mask.length}`,
    );
  }
  let sum = 0;
  for (let t = 1; t < mask.length; t++) if (mask[t]! > 0) sum += mask[t]! * logprobs[t - 1]!;
  return sum;
}
