/**
 * Speed of mixed decoding (attribute guidance, fractional values: src/inference/guided.ts) against plain
 * decoding, on the demo model (`steerlm demo -o <dir>`) and its held-out prompts: each of the first
 * `prompts` single-turn test conversations is decoded plain (humor 3) and mixed back to back, greedily,
 * the order alternating from pair to pair, for `rounds` rounds; per pair the ratio of the two replies'
 * tokens per second, by wall clock and by the process's CPU time, reported as the median and quartiles
 * (docs/steering.md, Speed). Then node-llama-cpp alone, without steerlm's code: the CPU time of a decoding
 * step for one sequence, two in lockstep, and two reading their probability lists (what a guided step
 * needs), the floor under the ratios above. Not a test: the figures depend on the machine and its load
 * (printed beside).
 *
 *   npm run bench -- guidance [--demo steerlm-demo] [--prompts 20] [--rounds 3] [--json]
 */
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Token } from "node-llama-cpp";
import type { AttributeValues } from "../data/attributes.js";
import { readRecords } from "../data/read.js";
import type { Conversation } from "../data/template.js";
import { getLlamaRuntime } from "../runtime/llama.js";
import { InputError } from "../util/errors.js";
import { quantile } from "../util/numbers.js";
import { SteerableModel } from "./model.js";

export interface GuidanceBenchOptions {
  /** The demo's output directory: model.gguf and data/test.jsonl. */
  demo: string;
  prompts?: number;
  rounds?: number;
  maxTokens?: number;
}

/** A mixed decoding measured against plain humor 3. */
const CASES: ReadonlyArray<{ name: string; attributes: AttributeValues; guidance: number }> = [
  { name: "guided, g = 1 (2 sequences)", attributes: { humor: 3 }, guidance: 1 },
  { name: "humor 2.5, g = 0 (2 sequences)", attributes: { humor: 2.5 }, guidance: 0 },
  { name: "humor 2.5, g = 1 (3 sequences)", attributes: { humor: 2.5 }, guidance: 1 },
];
const PLAIN: AttributeValues = { humor: 3 };

export interface Quartiles {
  median: number;
  q1: number;
  q3: number;
}

export interface GuidanceBenchResult {
  model: string;
  prompts: number;
  rounds: number;
  /** Load average (1 min) before and after. */
  load: [number, number];
  cases: Array<{ name: string; pairs: number; wall: Quartiles; cpu: Quartiles; tokens: number }>;
  /** node-llama-cpp alone: ms of CPU time per decoding step, medians of 2 × rounds + 1 runs of 150 steps. */
  floor: { one: number; two: number; twoWithProbabilities: number };
}

function quartiles(xs: readonly number[]): Quartiles {
  const s = [...xs].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), q1: quantile(s, 0.25), q3: quantile(s, 0.75) };
}

export async function benchGuidance(opts: GuidanceBenchOptions): Promise<GuidanceBenchResult> {
  const n = opts.prompts ?? 20;
  const rounds = opts.rounds ?? 3;
  const testFile = join(opts.demo, "data", "test.jsonl");
  const modelPath = join(opts.demo, "model.gguf");
  for (const file of [testFile, modelPath])
    if (!existsSync(file))
      throw new InputError(
        "missing: the guidance bench decodes a demo's model and held-out prompts",
        { file },
        `make one with \`npx steerlm demo -o ${opts.demo}\` (about 3 minutes; --quick: 30 s), or pass --demo <dir>`,
      );
  const conversations: Conversation[] = [];
  for await (const r of readRecords(testFile)) {
    if (r.turns.length !== 2) continue;
    conversations.push({
      system: r.system,
      turns: [{ role: "user", text: (r.turns[0] as { text: string }).text }],
    });
    if (conversations.length === n) break;
  }
  const model = await SteerableModel.load({ modelPath, parallel: 1, threads: 1 });
  const load0 = loadavg()[0] as number;
  try {
    const timed = async (conversation: Conversation, attributes: AttributeValues, guidance: number) => {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const r = await model.generate({
        conversation,
        attributes,
        guidance,
        maxTokens: opts.maxTokens ?? 200,
        temperature: 0,
      });
      const wall = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const tokens = r.usage.completionTokens;
      return { tokens, wall: tokens / wall, cpu: tokens / ((cpu.user + cpu.system) / 1e6) };
    };
    const cases: GuidanceBenchResult["cases"] = [];
    for (const c of CASES) {
      const wall: number[] = [];
      const cpu: number[] = [];
      let tokens = 0;
      let pair = 0;
      for (let round = 0; round < rounds; round++) {
        for (const conversation of conversations) {
          const mixedFirst = pair++ % 2 === 1;
          const mixedA = mixedFirst ? await timed(conversation, c.attributes, c.guidance) : undefined;
          const plain = await timed(conversation, PLAIN, 0);
          const mixed = mixedA ?? (await timed(conversation, c.attributes, c.guidance));
          wall.push(mixed.wall / plain.wall);
          cpu.push(mixed.cpu / plain.cpu);
          tokens += mixed.tokens;
        }
      }
      cases.push({ name: c.name, pairs: wall.length, wall: quartiles(wall), cpu: quartiles(cpu), tokens });
    }
    return {
      model: modelPath,
      prompts: conversations.length,
      rounds,
      load: [load0, loadavg()[0] as number],
      cases,
      floor: await stepFloor(modelPath, conversations[0] as Conversation, 2 * rounds + 1),
    };
  } finally {
    await model.dispose();
  }
}

/**
 * CPU ms per step of node-llama-cpp's own evaluations in lockstep (as guided.ts drives them), on the
 * user's text of `conversation`: one sequence, two, and two reading their probability lists.
 */
async function stepFloor(modelPath: string, conversation: Conversation, runs: number) {
  const llama = await getLlamaRuntime();
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const context = await model.createContext({ sequences: 2, contextSize: 512, threads: 1 });
  try {
    const sequences = [context.getSequence(), context.getSequence()];
    const prompt = model.tokenize((conversation.turns[0] as { text: string }).text);
    const steps = 150;
    const run = async (n: number, probabilities: boolean) => {
      await Promise.all(sequences.map((s) => s.clearHistory()));
      const evaluations = sequences
        .slice(0, n)
        .map((s) => s.evaluateWithMetadata(prompt, { probabilities }, { yieldEogToken: true }));
      const cpu0 = process.cpuUsage();
      let next = evaluations.map((e) => e.next());
      for (let i = 0; i < steps; i++) {
        const [first] = await Promise.all(next);
        const token = first?.done ? undefined : (first?.value.token as Token);
        next = evaluations.map((e) => e.next(token));
      }
      await Promise.all(next);
      await Promise.all(evaluations.map((e) => e.return()));
      const cpu = process.cpuUsage(cpu0);
      return (cpu.user + cpu.system) / 1000 / steps;
    };
    const variants = [
      [1, false],
      [2, false],
      [2, true],
    ] as const;
    const ms: number[][] = variants.map(() => []);
    for (let r = 0; r < runs; r++) for (const [k, [n, p]] of variants.entries()) ms[k]?.push(await run(n, p));
    const [one, two, twoWithProbabilities] = ms.map((xs) => quartiles(xs).median) as [number, number, number];
    return { one, two, twoWithProbabilities };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

const ratio = (q: Quartiles) => `${q.median.toFixed(2)}× (${q.q1.toFixed(2)}..${q.q3.toFixed(2)})`;

/** `npm run bench -- guidance ...`: prints the table (or JSON); returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      demo: { type: "string", default: "steerlm-demo" },
      prompts: { type: "string", default: "20" },
      rounds: { type: "string", default: "3" },
      json: { type: "boolean", default: false },
    },
  });
  const count = (flag: "prompts" | "rounds") => {
    const v = Number(values[flag]);
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`--${flag}: expected an integer ≥ 1, got ${values[flag]}`);
    return v;
  };
  const r = await benchGuidance({ demo: values.demo, prompts: count("prompts"), rounds: count("rounds") });
  if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else {
    const lines = [
      `${r.model}: ${r.prompts} prompts × ${r.rounds} rounds, greedy; mixed ÷ plain (humor 3) tokens/s, median (quartiles); load ${r.load[0].toFixed(1)} → ${r.load[1].toFixed(1)}`,
      "| | wall clock | CPU time (all threads) |",
      "|---|---|---|",
      ...r.cases.map((c) => `| ${c.name} | ${ratio(c.wall)} | ${ratio(c.cpu)} |`),
      `node-llama-cpp alone, CPU ms per step: one sequence ${r.floor.one.toFixed(3)}, two ${r.floor.two.toFixed(3)}, ` +
        `two with probability lists ${r.floor.twoWithProbabilities.toFixed(3)}`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return 0;
}
