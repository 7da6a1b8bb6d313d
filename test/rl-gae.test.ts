import { describe, expect, it } from "vitest";
import { gae, whiten } from "../cells-lib/rl/index.ts";

describe("gae", () => {
  it("matches a hand-computed 3-token example", () => {
    // rewards [0, 0, 1], values [0.5, 0.6, 0.7], γ = 0.9, λ = 0.8 (γλ = 0.72), V after the end = 0:
    // δ2 = 1 + 0.9·0 − 0.7 = 0.3                 A2 = 0.3
    // δ1 = 0 + 0.9·0.7 − 0.6 = 0.03              A1 = 0.03 + 0.72·0.3 = 0.246
    // δ0 = 0 + 0.9·0.6 − 0.5 = 0.04              A0 = 0.04 + 0.72·0.246 = 0.21712
    // returns = A + V = [0.71712, 0.846, 1.0]
    const { advantages, returns } = gae([0, 0, 1], [0.5, 0.6, 0.7], { gamma: 0.9, lambda: 0.8 });
    [0.21712, 0.246, 0.3].forEach((a, t) => expect(advantages[t]).toBeCloseTo(a, 12));
    [0.71712, 0.846, 1].forEach((r, t) => expect(returns[t]).toBeCloseTo(r, 12));
  });

  it("reduces to Monte Carlo returns minus values at λ = 1 and to one-step TD at λ = 0", () => {
    // γ = 1, λ = 1: A_t = Σ_{s≥t} r_s − V_t = [1 − 0.5, 1 − 0.6, 1 − 0.7].
    const mc = gae([0, 0, 1], [0.5, 0.6, 0.7], { lambda: 1 });
    [0.5, 0.4, 0.3].forEach((a, t) => expect(mc.advantages[t]).toBeCloseTo(a, 12));
    [1, 1, 1].forEach((r, t) => expect(mc.returns[t]).toBeCloseTo(r, 12));
    // λ = 0: A_t = δ_t = [0 + 0.6 − 0.5, 0 + 0.7 − 0.6, 1 − 0.7].
    const td = gae([0, 0, 1], [0.5, 0.6, 0.7], { lambda: 0 });
    [0.1, 0.1, 0.3].forEach((a, t) => expect(td.advantages[t]).toBeCloseTo(a, 12));
  });

  it("handles empty and mismatched inputs", () => {
    expect(gae([], [])).toEqual({ advantages: [], returns: [] });
    expect(gae([2], [0.5])).toEqual({ advantages: [1.5], returns: [2] });
    expect(() => gae([0, 1], [0.5])).toThrow(/2 rewards but 1 values/);
    expect(() => gae([0], [0], { gamma: 2 })).toThrow(/option "gamma"/);
  });
});

describe("whiten", () => {
  it("centres and scales by the unbiased std, with 1e-8 inside the square root", () => {
    // [1, 2, 3]: mean 2, variance (1 + 0 + 1) / 2 = 1 → (x − 2) / sqrt(1 + 1e-8) = ∓0.999999995, 0.
    const w = whiten([1, 2, 3]);
    [-0.999999995, 0, 0.999999995].forEach((x, i) => expect(w[i]).toBeCloseTo(x, 12));
    const kept = whiten([1, 2, 3], { shiftMean: false });
    [1.000000005, 2, 2.999999995].forEach((x, i) => expect(kept[i]).toBeCloseTo(x, 12));
  });

  it("handles fewer than two values", () => {
    expect(whiten([])).toEqual([]);
    expect(whiten([5])).toEqual([0]);
  });
});
