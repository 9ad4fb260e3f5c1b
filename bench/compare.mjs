#!/usr/bin/env node
// Side-by-side training throughput and peak RSS: steerlm vs the PyTorch anchor (../shared/bench/torch_anchor.py),
// interleaved round by round so both see the same machine load. Prints each round and the medians.
//   node bench/compare.mjs m10 [rounds=3] [--threads 1,2]
//   node bench/compare.mjs smol135 [rounds=3] --lora [--bf16 --frozen bf16]
//   node bench/compare.mjs smol360,qwen05,llama1b 1 --lora   (several configurations, one after another)
// --anchor-threads N sets OPENBLAS_NUM_THREADS for the anchor (default: OpenBLAS's own, every core): on an
// oversubscribed machine both sides' spinning thread pools collapse, and one thread each is the fair pair.
// Needs `npm run build` and Debian's PyTorch (apt-get install -y python3-torch libopenblas0-pthread).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    lora: { type: "boolean", default: false },
    bf16: { type: "boolean", default: false },
    frozen: { type: "string" },
    threads: { type: "string", default: "1,2" },
    replicas: { type: "string" },
    steps: { type: "string" },
    "anchor-threads": { type: "string" },
  },
});
const [namesArg = "m10", roundsArg = "3"] = positionals;
const names = namesArg.split(",");
const rounds = Number(roundsArg);
const root = fileURLToPath(new URL("..", import.meta.url));
const anchor = fileURLToPath(new URL("../../shared/bench/torch_anchor.py", import.meta.url));
if (!existsSync(anchor)) throw new Error(`anchor not found: ${anchor}`);
// "r2" = two data-parallel replicas of one thread each
const threads = values.threads.split(",").map((t) => (t === "r2" ? t : Number(t)));

function ours(name, t) {
  // t: a thread count, or "r2" for two data-parallel replicas of one thread each
  const par = t === "r2" ? ["--threads", "1", "--replicas", "2"] : ["--threads", String(t)];
  const args = ["bin/bench.js", "train", name, "--json", ...par];
  if (values.lora) args.push("--lora");
  if (values.bf16) args.push("--bf16");
  if (values.frozen) args.push("--frozen", values.frozen);
  if (values.steps) args.push("--steps", values.steps);
  const out = execFileSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}
// The anchor run as it is, its peak RSS read by the interpreter that ran it (the shared file stays untouched).
const WRAPPER =
  "import resource, runpy, sys\n" +
  "sys.argv = sys.argv[1:]\n" +
  "runpy.run_path(sys.argv[0], run_name='__main__')\n" +
  "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n";
function torch(name) {
  const out = execFileSync(
    "/usr/bin/python3",
    ["-c", WRAPPER, anchor, name, "1", values.lora ? "lora" : "full"],
    {
      encoding: "utf8",
      env: values["anchor-threads"]
        ? { ...process.env, OPENBLAS_NUM_THREADS: values["anchor-threads"] }
        : process.env,
    },
  );
  const m = /= (\d+) tok\/s/.exec(out);
  const rss = /maxrss_kb (\d+)/.exec(out);
  if (!m || !rss) throw new Error(`cannot parse anchor output: ${out}`);
  return { tokens_per_s: Number(m[1]), peak_rss_mb: Number(rss[1]) / 1024 };
}
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const load = () => loadavg()[0].toFixed(1);
for (const name of names) {
  const keys = ["torch", ...threads.map((t) => `ours_t${t}`)];
  const res = Object.fromEntries(keys.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    const row = { torch: { ...torch(name), load: load() } };
    for (const t of threads) row[`ours_t${t}`] = { ...ours(name, t), load: load() };
    for (const k of keys) res[k].push(row[k]);
    console.log(
      `${name} round ${r + 1}: ${keys
        .map((k) => {
          const v = row[k];
          const mfu =
            // undefined for the anchor, null where no peak could be measured (no AVX2 or AVX-512)
            v.mfu == null ? "" : `, mfu ${v.mfu.toFixed(2)} (per CPU-s ${v.mfu_cpu.toFixed(2)})`;
          return `${k} ${Math.round(v.tokens_per_s)} tok/s, ${Math.round(v.peak_rss_mb)} MB${mfu} (load ${v.load})`;
        })
        .join("; ")}`,
    );
  }
  const tm = median(res.torch.map((v) => v.tokens_per_s));
  const trss = median(res.torch.map((v) => v.peak_rss_mb));
  for (const t of threads) {
    const rows = res[`ours_t${t}`];
    const ratios = rows.map((v, i) => v.tokens_per_s / res.torch[i].tokens_per_s);
    console.log(
      `${name}${values.lora ? " lora" : ""}${values.bf16 ? " bf16" : ""} threads=${t}: median ${Math.round(median(rows.map((v) => v.tokens_per_s)))} tok/s vs torch ${tm} tok/s; ` +
        `per-round ratios ${ratios.map((x) => x.toFixed(2)).join(" ")} (median ${median(ratios).toFixed(2)}x); ` +
        `peak RSS ${Math.round(median(rows.map((v) => v.peak_rss_mb)))} MB vs torch ${Math.round(trss)} MB`,
    );
  }
}
