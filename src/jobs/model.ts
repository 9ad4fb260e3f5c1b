import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { CONTROL_TOKEN_NAMES } from "../data/template.js";
import { type ResolvedSftConfig, readConfigDocument } from "../run/config.js";
import { hfAddsBos } from "../tokenizer/hf.js";
import { readSiblingConfig } from "../tokenizer/hf-json.js";
import { InputError } from "../util/errors.js";
import { settingPlace } from "./plan.js";

/**
 * The model a job starts from, as the engine names it: a Hugging Face directory or hub id (TRL, NeMo RL,
 * and NeMo-Aligner after NeMo's converter), or a `.nemo` checkpoint (NeMo-Aligner).
 */
export type ModelRef =
  | { kind: "hf-dir"; path: string }
  | { kind: "hub"; id: string }
  | { kind: "nemo"; path: string };

/** `owner/name`, as the Hugging Face hub spells repository ids. */
const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * The `model` setting as a job's model. `typed` is the text the user gave on the command line: settings
 * resolve paths, but a hub id is not a path, so a value that names no file is read as typed (or as written
 * in the config file) and accepted when it is an `owner/name` id.
 */
export function modelReference(resolved: ResolvedSftConfig, typed?: string): ModelRef {
  const path = resolved.config.model;
  const place = settingPlace(resolved, "model");
  if (path === null) {
    throw new InputError(
      "a job fine-tunes an existing model: none given",
      place,
      "give --model <Hugging Face directory or hub id>",
    );
  }
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) {
      if (existsSync(join(path, "config.json"))) return { kind: "hf-dir", path };
      if (existsSync(join(path, "model_config.yaml"))) return { kind: "nemo", path };
      throw new InputError(
        "not a Hugging Face model directory (no config.json)",
        { ...place, file: path },
        "the engines load Hugging Face models: a directory with config.json, safetensors and the tokenizer",
      );
    }
    if (path.endsWith(".nemo")) return { kind: "nemo", path };
    throw new InputError(
      path.endsWith(".gguf")
        ? "the engines load Hugging Face models, not GGUF files"
        : "not a model directory, hub id or .nemo file",
      { ...place, file: path },
      "give --model <Hugging Face directory or hub id> (the base the GGUF was converted from)",
    );
  }
  const text = typed ?? writtenInConfig(resolved);
  if (text !== undefined && HUB_ID.test(text)) return { kind: "hub", id: text };
  throw new InputError("no such file or directory, and not a Hugging Face hub id (owner/name)", {
    ...place,
    file: path,
  });
}

function writtenInConfig(resolved: ResolvedSftConfig): string | undefined {
  if (resolved.sources.model !== "config" || resolved.file === null) return undefined;
  const raw = readConfigDocument(resolved.file).values.model;
  return typeof raw === "string" ? raw : undefined;
}

/** How the model is named in a job's files and commands. */
export function modelName(m: ModelRef): string {
  return m.kind === "hub" ? m.id : m.path;
}

/**
 * The control tokens `<extra_id_0..2>` a local Hugging Face tokenizer has as tokens of their own (added or
 * in its vocabulary); null when that cannot be known here (a hub id, no tokenizer.json).
 */
export function tokenizerControlTokens(m: ModelRef): string[] | null {
  const json = localTokenizerJson(m);
  if (json === null) return null;
  const added = new Set((json.added_tokens ?? []).map((t) => t.content));
  const vocab = json.model?.vocab;
  const inVocab = (t: string) =>
    typeof vocab === "object" && vocab !== null && !Array.isArray(vocab) && t in vocab;
  return CONTROL_TOKEN_NAMES.filter((t) => added.has(t) || inVocab(t));
}

/**
 * Whether a local Hugging Face tokenizer starts a sequence with BOS (steerlm's rule, and the one TRL follows
 * by encoding with the tokenizer); null when that cannot be known here.
 */
export function tokenizerAddsBos(m: ModelRef): boolean | null {
  const json = localTokenizerJson(m);
  if (json === null || m.kind !== "hf-dir") return null;
  try {
    return hfAddsBos(json, readSiblingConfig(join(m.path, "tokenizer.json")) ?? {});
  } catch {
    return null;
  }
}

interface TokenizerJsonPeek {
  added_tokens?: Array<{ content?: unknown }>;
  model?: { vocab?: unknown };
  post_processor?: unknown;
}

/** A local model's tokenizer.json, parsed; null for a hub id, a `.nemo`, or a missing or unreadable file. */
function localTokenizerJson(m: ModelRef): TokenizerJsonPeek | null {
  if (m.kind !== "hf-dir") return null;
  const file = join(m.path, "tokenizer.json");
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as TokenizerJsonPeek;
  } catch {
    return null;
  }
}
