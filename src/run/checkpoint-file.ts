import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { crc32 } from "node:zlib";
import { writeFileAtomic } from "../util/atomic.js";
import { readFailure } from "../util/errno.js";
import { InputError, type Place } from "../util/errors.js";

/**
 * The checkpoint container, one format for every run (SFT, the APMs, SteerLM 2.0):
 *
 *   bytes 0..7   magic "STEERCKP"
 *   bytes 8..11  format version (u32 LE): 2 (1: before checksums, still read)
 *   bytes 12..15 header length H (u32 LE)
 *   bytes 16..19 CRC-32 of the header bytes (u32 LE; version 2 only)
 *   then H bytes header, UTF-8 JSON: the writer's metadata plus `blobs` (name, kind, length, offset, shape,
 *                and since version 2 `crc32`, the CRC-32 of the blob's bytes)
 *   then         zero padding to a multiple of 64, then each blob's f32 LE data at its `offset` (relative to
 *                the data start, 64-byte aligned), in header order
 *
 * Written atomically (src/util/atomic.ts): a crash (or kill -9) leaves the previous checkpoint or the new one,
 * never a torn file under the real name. Read back, every number of the header is checked before it sizes
 * anything, and every checksum is verified: a damaged or hostile file is a located error (file, blob, what).
 * Nothing time-dependent goes in, so the same state always gives the same bytes.
 */
export const CHECKPOINT_MAGIC = "STEERCKP";
export const CHECKPOINT_VERSION = 2;
/** Versions this reader reads: 1 (no checksums) and the current one. */
const READ_VERSIONS = [1, 2];
const ALIGN = 64;
const KINDS = ["weight", "m", "v"] as const;

export type CheckpointBlobKind = (typeof KINDS)[number];

/** One f32 tensor of a checkpoint: a trainable weight or one of its AdamW moments. */
export interface CheckpointBlob {
  name: string;
  kind: CheckpointBlobKind;
  data: Float32Array;
  /** ggml shape, when the writer records it (its product is data.length). */
  shape?: number[];
}

interface BlobInfo {
  name: string;
  kind: CheckpointBlobKind;
  length: number;
  offset: number;
  shape?: number[];
  crc32?: number;
}

const alignUp = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const DAMAGED = "the checkpoint is damaged: delete it to resume from the one before it, or retrain";

/** The container's prefix: 16 bytes in version 1, 20 (with the header's CRC-32) since version 2. */
const prefixBytes = (version: number) => (version === 1 ? 16 : 20);

/** Writes the container: `meta` (JSON; must not use the key `blobs`) and the blobs in the given order. */
export function writeCheckpointFile(
  path: string,
  meta: Record<string, unknown>,
  blobs: CheckpointBlob[],
): void {
  const infos: BlobInfo[] = [];
  let offset = 0;
  for (const b of blobs) {
    if (b.shape !== undefined && b.shape.reduce((x, y) => x * y, 1) !== b.data.length)
      throw new InputError(`shape ${JSON.stringify(b.shape)} does not match ${b.data.length} values`, {
        field: b.name,
      });
    infos.push({
      name: b.name,
      kind: b.kind,
      length: b.data.length,
      offset,
      ...(b.shape ? { shape: b.shape } : {}),
      crc32: crc32(bytesOf(b.data)),
    });
    offset = alignUp(offset + b.data.byteLength);
  }
  const json = Buffer.from(JSON.stringify({ ...meta, blobs: infos }), "utf8");
  const pre = Buffer.alloc(prefixBytes(CHECKPOINT_VERSION));
  pre.write(CHECKPOINT_MAGIC, 0, "latin1");
  pre.writeUInt32LE(CHECKPOINT_VERSION, 8);
  pre.writeUInt32LE(json.length, 12);
  pre.writeUInt32LE(crc32(json), 16);
  writeFileAtomic(path, chunks(pre, json, blobs, infos));
}

/** The file's bytes in order: prefix, header, padding, then each blob at its aligned offset. */
function* chunks(
  pre: Buffer,
  json: Buffer,
  blobs: CheckpointBlob[],
  infos: BlobInfo[],
): Generator<Uint8Array> {
  yield pre;
  yield json;
  const headEnd = pre.length + json.length;
  yield Buffer.alloc(alignUp(headEnd) - headEnd);
  let at = 0;
  for (const [i, b] of blobs.entries()) {
    const info = infos[i] as BlobInfo;
    if (info.offset > at) yield Buffer.alloc(info.offset - at);
    yield bytesOf(b.data);
    at = info.offset + b.data.byteLength;
  }
}

/** The container's header: its version, where the data starts, and the JSON (the writer's metadata and `blobs`). */
interface ContainerHeader {
  version: number;
  dataStart: number;
  header: Record<string, unknown>;
}

/** Parses the prefix and header from `read(start, end)`, bytes of a file of `size` bytes, checking each. */
function readHeader(
  path: string,
  size: number,
  read: (start: number, end: number) => Buffer,
): ContainerHeader {
  const bad = (what: string) => new InputError(what, { file: path }, DAMAGED);
  const head = read(0, Math.min(20, size));
  if (size < 16 || head.toString("latin1", 0, 8) !== CHECKPOINT_MAGIC)
    throw new InputError(
      `not a steerlm checkpoint (magic ${JSON.stringify(head.toString("latin1", 0, Math.min(8, size)))}, expected "${CHECKPOINT_MAGIC}")`,
      { file: path },
      "pass a run directory or a checkpoints/step-*.ckpt file written by steerlm",
    );
  const version = head.readUInt32LE(8);
  if (!READ_VERSIONS.includes(version))
    throw new InputError(
      `checkpoint version ${version} is not supported (this steerlm reads ${READ_VERSIONS.join(" and ")})`,
      { file: path },
      "use the steerlm version that wrote it, or retrain",
    );
  const pre = prefixBytes(version);
  const len = head.readUInt32LE(12);
  if (pre > size || pre + len > size) throw bad("truncated checkpoint header");
  const json = read(pre, pre + len);
  if (version >= 2 && crc32(json) !== head.readUInt32LE(16))
    throw bad("the header's checksum does not match: the file is damaged");
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(json.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw bad("corrupt checkpoint header");
  }
  return { version, dataStart: alignUp(pre + len), header };
}

/** The writer's metadata alone (without `blobs`), read without the tensors (a resume's first checks). */
export function readCheckpointMeta(path: string): Record<string, unknown> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw readFailure(err, path, "cannot read the checkpoint");
  }
  try {
    const read = (start: number, end: number) => {
      const b = Buffer.alloc(end - start);
      readSync(fd, b, 0, b.length, start);
      return b;
    };
    const { blobs: _b, ...meta } = readHeader(path, fstatSync(fd).size, read).header;
    return meta;
  } finally {
    closeSync(fd);
  }
}

/** Reads the container back: the writer's metadata (without `blobs`) and the blobs in file order. */
export function readCheckpointFile(path: string): { meta: Record<string, unknown>; blobs: CheckpointBlob[] } {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw readFailure(err, path, "cannot read the checkpoint");
  }
  const bad = (what: string, place: Place = {}) => new InputError(what, { file: path, ...place }, DAMAGED);
  const { version, dataStart, header } = readHeader(path, buf.length, (start, end) =>
    buf.subarray(start, end),
  );
  if (!Array.isArray(header.blobs)) throw bad("corrupt checkpoint header (no blob list)");
  const blobs = header.blobs.map((raw: unknown, i): CheckpointBlob => {
    const b = blobInfo(raw, i, version, bad);
    const at = { field: `${b.name} (${b.kind})` };
    const start = dataStart + b.offset;
    const end = start + b.length * 4;
    if (end > buf.length)
      throw bad(
        `truncated checkpoint, or a damaged header: its data would end at byte ${end} of ${buf.length}`,
        at,
      );
    const bytes = buf.subarray(start, end);
    if (b.crc32 !== undefined && crc32(bytes) !== b.crc32)
      throw bad("the checksum does not match: the file is damaged", at);
    // Copy into a fresh buffer: a Float32Array view needs 4-byte alignment.
    const data = new Float32Array(b.length);
    new Uint8Array(data.buffer).set(bytes);
    return { name: b.name, kind: b.kind, data, ...(b.shape ? { shape: b.shape } : {}) };
  });
  const { blobs: _b, ...meta } = header;
  return { meta, blobs };
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** One entry of the header's blob list, each number checked before it sizes anything. */
function blobInfo(
  raw: unknown,
  i: number,
  version: number,
  bad: (what: string, place?: Place) => InputError,
): BlobInfo {
  const r = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
  const { name, kind, length, offset, shape } = r;
  if (typeof name !== "string" || !KINDS.includes(kind as CheckpointBlobKind))
    throw bad("not a blob description (name and kind)", { field: `blob ${i + 1}` });
  const at = { field: `${name} (${kind})` };
  if (!isCount(length)) throw bad(`length ${JSON.stringify(length)} is not a whole number ≥ 0`, at);
  if (!isCount(offset) || offset % ALIGN !== 0)
    throw bad(`offset ${JSON.stringify(offset)} is not a whole number ≥ 0 and a multiple of ${ALIGN}`, at);
  if (
    shape !== undefined &&
    !(
      Array.isArray(shape) &&
      shape.every(isCount) &&
      shape.reduce((x: number, y: number) => x * y, 1) === length
    )
  )
    throw bad(`shape ${JSON.stringify(shape)} does not hold its ${length} values`, at);
  const sum = r.crc32;
  if (version >= 2 && !(isCount(sum) && sum <= 0xffffffff)) throw bad("the blob has no checksum", at);
  return {
    name,
    kind: kind as CheckpointBlobKind,
    length,
    offset,
    ...(shape !== undefined ? { shape: shape as number[] } : {}),
    ...(version >= 2 ? { crc32: sum as number } : {}),
  };
}
