import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { BUILTIN_SCHEMAS, parseValues } from "../data/attributes.js";
import type { Conversation } from "../data/template.js";
import { toNemoLine, writeBench } from "../steerbench/jsonl.js";
import { type SynthResult, synthesize } from "../steerbench/synth.js";
import { writeFileAtomic } from "../util/atomic.js";
import type { ReproducePlan } from "./plan.js";

/**
 * One seed's data: SteerBench at that seed (train/validation/test/heldout) and the arms' training files
 * made from its training split. Deterministic and fast, so it is rewritten on every run, resumed or not.
 */
export interface SeedData {
  bench: SynthResult;
  dir: string;
  files: {
    train: string;
    validation: string;
    /** Every training conversation without labels (sft). */
    plain: string;
    /** The high-quality subset without labels (sft-hq). */
    highQuality: string;
    /** The labelled fraction (the APM's training data). */
    labelled: string;
    /** The labelled fraction with its labels, then the rest without (annotated: acsft-apm). */
    partlyLabelled: string;
    /** The extra pool, never labelled (annotated and added: acsft-apm-more). */
    extra: string;
  };
  counts: { train: number; highQuality: number; labelled: number; extra: number };
}

const unlabelled = (c: Conversation): Conversation => ({
  ...c,
  turns: c.turns.map((t) => (t.role === "assistant" ? { ...t, values: null } : t)),
});

function writeConversations(path: string, convs: readonly Conversation[]): void {
  writeFileAtomic(path, convs.length ? `${convs.map(toNemoLine).join("\n")}\n` : "");
}

export function prepareSeedData(root: string, seed: number, plan: ReproducePlan): SeedData {
  const dir = join(root, "data");
  mkdirSync(dir, { recursive: true });
  const bench = synthesize({ n: plan.conversations, seed, multiTurnFraction: plan.multiTurnFraction });
  writeBench(dir, bench);
  const train = bench.splits.train;
  const schema = BUILTIN_SCHEMAS.steerlm;
  const isHigh = (c: Conversation) =>
    c.turns.every(
      (t) => t.role !== "assistant" || (parseValues(schema, t.values ?? "").quality ?? 0) >= plan.highQuality,
    );
  const high = train.filter(isHigh);
  const nLabelled = Math.round(train.length * plan.labelledFraction);
  const labelled = train.slice(0, nLabelled);
  // the pool's own seed: other conversations from the same generator, never labelled
  const extra = synthesize({
    n: plan.extraConversations,
    seed: `${seed}-extra`,
    multiTurnFraction: plan.multiTurnFraction,
  }).splits.train.map(unlabelled);
  const files: SeedData["files"] = {
    train: join(dir, "train.jsonl"),
    validation: join(dir, "validation.jsonl"),
    plain: join(dir, "plain.jsonl"),
    highQuality: join(dir, "high-quality.jsonl"),
    labelled: join(dir, "labelled.jsonl"),
    partlyLabelled: join(dir, "partly-labelled.jsonl"),
    extra: join(dir, "extra.jsonl"),
  };
  writeConversations(files.plain, train.map(unlabelled));
  writeConversations(files.highQuality, high.map(unlabelled));
  writeConversations(files.labelled, labelled);
  writeConversations(files.partlyLabelled, [...labelled, ...train.slice(nLabelled).map(unlabelled)]);
  writeConversations(files.extra, extra);
  return {
    bench,
    dir,
    files,
    counts: { train: train.length, highQuality: high.length, labelled: nLabelled, extra: extra.length },
  };
}
