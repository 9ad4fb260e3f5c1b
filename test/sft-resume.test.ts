import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latestCheckpoint, readCheckpoint } from "../src/run/checkpoint.js";
import { repoRoot, runCli, startCli, tempDir, waitUntil } from "./helpers.js";
import { tinySftArgs, tinySftInputs } from "./sft-helpers.js";

const STEPS = 60;
const EVERY = 5;

/** Starts the real CLI, waits until `file` exists, sends `signal`; resolves with how the process ended. */
function runUntil(
  args: string[],
  file: string,
  signal: NodeJS.Signals,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, "bin", "steerlm.js"), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdout.resume();
    const poll = setInterval(() => {
      if (existsSync(file)) {
        clearInterval(poll);
        child.kill(signal);
      }
    }, 2);
    child.on("error", reject);
    child.on("close", (code, sig) => {
      clearInterval(poll);
      resolve({ code, signal: sig, stderr });
    });
  });
}

function finalWeights(run: string) {
  const path = latestCheckpoint(run) as string;
  return { path, ck: readCheckpoint(path) };
}

describe("steerlm sft --resume after kill -9", () => {
  const tmp = tempDir("steerlm-resume-");
  let inputs: ReturnType<typeof tinySftInputs>;
  const steps = ["--steps", String(STEPS), "--checkpoint-every", String(EVERY), "--eval-every", "20"];

  beforeAll(() => {
    inputs = tinySftInputs(tmp.path);
  });
  afterAll(() => tmp.cleanup());

  it("ends with byte-identical weights and optimiser state to an uninterrupted run", async () => {
    const straight = join(tmp.path, "straight");
    const full = await runCli(tinySftArgs(inputs, straight, steps));
    expect(full.code, full.stderr).toBe(0);

    const killed = join(tmp.path, "killed");
    const first = join(killed, "checkpoints", "step-000005.ckpt");
    const k = await runUntil(tinySftArgs(inputs, killed, steps), first, "SIGKILL");
    expect(k.signal).toBe("SIGKILL");
    const at = readCheckpoint(latestCheckpoint(killed) as string).header.step;
    // the kill landed mid-run: the resumed run has real work left
    expect(at).toBeGreaterThanOrEqual(EVERY);
    expect(at).toBeLessThan(STEPS);

    const resumed = await runCli(["sft", "--resume", "-o", killed]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`resumed at step ${at}`);

    const a = finalWeights(straight);
    const b = finalWeights(killed);
    expect(b.ck.header.step).toBe(STEPS);
    expect(b.ck.header.cursor).toEqual(a.ck.header.cursor);
    expect([...b.ck.weights.keys()]).toEqual([...a.ck.weights.keys()]);
    for (const [role, ma, mb] of [
      ["weight", a.ck.weights, b.ck.weights],
      ["adam_m", a.ck.adamM, b.ck.adamM],
      ["adam_v", a.ck.adamV, b.ck.adamV],
    ] as const) {
      for (const [name, wa] of ma) {
        const wb = mb.get(name) as Float32Array;
        expect(Buffer.from(wb.buffer).equals(Buffer.from(wa.buffer)), `${role} ${name}`).toBe(true);
      }
    }
    // and the exported models are the same bytes
    const ga = join(tmp.path, "a.gguf");
    const gb = join(tmp.path, "b.gguf");
    expect((await runCli(["export", "gguf", straight, "-o", ga])).code).toBe(0);
    expect((await runCli(["export", "gguf", killed, "-o", gb])).code).toBe(0);
    expect(readFileSync(ga).equals(readFileSync(gb))).toBe(true);
  }, 180_000);

  it.each([
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)(
    "%s writes a checkpoint, then exits with 128 + its number; --resume finishes the run",
    async (signal, code) => {
      const run = join(tmp.path, `interrupted-${signal}`);
      const r = await runUntil(
        tinySftArgs(inputs, run, steps),
        join(run, "checkpoints", "step-000005.ckpt"),
        signal,
      );
      expect(r.code).toBe(code);
      expect(r.stderr).toMatch(/interrupted: checkpoint written at step \d+/);
      const step = Number(/checkpoint written at step (\d+)/.exec(r.stderr)?.[1]);
      expect(step).toBeGreaterThanOrEqual(EVERY);
      expect(readCheckpoint(latestCheckpoint(run) as string).header.step).toBe(step);
      // the SIGTERM'd run resumes after a move of the run and its inputs (another disk, another machine):
      // the run is where its settings are, the inputs are checked by content
      let at = run;
      const again: string[] = [];
      if (signal === "SIGTERM") {
        at = `${run}-moved`;
        renameSync(run, at);
        const dir = join(tmp.path, "moved-inputs");
        mkdirSync(dir, { recursive: true });
        const moved = Object.fromEntries(
          (["train", "val", "init"] as const).map((k) => {
            const to = join(dir, basename(inputs[k]));
            copyFileSync(inputs[k], to);
            return [k, to];
          }),
        ) as typeof inputs;
        writeFileSync(
          join(dir, "wider.yaml"),
          readFileSync(moved.init, "utf8").replace("hiddenSize: 32", "hiddenSize: 64"),
        );
        const wider = await runCli(["sft", "--resume", "-o", at, "--init", join(dir, "wider.yaml")]);
        expect(wider.code).toBe(1);
        expect(wider.stderr).toContain(
          "model: the model is not the run's: headDim 32, 16 then; hiddenSize 64, 32 then",
        );
        again.push("--data", moved.train, "--val", moved.val, "--init", moved.init);
      }
      const resumed = await runCli(["sft", "--resume", "-o", at, ...again]);
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(finalWeights(at).ck.header.step).toBe(STEPS);
    },
    120_000,
  );

  it("a second run on the same run directory fails at once, naming the first", async () => {
    const run = join(tmp.path, "twice");
    const long = ["--steps", "100000", "--checkpoint-every", String(EVERY)];
    const first = startCli(tinySftArgs(inputs, run, long));
    await waitUntil(() => existsSync(join(run, "checkpoints", "step-000005.ckpt")), first.ended);
    const resume = await runCli(["sft", "--resume", "-o", run]);
    const fresh = await runCli(tinySftArgs(inputs, run, long));
    first.child.kill("SIGKILL");
    expect((await first.ended).signal).toBe("SIGKILL");
    for (const second of [resume, fresh]) {
      expect(second.code, second.stderr).toBe(1);
      expect(second.stderr).toContain(
        `steerlm: ${run}: is in use by another steerlm process: pid ${first.child.pid}`,
      );
    }
  });

  it("refuses a resume whose flags change the run's settings", async () => {
    const run = join(tmp.path, "straight");
    const r = await runCli(["sft", "--resume", "-o", run, "--lr", "0.1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("steerlm: lr: 0.1 differs from the run's 0.003");
  });
});
