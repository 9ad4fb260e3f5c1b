/**
 * The tensors of a Hugging Face checkpoint directory: one `model.safetensors`, or shards listed by
 * `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor name: shard file name}}`).
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { InputError } from "../util/errors.js";
import { readSafetensorsHeader, type SafetensorsTensor } from "./safetensors.js";

export const SAFETENSORS_SINGLE = "model.safetensors";
export const SAFETENSORS_INDEX = "model.safetensors.index.json";

export interface HfCheckpoint {
  dir: string;
  /** Every tensor of the model, whichever shard holds it. */
  tensors: Map<string, SafetensorsTensor>;
  /** The shard files read, in name order. */
  files: string[];
}

export async function openHfCheckpoint(dir: string): Promise<HfCheckpoint> {
  const indexPath = join(dir, SAFETENSORS_INDEX);
  if (existsSync(indexPath)) return openSharded(dir, indexPath);
  const single = join(dir, SAFETENSORS_SINGLE);
  if (existsSync(single)) {
    const file = await readSafetensorsHeader(single);
    return { dir, tensors: file.tensors, files: [single] };
  }
  const hint = existsSync(join(dir, "pytorch_model.bin"))
    ? "pytorch_model.bin (pickle) is not read, for safety: save the model with safe_serialization=True"
    : undefined;
  throw new InputError(`no ${SAFETENSORS_SINGLE} or ${SAFETENSORS_INDEX}`, { file: dir }, hint);
}

async function openSharded(dir: string, indexPath: string): Promise<HfCheckpoint> {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    throw new InputError(`not valid JSON: ${(e as Error).message}`, { file: indexPath });
  }
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new InputError("expected an object mapping tensor names to shard files", {
      file: indexPath,
      field: "weight_map",
    });
  }
  const entries = Object.entries(map as Record<string, unknown>);
  const shards = new Set<string>();
  for (const [name, shard] of entries) {
    // A shard is a file beside the index, never a path elsewhere.
    if (typeof shard !== "string" || shard === "" || basename(shard) !== shard) {
      throw new InputError(`expected a shard file name, got ${JSON.stringify(shard)}`, {
        file: indexPath,
        field: `weight_map.${name}`,
      });
    }
    shards.add(shard);
  }
  const files = [...shards].sort();
  const headers = new Map<string, Map<string, SafetensorsTensor>>();
  for (const shard of files) {
    const path = join(dir, shard);
    if (!existsSync(path)) {
      throw new InputError(`shard ${shard} does not exist`, { file: indexPath, field: "weight_map" });
    }
    headers.set(shard, (await readSafetensorsHeader(path)).tensors);
  }
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, shard] of entries) {
    const t = headers.get(shard as string)?.get(name);
    if (t === undefined) {
      throw new InputError(`the index puts it in ${shard as string}, which has no such tensor`, {
        file: indexPath,
        field: `weight_map.${name}`,
      });
    }
    tensors.set(name, t);
  }
  return { dir, tensors, files: files.map((f) => join(dir, f)) };
}
