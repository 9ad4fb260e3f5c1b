/**
 * Single stream, on a random-weight model with a 4k context (built here, big enough that a long prompt costs
 * something): time to the first token of a request with a 2,000-token system prompt and a short user turn,
 * and of the next request with the same system prompt (prompt caching); and decode tokens/s of one stream
 * through the server ÷ node-llama-cpp's own `evaluate` loop on the same GGUF with the same context
 * settings, measured alternately.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Token, TokenBias } from "node-llama-cpp";
import { getLlamaRuntime } from "../runtime/llama.js";
import { quantile } from "../util/numbers.js";
import { type RandomModelShape, writeRandomLlama } from "./bench-model.js";
import { startServe, TINY_MODEL } from "./bench-server.js";

/** The single-stream model: about 19M parameters (16M of them the 32k vocabulary's two tables). */
export const STREAM_MODEL: RandomModelShape = { hiddenSize: 256, numLayers: 4, contextLength: 4096 };

export interface StreamBenchOptions {
  /** Timed requests of each kind. Default 7. */
  rounds?: number;
  /** Tokens each decode run generates. Default 256. */
  decodeTokens?: number;
  /** CPU threads of the server and of node-llama-cpp alike. Default 1. */
  threads?: number;
}

export interface StreamBenchResult {
  model: string;
  contextSize: number;
  threads: number;
  systemPromptTokens: number;
  /** Time to the first token (a one-token reply, not streamed), medians over the rounds. */
  firstTokenMs: { first: number; second: number; ratio: number };
  /**
   * Generated tokens per second after the first, of `tokens`-token completions: node-llama-cpp's own loop,
   * the server streaming them, and the server answering them whole (the time of a one-token answer
   * taken off). `ratio`: the server ÷ node-llama-cpp.
   */
  decode: { tokens: number; llama: Rates; streamed: Rates & Ratio; whole: Rates & Ratio };
}

/**
 * Tokens per second of wall-clock time, the best round (a loaded machine only ever slows a run down) and
 * the median one; and per second of CPU time of the process that generates (the server's, from /proc;
 * node-llama-cpp's, this process's), the median round: on a shared machine the steadier measure of
 * what each token costs.
 */
export interface Rates {
  best: number;
  median: number;
  cpu: number;
}
export interface Ratio {
  ratio: Rates;
}

/** A moment of a run: wall-clock seconds and CPU seconds of the process that generates. */
interface Mark {
  wall: number;
  cpu: number;
}
/** Tokens per second between two marks, by wall clock and by CPU time. */
interface Run {
  wall: number;
  cpu: number;
}
const mark = (cpu: () => number): Mark => ({ wall: performance.now() / 1000, cpu: cpu() });
const rate = (tokens: number, from: Mark, to: Mark): Run => ({
  wall: tokens / (to.wall - from.wall),
  cpu: tokens / (to.cpu - from.cpu),
});

/** CPU seconds (user + system, all threads) a process has used: /proc/<pid>/stat, in ticks of 1/100 s. */
function cpuSeconds(pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The fields after the command name (which may hold spaces): state is the first, utime the 12th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const median = (xs: readonly number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

async function post(url: string, path: string, body: object): Promise<Response> {
  const res = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
  return res;
}

export async function benchStream(opts: StreamBenchOptions = {}): Promise<StreamBenchResult> {
  const rounds = opts.rounds ?? 7;
  const decodeTokens = opts.decodeTokens ?? 256;
  const threads = opts.threads ?? 1;
  const contextSize = STREAM_MODEL.contextLength;
  const dir = mkdtempSync(join(tmpdir(), "steerlm-bench-serve-"));
  const model = join(dir, "random-4k.gguf");
  try {
    await writeRandomLlama(model, TINY_MODEL, STREAM_MODEL);
    const llama = await getLlamaRuntime();
    const raw = await llama.loadModel({ modelPath: model, gpuLayers: 0 });
    // A system prompt of about 2,000 tokens: numbered rules, so no two sentences are the same.
    const words = [
      "salt",
      "bread",
      "lamp",
      "river",
      "copper",
      "violin",
      "garden",
      "stone",
      "winter",
      "paper",
    ];
    let system = "";
    for (let i = 0; raw.tokenize(system).length < 2000; i++)
      system += `Rule ${i}: the ${words[i % 10]} must be ${words[(i * 3 + 1) % 10]} before the ${words[(i * 7 + 2) % 10]} is served. `;
    const systemPromptTokens = raw.tokenize(system).length;
    // No end of generation: every decode run makes all its tokens.
    const eos = raw.tokens.eos;
    const logitBias = eos === null ? {} : { [eos]: -100 };
    const { child, url } = await startServe(model, 1, [
      ...["--context-size", String(contextSize), "--threads", String(threads)],
      ...["--max-tokens-cap", String(contextSize)],
    ]);
    try {
      const firstToken = async (session: number, question: string) => {
        const t0 = performance.now();
        await post(url, "/v1/chat/completions", {
          messages: [
            { role: "system", content: `Session ${session}. ${system}` },
            { role: "user", content: question },
          ],
          max_tokens: 1,
          temperature: 0,
        });
        return performance.now() - t0;
      };
      const firsts: number[] = [];
      const seconds: number[] = [];
      for (let r = 0; r < rounds; r++) {
        // A new session's system prompt shares nothing cached; the second request shares it all.
        firsts.push(await firstToken(r, "Which rule comes first?"));
        seconds.push(await firstToken(r, "And which one comes last?"));
      }
      const text = "Once upon a time, in a kitchen by the sea,";
      const server = () => cpuSeconds(child.pid);
      const here = () => {
        const { user, system } = process.cpuUsage();
        return (user + system) / 1e6;
      };
      const streamed = async (): Promise<Run> => {
        const res = await post(url, "/v1/completions", {
          prompt: text,
          max_tokens: decodeTokens,
          temperature: 0,
          logit_bias: logitBias,
          stream: true,
          stream_options: { include_usage: true },
        });
        let first: Mark | undefined;
        let sse = "";
        const decoder = new TextDecoder();
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          sse += decoder.decode(chunk, { stream: true });
          first ??= /"text":"[^"]/.test(sse) ? mark(server) : undefined;
        }
        const end = mark(server);
        const tokens = Number(/"completion_tokens":(\d+)/.exec(sse)?.[1]);
        if (first === undefined || tokens !== decodeTokens)
          throw new Error(`the server made ${tokens} tokens, not ${decodeTokens}`);
        return rate(tokens - 1, first, end);
      };
      const answer = async (maxTokens: number): Promise<Mark> => {
        const res = await post(url, "/v1/completions", {
          prompt: text,
          max_tokens: maxTokens,
          temperature: 0,
          logit_bias: logitBias,
        });
        const { usage } = (await res.json()) as { usage: { completion_tokens: number } };
        if (usage.completion_tokens !== maxTokens)
          throw new Error(`the server made ${usage.completion_tokens} tokens, not ${maxTokens}`);
        return mark(server);
      };
      const whole = async (): Promise<Run> => {
        const start = mark(server);
        const one = await answer(1);
        const all = await answer(decodeTokens);
        // The time of the one-token answer, taken off the whole one's.
        const offset = { wall: one.wall - start.wall, cpu: one.cpu - start.cpu };
        return rate(decodeTokens - 1, { wall: one.wall + offset.wall, cpu: one.cpu + offset.cpu }, all);
      };
      const context = await raw.createContext({ sequences: 1, contextSize, threads, flashAttention: false });
      const sequence = context.getSequence();
      const bias = new TokenBias(raw.tokenizer);
      if (eos !== null) bias.set(eos, "never");
      const prompt = [...(raw.tokens.bos === null ? [] : [raw.tokens.bos]), ...raw.tokenize(text)];
      const llamaDecode = async (): Promise<Run> => {
        await sequence.clearHistory();
        let n = 0;
        let first = mark(here);
        for await (const _ of sequence.evaluate(prompt as Token[], { temperature: 0, tokenBias: bias })) {
          if (++n === 1) first = mark(here);
          if (n === decodeTokens) break;
        }
        return rate(n - 1, first, mark(here));
      };
      const runs = { llama: [] as Run[], streamed: [] as Run[], whole: [] as Run[] };
      // In turn, each first in its turn: the machine's load shifts over a run.
      const order = [llamaDecode, streamed, whole];
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < order.length; k++) {
          const run = order[(r + k) % order.length] as () => Promise<Run>;
          const result = await run();
          if (run === llamaDecode) runs.llama.push(result);
          else (run === streamed ? runs.streamed : runs.whole).push(result);
        }
      }
      await context.dispose();
      const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
      const [first, second] = [median(firsts), median(seconds)];
      const rates = (xs: Run[]): Rates => ({
        best: round(Math.max(...xs.map((x) => x.wall))),
        median: round(median(xs.map((x) => x.wall))),
        cpu: round(median(xs.map((x) => x.cpu))),
      });
      const llama = rates(runs.llama);
      const against = (xs: Run[]): Rates & Ratio => {
        const r = rates(xs);
        const ratio = (k: keyof Rates) => round(r[k] / llama[k], 3);
        return { ...r, ratio: { best: ratio("best"), median: ratio("median"), cpu: ratio("cpu") } };
      };
      return {
        model: `random ${STREAM_MODEL.hiddenSize}x${STREAM_MODEL.numLayers} F16, 32k vocabulary`,
        contextSize,
        threads,
        systemPromptTokens,
        firstTokenMs: { first: round(first), second: round(second), ratio: round(second / first, 3) },
        decode: {
          tokens: decodeTokens,
          llama,
          streamed: against(runs.streamed),
          whole: against(runs.whole),
        },
      };
    } finally {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
      await raw.dispose();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rates = (r: Rates) => `${r.best} / ${r.median}, ${r.cpu}`;

export function formatStreamBench(r: StreamBenchResult): string {
  return (
    `serve, one stream: ${r.model}, context ${r.contextSize}, ${r.threads} thread(s)\n` +
    `  first token, ${r.systemPromptTokens}-token system prompt + short user turn: first request ` +
    `${r.firstTokenMs.first} ms, second ${r.firstTokenMs.second} ms = ${r.firstTokenMs.ratio}x (target <= 0.2)\n` +
    `  decode, ${r.decode.tokens}-token completions, tokens/s: wall clock best / median, CPU time; target >= 0.95x\n` +
    `    node-llama-cpp evaluate loop ${rates(r.decode.llama)}\n` +
    `    steerlm serve, streamed      ${rates(r.decode.streamed)} = ${rates(r.decode.streamed.ratio)} x\n` +
    `    steerlm serve, whole answer  ${rates(r.decode.whole)} = ${rates(r.decode.whole.ratio)} x\n`
  );
}
