import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Rng } from "../../src/util/rng.js";
import { cli, type PartResult, sleep, startCli, Tally } from "./common.js";

/**
 * A resumable job (`annotate`, `bootstrap`) killed with SIGKILL `kills` times at random moments and rerun after
 * each: at a random point of its progress (the sidecar's row count) plus a random fraction of a group, so
 * kills land while generating, while appending, while fsyncing and while the sidecar is replaced. The
 * finished output must be the uninterrupted run's, byte for byte: no duplicate and no missing row.
 */
export interface JobKillOptions {
  name: string;
  seed: number;
  kills: number;
  /** The job's arguments, given its output file. */
  args: (out: string) => string[];
  /** Input rows the job reads (the output has as many lines). */
  rows: number;
  /** The throttle (ms per group) that stretches the job so that kills land inside it. */
  env: Record<string, string>;
  jitterMs: number;
  dir: string;
}

const doneRows = (out: string): number => {
  try {
    return (JSON.parse(readFileSync(`${out}.partial.json`, "utf8")) as { rows: number }).rows;
  } catch {
    return 0; // not there yet, or being replaced this instant
  }
};

/** Starts the job, SIGKILLs it once `target` rows are recorded and `jitterMs` more have passed. */
async function runAndKill(
  o: JobKillOptions,
  out: string,
  target: number,
  jitterMs: number,
): Promise<{ killed: boolean; stderr: string }> {
  const p = startCli(o.args(out), o.env);
  let over = false;
  void p.ended.then(() => (over = true));
  while (!over && doneRows(out) < target) await sleep(5);
  if (!over) {
    await sleep(jitterMs);
    p.child.kill("SIGKILL");
  }
  const r = await p.ended;
  return { killed: r.signal === "SIGKILL", stderr: r.stderr };
}

export async function jobKill(o: JobKillOptions): Promise<PartResult> {
  const t = new Tally(`${o.name} SIGKILL + rerun`);
  const rng = new Rng(`${o.name}-kill:${o.seed}`);
  const whole = join(o.dir, `${o.name}-whole.jsonl`);
  const straight = await cli(o.args(whole));
  if (straight.code !== 0) throw new Error(`the uninterrupted ${o.name} failed:\n${straight.stderr}`);

  const out = join(o.dir, `${o.name}-killed.jsonl`);
  for (let k = 0; k < o.kills; k++) {
    const done = doneRows(out);
    // leave room for the kills still to come; the first may land before any row is done (model loading)
    const room = Math.max(1, Math.floor((o.rows - 1 - done) / (o.kills - k)));
    const target = k === 0 ? rng.int(0, room) : done + rng.int(1, room);
    const r = await runAndKill(o, out, Math.min(target, o.rows - 1), rng.int(0, o.jitterMs));
    t.check(r.killed, () => `kill ${k + 1} (after row ${target}): the job ended first:\n${r.stderr}`);
    if (existsSync(out)) t.fail(`kill ${k + 1}: a finished output appeared under the real name`);
  }
  const last = await cli(o.args(out), o.env);
  if (last.code !== 0) t.fail(`the final rerun failed (${last.code}):\n${last.stderr}`);
  else {
    const a = readFileSync(whole);
    const b = readFileSync(out);
    const rows = (x: Buffer) => x.toString("utf8").trimEnd().split("\n").length;
    if (rows(b) !== rows(a)) t.fail(`${rows(b)} rows, the uninterrupted run wrote ${rows(a)}`);
    if (!a.equals(b)) t.fail(`${out} differs from the uninterrupted run's ${whole}`);
    else t.notes.push(`${rows(b)} rows, byte-identical to the uninterrupted run`);
  }
  return t.result();
}
