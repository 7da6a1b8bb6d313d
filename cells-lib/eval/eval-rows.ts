/** Evaluation rows from a dataset file: RL rows (prompt + reference answer) or GSM8K rows (the
 * reference is the number after ####). */
import { loadDataset } from "../data/load.ts";
import { gsm8kToCot } from "../reasoning/index.ts";
import type { EvalRow } from "./evaluate.ts";

export async function loadEvalRows(file: string): Promise<EvalRow[]> {
  const data = await loadDataset(file);
  switch (data.shape) {
    case "rl":
      return data.rows.map(({ row }) => ({ prompt: row.prompt, reference: row.answer }));
    case "gsm8k":
      return data.rows.map(({ row }) => ({ prompt: row.question, reference: gsm8kToCot(row.answer).answer }));
    default:
      throw new Error(
        `${file}: evaluation needs rows with a reference answer: {prompt, answer} or GSM8K's {question, answer}; this file has ${data.shape} rows`,
      );
  }
}
