import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { latestCheckpoint, readCheckpoint } from "../src/run/checkpoint.js";
import { resolveSftConfig } from "../src/run/config.js";
import { readMetrics } from "../src/run/metrics.js";
import { runSft } from "../src/run/sft.js";
import { repoRoot, runCli, tempDir } from "./helpers.js";
import { tinySftArgs, tinySftInputs } from "./sft-helpers.js";

/**
 * `--compute bf16` (bfloat16 GEMMs, f32 master weights, gradients and AdamW) trains like f32: the same
 * model, data order and step count reach the same loss. The engine's own tests (src/train/trainer.test.ts)
 * compare one step's loss and gradients; this one compares whole runs through the SFT loop.
 */
const tmp = tempDir("steerlm-compute-");
let inputs: ReturnType<typeof tinySftInputs>;
beforeAll(() => {
  inputs = tinySftInputs(tmp.path);
});
afterAll(() => tmp.cleanup());

const STEPS = 100;
/**
 * Tolerance on the final losses. Measured (zen4, this setup, seeds 0–5, 100 steps): |val_bf16 − val_f32|
 * ≤ 0.0041 and the final step's |Δ train loss| ≤ 0.0047, while the val loss itself falls from ~5.8 to
 * 1.99–2.14 across those seeds — changing the seed moves it 35× more than changing the compute type.
 * 0.02 is ~4× the largest measured difference and still 1% of the loss.
 */
const TOLERANCE = 0.02;

describe("bf16 compute trains like f32", () => {
  it(`same data, seed and ${STEPS} steps: both losses fall far, and end within ${TOLERANCE}`, async () => {
    const run = async (computeType: "f32" | "bf16") => {
      const output = join(tmp.path, `parity-${computeType}`);
      const r = await runSft(
        resolveSftConfig({
          data: inputs.train,
          val: inputs.val,
          output,
          // every GEMM dimension a multiple of 32, so each large product really runs in bf16
          init: { hiddenSize: 64, numLayers: 2, numHeads: 2, ffnSize: 128, contextLength: 256 },
          tokenizerVocabSize: 320,
          seqLen: 128,
          batchSize: 4,
          threads: 1,
          lr: 0.003,
          warmupSteps: 4,
          steps: STEPS,
          seed: 0,
          evalEvery: 0,
          checkpointEvery: 0,
          computeType,
        }),
        { progress: false },
      );
      const losses = readMetrics<{ step: number; loss: number }>(output).map((m) => m.loss);
      const header = readCheckpoint(r.checkpoint).header;
      return { r, losses, header };
    };
    const f32 = await run("f32");
    const bf16 = await run("bf16");
    expect(f32.header.settings.computeType).toBe("f32");
    expect(bf16.header.settings.computeType).toBe("bf16");
    const start = f32.losses[0] as number;
    const maxStepDiff = Math.max(...f32.losses.map((l, i) => Math.abs(l - (bf16.losses[i] as number))));
    process.stderr.write(
      `compute parity (${STEPS} steps): first loss f32 ${start.toFixed(4)} bf16 ${(bf16.losses[0] as number).toFixed(4)}; ` +
        `final train f32 ${f32.r.trainLoss.toFixed(4)} bf16 ${bf16.r.trainLoss.toFixed(4)}; ` +
        `val f32 ${f32.r.valLoss?.toFixed(4)} bf16 ${bf16.r.valLoss?.toFixed(4)}; ` +
        `largest per-step difference ${maxStepDiff.toFixed(4)}; ${f32.r.seconds.toFixed(2)} s vs ${bf16.r.seconds.toFixed(2)} s\n`,
    );
    expect(f32.losses).toHaveLength(STEPS);
    expect(bf16.losses).toHaveLength(STEPS);
    // the same first batch through the same initial weights, only the GEMM precision differs
    expect(Math.abs((bf16.losses[0] as number) - start)).toBeLessThan(1e-3);
    // bf16 really ran: the trajectories are not bit-identical
    expect(maxStepDiff).toBeGreaterThan(0);
    for (const { r } of [f32, bf16]) {
      expect(r.trainLoss).toBeLessThan(0.5 * start);
      expect(r.valLoss as number).toBeLessThan(0.5 * start);
    }
    expect(Math.abs(bf16.r.trainLoss - f32.r.trainLoss)).toBeLessThan(TOLERANCE);
    expect(Math.abs((bf16.r.valLoss as number) - (f32.r.valLoss as number))).toBeLessThan(TOLERANCE);
  }, 60_000);
});

describe("steerlm sft --compute", () => {
  const steps = ["--steps", "6", "--checkpoint-every", "3", "--eval-every", "0"];

  it("bf16: trains, records bf16 in the checkpoint header, and --resume keeps it bit-exactly", async () => {
    const run = join(tmp.path, "cli-bf16");
    const r = await runCli(tinySftArgs(inputs, run, [...steps, "--compute", "bf16"]));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/computeType\s+bf16 {2}\(flag\)/);
    expect(r.stderr).toContain("bf16 GEMMs");
    const last = latestCheckpoint(run) as string;
    expect(last).toMatch(/step-000006\.ckpt$/);
    expect(readCheckpoint(last).header.settings.computeType).toBe("bf16");
    const straight = readFileSync(last);

    // resume from step 3: the run must continue in bf16 and rewrite step 6 byte for byte
    rmSync(last);
    const resumed = await runCli(["sft", "--resume", "-o", run]);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain("resumed at step 3");
    expect(resumed.stderr).toMatch(/computeType\s+bf16 {2}\(config file\)/);
    expect(resumed.stderr).toContain("bf16 GEMMs");
    expect(readCheckpoint(last).header.settings.computeType).toBe("bf16");
    expect(readFileSync(last).equals(straight)).toBe(true);

    // an f32 run from the same start ends elsewhere, so the byte equality above is bf16's
    const f32 = join(tmp.path, "cli-f32");
    expect((await runCli(tinySftArgs(inputs, f32, steps))).code).toBe(0);
    const f32Ck = readCheckpoint(latestCheckpoint(f32) as string);
    expect(f32Ck.header.settings.computeType).toBe("f32");
    expect(readFileSync(latestCheckpoint(f32) as string).equals(straight)).toBe(false);

    // a different --compute on resume is refused, naming both
    const mismatch = await runCli(["sft", "--resume", "-o", run, "--compute", "f32"]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain(`steerlm: computeType: "f32" differs from the run's "bf16"`);
    expect(mismatch.stderr).toContain("drop --compute");
  }, 120_000);

  it("refuses an unknown compute type before doing any work", async () => {
    const r = await runCli(tinySftArgs(inputs, join(tmp.path, "cli-bad"), ["--compute", "fp16"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('steerlm: --compute: expected one of f32, bf16, got "fp16"');
  });

  it("warns that bf16 will likely be slower on a ggml CPU variant without native bf16", async () => {
    // x64 is ggml's baseline variant: it loads on every x86-64 CPU and has no bf16 instructions
    const run = join(tmp.path, "cli-x64");
    const r = await runCli(tinySftArgs(inputs, run, ["--steps", "2", "--compute", "bf16"]), {
      env: { STEERLM_GGML_CPU: "x64" },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("ggml x64");
    expect(r.stderr).toMatch(/\[warn\] computeType bf16: .*CPU variant x64 has no native bfloat16.*slower/);
    const f32 = await runCli(tinySftArgs(inputs, join(tmp.path, "cli-x64-f32"), ["--steps", "2"]), {
      env: { STEERLM_GGML_CPU: "x64" },
    });
    expect(f32.code, f32.stderr).toBe(0);
    expect(f32.stderr).not.toContain("bfloat16");
  }, 60_000);
});

describe("steerlm apm train --compute", () => {
  it("bf16 trains the attribute model and records bf16 in its checkpoint", async () => {
    const run = join(tmp.path, "apm-bf16");
    const r = await runCli([
      "apm",
      "train",
      "--data",
      inputs.train,
      "--init",
      inputs.init,
      "--tokenizer-vocab-size",
      "320",
      "--seq-len",
      "96",
      "--batch-size",
      "4",
      "--threads",
      "1",
      "--steps",
      "3",
      "--compute",
      "bf16",
      "-o",
      run,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("bf16 GEMMs");
    const ck = readCheckpoint(latestCheckpoint(run) as string);
    expect(ck.header.settings.computeType).toBe("bf16");
    expect(ck.header.step).toBe(3);
  }, 60_000);
});

describe("bin/bench.js usage", () => {
  const benchIn = (env: NodeJS.ProcessEnv, ...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, "bin", "bench.js"), ...args], {
      encoding: "utf8",
      env: { ...process.env, ...env },
    });
  const bench = (...args: string[]) => benchIn({}, ...args);

  it("--help prints the usage and exits 0, wherever it stands", () => {
    for (const args of [["--help"], ["-h"], ["train", "m10", "--bf16", "--help"]]) {
      const r = bench(...args);
      expect(r.status, args.join(" ")).toBe(0);
      expect(r.stdout).toMatch(/^usage: npm run bench -- train <m10\|/);
      expect(r.stdout).toContain("--compute f32|bf16");
      expect(r.stderr).toBe("");
    }
  });

  it("an unknown option or a bad value prints the usage and exits 1, without a stack trace", () => {
    for (const [args, message] of [
      [["train", "m10", "--bogus"], "bench: Unknown option '--bogus'"],
      [["serve", "--bogus"], "bench: Unknown option '--bogus'"],
      [["train", "m10", "--compute", "fp16"], 'bench: --compute: expected f32 or bf16, got "fp16"'],
      [["train", "m10", "--steps", "0"], 'bench: --steps: expected an integer ≥ 1, got "0"'],
      [["train", "nope"], 'bench: unknown training benchmark "nope"'],
      [[], "bench: train, peak, serve, guidance, annotate?"],
      [["peak", "m10"], 'bench: peak takes no name, got "m10"'],
    ] as const) {
      const r = bench(...args);
      expect(r.status, args.join(" ")).toBe(1);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toContain("usage: npm run bench");
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      expect(r.stdout).toBe("");
    }
  });

  it("guidance without a demo says which file is missing and how to make one, without a stack trace", () => {
    const dir = tempDir("steerlm-nodemo-");
    try {
      const r = bench("guidance", "--demo", dir.path);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`bench: ${join(dir.path, "data", "test.jsonl")}: missing`);
      expect(r.stderr).toContain(`hint: make one with \`npx steerlm demo -o ${dir.path}\``);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe("");
    } finally {
      dir.cleanup();
    }
  });

  it("peak --json prints one object with both precisions' GFLOP/s and the instructions used", () => {
    // a smoke test of the command's output, not of the machine: no figure is asserted beyond its kind
    const r = bench("peak", "--threads", "1", "--json");
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(out).sort()).toEqual(["bf16_gflops", "cpu", "f32_gflops", "isa", "threads"]);
    expect(out.threads).toBe(1);
    for (const p of ["f32", "bf16"] as const) {
      const g = out[`${p}_gflops`] as { per_core: number | null; total: number | null };
      const isa = (out.isa as Record<string, string | null>)[p];
      // null exactly where the CPU lacks the instructions, and then the ISA says so too
      expect(g.per_core === null).toBe(isa === null);
      if (g.per_core !== null) expect(g.per_core).toBeGreaterThan(0);
      expect(g.total).toBe(g.per_core); // one thread: total is the per-core figure
    }
  }, 60_000);

  it("peak measures the instructions the GEMMs run: AVX-512 without AMX, AVX2 where AVX-512 is held back, none for portable code", () => {
    // STEERLM_KERNELS_ISA caps the kernels as on an older CPU: the peak follows (every x86-64 CPU this
    // project runs on has AVX2; without it f32 would be null as well)
    const peak = (isa: string) => {
      const r = benchIn({ STEERLM_KERNELS_ISA: isa }, "peak", "--threads", "1", "--json");
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as {
        isa: { f32: string | null; bf16: string | null };
        f32_gflops: { per_core: number | null };
      };
    };
    // avx512 holds AMX back: the bf16 figure is then AVX512-BF16's, where the CPU has it
    const avx512 = peak("avx512");
    if (avx512.isa.bf16 !== null) expect(avx512.isa.bf16).toMatch(/^AVX512_BF16 vdpbf16ps/);
    const avx2 = peak("avx2");
    expect(avx2.isa).toEqual({ f32: "AVX2 vfmadd231ps (ymm, 8 lanes × 2 flops)", bf16: null });
    expect(avx2.f32_gflops.per_core).toBeGreaterThan(0);
    const generic = peak("generic");
    expect(generic.isa).toEqual({ f32: null, bf16: null });
    expect(generic.f32_gflops.per_core).toBeNull();
  }, 60_000);
});
