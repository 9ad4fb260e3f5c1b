import { SteerlmError } from "../util/errors.js";

/** The queue is full: the caller should come back later (the server answers 429 with Retry-After). */
export class BusyError extends SteerlmError {
  override name = "BusyError";
  constructor(
    readonly active: number,
    readonly queued: number,
  ) {
    super(`server busy: ${active} generations running and ${queued} waiting`, "retry in a moment");
  }
}

/** The caller gave up (its AbortSignal fired) before a slot came free. */
export class AbortedError extends SteerlmError {
  override name = "AbortedError";
  constructor() {
    super("generation aborted");
  }
}

interface Waiter<T> {
  resolve(slot: T): void;
  reject(err: Error): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * A fixed set of slots (context sequences) handed out first come, first served, with a bounded wait queue.
 * Bounding the queue is what turns overload into a quick "busy" answer instead of unbounded memory and
 * latency. A waiter whose signal aborts leaves the queue at once.
 */
export class SlotPool<T> {
  private readonly free: T[];
  private readonly waiters: Waiter<T>[] = [];

  constructor(
    slots: readonly T[],
    /** Waiters allowed beyond the slots; Infinity for a CLI that never rejects. */
    readonly maxQueue: number,
  ) {
    this.free = [...slots];
    this.size = slots.length;
  }

  readonly size: number;

  get active(): number {
    return this.size - this.free.length;
  }

  get queued(): number {
    return this.waiters.length;
  }

  /** Throws BusyError when `acquire` would now: no free slot and a full queue. */
  checkCapacity(): void {
    if (this.free.length === 0 && this.waiters.length >= this.maxQueue)
      throw new BusyError(this.active, this.waiters.length);
  }

  /**
   * A free slot, else the first one released after the waiters ahead. With `prefer`, the free slot it
   * scores highest, the one free the longest among equals (prompt caching: the sequence that shares the
   * most with the prompt, else the least recently used).
   */
  acquire(signal?: AbortSignal, prefer?: (slot: T) => number): Promise<T> {
    if (signal?.aborted) return Promise.reject(new AbortedError());
    try {
      this.checkCapacity();
    } catch (err) {
      return Promise.reject(err);
    }
    const slot = prefer ? this.takeBest(prefer) : this.free.pop();
    if (slot !== undefined) return Promise.resolve(slot);
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(new AbortedError());
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
    });
  }

  private takeBest(prefer: (slot: T) => number): T | undefined {
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    this.free.forEach((slot, i) => {
      const score = prefer(slot);
      if (score > bestScore) [best, bestScore] = [i, score];
    });
    return best < 0 ? undefined : this.free.splice(best, 1)[0];
  }

  release(slot: T): void {
    const next = this.waiters.shift();
    if (!next) {
      this.free.push(slot);
      return;
    }
    if (next.onAbort) next.signal?.removeEventListener("abort", next.onAbort);
    next.resolve(slot);
  }
}
