import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  bradleyTerry,
  bradleyTerryDefined,
  FASTCHAT_TEMPERATURES,
  formatTemplate,
  judgedTurns,
  judgePromptName,
  type LegacyReview,
  legacyReviewMessages,
  type Outcome,
  type PairJudgment,
  pairJudgeMessages,
  parseLegacyScores,
  parsePairVerdict,
  parseRating,
  parseTwoRatings,
  readAnswers,
  readJudgePrompts,
  readLegacyPrompts,
  readLegacyReviewers,
  readQuestions,
  readReviews,
  relativeTo,
  reviewNamesFor,
  scoreTotals,
  singleJudgeMessages,
  summarizePairs,
  summarizeSingle,
  temperatureFor,
} from "../src/eval/index.js";
import { InputError } from "../src/util/errors.js";
import { haveSharedData, sharedData } from "./helpers.js";

const fc = (...p: string[]) => sharedData("fastchat", ...p);
const legacyReviewDir = fc("vicuna_eval_legacy", "review", "vicuna-13b_20230322-clean-lang");

describe("verdict parsing (FastChat's rules)", () => {
  it("[[rating]] with the single-bracket fallback; nothing parseable is an error", () => {
    expect(parseRating("Explanation... Rating: [[7]]")).toEqual({ ok: true, value: 7 });
    expect(parseRating("Rating: [[8.5]] and later [[2]]")).toEqual({ ok: true, value: 8.5 });
    // double brackets anywhere win over an earlier single-bracket number
    expect(parseRating("see [3] ... Rating: [[6]]")).toEqual({ ok: true, value: 6 });
    expect(parseRating("Rating: [9]")).toEqual({ ok: true, value: 9 });
    const bad = parseRating("I would rate it a nine.");
    expect(bad.ok).toBe(false);
  });

  it("[[A]]/[[B]]/[[C]] tested in FastChat's order; [[a,b]] ratings with the tie delta", () => {
    expect(parsePairVerdict("... [[B]]")).toEqual({ ok: true, value: "B" });
    expect(parsePairVerdict("... [[C]]")).toEqual({ ok: true, value: "tie" });
    expect(parsePairVerdict("not [[B]] but [[A]]")).toEqual({ ok: true, value: "A" });
    expect(parsePairVerdict("A is better").ok).toBe(false);
    expect(parseTwoRatings("[[8, 6]]")).toEqual({ ok: true, value: "A" });
    expect(parseTwoRatings("[[7.05,7]]")).toEqual({ ok: true, value: "tie" });
    expect(parseTwoRatings("[3,9]")).toEqual({ ok: true, value: "B" });
  });

  it("legacy first line: 'a b' or 'a, b'; anything else is an error", () => {
    expect(parseLegacyScores("9 8.5\nBoth...")).toEqual({ ok: true, value: [9, 8.5] });
    expect(parseLegacyScores("7,6\n...")).toEqual({ ok: true, value: [7, 6] });
    expect(parseLegacyScores("8, 4\n...").ok).toBe(false); // ", " becomes two spaces: three parts, as in FastChat
    expect(parseLegacyScores("Assistant 1: 8\nAssistant 2: 6").ok).toBe(false);
    expect(parseLegacyScores("\n8 6").ok).toBe(false);
  });
});

describe("formatTemplate (Python str.format)", () => {
  it("fills fields once, keeps escapes, refuses missing fields", () => {
    expect(formatTemplate("[{q}] {{x}} {a}", { q: "1", a: "{q}" })).toBe("[1] {x} {q}");
    expect(() => formatTemplate("{missing}", {})).toThrow(InputError);
    expect(() => formatTemplate("a } b", {})).toThrow(/single '\}'/);
  });
});

describe.skipIf(!haveSharedData)("FastChat files (../shared/data/fastchat)", () => {
  const vicuna = haveSharedData ? readQuestions(fc("vicuna_bench", "question.jsonl")) : [];
  const mt = haveSharedData ? readQuestions(fc("mt_bench", "question.jsonl")) : [];
  const mtRefs = haveSharedData ? readAnswers(fc("mt_bench", "reference_answer_gpt-4.jsonl")) : new Map();
  const prompts = haveSharedData ? readJudgePrompts(fc("judge_prompts.jsonl")) : new Map();

  it("reads the questions, reference answers and judge prompts", () => {
    expect(vicuna).toHaveLength(80);
    expect(vicuna.every((q) => q.turns.length === 1)).toBe(true);
    expect(mt).toHaveLength(80);
    expect(mt.every((q) => q.turns.length === 2)).toBe(true);
    expect(mt.find((q) => q.question_id === 101)?.reference).toBeDefined();
    expect(mtRefs.size).toBe(30);
    expect(mtRefs.get("101")?.choices[0]?.turns).toHaveLength(2);
    expect(
      readAnswers(fc("vicuna_bench", "reference_answer_gpt-4.jsonl")).get("61")?.choices[0]?.turns,
    ).toHaveLength(1);
    expect([...prompts.keys()].sort()).toEqual(
      [
        "pair-math-v1",
        "pair-math-v1-multi-turn",
        "pair-v2",
        "pair-v2-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
        "single-v1",
        "single-v1-multi-turn",
      ].sort(),
    );
  });

  it("chooses judges as gen_judgment.py does: reference judges for math/reasoning/coding, turn 2 for 2-turn questions", () => {
    const count = new Map<string, number>();
    for (const q of mt)
      for (const t of judgedTurns(q)) {
        const n = judgePromptName("single", q.category, t);
        count.set(n, (count.get(n) ?? 0) + 1);
      }
    expect(Object.fromEntries(count)).toEqual({
      "single-v1": 50,
      "single-math-v1": 30,
      "single-v1-multi-turn": 50,
      "single-math-v1-multi-turn": 30,
    });
    expect(
      vicuna
        .flatMap((q) => judgedTurns(q).map((t) => judgePromptName("pair", q.category, t)))
        .filter((n) => n === "pair-math-v1"),
    ).toHaveLength(10);
  });

  it("fills single-v1 and the multi-turn math template with every field, as FastChat does", () => {
    const q1 = vicuna[0];
    const answer = {
      question_id: 1,
      answer_id: "x",
      model_id: "m",
      choices: [{ index: 0, turns: ["Make a {plan} and stick to it."] }],
      tstamp: 0,
    };
    const single = prompts.get("single-v1");
    const msgs = singleJudgeMessages(single, q1, answer, 1);
    expect(msgs[0]).toEqual({ role: "system", content: "You are a helpful assistant." });
    // the expected text, built by plain substitution of the two fields
    const expected = single.prompt_template
      .split("{question}")
      .join(q1?.turns[0])
      .split("{answer}")
      .join(answer.choices[0]?.turns[0]);
    expect(msgs[1]?.content).toBe(expected);
    expect(msgs[1]?.content).toContain("Make a {plan} and stick to it.");

    const q101 = mt.find((q) => q.question_id === 101);
    const two = {
      ...answer,
      question_id: 101,
      choices: [{ index: 0, turns: ["second place", "third place"] }],
    };
    const mm = singleJudgeMessages(prompts.get("single-math-v1-multi-turn"), q101, two, 2, mtRefs.get("101"));
    const ref = mtRefs.get("101")?.choices[0]?.turns as string[];
    expect(mm[0]?.content).toBe(prompts.get("single-math-v1-multi-turn").system_prompt);
    for (const s of [q101?.turns[0], q101?.turns[1], ref[0], ref[1], "second place", "third place"])
      expect(mm[1]?.content).toContain(s);
    expect(mm[1]?.content).not.toMatch(/\{[a-z_0-9]+\}/);

    const pm = pairJudgeMessages(
      prompts.get("pair-v2"),
      q1,
      answer,
      { ...answer, model_id: "b", choices: [{ index: 0, turns: ["B's"] }] },
      1,
    );
    expect(pm[1]?.content).toMatch(
      /\[The Start of Assistant A's Answer\]\nMake a \{plan\}.*\n\[The End of Assistant A's Answer\]\n\n\[The Start of Assistant B's Answer\]\nB's\n/s,
    );
  });

  it("answers at FastChat's per-category temperatures on request (0.7 for categories it does not list)", () => {
    const t = (qs: typeof mt) => qs.map((q) => temperatureFor(q, "fastchat"));
    expect(
      new Set(t(mt.filter((q) => ["math", "coding", "reasoning", "extraction"].includes(q.category)))),
    ).toEqual(new Set([0]));
    expect(temperatureFor(mt.find((q) => q.category === "stem") as (typeof mt)[number], "fastchat")).toBe(
      FASTCHAT_TEMPERATURES.stem,
    );
    expect(new Set(t(vicuna.filter((q) => q.category === "generic")))).toEqual(new Set([0.7]));
    expect(temperatureFor(vicuna[0] as (typeof vicuna)[number], 0.3)).toBe(0.3);
  });

  it("reads the legacy table: answers in the old format, reviewers and prompts chosen by category", () => {
    const gpt35 = readAnswers(fc("vicuna_eval_legacy", "answer", "answer_gpt35.jsonl"));
    expect(gpt35.size).toBe(80);
    expect(gpt35.get("1")?.model_id).toBe("gpt-3.5-turbo:20230327");
    expect(gpt35.get("1")?.choices[0]?.turns[0]).toMatch(
      /^Here are some tips to improve your time management/,
    );
    const reviewers = readLegacyReviewers(fc("vicuna_eval_legacy", "reviewer.jsonl"));
    const lp = readLegacyPrompts(fc("vicuna_eval_legacy", "prompt.jsonl"));
    const legacyQs = readQuestions(fc("vicuna_eval_legacy", "question.jsonl"));
    const byId = new Map(legacyQs.map((q) => [q.question_id, q]));
    const m = (id: number) =>
      legacyReviewMessages(reviewers, lp, byId.get(id)?.category as string, "Q", "A1", "A2");
    expect(m(1).reviewer.reviewer_id).toBe("gpt-4-0328-default"); // "generic" has no reviewer: the first one
    expect(m(61).reviewer.reviewer_id).toBe("gpt-4-0328-coding");
    expect(m(68).reviewer.reviewer_id).toBe("gpt-4-0328-math");
    const user = m(1).messages[1]?.content as string;
    expect(
      user.startsWith(
        "[Question]\nQ\n\n[The Start of Assistant 1's Answer]\nA1\n\n[The End of Assistant 1's Answer]",
      ),
    ).toBe(true);
    expect(user).toContain(lp[0]?.defaults.prompt as string);
    expect(m(1).messages[0]?.content).toBe(
      "You are a helpful and precise assistant for checking the quality of the answer.",
    );
  });

  it("re-parses every real review's first line: equal to its stored score, or an error (the 12 math reviews fixed by hand)", () => {
    const failed: Array<[string, number | string]> = [];
    let agreed = 0;
    for (const f of readdirSync(legacyReviewDir)) {
      for (const r of readReviews(join(legacyReviewDir, f))) {
        const p = parseLegacyScores(r.text);
        if (p.ok) {
          expect(p.value).toEqual(r.score);
          agreed++;
        } else failed.push([f, r.question_id]);
      }
    }
    expect(agreed).toBe(308);
    expect(failed).toHaveLength(12);
    expect(new Set(failed.map(([, q]) => q))).toEqual(new Set([68, 69, 70]));
  });

  it("total scores and % of ChatGPT from the real reviews = the raw sums = the Vicuna blog's Table 2", () => {
    const files = readdirSync(legacyReviewDir).map((f) => join(legacyReviewDir, f));
    const reviews: Array<{ r: LegacyReview; names: [string, string] }> = [];
    for (const f of files) for (const r of readReviews(f)) reviews.push({ r, names: reviewNamesFor(f)(r) });
    const totals = scoreTotals(
      reviews.map((x) => x.r),
      (r) => reviews.find((x) => x.r === r)?.names as [string, string],
    );
    // Independently: sum the raw JSON numbers of each file.
    const raw = new Map<string, [number, number]>();
    for (const f of readdirSync(legacyReviewDir)) {
      let a = 0;
      let b = 0;
      for (const line of readFileSync(join(legacyReviewDir, f), "utf8").split("\n")) {
        if (!line) continue;
        const s = JSON.parse(line).score as number[];
        a += s[0] as number;
        b += s[1] as number;
      }
      raw.set((/^review_([^_]+)_/.exec(f) as RegExpExecArray)[1] as string, [a, b]);
    }
    for (const t of totals) {
      expect(t.model_2).toBe("vicuna-13b");
      expect([t.total_1, t.total_2]).toEqual(raw.get(t.model_1));
      expect(t.failed).toBe(0);
      expect(t.reviews).toBe(80);
    }
    // lm-sys/lm-sys.github.io blog/2023-03-30-vicuna.md, Table 2 (baseline score, Vicuna score)
    const table2: Record<string, [number, number]> = {
      "llama-13b": [513.0, 694.0],
      "alpaca-13b": [583.0, 704.0],
      bard: [664.0, 655.5],
      gpt35: [693.0, 638.0],
    };
    for (const t of totals) expect([t.total_1, t.total_2]).toEqual(table2[t.model_1]);
    const vsGpt = totals.find((t) => t.model_1 === "gpt35");
    expect(vsGpt?.relative_2_to_1).toBeCloseTo(638 / 693, 12); // Vicuna: 92.1% of ChatGPT
    expect([vsGpt?.better_1, vsGpt?.better_2, vsGpt?.tie]).toEqual([44, 14, 22]);

    // Relative to ChatGPT through Vicuna (the blog's Figure 1): total(X)/total(vicuna|X) × total(vicuna|gpt)/total(gpt)
    const rel = relativeTo(totals, "gpt35");
    const [g, vg] = raw.get("gpt35") as [number, number];
    for (const m of ["llama-13b", "alpaca-13b", "bard"]) {
      const [x, vx] = raw.get(m) as [number, number];
      expect(rel.get(m)?.relative).toBeCloseTo((x / vx) * (vg / g), 12);
      expect(rel.get(m)?.via).toEqual(["vicuna-13b"]);
    }
    expect(rel.get("vicuna-13b")?.relative).toBeCloseTo(vg / g, 12);
    // our figures, rounded to whole percent
    expect(
      ["llama-13b", "alpaca-13b", "bard", "vicuna-13b"].map((m) =>
        Math.round(100 * (rel.get(m)?.relative ?? 0)),
      ),
    ).toEqual([68, 76, 93, 92]);
  });
});

describe("aggregates (FastChat's show_result rules)", () => {
  const pj = (
    q: number,
    g1: PairJudgment["g1_winner"],
    g2: PairJudgment["g2_winner"],
    m1 = "ours",
    m2 = "base",
  ): PairJudgment => ({
    question_id: q,
    model_1: m1,
    model_2: m2,
    g1_winner: g1,
    g2_winner: g2,
    judge: ["j", "pair-v2"],
    g1_user_prompt: "",
    g1_judgment: "",
    g2_user_prompt: "",
    g2_judgment: "",
    turn: 1,
    tstamp: 0,
  });

  it("a win only when both orders agree; a disagreement or a game-1 tie is a tie; errors dropped and counted", () => {
    const js = [
      pj(1, "model_1", "model_1"), // win
      pj(2, "model_1", "model_2"), // disagree: tie
      pj(3, "tie", "model_1"), // tie in game 1: tie
      pj(4, "model_2", "model_2"), // loss
      pj(5, "error", "model_1"), // dropped
      pj(6, "model_1", "model_1", "other", "third"), // not against the baseline
    ];
    const r = summarizePairs(js, "base");
    expect(r.errors).toBe(1);
    expect(r.inconsistent).toBe(2);
    expect(r.rows).toEqual([
      { model: "ours", win: 1, loss: 1, tie: 2, win_rate: 0.25, loss_rate: 0.25, win_rate_adjusted: 0.5 },
    ]);
    // without a baseline every comparison counts and every model is listed
    expect(
      summarizePairs(js)
        .rows.map((x) => x.model)
        .sort(),
    ).toEqual(["base", "other", "ours", "third"]);
  });

  it("single: mean per turn and overall; -1 ratings excluded and counted", () => {
    const s = (q: number, turn: number, score: number) => ({
      question_id: q,
      model: "m",
      judge: ["j", "single-v1"] as [string, string],
      user_prompt: "",
      judgment: "",
      score,
      turn,
      tstamp: 0,
    });
    const [m] = summarizeSingle([s(1, 1, 8), s(2, 1, 6), s(1, 2, 4), s(2, 2, -1)]);
    expect(m).toEqual({ model: "m", turn1: 7, turn2: 4, average: 6, judged: 4, errors: 1 });
  });
});

describe("Bradley-Terry on the Elo scale", () => {
  it("two models: the rating gap is 400·log10 of the win odds", () => {
    const o: Outcome[] = [
      { a: "x", b: "y", score: 1 },
      { a: "x", b: "y", score: 1 },
      { a: "y", b: "x", score: 0 },
      { a: "x", b: "y", score: 0 },
    ];
    const r = bradleyTerry(o);
    expect((r.get("x") as number) - (r.get("y") as number)).toBeCloseTo(400 * Math.log10(3), 8);
    expect(((r.get("x") as number) + (r.get("y") as number)) / 2).toBeCloseTo(1000, 8);
  });

  it("three models: the fit satisfies the likelihood equations (expected wins = actual wins)", () => {
    const o: Outcome[] = [];
    const add = (a: string, b: string, wa: number, wb: number, t: number) => {
      for (let i = 0; i < wa; i++) o.push({ a, b, score: 1 });
      for (let i = 0; i < wb; i++) o.push({ a, b, score: 0 });
      for (let i = 0; i < t; i++) o.push({ a, b, score: 0.5 });
    };
    add("p", "q", 6, 3, 1);
    add("q", "r", 5, 4, 2);
    add("p", "r", 7, 2, 0);
    expect(bradleyTerryDefined(o)).toBe(true);
    const r = bradleyTerry(o);
    const strength = (m: string) => 10 ** (((r.get(m) as number) - 1000) / 400);
    for (const m of ["p", "q", "r"]) {
      let expected = 0;
      let actual = 0;
      for (const x of o) {
        if (x.a !== m && x.b !== m) continue;
        const other = x.a === m ? x.b : x.a;
        expected += strength(m) / (strength(m) + strength(other));
        actual += x.a === m ? x.score : 1 - x.score;
      }
      expect(expected).toBeCloseTo(actual, 8);
    }
    expect(bradleyTerryDefined([{ a: "p", b: "q", score: 1 }])).toBe(false);
  });
});
