import { describe, expect, it } from "vitest";
import { mapOrdered } from "./ordered.js";

/** A promise settled from outside: the test decides the order calls finish in. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

describe("mapOrdered", () => {
  it("yields in input order when calls finish in reverse, with at most `concurrency` pending", async () => {
    const calls = Array.from({ length: 6 }, () => deferred<string>());
    const started: number[] = [];
    const gen = mapOrdered([0, 1, 2, 3, 4, 5], 3, (x) => {
      started.push(x);
      return calls[x].promise;
    });
    const first = gen.next();
    expect(started).toEqual([0, 1, 2]);
    calls[2].resolve("c");
    calls[1].resolve("b");
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1, 2]); // the first result is not in: nothing more starts
    calls[0].resolve("a");
    expect((await first).value).toBe("a");
    expect(started).toEqual([0, 1, 2, 3]);
    for (const i of [5, 4, 3]) calls[i].resolve(String.fromCharCode(97 + i));
    const rest: string[] = [];
    for await (const v of gen) rest.push(v);
    expect(rest).toEqual(["b", "c", "d", "e", "f"]);
  });

  it("throws a failure when its turn comes and aborts the calls still pending", async () => {
    const calls = Array.from({ length: 3 }, () => deferred<number>());
    const signals: AbortSignal[] = [];
    const got: number[] = [];
    const run = (async () => {
      for await (const v of mapOrdered([0, 1, 2], 3, (x, _i, signal) => {
        signals.push(signal);
        return calls[x].promise;
      }))
        got.push(v);
    })();
    calls[1].reject(new Error("boom"));
    calls[0].resolve(7);
    await expect(run).rejects.toThrow("boom");
    expect(got).toEqual([7]);
    expect(signals.map((s) => s.aborted)).toEqual([true, true, true]);
  });
});
