import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { BUILTIN_SCHEMAS } from "../data/attributes.js";
import { resolveSftConfig } from "../run/config.js";
import { exportGguf } from "../run/export.js";
import type { ModelInitInput, SftConfig } from "../run/settings.js";
import { runSft } from "../run/sft.js";
import { DERIVED_ATTRIBUTES } from "../steerbench/compose.js";
import { companionsFrom, turnLabels } from "../steerbench/derived.js";
import { benchFile, writeBench } from "../steerbench/jsonl.js";
import { BENCH_SYSTEM_PROMPT, synthesize } from "../steerbench/synth.js";
import { writeFileAtomic } from "../util/atomic.js";
import { log } from "../util/log.js";
import { formatDuration } from "../util/progress.js";
import { evaluateSteerability, type Sample, type SteerabilityReport } from "./evaluate.js";

/**
 * `steerlm demo`, the main job: SteerBench data → a small steerable model trained from scratch → GGUF →
 * steerability measured by the SteerBench oracle on held-out (test-split) prompts. Everything is embedded
 * and offline; the sizes below were chosen to finish within 10 minutes on 2 CPU cores.
 */
export interface DemoOptions {
  /** Output directory (data, run, model.gguf, report.json). */
  dir: string;
  /** A much smaller run (about 30 s): the pipeline end to end, not the steerability target. */
  quick?: boolean;
  seed?: number;
  progress?: boolean;
  /** Sizes other than the built-in plans (tests use a tiny one). */
  plan?: DemoPlan;
}

export interface DemoPlan {
  conversations: number;
  multiTurnFraction: number;
  model: ModelInitInput;
  sft: Partial<SftConfig>;
  /** Seconds the training loop may take (it shortens its schedule to fit; see SftRunOptions). */
  trainSeconds: number;
  prompts: number;
  maxTokens: number;
}

/** The full demo (see the README for the measured figures) and the quick one. */
export const DEMO_PLANS: Record<"full" | "quick", DemoPlan> = {
  full: {
    conversations: 16000,
    multiTurnFraction: 0.05,
    // 0.48M parameters: with one token per attribute setting it learns the style attributes in ~600 steps
    model: { hiddenSize: 96, numLayers: 3, numHeads: 4, ffnSize: 256, contextLength: 512 },
    sft: {
      tokenizerVocabSize: 768,
      seqLen: 192,
      batchSize: 8,
      steps: 2500,
      lr: 4e-3,
      warmupSteps: 20,
      minLrRatio: 0.1,
      weightDecay: 0.01,
      evalEvery: 250,
      evalBatches: 8,
      checkpointEvery: 500,
    },
    trainSeconds: 440,
    prompts: 20,
    maxTokens: 160,
  },
  quick: {
    conversations: 2000,
    multiTurnFraction: 0.05,
    model: { hiddenSize: 64, numLayers: 2, numHeads: 4, ffnSize: 192, contextLength: 512 },
    sft: {
      tokenizerVocabSize: 512,
      seqLen: 192,
      batchSize: 8,
      steps: 400,
      lr: 4e-3,
      warmupSteps: 10,
      minLrRatio: 0.1,
      evalEvery: 100,
      evalBatches: 2,
      checkpointEvery: 200,
    },
    trainSeconds: 60,
    prompts: 4,
    maxTokens: 120,
  },
};

export interface DemoReport {
  attributes: Record<
    string,
    { spearman: number; requested: number[]; measured: number[]; spearmanSamples: number; exact: number }
  >;
  seconds: number;
  stages: Record<string, number>;
  trainLoss: number;
  valLoss: number | null;
  steps: number;
  tokensPerSecond: number;
  model: string;
  prompts: number;
  generations: number;
  samples: Sample[];
}

export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const t0 = performance.now();
  const dir = resolve(opts.dir);
  const plan = opts.plan ?? DEMO_PLANS[opts.quick ? "quick" : "full"];
  const seed = opts.seed ?? 1;
  const stages: Record<string, number> = {};
  const stage = (name: string, since: number) => {
    stages[name] = (performance.now() - since) / 1000;
  };
  mkdirSync(dir, { recursive: true });

  // 1. data
  let t = performance.now();
  const bench = synthesize({ n: plan.conversations, seed, multiTurnFraction: plan.multiTurnFraction });
  const dataDir = join(dir, "data");
  mkdirSync(dataDir, { recursive: true });
  writeBench(dataDir, bench);
  stage("data", t);
  log.info(
    `demo: ${bench.splits.train.length} training conversations of SteerBench (seed ${seed}) in ${dataDir}`,
  );

  // 2. train from scratch
  t = performance.now();
  const runDir = join(dir, "run");
  const resolved = resolveSftConfig({
    ...plan.sft,
    data: benchFile(dataDir, "train"),
    val: benchFile(dataDir, "validation"),
    output: runDir,
    init: plan.model,
    seed,
    // One thread: for a model this small, handing work between ggml threads costs more than it saves
    // (the engine spike measured it), and a busy machine makes spinning threads far slower still.
    threads: 1,
  });
  const sft = await runSft(resolved, { progress: opts.progress, timeBudgetSeconds: plan.trainSeconds });
  stage("train", t);

  // 3. export
  t = performance.now();
  const modelPath = join(dir, "model.gguf");
  await exportGguf(runDir, modelPath);
  stage("export", t);
  log.info(`demo: exported ${modelPath}`);

  // 4. steer on held-out prompts (the test split: prompts never seen in training)
  t = performance.now();
  const prompts = bench.splits.test
    .filter((c) => c.turns.length === 2)
    .slice(0, plan.prompts)
    .map((c) => (c.turns[0] as { text: string }).text);
  const steer = await evaluateSteerability({
    modelPath,
    prompts,
    system: BENCH_SYSTEM_PROMPT,
    maxTokens: plan.maxTokens,
    // quality and helpfulness follow from the others on SteerBench: ask for them with their companions
    companions: companionsFrom(
      turnLabels(bench.splits.train, BUILTIN_SCHEMAS.steerlm),
      BUILTIN_SCHEMAS.steerlm,
      DERIVED_ATTRIBUTES,
    ),
    progress: opts.progress,
  });
  stage("steer", t);

  const report: DemoReport = {
    attributes: steer.attributes,
    seconds: (performance.now() - t0) / 1000,
    stages,
    trainLoss: sft.trainLoss,
    valLoss: sft.valLoss,
    steps: sft.step,
    tokensPerSecond: sft.tokensPerSecond,
    model: modelPath,
    prompts: steer.prompts,
    generations: steer.generations,
    samples: contrastingSamples(steer),
  };
  writeFileAtomic(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

/** For the first prompt: the lowest and the highest level of each attribute's sweep. */
export function contrastingSamples(r: SteerabilityReport): Sample[] {
  const first = r.samples[0]?.prompt;
  const out: Sample[] = [];
  for (const [attr, result] of Object.entries(r.attributes)) {
    for (const level of [result.requested[0], result.requested.at(-1)]) {
      const s = r.samples.find((x) => x.prompt === first && x.attribute === attr && x.level === level);
      if (s) out.push(s);
    }
  }
  return out;
}

/** The steerability table and the samples, as printed by `steerlm demo`. */
export function formatDemoReport(r: DemoReport): string {
  const lines: string[] = [];
  const names = Object.keys(r.attributes);
  const levels = r.attributes[names[0]!]?.requested ?? [];
  const w = Math.max(...names.map((n) => n.length), 9);
  lines.push("Steerability on held-out prompts (oracle-measured mean at each requested level)");
  lines.push(
    `${"attribute".padEnd(w)}  ${levels.map((l) => `req ${l}`.padStart(6)).join(" ")}  spearman  (per-sample)`,
  );
  for (const n of names) {
    const a = r.attributes[n] as DemoReport["attributes"][string];
    const rho = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "  n/a");
    lines.push(
      `${n.padEnd(w)}  ${a.measured.map((m) => m.toFixed(2).padStart(6)).join(" ")}  ${rho(a.spearman).padStart(8)}  ${rho(a.spearmanSamples).padStart(11)}`,
    );
  }
  lines.push("");
  lines.push("Samples at contrasting settings (first held-out prompt):");
  let prompt = "";
  for (const s of r.samples) {
    if (s.prompt !== prompt) {
      prompt = s.prompt;
      lines.push(`  prompt: ${prompt}`);
    }
    lines.push(`  [${s.attribute}=${s.level}] ${s.response}`);
  }
  lines.push("");
  lines.push(
    `trained ${r.steps} steps (${r.tokensPerSecond.toFixed(0)} tok/s), train loss ${r.trainLoss.toFixed(3)}` +
      `${r.valLoss !== null ? `, val loss ${r.valLoss.toFixed(3)}` : ""}; ${r.generations} generations on ${r.prompts} prompts`,
  );
  lines.push(
    `time: ${formatDuration(r.seconds)} (${Object.entries(r.stages)
      .map(([k, v]) => `${k} ${v.toFixed(0)}s`)
      .join(", ")})`,
  );
  return lines.join("\n");
}
