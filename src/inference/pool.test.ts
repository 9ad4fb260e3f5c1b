import { describe, expect, it } from "vitest";
import { AbortedError, BusyError, SlotPool } from "./pool.js";

describe("SlotPool", () => {
  it("hands out free slots, queues up to maxQueue, then refuses with BusyError", async () => {
    const pool = new SlotPool(["a", "b"], 1);
    const a = await pool.acquire();
    const b = await pool.acquire();
    expect([a, b].sort()).toEqual(["a", "b"]);
    pool.checkCapacity(); // the queue has room
    const waiting = pool.acquire();
    expect(pool.queued).toBe(1);
    expect(() => pool.checkCapacity()).toThrow(BusyError);
    await expect(pool.acquire()).rejects.toBeInstanceOf(BusyError);
    pool.release(a);
    expect(await waiting).toBe(a);
    expect([pool.active, pool.queued]).toEqual([2, 0]);
  });

  it("serves waiters first come, first served", async () => {
    const pool = new SlotPool([1], 5);
    const slot = await pool.acquire();
    const order: number[] = [];
    const w = [0, 1, 2].map(async (i) => {
      const s = await pool.acquire();
      order.push(i);
      pool.release(s);
    });
    pool.release(slot);
    await Promise.all(w);
    expect(order).toEqual([0, 1, 2]);
    expect(pool.active).toBe(0);
  });

  it("drops a waiter whose signal aborts, without losing the slot", async () => {
    const pool = new SlotPool(["x"], 5);
    const slot = await pool.acquire();
    const ctrl = new AbortController();
    const gone = pool.acquire(ctrl.signal);
    ctrl.abort();
    await expect(gone).rejects.toBeInstanceOf(AbortedError);
    expect(pool.queued).toBe(0);
    pool.release(slot);
    expect(await pool.acquire()).toBe("x");
  });

  it("with a preference, hands out the free slot scored highest, the longest free among equals", async () => {
    const pool = new SlotPool(["a", "b", "c"], 0);
    const score: Record<string, number> = { a: 0, b: 5, c: 0 };
    const prefer = (s: string) => score[s] ?? 0;
    expect(await pool.acquire(undefined, prefer)).toBe("b");
    expect(await pool.acquire(undefined, prefer)).toBe("a"); // a and c tie: a has been free longer
    pool.release("a");
    score.a = 1;
    expect(await pool.acquire(undefined, prefer)).toBe("a");
    expect(await pool.acquire(undefined, prefer)).toBe("c");
    await expect(pool.acquire(undefined, prefer)).rejects.toBeInstanceOf(BusyError);
  });
});
