import { describe, expect, it } from "vitest";
import { IsolatedJobError, runIsolated } from "./isolate.js";

const jobs = new URL("../../test/isolate-jobs.ts", import.meta.url);

describe("runIsolated", () => {
  it("returns the job's result and forwards its progress messages", async () => {
    const seen: unknown[] = [];
    const r = await runIsolated<{ steps: number }, { loss: number; steps: number }>(
      jobs,
      "trainTiny",
      { steps: 3 },
      {
        onMessage: (m) => seen.push(m),
      },
    );
    expect(r.steps).toBe(3);
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(seen).toHaveLength(3);
  }, 60_000);

  it("reports a native ggml abort as an error instead of dying", async () => {
    const err = await runIsolated(jobs, "abortNative", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IsolatedJobError);
    const e = err as IsolatedJobError;
    expect(e.signal).toBe("SIGABRT");
    expect(e.message).toContain("GGML_ASSERT");
  }, 60_000);

  it("reports an exception thrown by the job", async () => {
    const err = await runIsolated(jobs, "badShape", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IsolatedJobError);
    expect((err as Error).message).toContain("ggml mul_mat: inner dims differ");
  }, 60_000);
});
