import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApmScorer } from "../src/apm/index.js";
import { BUILTIN_SCHEMAS, toLabel } from "../src/data/attributes.js";
import { SteerableModel } from "../src/inference/index.js";
import { type SteerServer, startServer } from "../src/serve/index.js";
import { writeBench } from "../src/steerbench/jsonl.js";
import { synthesize } from "../src/steerbench/synth.js";
import { trainTinyApm, writeTinyInit } from "./fixtures.js";
import { haveSharedData, runCli, tempDir } from "./helpers.js";
import { writeSteerModel } from "./serve-fixture.js";

/**
 * `steerlm serve --apm`: POST /v1/steerlm/score gives, for each conversation's last reply, the labels
 * `steerlm annotate` writes for the same conversations (a real tiny APM, the real CLI for annotate).
 */
const dir = tempDir("steerlm-score-");
let model: SteerableModel;
let scorer: ApmScorer;
let server: SteerServer;
let plain: SteerServer;
type Message = { role: string; content: string };
let conversations: Message[][];

beforeAll(async () => {
  if (!haveSharedData) return;
  const bench = synthesize({ n: 60, seed: 11, multiTurnFraction: 0.3 });
  writeBench(dir.path, bench);
  const apm = join(dir.path, "apm");
  await trainTinyApm({ data: join(dir.path, "train.jsonl"), init: writeTinyInit(dir.path), out: apm });
  // Twelve held-out conversations, some multi-turn: more than one group of annotate's 8.
  conversations = [...bench.splits.validation, ...bench.splits.test, ...bench.splits.heldout]
    .slice(0, 12)
    .map((c) => [
      { role: "system", content: c.system },
      ...c.turns.map((t) => ({ role: t.role, content: t.text })),
    ]);
  expect(conversations.some((c) => c.length > 3)).toBe(true);
  model = await SteerableModel.load({
    modelPath: await writeSteerModel(dir.path, "steer.gguf"),
    maxQueue: 4,
  });
  scorer = await ApmScorer.load(apm, { threads: 1 });
  server = await startServer({ model, apm: scorer, port: 0, apiKey: "k" });
  plain = await startServer({ model, port: 0 });
});

afterAll(async () => {
  await server?.close();
  await plain?.close();
  await scorer?.free();
  await model?.dispose();
  dir.cleanup();
});

const post = async (url: string, body: unknown, key = "k") => {
  const res = await fetch(`${url}/v1/steerlm/score`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, never> };
};

describe.skipIf(!haveSharedData)("POST /v1/steerlm/score", () => {
  it("gives the labels steerlm annotate writes for the same conversations", async () => {
    const input = join(dir.path, "chat.jsonl");
    writeFileSync(input, conversations.map((messages) => `${JSON.stringify({ messages })}\n`).join(""));
    const out = join(dir.path, "annotated.jsonl");
    const a = await runCli(["annotate", input, "--apm", join(dir.path, "apm"), "-o", out, "--threads", "1"]);
    expect(a.code).toBe(0);
    const annotated = readFileSync(out, "utf8")
      .trimEnd()
      .split("\n")
      .map((line) => {
        const turns = JSON.parse(line).conversations as Array<{ label: string | null }>;
        return turns.at(-1)?.label;
      });

    const r = await post(server.url, { conversations });
    expect(r.status).toBe(200);
    const scores = r.body.scores as Array<{
      attributes: Record<string, number>;
      labels: Record<string, number>;
    }>;
    expect(scores).toHaveLength(conversations.length);
    const schema = BUILTIN_SCHEMAS.steerlm;
    scores.forEach((s, i) => {
      const label = schema.attributes.map((d) => `${d.name}:${s.labels[d.name]}`).join(",");
      expect({ i, label }).toEqual({ i, label: annotated[i] });
      // Labels are the raw predictions clamped and rounded half to even.
      for (const d of schema.attributes)
        expect(s.labels[d.name]).toBe(toLabel(d, s.attributes[d.name] as number));
    });
    // Not all alike: the APM reads the replies.
    expect(new Set(annotated).size).toBeGreaterThan(1);

    // One conversation as `messages`: the same as its place in a batch.
    const one = await post(server.url, { messages: conversations[0] });
    expect(one.status).toBe(200);
    expect((one.body.scores as unknown[])[0]).toEqual(scores[0]);

    // System (and developer) messages anywhere join into one system prompt, as the chat endpoint joins them
    const [u, reply] = [
      { role: "user", content: "Name a fruit." },
      { role: "assistant", content: "A pear." },
    ];
    const folded = await post(server.url, {
      conversations: [
        [{ role: "developer", content: "Be brief." }, u, { role: "system", content: "Be kind." }, reply],
        [{ role: "system", content: "Be brief.\nBe kind." }, u, reply],
        [u, reply],
      ],
    });
    expect(folded.status).toBe(200);
    const [late, joined, none] = folded.body.scores as Array<{ attributes: Record<string, number> }>;
    expect(late).toEqual(joined);
    expect(none?.attributes).not.toEqual(joined?.attributes); // the system prompt is read
  });

  it("refuses bad requests with the field, needs the key, and exists only with an APM", async () => {
    const bad = async (body: unknown) => {
      const r = await post(server.url, body);
      expect(r.status).toBe(400);
      return (r.body as { error: { message: string; param: string } }).error;
    };
    const user = { role: "user", content: "hi" };
    expect((await bad({ messages: [user] })).param).toBe("messages[0].role");
    expect(await bad({ conversations: [[user, { role: "assistant", content: "x" }], [user]] })).toMatchObject(
      {
        message: "the last message must come from the assistant",
        param: "conversations[1][0].role",
      },
    );
    expect((await bad({ messages: [], conversations: [] })).message).toMatch(
      /either "messages" or "conversations"/,
    );
    expect(
      (await bad({ conversations: Array(257).fill([user, { role: "assistant", content: "x" }]) })).param,
    ).toBe("conversations");
    expect((await bad({ messages: [user], model: "x" })).param).toBe("model");

    expect((await post(server.url, { messages: [user] }, "wrong")).status).toBe(401);
    expect((await post(plain.url, { messages: [user, { role: "assistant", content: "x" }] })).status).toBe(
      404,
    );

    const schema = async (url: string) =>
      (await (
        await fetch(`${url}/v1/steerlm/schema`, { headers: { authorization: "Bearer k" } })
      ).json()) as {
        apm: { attributes: Array<{ name: string }> } | null;
      };
    expect((await schema(server.url)).apm?.attributes.map((a) => a.name)).toEqual(
      BUILTIN_SCHEMAS.steerlm.attributes.map((a) => a.name),
    );
    expect((await schema(plain.url)).apm).toBeNull();
  });
});
