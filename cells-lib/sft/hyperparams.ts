/** Starting hyperparameters for an SFT cold start by dataset size (the seeds' table). */
export interface SftHyperparams {
  loraRank: number;
  lr: number;
  batchSize: number;
  steps: number;
  warmupSteps: number;
}

/** <100 rows: r16, 3e-4, batch 2, 500 steps, warmup 50; 100–1K: r32, 1e-4, 4, 1000, 100;
 * >1K: r64, 5e-5, 8, 2000–5000 (about 2 epochs, within that range), 200. */
export function recommendHyperparams(datasetSize: number): SftHyperparams {
  if (!Number.isInteger(datasetSize) || datasetSize < 1) {
    throw new Error(`recommendHyperparams: datasetSize must be a positive whole number of rows, got ${datasetSize}`);
  }
  if (datasetSize < 100) return { loraRank: 16, lr: 3e-4, batchSize: 2, steps: 500, warmupSteps: 50 };
  if (datasetSize <= 1000) return { loraRank: 32, lr: 1e-4, batchSize: 4, steps: 1000, warmupSteps: 100 };
  const twoEpochs = Math.ceil((2 * datasetSize) / 8);
  return { loraRank: 64, lr: 5e-5, batchSize: 8, steps: Math.min(5000, Math.max(2000, twoEpochs)), warmupSteps: 200 };
}
