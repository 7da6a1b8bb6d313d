/** What `sample` makes of the worker's tokens, with a scripted worker: ids a model's padded
 * embedding can produce past the tokenizer's vocabulary decode to no text, as in transformers. */
import { describe, expect, it } from "vitest";
import { Tensor } from "../cells-lib/bridge/frames.ts";
import type { Model } from "../cells-lib/cells/model.ts";
import { sample } from "../cells-lib/cells/sample.ts";
import { tokenizerFromJson } from "../cells-lib/tokenizer/tokenizer.ts";

const vocab = { a: 0, b: 1, c: 2 };
const tokenizer = tokenizerFromJson({ model: { type: "BPE", vocab, merges: [] }, added_tokens: [] }, {});

/** A model whose worker answers `sample` with these completion ids (the model's vocabulary: 8). */
function scripted(ids: number[]): Model {
  const call = async (op: string) => {
    if (op !== "sample") throw new Error(`unexpected ${op}`);
    return {
      tokens: Tensor.int32(ids, [1, ids.length]),
      lengths: Tensor.int32([ids.length]),
      logprobs: Tensor.float32(
        ids.map(() => -1),
        [1, ids.length],
      ),
      stop_reasons: ["length"],
      prefill_tokens: 1,
      entropies: null,
    };
  };
  return { name: "m", info: { vocab_size: 8 }, client: { call } } as unknown as Model;
}

describe("sample's decoding", () => {
  it("gives ids past the tokenizer's vocabulary no text and keeps them in tokenIds", async () => {
    const [c] = await sample(scripted([0, 6, 1, 7, 2]), tokenizer, [0], { stopTokenIds: [] });
    const [plain] = await sample(scripted([0, 1, 2]), tokenizer, [0], { stopTokenIds: [] });
    expect(plain!.text).toMatch(/^ ?a ?b ?c$/);
    expect(c!.text).toBe(plain!.text);
    expect(c!.tokenIds).toEqual([0, 6, 1, 7, 2]);
    expect(c!.logprobs).toHaveLength(5);
  });
});
