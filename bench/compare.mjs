#!/usr/bin/env node
// Side-by-side training throughput: steerlm vs the PyTorch anchor (../shared/bench/torch_anchor.py),
// interleaved round by round so both see the same machine load. Prints each round and the medians.
//   node bench/compare.mjs m10 [rounds=3] [--threads 1,2]
//   node bench/compare.mjs smol135 [rounds=3] --lora [--bf16 --frozen bf16]
// Needs `npm run build` and Debian's PyTorch (apt-get install -y python3-torch libopenblas0-pthread).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
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
  },
});
const [name = "m10", roundsArg = "3"] = positionals;
const rounds = Number(roundsArg);
const root = fileURLToPath(new URL("..", import.meta.url));
const anchor = fileURLToPath(new URL("../../shared/bench/torch_anchor.py", import.meta.url));
if (!existsSync(anchor)) throw new Error(`anchor not found: ${anchor}`);
// "r2" = two data-parallel replicas of one thread each
const threads = values.threads.split(",").map((t) => (t === "r2" ? t : Number(t)));

function ours(t) {
  // t: a thread count, or "r2" for two data-parallel replicas of one thread each
  const par = t === "r2" ? ["--threads", "1", "--replicas", "2"] : ["--threads", String(t)];
  const args = ["bin/bench.js", "train", name, "--json", ...par];
  if (values.lora) args.push("--lora");
  if (values.bf16) args.push("--bf16");
  if (values.frozen) args.push("--frozen", values.frozen);
  const out = execFileSync(process.execPath, args, { cwd: root, encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop());
}
function torch() {
  const out = execFileSync("/usr/bin/python3", [anchor, name, "1", values.lora ? "lora" : "full"], {
    encoding: "utf8",
  });
  const m = /= (\d+) tok\/s/.exec(out);
  if (!m) throw new Error(`cannot parse anchor output: ${out}`);
  return Number(m[1]);
}
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const res = { torch: [], ...Object.fromEntries(threads.map((t) => [`ours_t${t}`, []])) };
for (let r = 0; r < rounds; r++) {
  const row = { torch: torch() };
  for (const t of threads) row[`ours_t${t}`] = Math.round(ours(t).tokens_per_s);
  for (const [k, v] of Object.entries(row)) res[k].push(v);
  const load = (await import("node:os")).loadavg()[0].toFixed(1);
  console.log(
    `round ${r + 1}: ${Object.entries(row)
      .map(([k, v]) => `${k} ${v} tok/s`)
      .join(", ")} (load ${load})`,
  );
}
const tm = median(res.torch);
for (const t of threads) {
  const k = `ours_t${t}`;
  const ratios = res[k].map((v, i) => v / res.torch[i]);
  console.log(
    `${name}${values.lora ? " lora" : ""}${values.bf16 ? " bf16" : ""} threads=${t}: median ${median(res[k])} tok/s vs torch ${tm} tok/s; per-round ratios ${ratios.map((x) => x.toFixed(2)).join(" ")} (median ${median(ratios).toFixed(2)}x)`,
  );
}
