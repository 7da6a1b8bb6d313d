/** A stand-in model for exportModel without a bridge (test/corpus/staging.test.ts, and the child
 * process it kills mid-export). */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Model } from "../../cells-lib/cells/model.ts";
import type { Tokenizer } from "../../cells-lib/tokenizer/tokenizer.ts";

/** Its bridge "exports" by writing config.json into the staging directory it is given, as the
 * bridge's export_model does, then awaits `after`. */
export function fakeModel(
  tokDir: string,
  after: () => Promise<void> = async () => {},
): { model: Model; tokenizer: Tokenizer } {
  writeFileSync(path.join(tokDir, "tokenizer.json"), "{}");
  const client = {
    async call(_op: string, body: { dir: string }) {
      mkdirSync(body.dir);
      writeFileSync(path.join(body.dir, "config.json"), "{}");
      await after();
      return { dtype: "float32", weight_bytes: 2, lora: null, onnx: null, parameters: 1 };
    },
  };
  const model = {
    name: "m",
    client,
    info: { path: tokDir, quantization: null, max_position_embeddings: 8 },
  } as unknown as Model;
  return { model, tokenizer: { source: tokDir } as unknown as Tokenizer };
}
