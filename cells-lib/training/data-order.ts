/** Which examples each step trains on: a fresh seeded shuffle every epoch, so the order is a
 * pure function of (seed, step) and a resumed run continues on exactly the batches it would
 * have seen (the step is the whole data-order cursor). */
import { seededShuffle } from "../util/random.ts";

export interface DataOrder {
  /** Example indices of the `count` examples starting at global position `start`. */
  take(start: number, count: number): number[];
  /** The epoch (0-based, fractional) reached after `position` examples. */
  epochAt(position: number): number;
}

export function dataOrder(size: number, seed: number): DataOrder {
  if (!Number.isInteger(size) || size <= 0) throw new Error(`dataOrder: need at least one example, got ${size}`);
  const indices = Array.from({ length: size }, (_, i) => i);
  const epochs = new Map<number, number[]>();
  const epoch = (e: number) => {
    let order = epochs.get(e);
    if (!order) {
      // Mixing the epoch into the seed gives each epoch its own order.
      order = seededShuffle(indices, (seed * 1_000_003 + e) >>> 0);
      epochs.set(e, order);
      epochs.delete(e - 2);
    }
    return order;
  };
  return {
    take(start, count) {
      return Array.from({ length: count }, (_, i) => {
        const position = start + i;
        return epoch(Math.floor(position / size))[position % size]!;
      });
    },
    epochAt: (position) => position / size,
  };
}

/** The example indices of each micro-batch of optimizer step `step` (0-based). */
export function stepBatches(
  order: DataOrder,
  step: number,
  o: { batchSize: number; gradientAccumulation: number },
): number[][] {
  return Array.from({ length: o.gradientAccumulation }, (_, m) =>
    order.take((step * o.gradientAccumulation + m) * o.batchSize, o.batchSize),
  );
}
