import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import {
  haveSharedData,
  runCli,
  runCliAndKill,
  sidecarRows,
  startCli,
  startServe,
  tempDir,
  waitUntil,
} from "./helpers.js";
import { writeSteerModel } from "./serve-fixture.js";

// The real CLI end to end: `apm train`, then `annotate` killed with SIGKILL mid-run and resumed.
const dir = tempDir("steerlm-apm-cli-");
const run = join(dir.path, "run");
let input: string;

beforeAll(async () => {
  writeBench(dir.path, synthesize({ n: 60, seed: 5, multiTurnFraction: 0.2 }));
  input = join(dir.path, "train.jsonl");
  const init = join(dir.path, "model.yaml");
  writeFileSync(init, "hiddenSize: 32\nnumLayers: 1\nnumHeads: 2\nffnSize: 64\n");
  const r = await runCli([
    "apm",
    "train",
    "--data",
    input,
    "--val",
    join(dir.path, "test.jsonl"),
    "--init",
    init,
    "--tokenizer-vocab-size",
    "300",
    "--seq-len",
    "96",
    "--batch-size",
    "4",
    "--steps",
    "3",
    "--threads",
    "1",
    "-o",
    run,
  ]);
  expect(r.stderr).toContain("9 outputs");
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).apm).toMatch(/step-000003\.ckpt$/);
});
afterAll(() => dir.cleanup());

const annotateArgs = (out: string, extra: string[] = []) => [
  "annotate",
  input,
  "--apm",
  run,
  "-o",
  out,
  "--batch-size",
  "4",
  "--threads",
  "1",
  ...extra,
];

/** Starts the job slowed down, and SIGKILLs it once its sidecar records at least `rows` rows. */
const annotateAndKill = (out: string, rows: number) =>
  runCliAndKill(annotateArgs(out), out, rows, { STEERLM_ANNOTATE_THROTTLE_MS: "150" });

describe("steerlm annotate", () => {
  it("resumes after SIGKILL and ends byte for byte like an uninterrupted run", async () => {
    const whole = join(dir.path, "whole.jsonl");
    const r = await runCli(annotateArgs(whole));
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout);
    const lines = readFileSync(whole, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(summary.rows);
    expect(summary.rows).toBe(readFileSync(input, "utf8").trimEnd().split("\n").length);

    const out = join(dir.path, "killed.jsonl");
    const done = await annotateAndKill(out, 8);
    expect(existsSync(out)).toBe(false); // never a half file under the real name
    // a torn line, as a kill in the middle of a write leaves it
    appendFileSync(`${out}.partial`, '{"system": "Answer the us');
    const again = await runCli(annotateArgs(out));
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).resumedRows).toBe(done);
    expect(readFileSync(out).equals(readFileSync(whole))).toBe(true);
    expect(existsSync(`${out}.partial`) || existsSync(`${out}.partial.json`)).toBe(false);

    // finished output: refused without --overwrite
    const third = await runCli(annotateArgs(out));
    expect(third.code).toBe(1);
    expect(third.stderr).toContain(`${out}: the output already exists`);
  });

  it("a second annotate on the same output fails at once, naming the first", async () => {
    const out = join(dir.path, "twice.jsonl");
    const first = startCli(annotateArgs(out), { STEERLM_ANNOTATE_THROTTLE_MS: "5000" });
    await waitUntil(() => existsSync(`${out}.partial.json`), first.ended);
    const second = await runCli(annotateArgs(out));
    first.child.kill("SIGKILL");
    expect((await first.ended).signal).toBe("SIGKILL");
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain(
      `steerlm: ${out}: is in use by another steerlm process: pid ${first.child.pid}`,
    );
    // the lock of the killed run is stale: a rerun takes it over and finishes
    const again = await runCli(annotateArgs(out));
    expect(again.code, again.stderr).toBe(0);
  });

  it("refuses to resume with other settings or changed rows, naming the field", async () => {
    const out = join(dir.path, "changed.jsonl");
    await annotateAndKill(out, 4);
    const r = await runCli(annotateArgs(out, ["--batch-size", "2"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${out}.partial.json: batchSize: 2 differs from the partial run's 4`);

    const edited = join(dir.path, "edited.jsonl");
    const rows = readFileSync(input, "utf8").split("\n");
    rows[1] = rows[1]?.replace("Answer the user's question.", "Answer briefly.") ?? "";
    writeFileSync(edited, rows.join("\n"));
    const partial = readFileSync(`${out}.partial`);
    const sidecar = JSON.parse(readFileSync(`${out}.partial.json`, "utf8"));
    const out2 = join(dir.path, "edited.out.jsonl");
    writeFileSync(`${out2}.partial`, partial);
    writeFileSync(`${out2}.partial.json`, JSON.stringify({ ...sidecar, input: edited }));
    const e = await runCli([
      "annotate",
      edited,
      "--apm",
      run,
      "-o",
      out2,
      "--batch-size",
      "4",
      "--threads",
      "1",
    ]);
    expect(e.code).toBe(1);
    expect(e.stderr).toContain(`${edited}: the first ${sidecar.rows} rows differ`);
  });

  it("names the file, line and field of a bad input row", async () => {
    const bad = join(dir.path, "bad.jsonl");
    const rows = readFileSync(input, "utf8").split("\n").slice(0, 3);
    rows[2] = rows[2]?.replace('"from":"User"', '"from":"Robot"') ?? "";
    writeFileSync(bad, `${rows.join("\n")}\n`);
    const r = await runCli(["annotate", bad, "--apm", run, "-o", join(dir.path, "bad.out.jsonl")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${bad}:3: conversations\\[0\\]\\.from`));
  });

  it("refuses an engine for a regression APM, and engine settings without an engine, naming the flags", async () => {
    const out = join(dir.path, "engine.jsonl");
    const r = await runCli(annotateArgs(out, ["--backend", "http://127.0.0.1:9"]));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /step-000003\.ckpt: --backend: a regression APM predicts with its head, which no engine serves/,
    );
    const alone = await runCli(annotateArgs(out, ["--concurrency", "2"]));
    expect(alone.code).toBe(1);
    expect(alone.stderr).toContain("--concurrency: applies to a remote engine only");
    const remoteThreads = await runCli([
      "annotate",
      input,
      "--backend",
      "http://127.0.0.1:9",
      "--threads",
      "2",
      "-o",
      out,
    ]);
    expect(remoteThreads.code).toBe(1);
    expect(remoteThreads.stderr).toContain("--threads: applies to a local APM only");
  });
});

describe.skipIf(!haveSharedData)("steerlm annotate --backend <steerlm serve --apm>", () => {
  it("writes the local run's bytes, though the server is killed mid-run and started again", async () => {
    const local = join(dir.path, "local.jsonl");
    expect((await runCli(annotateArgs(local))).code).toBe(0);
    // The server batches 8 conversations per forward pass (its default), annotate sends 4 per request;
    // the key goes as every engine's does.
    const model = await writeSteerModel(dir.path, "steer.gguf");
    const serveArgs = ["-m", model, "--apm", run, "--threads", "1", "--api-key", "k"];
    const env = { STEERLM_BACKEND_API_KEY: "k" };
    const first = await startServe([...serveArgs, "--port", "0"]);
    const remoteArgs = (out: string, url: string, extra: string[] = []) => [
      "annotate",
      input,
      "-o",
      out,
      "--batch-size",
      "4",
      "--backend",
      url,
      "--concurrency",
      "2",
      ...extra,
    ];
    const out = join(dir.path, "remote.jsonl");
    const job = runCli(remoteArgs(out, first.url, ["--retries", "12"]), {
      env: { ...env, STEERLM_ANNOTATE_THROTTLE_MS: "300" },
    });
    await sidecarRows(out, 8);
    await first.stop("SIGKILL");
    const again = await startServe([...serveArgs, "--port", String(first.port)]);
    try {
      const r = await job;
      expect(r.stderr).not.toContain("internal error");
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/cannot reach the engine \(ECONNREFUSED\); retry \d+ of 12/);
      expect(readFileSync(out).equals(readFileSync(local))).toBe(true);

      // Killed itself and run again, it resumes from its own record against the server.
      const killed = join(dir.path, "remote-killed.jsonl");
      const done = await runCliAndKill(remoteArgs(killed, again.url), killed, 8, {
        ...env,
        STEERLM_ANNOTATE_THROTTLE_MS: "150",
      });
      const resumed = await runCli(remoteArgs(killed, again.url), { env });
      expect(resumed.code).toBe(0);
      expect(JSON.parse(resumed.stdout).resumedRows).toBe(done);
      expect(readFileSync(killed).equals(readFileSync(local))).toBe(true);

      // --only-unlabeled and --schema as here: every other row without labels, two attributes written.
      const half = join(dir.path, "half.jsonl");
      const rows = readFileSync(input, "utf8").trimEnd().split("\n");
      const stripped = rows.map((l, i) => (i % 2 ? l.replace(/"label": ?"[^"]*"/g, '"label": null') : l));
      expect(stripped.join("\n")).not.toBe(rows.join("\n"));
      writeFileSync(half, `${stripped.join("\n")}\n`);
      const schema = join(dir.path, "two.json");
      writeFileSync(
        schema,
        JSON.stringify({
          name: "two",
          attributes: [
            { name: "humor", min: 0, max: 4 },
            { name: "helpfulness", min: 0, max: 4 },
          ],
        }),
      );
      const extra = ["--only-unlabeled", "--schema", schema];
      const here = join(dir.path, "half.local.jsonl");
      const there = join(dir.path, "half.remote.jsonl");
      const h = await runCli(["annotate", half, "--apm", run, "-o", here, "--threads", "1", ...extra]);
      expect(h.code).toBe(0);
      const t = await runCli(["annotate", half, "-o", there, "--backend", again.url, ...extra], { env });
      expect(t.stderr).not.toContain("internal error");
      expect(t.code).toBe(0);
      expect(readFileSync(there, "utf8")).toBe(readFileSync(here, "utf8"));
      expect(JSON.parse(t.stdout).turns).toBe(JSON.parse(h.stdout).turns);

      // Without the key the server refuses at once (a 401 is not retried).
      const noKey = await runCli(remoteArgs(join(dir.path, "nokey.jsonl"), again.url));
      expect(noKey.code).toBe(1);
      expect(noKey.stderr).toContain("HTTP 401");
    } finally {
      await again.stop();
    }
  }, 300_000);

  it("refuses a server without an APM, and no APM at all, saying what to give", async () => {
    const plain = await startServe(["-m", await writeSteerModel(dir.path, "plain.gguf"), "--port", "0"]);
    try {
      const r = await runCli(["annotate", input, "-o", join(dir.path, "none.jsonl"), "--backend", plain.url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("the server has no APM (steerlm serve without --apm)");
    } finally {
      await plain.stop();
    }
    const alone = await runCli(["annotate", input, "-o", join(dir.path, "none.jsonl")]);
    expect(alone.code).toBe(1);
    expect(alone.stderr).toContain("--apm: no APM to annotate with");
  });
});
