/**
 * Annotation throughput against llama.cpp's prefill: `npm run bench -- annotate [--threads N]
 * [--conversations 200] [--min-tokens 64] [--max-tokens 512] [--rounds 2] [--json]`.
 *
 * A regression APM of SmolLM2-135M's shape (random f32 weights, nine outputs) scores random token
 * sequences of a uniform length mix the way `steerlm annotate` does (ApmPredictor: sorted by length,
 * batches of 8, the same lookahead); its base is exported as an F32 GGUF (writeLlamaGguf, the exporter's
 * writer: the regression head has no place in a GGUF) and node-llama-cpp evaluates the same sequences,
 * prompt processing only, each in one batch on one context sequence, with the same thread count. The
 * two alternate `rounds` times in one process, so load on the machine falls on both; the best round of
 * each is reported, with its CPU time (the process's, all threads) beside the wall time: on a loaded
 * machine the CPU-time ratio says more. Tokenization and file I/O are outside both timings. Peak RSS is the process's
 * after our first round, before llama.cpp is loaded.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Token } from "node-llama-cpp";
import { Backend } from "../ggml/backend.js";
import { loadLlamaModel } from "../gguf/llama-cpp.js";
import { GGUF_TOKEN_TYPE, type GgufVocab } from "../gguf/vocab.js";
import { resolveLlamaConfig } from "../model/config.js";
import { writeLlamaGguf } from "../model/llama-gguf.js";
import { LlamaModel } from "../model/model.js";
import { llamaTensorSpecs } from "../model/weights.js";
import { BYTE_SYMBOLS } from "../tokenizer/byte-level.js";
import { BENCH_CONFIGS } from "../train/bench.js";
import { Rng } from "../util/rng.js";
import { ApmPredictor } from "./model.js";
import { ANNOTATE_DEFAULTS, LOCAL_GROUPS_AT_ONCE } from "./score.js";

export interface AnnotateBenchOptions {
  threads?: number;
  conversations?: number;
  minTokens?: number;
  maxTokens?: number;
  rounds?: number;
}

export interface AnnotateBenchResult {
  model: "smol135";
  outputs: number;
  conversations: number;
  tokens: number;
  min_tokens: number;
  max_tokens: number;
  batch_size: number;
  threads: number;
  rounds: number;
  cpu: string;
  /** Wall seconds of the best round. */
  ours_s: number;
  ours_tokens_per_s: number;
  /** CPU seconds (all threads, user + system) of the same round: less sensitive to other load. */
  ours_cpu_s: number;
  llama_cpp_s: number;
  llama_cpp_tokens_per_s: number;
  llama_cpp_cpu_s: number;
  /** ours ÷ llama.cpp tokens/s, wall time (target ≥ 0.9). */
  ratio: number;
  /** The same from CPU time. */
  ratio_cpu: number;
  peak_rss_mb: number;
}

/** Nine outputs: the steerlm schema's attributes. */
const OUTPUTS = 9;

/**
 * A GGUF vocabulary of `size` tokens llama.cpp loads: the 256 byte symbols, one merge, and unused
 * placeholders (the bench passes token ids, so no text is ever tokenized).
 */
function placeholderVocab(size: number): GgufVocab {
  const tokens = [...BYTE_SYMBOLS, "Ġt"];
  const tokenTypes: number[] = tokens.map(() => GGUF_TOKEN_TYPE.normal);
  for (let i = tokens.length; i < size; i++) {
    tokens.push(`[UNUSED_${i}]`);
    tokenTypes.push(GGUF_TOKEN_TYPE.unused);
  }
  return {
    model: "gpt2",
    pre: "default",
    tokens,
    tokenTypes,
    merges: ["Ġ t"],
    bosId: null,
    eosId: null,
    unkId: null,
    padId: null,
    addBos: false,
  };
}

interface Timing {
  wall: number;
  cpu: number;
}

async function timed(work: () => Promise<void>): Promise<Timing> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6 };
}

export async function benchAnnotate(opts: AnnotateBenchOptions = {}): Promise<AnnotateBenchResult> {
  const n = opts.conversations ?? 200;
  const lo = opts.minTokens ?? 64;
  const hi = opts.maxTokens ?? 512;
  const rounds = opts.rounds ?? 2;
  const B = ANNOTATE_DEFAULTS.batchSize;
  const cfg = resolveLlamaConfig({ ...BENCH_CONFIGS.smol135.model, ropeTheta: 10000, rmsNormEps: 1e-5 });
  const rng = new Rng(1);
  const seqs = Array.from({ length: n }, () =>
    Int32Array.from({ length: rng.int(lo, hi) }, () => rng.int(0, cfg.vocabSize - 1)),
  );
  const tokens = seqs.reduce((s, q) => s + q.length, 0);
  const backend = new Backend(opts.threads);
  const threads = backend.info.threads;
  const dir = mkdtempSync(join(tmpdir(), "steerlm-bench-annotate-"));
  try {
    const model = await LlamaModel.create(backend, cfg, null, { seed: 0, regressionOutputs: OUTPUTS });
    const predictor = new ApmPredictor(backend, model, B, hi);
    const window = LOCAL_GROUPS_AT_ONCE * B; // annotate predicts this many turns at a time (one a record here)
    const ours = () =>
      timed(async () => {
        for (let i = 0; i < seqs.length; i += window) predictor.predict(seqs.slice(i, i + window));
      });
    const ourTimes = [await ours()];
    const peakRssMb = process.resourceUsage().maxRSS / 1024;

    const gguf = join(dir, "smol135-base.gguf");
    const weights = new Map(llamaTensorSpecs(cfg).map((s) => [s.name, model.getWeight(s.name)]));
    await writeLlamaGguf(gguf, {
      config: cfg,
      vocab: placeholderVocab(cfg.vocabSize),
      weights,
      type: "F32",
      name: "smol135-apm-base",
    });
    weights.clear();
    const { model: ref } = await loadLlamaModel(gguf);
    const llamaTimes: Timing[] = [];
    try {
      const ctx = await ref.createContext({ contextSize: hi + 8, batchSize: hi, threads });
      try {
        const seq = ctx.getSequence();
        const llama = () =>
          timed(async () => {
            for (const s of seqs) {
              await seq.clearHistory();
              await seq.evaluateWithoutGeneratingNewTokens(Array.from(s) as Token[]);
            }
          });
        llamaTimes.push(await llama());
        for (let r = 1; r < rounds; r++) {
          ourTimes.push(await ours());
          llamaTimes.push(await llama());
        }
      } finally {
        await ctx.dispose();
      }
    } finally {
      await ref.dispose();
      predictor.free();
      model.free();
    }
    const best = (times: Timing[]) => times.reduce((a, b) => (b.wall < a.wall ? b : a));
    const o = best(ourTimes);
    const l = best(llamaTimes);
    return {
      model: "smol135",
      outputs: OUTPUTS,
      conversations: n,
      tokens,
      min_tokens: lo,
      max_tokens: hi,
      batch_size: B,
      threads,
      rounds,
      cpu: cpus()[0]?.model ?? "unknown",
      ours_s: o.wall,
      ours_tokens_per_s: tokens / o.wall,
      ours_cpu_s: o.cpu,
      llama_cpp_s: l.wall,
      llama_cpp_tokens_per_s: tokens / l.wall,
      llama_cpp_cpu_s: l.cpu,
      ratio: l.wall / o.wall,
      ratio_cpu: l.cpu / o.cpu,
      peak_rss_mb: peakRssMb,
    };
  } finally {
    backend.free();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `npm run bench -- annotate …` (bin/bench.js); returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      threads: { type: "string" },
      conversations: { type: "string" },
      "min-tokens": { type: "string" },
      "max-tokens": { type: "string" },
      rounds: { type: "string" },
      json: { type: "boolean", default: false },
    },
  });
  const int = (flag: keyof typeof values) => {
    const text = values[flag];
    if (text === undefined || typeof text !== "string") return undefined;
    const v = Number(text);
    if (!Number.isInteger(v) || v < 1)
      throw new RangeError(`--${flag}: expected an integer ≥ 1, got ${text}`);
    return v;
  };
  const r = await benchAnnotate({
    threads: int("threads"),
    conversations: int("conversations"),
    minTokens: int("min-tokens"),
    maxTokens: int("max-tokens"),
    rounds: int("rounds"),
  });
  if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else
    process.stdout.write(
      `annotate smol135 APM (random f32 weights, ${r.outputs} outputs): ${r.conversations} conversations of ${r.min_tokens}..${r.max_tokens} tokens (${r.tokens} in all), batch ${r.batch_size}, ${r.threads} threads, best of ${r.rounds}, ${r.cpu}\n` +
        `  steerlm annotate: ${r.ours_s.toFixed(2)} s (cpu ${r.ours_cpu_s.toFixed(2)} s) = ${r.ours_tokens_per_s.toFixed(0)} tokens/s, peak RSS ${r.peak_rss_mb.toFixed(0)} MB\n` +
        `  llama.cpp prefill: ${r.llama_cpp_s.toFixed(2)} s (cpu ${r.llama_cpp_cpu_s.toFixed(2)} s) = ${r.llama_cpp_tokens_per_s.toFixed(0)} tokens/s\n` +
        `  ratio ${r.ratio.toFixed(2)} (cpu time: ${r.ratio_cpu.toFixed(2)}; target ≥ 0.9)\n`,
    );
  return 0;
}
