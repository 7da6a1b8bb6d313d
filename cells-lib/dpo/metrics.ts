/** DPO's arithmetic on sequence log-probs for the validation metrics (training takes its loss
 * and metrics from the bridge's `dpo` loss, which computes the same): implicit rewards
 * r = β·(logπ − logπ_ref) for the chosen and the rejected completion, margin r_c − r_r = β·Δ,
 * loss −log σ(β·Δ), reward accuracy the fraction of pairs with Δ > 0 (a tie, e.g. every pair
 * before the first update of zero-initialised adapters, counts as not won). */

/** The four sequence log-probs (sums over completion tokens) of one pair. */
export interface PairLogprobs {
  policyChosen: number;
  policyRejected: number;
  refChosen: number;
  refRejected: number;
}

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
  pairs: number;
}

/** Σ_t mask[t]·logp(token t) for one sequence. `logprobs` are `logprobs()`'s: one per token
 * after the first (logprobs[t − 1] belongs to token t); `mask` has one value per token (1 on
 * completion tokens; index 0 is never predicted and ignored). */
export function sequenceLogprob(logprobs: readonly number[], mask: readonly number[]): number {
  if (mask.length !== logprobs.length + 1) {
    throw new Error(`sequenceLogprob: ${logprobs.length} log-probs need a mask of ${logprobs.length + 1} values (one per token), got ${mask.length}`);
  }
  let sum = 0;
  for (let t = 1; t < mask.length; t++) if (mask[t]! > 0) sum += mask[t]! * logprobs[t - 1]!;
  return sum;
}

/** The implicit rewards of one pair: β·(logπ − logπ_ref) for chosen and rejected. */
export function implicitRewards(pair: PairLogprobs, beta: number): { chosen: number; rejected: number; margin: number } {
  const chosen = beta * (pair.policyChosen - pair.refChosen);
  const rejected = beta * (pair.policyRejected - pair.refRejected);
  return { chosen, rejected, margin: chosen - rejected };
}

/** log σ(x), finite for large negative x. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

/** DPO's loss and reward metrics over pairs (means; zeros for no pairs). */
export function dpoMetrics(pairs: readonly PairLogprobs[], beta: number): DpoMetrics {
  if (!(beta > 0)) throw new Error(`dpoMetrics: beta must be positive, got ${beta}`);
  const out: DpoMetrics = { loss: 0, rewardAccuracy: 0, margin: 0, chosenReward: 0, rejectedReward: 0, pairs: pairs.length };
  if (pairs.length === 0) return out;
  for (const pair of pairs) {
    const r = implicitRewards(pair, beta);
    out.loss -= logSigmoid(r.margin);
    out.rewardAccuracy += r.margin > 0 ? 1 : 0;
    out.margin += r.margin;
    out.chosenReward += r.chosen;
    out.rejectedReward += r.rejected;
  }
  const n = pairs.length;
  return { loss: out.loss / n, rewardAccuracy: out.rewardAccuracy / n, margin: out.margin / n, chosenReward: out.chosenReward / n, rejectedReward: out.rejectedReward / n, pairs: n };
}
