import { attentionValues } from "../model/attention.js";
import { InputError } from "../util/errors.js";

/** Ignored label / missing regression target, as in Hugging Face and NeMo. */
export const IGNORE = -100;

/**
 * One micro-batch of B sequences of exactly T tokens (pad shorter ones; either side works).
 * All arrays are row-major [B, T] (or [B, K] for targets).
 */
export interface Batch {
  tokens: Int32Array;
  /** 1 = real token, 0 = padding. Default: all real. */
  attention?: Uint8Array;
  /**
   * Language-model labels aligned with `tokens` (Hugging Face convention): position t is trained to
   * predict labels[t+1]. -100 = not in the loss (prompt, padding).
   */
  labels?: Int32Array;
  /** Regression targets [B, K]; -100 = missing (masked out of the MSE). */
  targets?: Float32Array;
  /**
   * Language modelling: one multiplier per sequence [B] on its tokens' loss terms (default 1; any finite
   * value, negative too: SteerLM 2.0 pushes some samples down). The mean is still over the valid tokens.
   */
  lossWeights?: Float32Array;
}

/** Host-side arrays for the graph inputs, validated so that ggml never sees an out-of-range index. */
export interface PreparedBatch {
  tokens: Int32Array;
  positions: Int32Array;
  kqMask: Float32Array;
  flatIdx: Int32Array;
  lossMask: Float32Array;
  negInvCount: Float32Array;
  lastIdx: Int32Array;
  targets: Float32Array;
  targetMask: Float32Array;
  invTargetCount: Float32Array;
  /** Tokens whose next-token prediction is in the loss / regression values present. */
  validCount: number;
}

/**
 * Whether flat position n (not a sequence's last) is in the loss: it predicts labels[n + 1], which is not
 * IGNORE, from a real token. The trainer's n_valid counts these.
 */
export function predictsLabel(labels: ArrayLike<number>, real: ArrayLike<number>, n: number): boolean {
  return labels[n + 1] !== IGNORE && real[n] !== 0;
}

/**
 * `chunk`: positions per chunk of the output projection (lmLoss); each target's flat index counts from
 * the start of its chunk, so it stays below 2^31 for any sequence length and vocabulary.
 */
export function prepareBatch(
  b: Batch,
  B: number,
  T: number,
  vocab: number,
  outputs: number,
  chunk = B * T,
): PreparedBatch {
  const N = B * T;
  const row = (n: number) => (n % chunk) * vocab;
  const where = { file: "batch" };
  if (b.tokens.length !== N)
    throw new InputError(`expected ${B}×${T} tokens, got ${b.tokens.length}`, { ...where, field: "tokens" });
  const att = b.attention ?? new Uint8Array(N).fill(1);
  if (att.length !== N)
    throw new InputError(`expected ${N} attention flags, got ${att.length}`, {
      ...where,
      field: "attention",
    });
  for (let i = 0; i < N; i++) {
    const t = b.tokens[i]!;
    if (!(t >= 0 && t < vocab))
      throw new InputError(`token ${t} at ${i} is outside the vocabulary (0..${vocab - 1})`, {
        ...where,
        field: "tokens",
      });
  }
  const { positions, kqMask, last } = attentionValues(att, B, T);
  const lastIdx = new Int32Array(B);
  for (let s = 0; s < B; s++) {
    lastIdx[s] = s * T + Math.max(0, last[s]!);
    if (last[s]! < 0 && b.targets)
      throw new InputError(`sequence ${s} has no real tokens`, { ...where, field: "attention" });
  }
  const flatIdx = new Int32Array(N);
  const lossMask = new Float32Array(N);
  let valid = 0;
  if (b.lossWeights) {
    if (b.lossWeights.length !== B)
      throw new InputError(`expected ${B} loss weights, got ${b.lossWeights.length}`, {
        ...where,
        field: "lossWeights",
      });
    const bad = b.lossWeights.findIndex((w) => !Number.isFinite(w));
    if (bad >= 0)
      throw new InputError(`loss weight ${b.lossWeights[bad]} of sequence ${bad} is not finite`, {
        ...where,
        field: "lossWeights",
      });
  }
  if (b.labels) {
    if (b.labels.length !== N)
      throw new InputError(`expected ${N} labels, got ${b.labels.length}`, { ...where, field: "labels" });
    for (let s = 0; s < B; s++) {
      const weight = b.lossWeights ? b.lossWeights[s]! : 1;
      for (let t = 0; t + 1 < T; t++) {
        const n = s * T + t;
        const y = b.labels[n + 1]!;
        flatIdx[n] = row(n);
        if (!predictsLabel(b.labels, att, n)) continue;
        if (!(y >= 0 && y < vocab))
          throw new InputError(`label ${y} at ${n + 1} is outside the vocabulary`, {
            ...where,
            field: "labels",
          });
        flatIdx[n] = row(n) + y;
        lossMask[n] = weight;
        valid++;
      }
      flatIdx[s * T + T - 1] = row(s * T + T - 1);
    }
  } else {
    for (let n = 0; n < N; n++) flatIdx[n] = row(n);
  }
  const K = outputs;
  const targets = new Float32Array(Math.max(1, B * K));
  const targetMask = new Float32Array(Math.max(1, B * K));
  let tvalid = 0;
  if (b.targets) {
    if (b.targets.length !== B * K)
      throw new InputError(`expected ${B}×${K} targets, got ${b.targets.length}`, {
        ...where,
        field: "targets",
      });
    for (let i = 0; i < B * K; i++) {
      const v = b.targets[i]!;
      if (v === IGNORE) continue;
      if (!Number.isFinite(v))
        throw new InputError(`target ${v} at ${i} is not a number`, { ...where, field: "targets" });
      targets[i] = v;
      targetMask[i] = 1;
      tvalid++;
    }
  }
  return {
    tokens: b.tokens,
    positions,
    kqMask,
    flatIdx,
    lossMask,
    negInvCount: new Float32Array([valid > 0 ? -1 / valid : 0]),
    lastIdx,
    targets,
    targetMask,
    invTargetCount: new Float32Array([tvalid > 0 ? 1 / tvalid : 0]),
    validCount: b.targets ? tvalid : valid,
  };
}
