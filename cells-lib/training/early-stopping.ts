/** Early stopping on an evaluation metric: stop after `patience` evaluations without an
 * improvement of at least `minDelta` over the best so far. */
export interface EarlyStoppingOptions {
  patience: number;
  mode: "min" | "max";
  minDelta?: number;
}

export interface EarlyStopping {
  /** Records one evaluation; true when training should stop. */
  update(value: number): boolean;
  readonly best: number | undefined;
  /** Evaluations since the best one. */
  readonly stale: number;
}

export function earlyStopping({ patience, mode, minDelta = 0 }: EarlyStoppingOptions): EarlyStopping {
  let best: number | undefined;
  let stale = 0;
  return {
    update(value) {
      const improved = best === undefined || (mode === "min" ? value < best - minDelta : value > best + minDelta);
      if (improved) {
        best = value;
        stale = 0;
      } else {
        stale++;
      }
      return stale >= patience;
    },
    get best() {
      return best;
    },
    get stale() {
      return stale;
    },
  };
}
