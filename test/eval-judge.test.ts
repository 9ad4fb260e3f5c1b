import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  answerSet,
  buildReport,
  loadBench,
  readAnswers,
  readJudgePrompts,
  runJudgments,
} from "../src/eval/index.js";
import { haveSharedData, runCli, sharedData, tempDir } from "./helpers.js";

/**
 * `steerlm eval judge` and `eval report` end to end (the built CLI) against a fake OpenAI-compatible judge:
 * a node:http server on 127.0.0.1 that answers with canned verdict text decided from the prompt it got.
 */
type Msg = { role: string; content: string };
interface Fake {
  url: string;
  requests: Array<{ model: string; messages: Msg[]; temperature: number; max_tokens: number; auth?: string }>;
  reply: (messages: Msg[]) => string;
  server: Server;
}

async function startFakeJudge(): Promise<Fake> {
  const fake = { requests: [], reply: () => "" } as unknown as Fake;
  fake.server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      if (req.url !== "/v1/chat/completions" || req.method !== "POST") {
        res.writeHead(404).end();
        return;
      }
      if (req.headers.authorization === "Bearer wrong") {
        res.writeHead(401, { "content-type": "application/json" }).end('{"error":{"message":"bad key"}}');
        return;
      }
      const r = JSON.parse(body);
      fake.requests.push({ ...r, auth: req.headers.authorization });
      const content = fake.reply(r.messages);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
        }),
      );
    });
  });
  await new Promise<void>((r) => fake.server.listen(0, "127.0.0.1", r));
  fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}/v1`;
  return fake;
}

const fc = (...p: string[]) => sharedData("fastchat", ...p);
const lines = (path: string) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

describe.skipIf(!haveSharedData)("steerlm eval judge / report against a local fake judge", () => {
  const tmp = tempDir("steerlm-eval-judge-");
  let fake: Fake;
  const qFile = join(tmp.path, "question.jsonl");
  const longFile = join(tmp.path, "long.jsonl");
  const shortFile = join(tmp.path, "short.jsonl");
  const refs = () => fc("mt_bench", "reference_answer_gpt-4.jsonl");
  const judgeArgs = (...extra: string[]) => [
    "eval",
    "judge",
    "--bench",
    qFile,
    "--ref",
    refs(),
    "--judge-url",
    fake.url,
    "--judge-model",
    "fake-judge",
    "--fastchat-dir",
    fc(),
    ...extra,
  ];

  beforeAll(async () => {
    fake = await startFakeJudge();
    // three MT-Bench questions (writing; reasoning and math: judged against the GPT-4 references)
    const picked = readFileSync(fc("mt_bench", "question.jsonl"), "utf8")
      .split("\n")
      .filter((l) => [81, 101, 111].includes(JSON.parse(l || "{}").question_id));
    writeFileSync(qFile, `${picked.join("\n")}\n`);
    const answers = (model: string, mark: string) =>
      [81, 101, 111]
        .map((id) =>
          JSON.stringify({
            question_id: id,
            answer_id: `${model}-${id}`,
            model_id: model,
            choices: [
              { index: 0, turns: [`${mark} first answer to ${id}`, `${mark} second answer to ${id}`] },
            ],
            tstamp: 1,
          }),
        )
        .join("\n");
    writeFileSync(longFile, `${answers("long-model", "ZZLONG")}\n`);
    writeFileSync(shortFile, `${answers("short-model", "ZZSHORT")}\n`);
  });

  afterAll(async () => {
    await new Promise((r) => fake.server.close(r));
    tmp.cleanup();
  });

  it("single mode: FastChat judgment lines, reference judges for math/reasoning, unparseable verdicts recorded as -1", async () => {
    // Rate 8, except the turn-2 judgment of question 111 which has no verdict.
    fake.reply = (m) =>
      m[1]?.content.includes("ZZLONG second answer to 111")
        ? "I cannot decide."
        : "Good answer.\nRating: [[8]]";
    const out = join(tmp.path, "single.jsonl");
    const r = await runCli([...judgeArgs("--answers", longFile, "-o", out, "--api-key", "sk-test")]);
    expect(r.stderr).toContain("6 written (1 without a parseable verdict), 0 already there");
    expect(r.code).toBe(0);
    const js = lines(out);
    expect(js).toHaveLength(6);
    const names = js.map((j) => `${j.question_id}/${j.turn}/${j.judge[1]}`).sort();
    expect(names).toEqual([
      "101/1/single-math-v1",
      "101/2/single-math-v1-multi-turn",
      "111/1/single-math-v1",
      "111/2/single-math-v1-multi-turn",
      "81/1/single-v1",
      "81/2/single-v1-multi-turn",
    ]);
    for (const j of js) {
      expect(Object.keys(j)).toEqual(
        expect.arrayContaining([
          "question_id",
          "model",
          "judge",
          "user_prompt",
          "judgment",
          "score",
          "turn",
          "tstamp",
        ]),
      );
      expect(j.model).toBe("long-model");
      expect(j.judge[0]).toBe("fake-judge");
    }
    const bad = js.find((j) => j.question_id === 111 && j.turn === 2);
    expect(bad.score).toBe(-1);
    expect(bad.error).toMatch(/no \[\[rating\]\]/);
    // the reference answer went into the math judge's prompt, and the request was FastChat's
    const ref101 = lines(refs()).find((x) => x.question_id === 101).choices[0].turns;
    expect(js.find((j) => j.question_id === 101 && j.turn === 2).user_prompt).toContain(ref101[1]);
    expect(fake.requests[0]).toMatchObject({
      model: "fake-judge",
      temperature: 0,
      max_tokens: 2048,
      auth: "Bearer sk-test",
    });
    expect(fake.requests[0]?.messages.map((m) => m.role)).toEqual(["system", "user"]);

    // resumable: nothing left to do; then two lines lost are judged again
    const again = await runCli([...judgeArgs("--answers", longFile, "-o", out)]);
    expect(again.stderr).toContain("0 written (0 without a parseable verdict), 6 already there");
    writeFileSync(out, `${readFileSync(out, "utf8").split("\n").slice(0, 4).join("\n")}\n`);
    const resumed = await runCli([...judgeArgs("--answers", longFile, "-o", out)]);
    expect(resumed.stderr).toContain("2 written");
    expect(lines(out)).toHaveLength(6);

    const single = buildReport([out]).single;
    expect(single).toEqual([{ model: "long-model", turn1: 8, turn2: 8, average: 8, judged: 6, errors: 1 }]);
  });

  it("pair mode: both orders judged, winners mapped back to model_1/model_2, report counts a win only when both agree", async () => {
    // The fake judge prefers the ZZLONG answer wherever it is shown; on question 81 turn 1 it always says A.
    fake.reply = (m) => {
      const u = m[1]?.content ?? "";
      if (u.includes("first answer to 81") && !u.includes("second answer")) return "[[A]]";
      return u.indexOf("ZZLONG") < u.indexOf("ZZSHORT") ? "Explanation. [[A]]" : "Explanation. [[B]]";
    };
    const out = join(tmp.path, "pair.jsonl");
    const r = await runCli([
      ...judgeArgs("--answers", longFile, "--baseline", shortFile, "--mode", "pair", "-o", out),
    ]);
    expect(r.code).toBe(0);
    const js = lines(out);
    expect(js).toHaveLength(6);
    for (const j of js) {
      expect(j.model_1).toBe("long-model");
      expect(j.model_2).toBe("short-model");
      // game 1 shows model_1 as A, game 2 shows model_2 as A
      expect(j.g1_user_prompt.indexOf("ZZLONG")).toBeLessThan(j.g1_user_prompt.indexOf("ZZSHORT"));
      expect(j.g2_user_prompt.indexOf("ZZSHORT")).toBeLessThan(j.g2_user_prompt.indexOf("ZZLONG"));
    }
    const q81 = js.find((j) => j.question_id === 81 && j.turn === 1);
    expect([q81.g1_winner, q81.g2_winner]).toEqual(["model_1", "model_2"]); // position bias: inconsistent
    expect(js.filter((j) => j.g1_winner === "model_1" && j.g2_winner === "model_1")).toHaveLength(5);
    expect(new Set(js.map((j) => j.judge[1]))).toEqual(
      new Set(["pair-v2", "pair-v2-multi-turn", "pair-math-v1", "pair-math-v1-multi-turn"]),
    );
    const rep = buildReport([out], { baseline: "short-model" });
    const pair = rep.pair as NonNullable<typeof rep.pair>;
    expect(pair.rows).toEqual([
      {
        model: "long-model",
        win: 5,
        loss: 0,
        tie: 1,
        win_rate: 5 / 6,
        loss_rate: 0,
        win_rate_adjusted: 5.5 / 6,
      },
    ]);
    expect(pair.inconsistent).toBe(1);
    // Bradley-Terry with 2 models: the odds are wins/losses = 5.5/0.5 (a tie is half a win each)
    const elo = rep.elo as Record<string, number>;
    expect(elo["long-model"] - elo["short-model"]).toBeCloseTo(400 * Math.log10(11), 6);
    const text = await runCli(["eval", "report", out, "--baseline", "short-model"]);
    expect(text.stdout).toMatch(/long-model\s+5\s+0\s+1\s+0\.833/);
  });

  it("review mode: the legacy Vicuna prompt in both orders gives the % of ChatGPT total-score ratio", async () => {
    const vicuna = fc("vicuna_eval_legacy", "answer", "answer_vicuna-13b.jsonl");
    const gpt35 = fc("vicuna_eval_legacy", "answer", "answer_gpt35.jsonl");
    const between = (u: string, n: 1 | 2) => {
      const start = `[The Start of Assistant ${n}'s Answer]\n`;
      return u.slice(u.indexOf(start) + start.length, u.indexOf(`\n\n[The End of Assistant ${n}'s Answer]`));
    };
    // The longer answer gets 9, the shorter 6; one review (question 5, vicuna shown first) is malformed.
    const vic5 = lines(vicuna).find((a) => a.question_id === 5).text as string;
    fake.reply = (m) => {
      const u = m[1]?.content ?? "";
      const [a, b] = [between(u, 1).length, between(u, 2).length];
      if (between(u, 1) === vic5) return "Assistant 1 deserves an 8.";
      return `${a > b ? 9 : a < b ? 6 : 7} ${b > a ? 9 : b < a ? 6 : 7}\nThe longer one is better.`;
    };
    const out = join(tmp.path, "review.jsonl");
    const args = [
      "eval",
      "judge",
      "--bench",
      "vicuna",
      "--fastchat-dir",
      fc(),
      "--judge-url",
      fake.url,
      "--judge-model",
      "fake-judge",
      "--mode",
      "review",
      "--answers",
      vicuna,
      "--baseline",
      gpt35,
      "--parallel",
      "4",
      "-o",
      out,
    ];
    const r = await runCli(args);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("160 written (1 without a parseable verdict)");
    const reviews = lines(out);
    expect(reviews).toHaveLength(160);
    for (const x of reviews)
      expect(Object.keys(x)).toEqual(
        expect.arrayContaining([
          "review_id",
          "question_id",
          "answer1_id",
          "answer2_id",
          "text",
          "score",
          "reviewer_id",
          "metadata",
        ]),
      );
    expect(reviews.find((x) => x.question_id === 5 && x.metadata.model_1.startsWith("vicuna")).score).toEqual(
      [-1, -1],
    );

    // Independently from the two answer files: total of each model over both orders, the malformed one left out.
    const len = (f: string) => new Map(lines(f).map((a) => [a.question_id, (a.text as string).length]));
    const [lv, lg] = [len(vicuna), len(gpt35)];
    const s = (x: number, y: number) => (x > y ? 9 : x < y ? 6 : 7);
    let tv = 0;
    let tg = 0;
    for (const [q, v] of lv) {
      const g = lg.get(q) as number;
      tv += s(v, g) + (q === 5 ? 0 : s(v, g)); // vicuna-first order of q5 failed
      tg += s(g, v) + (q === 5 ? 0 : s(g, v));
    }
    const rep = await runCli(["eval", "report", out, "--baseline", "gpt-3.5-turbo:20230327", "--json"]);
    const review = JSON.parse(rep.stdout).review;
    const t = review.totals[0];
    const [vTot, gTot] = t.model_1.startsWith("vicuna") ? [t.total_1, t.total_2] : [t.total_2, t.total_1];
    expect([vTot, gTot]).toEqual([tv, tg]);
    expect(t.failed).toBe(1);
    expect(review.relative["vicuna-13b:20230322-clean-lang"].relative).toBeCloseTo(tv / tg, 12);

    // resuming a finished run asks nothing
    const before = fake.requests.length;
    const again = await runCli(args);
    expect(again.stderr).toContain("0 written (0 without a parseable verdict), 160 already there");
    expect(fake.requests.length).toBe(before);
  });

  it("pair mode without a baseline judges every pair of answer sets (FastChat's pairwise-all)", async () => {
    const midFile = join(tmp.path, "mid.jsonl");
    writeFileSync(midFile, readFileSync(shortFile, "utf8").replaceAll("short-model", "mid-model"));
    const out = join(tmp.path, "all-pairs.jsonl");
    const seen: string[] = [];
    const r = await runJudgments({
      bench: loadBench(qFile, { refFile: refs() }),
      mode: "pair",
      answers: [longFile, shortFile, midFile].map((f) => answerSet(f, readAnswers(f))),
      judge: async (m) => {
        seen.push(m[1]?.content ?? "");
        return "[[C]]";
      },
      judgeModel: "fn",
      judgePrompts: readJudgePrompts(fc("judge_prompts.jsonl")),
      output: out,
    });
    expect(r.written).toBe(3 * 3 * 2); // 3 pairs × 3 questions × 2 turns
    expect(seen).toHaveLength(36); // both orders
    const pairs = new Set(lines(out).map((j) => `${j.model_1}|${j.model_2}`));
    expect(pairs).toEqual(
      new Set(["long-model|short-model", "long-model|mid-model", "short-model|mid-model"]),
    );
    expect(lines(out).every((j) => j.g1_winner === "tie" && j.g2_winner === "tie")).toBe(true);
  });

  it("a rejected key stops with the judge's answer; a missing answer names the file", async () => {
    const r = await runCli([
      ...judgeArgs("--answers", longFile, "-o", join(tmp.path, "x.jsonl"), "--api-key", "wrong"),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HTTP 401: .*bad key/);
    expect(r.stderr).toContain("hint: check --api-key");
    writeFileSync(join(tmp.path, "partial.jsonl"), `${readFileSync(longFile, "utf8").split("\n")[0]}\n`);
    const m = await runCli([
      ...judgeArgs("--answers", join(tmp.path, "partial.jsonl"), "-o", join(tmp.path, "y.jsonl")),
    ]);
    expect(m.code).toBe(1);
    expect(m.stderr).toMatch(/partial\.jsonl: no answer to question 101/);
  });
});
