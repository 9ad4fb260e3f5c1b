import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { Worker } from "node:worker_threads";
import { quantile } from "../../src/util/numbers.js";
import { Rng } from "../../src/util/rng.js";
import { type PartResult, sleep, startCli, Tally } from "./common.js";

/**
 * Server soak: `steerlm serve` on a tiny model, `clients` concurrent clients for `seconds` sending a mix of
 * valid, streaming, aborted, malformed and oversized requests, plus `idleSockets` connections that never send
 * a byte. Zero 5xx, every malformed or oversized request a 4xx, the server's RSS (median of a 10-second
 * window) grows less than 10% from the first third of the run to its end, and `/health` (probed every 100 ms) answers with p99 under 100 ms.
 */
export interface SoakOptions {
  model: string;
  seconds: number;
  clients: number;
  idleSockets: number;
  seed: number;
  /** Whether the RSS-growth and /health p99 bounds are checked (measured and reported either way). */
  bounds: boolean;
}

export const MAX_RSS_GROWTH = 0.1;
export const MAX_HEALTH_P99_MS = 100;

type Kind =
  | "chat"
  | "stream"
  | "completion"
  | "aborted"
  | "badJson"
  | "wrongTypes"
  | "deepJson"
  | "badRoute"
  | "badRequestLine"
  | "garbage"
  | "oversized"
  | "longPrompt";

/** Kinds whose answer must be a 4xx. */
const MALFORMED = new Set<Kind>([
  "badJson",
  "wrongTypes",
  "deepJson",
  "badRoute",
  "badRequestLine",
  "garbage",
  "oversized",
  "longPrompt",
]);
const WEIGHTED: Kind[] = [
  ...Array<Kind>(4).fill("chat"),
  ...Array<Kind>(4).fill("stream"),
  ...Array<Kind>(2).fill("completion"),
  ...Array<Kind>(2).fill("aborted"),
  "badJson",
  "wrongTypes",
  "deepJson",
  "badRoute",
  "badRequestLine",
  "garbage",
  "oversized",
  "longPrompt",
];

const rssMb = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
};

/**
 * CPU seconds a process has used (user + system, all its threads): how much of the run the server got,
 * which tells a server too slow for its load from one that other processes kept off the cores.
 */
const cpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
};

const chatBody = (rng: Rng, stream: boolean, content = `Request ${rng.u32()}: tell me about the sea.`) =>
  JSON.stringify({
    messages: [{ role: "user", content }],
    max_tokens: rng.int(1, 16),
    temperature: 0.7,
    seed: rng.int(0, 1000),
    stream,
    steerlm: { attributes: { humor: rng.int(0, 4) } },
  });

/** A raw HTTP/1.1 exchange: `data` written as is; resolves with the response's status (0: none). */
function raw(port: number, data: string | Buffer): Promise<number> {
  return new Promise((ok) => {
    const s = connect(port, "127.0.0.1");
    let got = "";
    const done = (status: number) => {
      clearTimeout(timer);
      s.destroy();
      ok(status);
    };
    const timer = setTimeout(() => done(0), 30_000);
    s.on("connect", () => s.write(data));
    s.on("data", (d) => {
      got += d.toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      if (m) done(Number(m[1]));
    });
    s.on("error", () => done(0));
    s.on("close", () => done(0));
  });
}

/** One request of `kind`; resolves with its status (0: the connection failed, -1: aborted on purpose). */
async function request(url: string, port: number, kind: Kind, rng: Rng): Promise<number> {
  const post = (path: string, body: string | Buffer, signal?: AbortSignal) =>
    fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body, signal });
  const drain = async (res: Response) => {
    await res.arrayBuffer();
    return res.status;
  };
  switch (kind) {
    case "chat":
      return drain(await post("/v1/chat/completions", chatBody(rng, false)));
    case "stream": {
      const res = await post("/v1/chat/completions", chatBody(rng, true));
      const text = await res.text();
      // a 200 stream that stops before [DONE] is a server failure, counted as a 5xx
      return res.status === 200 && !text.endsWith("data: [DONE]\n\n") ? 599 : res.status;
    }
    case "completion":
      return drain(
        await post(
          "/v1/completions",
          JSON.stringify({ prompt: "Once upon a time", max_tokens: rng.int(1, 16) }),
        ),
      );
    case "aborted": {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), rng.int(0, 200));
      try {
        const res = await post("/v1/chat/completions", chatBody(rng, rng.chance(0.5)), ac.signal);
        await res.arrayBuffer();
        return res.status;
      } catch {
        return -1;
      }
    }
    case "badJson":
      return drain(await post("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi"'));
    case "wrongTypes":
      return drain(
        await post(
          "/v1/chat/completions",
          JSON.stringify(
            rng.pick([
              { messages: "hi" },
              { messages: [{ role: 7 }] },
              { messages: [], max_tokens: -1 },
              [1, 2],
            ]),
          ),
        ),
      );
    case "deepJson":
      return drain(
        await post("/v1/chat/completions", `{"messages":${"[".repeat(50_000)}${"]".repeat(50_000)}}`),
      );
    case "badRoute":
      return drain(await fetch(`${url}/v1/${rng.pick(["nothing", "chat/completions/x", "..%2f..%2fetc"])}`));
    case "badRequestLine":
      return raw(
        port,
        rng.pick(["GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n", "GET /health HTTP/9.9\r\n\r\n"]),
      );
    case "garbage":
      return raw(port, Buffer.from(Array.from({ length: 64 }, () => rng.int(0, 255))));
    case "oversized":
      return drain(await post("/v1/chat/completions", Buffer.alloc(2 * 1024 * 1024 + 1, 0x20)));
    case "longPrompt":
      return drain(await post("/v1/chat/completions", chatBody(rng, false, "sea ".repeat(200_000))));
  }
}

/**
 * `/health` probed every 100 ms for `ms` from a thread of its own: the 64 clients keep this process's event
 * loop busy (building 800 KB prompts, reading streams), and a probe timed on it would measure the clients'
 * queue, not the server's. Latencies in ms; Infinity for a probe that got no answer.
 */
function probeHealth(url: string, ms: number): Promise<number[]> {
  const code = `
    const { parentPort, workerData: { url, ms } } = require("node:worker_threads");
    (async () => {
      const out = [];
      const end = performance.now() + ms;
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          const res = await fetch(url + "/health");
          await res.arrayBuffer();
          out.push(performance.now() - t0);
        } catch {
          out.push(Infinity);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      parentPort.postMessage(out);
    })();`;
  const worker = new Worker(code, { eval: true, workerData: { url, ms } });
  return new Promise((ok, fail) => {
    worker.once("message", (out: number[]) => {
      void worker.terminate();
      ok(out);
    });
    worker.once("error", fail);
  });
}

export async function serverSoak(o: SoakOptions): Promise<PartResult> {
  const t = new Tally("server soak");
  const p = startCli(["serve", "-m", o.model, "--port", "0", "--parallel", "4"]);
  const url = await new Promise<string>((ok, fail) => {
    const poll = setInterval(() => {
      const m = /at (http:\/\/\S+)/.exec(p.stderr());
      if (m) {
        clearInterval(poll);
        ok(m[1] as string);
      }
    }, 20);
    void p.ended.then((r) => {
      clearInterval(poll);
      fail(new Error(`steerlm serve exited (${r.code}) before listening:\n${r.stderr}`));
    });
  });
  const port = Number(new URL(url).port);
  const pid = p.child.pid as number;

  // idle sockets: connect, send nothing, note when the server closes them
  const idle: Socket[] = [];
  let idleClosed = 0;
  for (let i = 0; i < o.idleSockets; i++) {
    const s = connect(port, "127.0.0.1");
    s.on("error", () => undefined);
    s.on("close", () => idleClosed++);
    idle.push(s);
  }

  const status: Record<string, number> = {};
  let fiveXx = 0;
  let malformedNot4xx = 0;
  let failedConnections = 0;
  const started = performance.now();
  const cpuAtStart = cpuSeconds(pid);
  const end = started + o.seconds * 1000;
  const rss: Array<{ s: number; mb: number }> = [];
  const health: number[] = [];
  let serverDied = false;
  void p.ended.then(() => (serverDied = true));

  const sampler = (async () => {
    while (performance.now() < end && !serverDied) {
      rss.push({ s: (performance.now() - started) / 1000, mb: rssMb(pid) });
      await sleep(1000);
    }
  })();
  const prober = probeHealth(url, o.seconds * 1000).then((ms) => health.push(...ms));
  const client = async (c: number) => {
    const rng = new Rng(`soak:${o.seed}:${c}`);
    while (performance.now() < end && !serverDied) {
      const kind = rng.pick(WEIGHTED);
      let code: number;
      try {
        code = await request(url, port, kind, rng);
      } catch {
        code = 0;
      }
      const key = code === -1 ? "aborted" : code === 0 ? "no response" : String(code);
      status[key] = (status[key] ?? 0) + 1;
      const bad5xx = code >= 500;
      const badMalformed = MALFORMED.has(kind) && !(code >= 400 && code < 500);
      const noAnswer = code === 0;
      if (bad5xx) fiveXx++;
      if (badMalformed) malformedNot4xx++;
      if (noAnswer) failedConnections++;
      t.check(!bad5xx && !badMalformed && !noAnswer, () => `${kind}: ${key}`);
    }
  };
  await Promise.all([sampler, prober, ...Array.from({ length: o.clients }, (_, c) => client(c))]);
  const serverCpu = cpuSeconds(pid) - cpuAtStart;
  const wall = (performance.now() - started) / 1000;
  const stillOpen = idle.filter((s) => !s.destroyed).length;
  const closedByServer = idleClosed;
  const diedDuring = serverDied;
  for (const s of idle) s.destroy();
  p.child.kill("SIGTERM");
  await p.ended;

  const sorted = health.filter(Number.isFinite).sort((a, b) => a - b);
  const p99 = quantile(sorted, 0.99);
  // Medians of 10-second windows, not two samples: the GC frees 800 KB prompts and 2 MB bodies in waves,
  // and one sample can land on a crest and the other in a trough (single samples moved -6% to +19% between
  // runs of the same code); a leak lifts the whole window.
  const around = (from: number, to: number) =>
    quantile(
      rss
        .filter((r) => r.s >= from && r.s < to)
        .map((r) => r.mb)
        .sort((a, b) => a - b),
      0.5,
    );
  const third = around(o.seconds / 3 - 5, o.seconds / 3 + 5);
  const last = around(o.seconds - 10, o.seconds + 1);
  const growth = (last - third) / third;
  const mbs = rss.map((r) => r.mb);
  t.notes.push(
    `${t.runs} requests ${JSON.stringify(status)}; ${fiveXx} 5xx, ${malformedNot4xx} malformed not answered 4xx, ${failedConnections} without a response`,
    `RSS median ${third.toFixed(0)} MB around ${Math.round(o.seconds / 3)} s -> ${last.toFixed(0)} MB in the last 10 s (${(growth * 100).toFixed(1)}%, bound ${MAX_RSS_GROWTH * 100}%); samples ${Math.min(...mbs).toFixed(0)}-${Math.max(...mbs).toFixed(0)} MB`,
    `/health p50 ${quantile(sorted, 0.5).toFixed(1)} ms, p99 ${p99.toFixed(1)} ms (bound ${MAX_HEALTH_P99_MS}), ${health.length - sorted.length} failed probes`,
    `${o.idleSockets} idle sockets: ${closedByServer} closed by the server, ${stillOpen} still open at the end`,
    `the server used ${serverCpu.toFixed(1)} CPU seconds in ${wall.toFixed(1)} s (${((100 * serverCpu) / wall).toFixed(0)}% of one core), ${(t.runs / wall).toFixed(0)} requests/s`,
  );
  if (diedDuring) t.fail("the server died during the soak");
  if (o.bounds && !(growth < MAX_RSS_GROWTH))
    t.fail(`RSS grew ${(growth * 100).toFixed(1)}% (bound ${MAX_RSS_GROWTH * 100}%)`);
  if (o.bounds && !(p99 < MAX_HEALTH_P99_MS))
    t.fail(`/health p99 ${p99.toFixed(1)} ms (bound ${MAX_HEALTH_P99_MS} ms)`);
  if (sorted.length < health.length) t.fail(`${health.length - sorted.length} /health probes got no answer`);
  return t.result();
}
