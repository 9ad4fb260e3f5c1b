import { existsSync, type FSWatcher, readdirSync, readFileSync, watch } from "node:fs";
import { join } from "node:path";
import { latestCheckpoint, readCheckpoint } from "../../src/run/checkpoint.js";
import { Rng } from "../../src/util/rng.js";
import { tinySftArgs } from "../../test/sft-helpers.js";
import { cli, type PartResult, startCli, Tally, tinyData } from "./common.js";

/**
 * SFT killed with SIGKILL at `kills` random moments and resumed after each: at a random step (plus a random
 * fraction of a step), or the moment a checkpoint's temporary file appears (mid-write). The run must resume
 * every time from a checkpoint that loads, and end with the weights, Adam moments and exported GGUF of an
 * uninterrupted run, byte for byte.
 */
export interface SftKillOptions {
  dir: string;
  seed: number;
  kills: number;
  steps: number;
  every: number;
}

const isTemp = (name: string) => /\.tmp-\d+-[0-9a-f]+$/.test(name);

function args(o: SftKillOptions, data: ReturnType<typeof tinyData>, out: string): string[] {
  return tinySftArgs(data, out, [
    "--steps",
    String(o.steps),
    "--checkpoint-every",
    String(o.every),
    "--keep-checkpoints",
    "2",
    "--eval-every",
    String(o.every * 4),
  ]);
}

const stepOf = (run: string): number => {
  const p = latestCheckpoint(run);
  return p === undefined ? 0 : readCheckpoint(p).header.step;
};

/**
 * Starts `argv` and SIGKILLs it: in "step" mode once it prints `step <target>/` and `jitterMs` more have
 * passed; in "write" mode when the `nth` checkpoint temporary file appears. Resolves with whether the kill
 * landed (false: the process ended first) and the temporary files left behind.
 */
async function runAndKill(
  argv: string[],
  run: string,
  how: { mode: "step"; target: number; jitterMs: number } | { mode: "write"; nth: number },
): Promise<{ killed: boolean; leftTemps: number; stderr: string }> {
  const p = startCli(argv);
  const ckDir = join(run, "checkpoints");
  let watcher: FSWatcher | undefined;
  let seen = 0;
  const kill = () => p.child.kill("SIGKILL");
  const poll = setInterval(() => {
    if (how.mode === "step") {
      if (p.stderr().includes(`step ${how.target}/`)) {
        clearInterval(poll);
        setTimeout(kill, how.jitterMs);
      }
    } else if (watcher === undefined && existsSync(ckDir)) {
      watcher = watch(ckDir, (_event, name) => {
        if (name !== null && isTemp(String(name)) && ++seen === how.nth) kill();
      });
    }
  }, 2);
  const r = await p.ended;
  clearInterval(poll);
  watcher?.close();
  const temps = existsSync(ckDir) ? readdirSync(ckDir).filter(isTemp).length : 0;
  return { killed: r.signal === "SIGKILL", leftTemps: temps, stderr: r.stderr };
}

export async function sftKill(o: SftKillOptions): Promise<PartResult> {
  const t = new Tally("sft SIGKILL + resume");
  const rng = new Rng(`sft-kill:${o.seed}`);
  const data = tinyData(o.dir, 60, 7);
  const straight = join(o.dir, "straight");
  const full = await cli(args(o, data, straight));
  if (full.code !== 0) throw new Error(`the uninterrupted sft run failed:\n${full.stderr}`);

  const run = join(o.dir, "killed");
  let inWrite = 0;
  for (let k = 0; k < o.kills; k++) {
    const at = stepOf(run);
    // killed before its first checkpoint, a run is started over with its own command (as --resume's hint says)
    const argv = latestCheckpoint(run) === undefined ? args(o, data, run) : ["sft", "--resume", "-o", run];
    // A third of the kills aim at a checkpoint being written (never the last one: a kill that lands just
    // after it would leave a finished run), the others at a random logged step plus a random fraction.
    const logEvery = Math.max(1, Math.round(o.steps / 20)); // how often sft logs a step
    // the last targets stay a few logged steps short of the end, so that no kill can come after it
    const steps = Math.max(logEvery, Math.floor((o.steps - 1) / logEvery) * logEvery - 2 * logEvery);
    const how =
      k % 3 === 2 && at < o.steps - 2 * o.every
        ? ({ mode: "write", nth: 1 } as const)
        : ({
            mode: "step",
            target: Math.min(
              steps,
              (Math.floor(at / logEvery) + rng.int(1, Math.ceil((2 * o.every) / logEvery))) * logEvery,
            ),
            jitterMs: rng.int(0, 60),
          } as const);
    const r = await runAndKill(argv, run, how);
    if (!t.check(r.killed, () => `kill ${k + 1} (${JSON.stringify(how)}): the run ended first:\n${r.stderr}`))
      continue;
    if (r.leftTemps > 0) inWrite++;
    // whatever the moment, the newest checkpoint on disk loads
    try {
      stepOf(run);
    } catch (err) {
      t.fail(`kill ${k + 1}: the newest checkpoint does not load: ${(err as Error).message}`);
    }
  }
  const last = await cli(
    latestCheckpoint(run) === undefined ? args(o, data, run) : ["sft", "--resume", "-o", run],
  );
  if (last.code !== 0) t.fail(`the final resume failed (${last.code}):\n${last.stderr}`);
  t.notes.push(
    `${inWrite} of ${o.kills} kills landed while a checkpoint was being written (a temporary file was left)`,
  );

  const same = await sameFinalState(straight, run, o.dir);
  if (same !== undefined) t.fail(same);
  else t.notes.push("final weights, Adam moments, data cursor and exported GGUF are byte-identical");
  return t.result();
}

/** undefined when both runs end in the same state and export the same GGUF; else what differs. */
async function sameFinalState(a: string, b: string, dir: string): Promise<string | undefined> {
  const ca = readCheckpoint(latestCheckpoint(a) as string);
  const cb = readCheckpoint(latestCheckpoint(b) as string);
  if (ca.header.step !== cb.header.step) return `final step ${cb.header.step}, expected ${ca.header.step}`;
  if (JSON.stringify(ca.header.cursor) !== JSON.stringify(cb.header.cursor)) return "the data cursor differs";
  for (const [role, ma, mb] of [
    ["weight", ca.weights, cb.weights],
    ["adam_m", ca.adamM, cb.adamM],
    ["adam_v", ca.adamV, cb.adamV],
  ] as const) {
    if (ma.size !== mb.size) return `${role}: ${mb.size} tensors, expected ${ma.size}`;
    for (const [name, wa] of ma) {
      const wb = mb.get(name);
      if (wb === undefined || !Buffer.from(wb.buffer).equals(Buffer.from(wa.buffer)))
        return `${role} ${name} differs`;
    }
  }
  const ga = join(dir, "straight.gguf");
  const gb = join(dir, "killed.gguf");
  for (const [run, gguf] of [
    [a, ga],
    [b, gb],
  ] as const) {
    const r = await cli(["export", "gguf", run, "-o", gguf]);
    if (r.code !== 0) return `export gguf ${run} failed:\n${r.stderr}`;
  }
  return readFileSync(ga).equals(readFileSync(gb)) ? undefined : "the exported GGUFs differ";
}
