/** Sampled completions → training examples for the policy-gradient losses. Per-token arrays
 * follow TrainingExample's alignment: the value at t belongs to predicting token t, so prompt
 * positions are 0 and masked out. */
import type { TrainingExample } from "../cells/train.ts";

export interface Rollout {
  promptIds: readonly number[];
  tokenIds: readonly number[];
  /** Sampling-time log-probs, one per completion token. */
  logprobs: readonly number[];
}

export function policyExample(rollout: Rollout, advantage: number | readonly number[], keep = true): TrainingExample {
  const p = rollout.promptIds.length;
  const n = rollout.tokenIds.length;
  const pad = (xs: readonly number[]) => [...new Array<number>(p).fill(0), ...xs];
  return {
    tokens: [...rollout.promptIds, ...rollout.tokenIds],
    mask: pad(new Array<number>(n).fill(keep ? 1 : 0)),
    oldLogprobs: pad(rollout.logprobs),
    advantage: typeof advantage === "number" ? advantage : pad(advantage),
  };
}

/** PPO's per-token inputs: values (V before each completion token) and returns, padded. */
export function ppoExample(
  rollout: Rollout,
  advantages: readonly number[],
  values: readonly number[],
  returns: readonly number[],
): TrainingExample {
  const pad = (xs: readonly number[]) => [...new Array<number>(rollout.promptIds.length).fill(0), ...xs];
  return { ...policyExample(rollout, advantages), oldValues: pad(values), returns: pad(returns) };
}
