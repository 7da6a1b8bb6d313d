/** Runs an action at most once per interval, and always runs the latest request eventually:
 * a request inside the interval is deferred to its end (or to `flush`), never dropped. */
export class Throttle {
  private last = -Infinity;
  private pending = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly action: () => void,
    private readonly now: () => number = Date.now,
  ) {}

  request(): void {
    this.pending = true;
    const wait = this.last + this.intervalMs - this.now();
    if (wait <= 0) {
      this.run();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      if (this.pending) this.run();
    }, wait);
  }

  /** Starts an interval now without running the action: the caller has just shown the
   * current state some other way. */
  startInterval(): void {
    this.last = this.now();
  }

  /** Runs a deferred request now. */
  flush(): void {
    if (this.pending) this.run();
  }

  /** Drops a deferred request and its timer. */
  cancel(): void {
    this.pending = false;
    this.clearTimer();
  }

  private run(): void {
    this.clearTimer();
    this.pending = false;
    this.last = this.now();
    this.action();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
