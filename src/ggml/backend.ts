import { availableParallelism, loadavg } from "node:os";
import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";
import type { Context } from "./context.js";
import { type DeviceName, type OpenedCuda, openCuda, requestedDevice } from "./device.js";
import {
  type BackendPtr,
  type BufferPtr,
  type GallocrPtr,
  GGML_OP_CUSTOM,
  type GraphPtr,
  type TensorPtr,
  type ThreadpoolPtr,
  tensorLayout,
  tensorOp,
  tensorSources,
} from "./ffi.js";
import { checkContextLive, contexts, Handles, ptrOf } from "./handles.js";
import { dtypeFromCode, GGML_LOG_LEVEL, loadNative, type NativeGgml } from "./native.js";
import { GgmlShapeError } from "./shape-error.js";
import { byteSize, type Tensor } from "./tensor.js";

let logRouted = false;
let lastLevel = GGML_LOG_LEVEL.debug as number;
/** Lines ggml logs while `captureGgmlLog` runs (opening CUDA: why no device was found). */
let captured: string[] | null = null;

function captureGgmlLog<T>(fn: (lines: () => string[]) => T): T {
  const mine: string[] = [];
  const outer = captured;
  captured = mine;
  try {
    return fn(() => mine);
  } finally {
    captured = outer;
  }
}

/** ggml writes its own log to stderr unless told otherwise: route it to our logger (CONT lines keep their level). */
function routeLog(n: NativeGgml): void {
  if (logRouted) return;
  logRouted = true;
  let pending = "";
  n.setLogger((level, text) => {
    const lv = level === GGML_LOG_LEVEL.cont ? lastLevel : level;
    lastLevel = lv;
    pending += text;
    if (!pending.endsWith("\n")) return;
    const line = `ggml: ${pending.trimEnd()}`;
    pending = "";
    captured?.push(line);
    if (lv >= GGML_LOG_LEVEL.error) log.error(line);
    else if (lv === GGML_LOG_LEVEL.warn) log.warn(line);
    else log.debug(line);
  });
}

export interface BackendInfo {
  /** Backend name as ggml reports it, e.g. "CPU" or "CUDA0". */
  name: string;
  /** Where graphs run. */
  device: "cpu" | "cuda";
  /** The CUDA device's name (e.g. "NVIDIA H100 80GB HBM3"); "" on the CPU. */
  description: string;
  /** CPU variant library chosen by ggml_backend_score, e.g. "zen4" (loaded on every device). */
  cpuVariant: string;
  /** Compute threads; 0 on CUDA, where they do not apply. */
  threads: number;
}

export interface BackendOptions {
  /** "cpu", "cuda", "cuda:N" or "auto"; default STEERLM_DEVICE, else "cpu". See DeviceName. */
  device?: DeviceName;
  /** CPU threads (ignored on CUDA); default `defaultThreads()`. */
  threads?: number;
  /** CPU worker spin (0–100); default `defaultPoll()`. */
  poll?: number;
}

/**
 * Default thread count: STEERLM_THREADS, else the cores not already busy (cores − 1-minute load average,
 * at least 1). ggml ends every op with a spinning barrier, so a thread that the OS deschedules stalls the
 * others: on an oversubscribed machine one thread is several times faster than two.
 */
export function defaultThreads(): number {
  const env = Number(process.env.STEERLM_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  const cores = availableParallelism();
  return Math.max(1, Math.min(cores, cores - Math.round(loadavg()[0] ?? 0)));
}

/**
 * How hard ggml's worker threads spin while waiting for each other (0 = sleep on a condition variable,
 * 100 = spin). Spinning is fastest on an idle machine; on a shared, oversubscribed one a descheduled
 * spinner stalls every op barrier. STEERLM_GGML_POLL overrides; default 50 (ggml's own default).
 */
export function defaultPoll(): number {
  const env = Number(process.env.STEERLM_GGML_POLL);
  return process.env.STEERLM_GGML_POLL !== undefined && env >= 0 && env <= 100 ? env : 50;
}

/**
 * Backends whose thread pool is running. ggml's pool threads keep polling until the pool is freed; a
 * process that exits without freeing it (an error path, process.exit) crashed in them at teardown
 * (exit status 139 instead of its own). The exit hook stops every pool still running.
 */
const running = new Set<Backend>();
let exitHook = false;

const backends = new Handles<Backend, BackendPtr>("backend");
const buffers = new Handles<Buffer, BufferPtr>("backend buffer");
const allocators = new Handles<GraphAllocator, GallocrPtr>("graph allocator");
/** A graph lives in its context's memory (see checkContextLive). */
const graphs = new WeakMap<Graph, { ctx: Context; ptr: GraphPtr }>();

function graphPtr(g: Graph): GraphPtr {
  const native = graphs.get(g);
  if (!native) throw new Error("graph without a native graph");
  checkContextLive(native.ctx, "graph");
  return native.ptr;
}

/**
 * The compute backend: the CPU (default) or a CUDA device (opt-in: `{ device: "cuda" | "auto" }` or
 * STEERLM_DEVICE). Owns the native backend handle and, on the CPU, its thread pool: `free()` them (or
 * `using backend = new Backend()`); a freed backend throws when used.
 * `new Backend(threads, poll)` is the CPU-era form and still honours STEERLM_DEVICE.
 */
export class Backend implements Disposable {
  readonly #n: NativeGgml;
  #pool: ThreadpoolPtr | null = null;
  #threads: number;
  #poll: number;
  /** Set on a CUDA backend only; the CPU path never loads any CUDA library. */
  readonly #cuda: OpenedCuda | null = null;
  /** Graphs whose ops were checked against the device, by node count at the time. */
  readonly #checked = new WeakMap<Graph, number>();

  constructor(threadsOrOptions: number | BackendOptions = {}, poll?: number) {
    const o: BackendOptions =
      typeof threadsOrOptions === "number" ? { threads: threadsOrOptions, poll } : threadsOrOptions;
    this.#n = loadNative();
    routeLog(this.#n);
    this.#threads = 1;
    this.#poll = o.poll ?? defaultPoll();
    const req = requestedDevice(o.device);
    if (req.kind !== "cpu") this.#cuda = openCuda(req, captureGgmlLog);
    if (this.#cuda) {
      backends.adopt(this, this.#cuda.ptr);
      this.#threads = 0;
      return;
    }
    const ptr = this.#n.cpu.ggml_backend_cpu_init();
    if (!ptr) throw new Error("ggml_backend_cpu_init failed");
    backends.adopt(this, ptr);
    this.setThreads(o.threads ?? defaultThreads());
  }

  /** "cpu" or "cuda". */
  get device(): "cpu" | "cuda" {
    return this.#cuda ? "cuda" : "cpu";
  }

  /**
   * True on the CPU. steerlm's own kernels (native/*.c, ggml custom ops) are CPU code: graphs for
   * any other backend must be built with `new Context(n, size, { plainOps: !backend.isCpu })`.
   */
  get isCpu(): boolean {
    return this.#cuda === null;
  }

  /** Sets the thread count with a persistent thread pool (no per-graph thread creation). No-op on CUDA. */
  setThreads(n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`threads must be a positive integer, got ${n}`);
    if (this.#cuda) return; // GPU kernels: host threads do not apply
    const ptr = backends.get(this);
    this.#n.cpu.ggml_backend_cpu_set_n_threads(ptr, n);
    const params = this.#n.base.ggml_threadpool_params_default(n);
    params.poll = this.#poll;
    const pool = this.#n.cpu.ggml_threadpool_new(params);
    if (!pool) throw new Error("ggml_threadpool_new failed");
    this.#n.cpu.ggml_backend_cpu_set_threadpool(ptr, pool);
    if (this.#pool) this.#n.cpu.ggml_threadpool_free(this.#pool);
    this.#pool = pool;
    running.add(this);
    if (!exitHook) {
      exitHook = true;
      process.once("exit", () => {
        for (const b of running) b.free();
      });
    }
    this.#threads = n;
  }

  get info(): BackendInfo {
    return {
      name: String(this.#n.base.ggml_backend_name(backends.get(this))),
      device: this.device,
      description: this.#cuda?.description ?? "",
      cpuVariant: this.#n.cpuVariant,
      threads: this.#threads,
    };
  }

  /** Allocates backend memory for every tensor created so far in `ctx`. */
  allocTensors(ctx: Context): Buffer {
    return new Buffer(this, ctx);
  }

  newAllocator(): GraphAllocator {
    return new GraphAllocator(this);
  }

  compute(g: Graph): void {
    if (this.#cuda) this.#checkOps(g);
    const status = this.#n.base.ggml_backend_graph_compute(backends.get(this), graphPtr(g));
    if (status !== 0) throw new Error(`ggml graph compute failed with status ${status}`);
  }

  /**
   * Computes on a libuv worker thread, so the event loop (progress bars, IPC, a server) keeps running.
   * Nothing else may touch this backend's graphs or tensors until the promise settles.
   */
  computeAsync(g: Graph): Promise<void> {
    if (this.#cuda) this.#checkOps(g);
    const ptr = backends.get(this);
    const graph = graphPtr(g);
    return new Promise((resolve, reject) => {
      this.#n.base.ggml_backend_graph_compute.async(ptr, graph, (err: unknown, status) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else if (status !== 0) reject(new Error(`ggml graph compute failed with status ${status}`));
        else resolve();
      });
    });
  }

  /**
   * A device backend aborts the process on an op it cannot run (GGML_ASSERT in its compute loop): ask it
   * about every node first, once per graph, and throw instead.
   */
  #checkOps(g: Graph): void {
    const cuda = this.#cuda as OpenedCuda;
    const n = g.nodeCount;
    if (this.#checked.get(g) === n) return;
    const typeAt = (p: TensorPtr) => {
      const { type } = tensorLayout(p);
      try {
        return dtypeFromCode(type);
      } catch {
        return `type ${type}`;
      }
    };
    const bad = new Set<string>();
    for (const node of graphNodes(this.#n, g)) {
      if (cuda.native.base.ggml_backend_supports_op(backends.get(this), node)) continue;
      const types = tensorSources(node, 2)
        .filter((s) => s !== null)
        .map(typeAt)
        .join(", ");
      bad.add(`${String(cuda.native.base.ggml_op_desc(node))}(${types}) → ${typeAt(node)}`);
    }
    if (bad.size > 0) {
      throw new SteerlmError(
        `${this.info.name} (${cuda.description}) cannot run ${[...bad].join("; ")}`,
        "run this model on the CPU: STEERLM_DEVICE=cpu",
      );
    }
    this.#checked.set(g, n);
  }

  /** Frees the backend and its thread pool. A second call does nothing. */
  free(): void {
    const ptr = backends.release(this);
    if (ptr) this.#n.base.ggml_backend_free(ptr);
    if (this.#pool) this.#n.cpu.ggml_threadpool_free(this.#pool);
    this.#pool = null;
    running.delete(this);
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

/** Backend memory holding the tensors of one context (`Backend.allocTensors`). */
export class Buffer implements Disposable {
  readonly #n: NativeGgml;
  constructor(backend: Backend, ctx: Context) {
    this.#n = loadNative();
    const p = this.#n.base.ggml_backend_alloc_ctx_tensors(contexts.get(ctx).ptr, backends.get(backend));
    if (!p) throw new Error("ggml_backend_alloc_ctx_tensors failed (out of memory?)");
    buffers.adopt(this, p);
  }
  get size(): number {
    return Number(this.#n.base.ggml_backend_buffer_get_size(buffers.get(this)));
  }
  /** A second call does nothing. */
  free(): void {
    const p = buffers.release(this);
    if (p) this.#n.base.ggml_backend_buffer_free(p);
  }
  [Symbol.dispose](): void {
    this.free();
  }
}

/** ggml_gallocr: plans and allocates the intermediate tensors of a graph, reusing memory between nodes. */
export class GraphAllocator implements Disposable {
  readonly #n: NativeGgml;
  constructor(backend: Backend) {
    this.#n = loadNative();
    const buft = this.#n.base.ggml_backend_get_default_buffer_type(backends.get(backend));
    const p = buft && this.#n.base.ggml_gallocr_new(buft);
    if (!p) throw new Error("ggml_gallocr_new failed");
    allocators.adopt(this, p);
  }
  alloc(g: Graph): void {
    if (!this.#n.base.ggml_gallocr_alloc_graph(allocators.get(this), graphPtr(g)))
      throw new Error("ggml_gallocr_alloc_graph failed");
  }
  get size(): number {
    return Number(this.#n.base.ggml_gallocr_get_buffer_size(allocators.get(this), 0));
  }
  /** A second call does nothing. */
  free(): void {
    const p = allocators.release(this);
    if (p) this.#n.base.ggml_gallocr_free(p);
  }
  [Symbol.dispose](): void {
    this.free();
  }
}

/** The nodes of `g`, in order. */
function* graphNodes(n: NativeGgml, g: Graph): Generator<TensorPtr> {
  const ptr = graphPtr(g);
  const count = n.base.ggml_graph_n_nodes(ptr);
  for (let i = 0; i < count; i++) {
    const node = n.base.ggml_graph_node(ptr, i);
    if (!node) throw new Error(`ggml graph has no node ${i} of ${count}`);
    yield node;
  }
}

/**
 * A computation graph with room for `size` nodes (no 2048-node cap: deep models size it themselves). It lives
 * in `ctx`'s memory: freed with it, and an error to use after.
 */
export class Graph {
  readonly #n: NativeGgml;
  readonly #ctx: Context;
  constructor(
    ctx: Context,
    readonly size: number,
  ) {
    this.#n = loadNative();
    this.#ctx = ctx;
    const ptr = this.#n.base.ggml_new_graph_custom(contexts.get(ctx).ptr, size, true);
    if (!ptr) throw new Error("ggml_new_graph_custom failed");
    graphs.set(this, { ctx, ptr });
  }

  get nodeCount(): number {
    return this.#n.base.ggml_graph_n_nodes(graphPtr(this));
  }

  /** Nodes that are steerlm's own kernels (ggml custom ops, CPU code): such a graph runs on the CPU only. */
  get customNodes(): number {
    let count = 0;
    for (const node of graphNodes(this.#n, this)) if (tensorOp(node) === GGML_OP_CUSTOM) count++;
    return count;
  }

  /** Adds `t` and everything it depends on. Throws before ggml would abort on a full graph. */
  expand(t: Tensor, budget = 0): void {
    if (this.nodeCount + budget >= this.size) {
      throw new GgmlShapeError(`ggml graph full (${this.nodeCount}/${this.size} nodes)`);
    }
    this.#n.base.ggml_build_forward_expand(graphPtr(this), ptrOf(t));
  }

  /**
   * Appends the backward pass for the graph's loss. `accumulators` maps a parameter (or the loss) to a
   * statically allocated tensor that gradients are added into, so they survive across computes and
   * accumulate over micro-batches until `reset`.
   */
  backward(accumulators: ReadonlyMap<Tensor, Tensor>): void {
    const n = this.nodeCount;
    const byPtr = new Map<TensorPtr, TensorPtr>();
    for (const [k, v] of accumulators) byPtr.set(ptrOf(k), ptrOf(v));
    // grad_accs[i] belongs to node i
    const accs = Array.from(graphNodes(this.#n, this), (node) => byPtr.get(node) ?? null);
    // backward needs roughly 3 nodes per forward node; refuse before ggml asserts on a full graph
    if (n * 4 + 16 > this.size) {
      throw new GgmlShapeError(`graph of ${this.size} nodes too small for a backward pass over ${n} nodes`);
    }
    this.#n.base.ggml_build_backward_expand(contexts.get(this.#ctx).ptr, graphPtr(this), accs);
  }

  /** Zeroes gradient accumulators and sets d(loss)/d(loss) = 1. */
  reset(): void {
    this.#n.base.ggml_graph_reset(graphPtr(this));
  }
}

/** Host ↔ backend copies with byte-size checks (a wrong size would read or write out of bounds). */
export function setData(t: Tensor, data: Float32Array | Int32Array | Uint16Array | Uint8Array): void {
  const n = loadNative();
  const expected = byteSize(t.type, t.nelements);
  const kindOk =
    (data instanceof Float32Array && t.type === "f32") ||
    (data instanceof Int32Array && t.type === "i32") ||
    (data instanceof Uint8Array && t.type === "q8_0") ||
    (data instanceof Uint16Array && (t.type === "f16" || t.type === "bf16"));
  if (!kindOk)
    throw new GgmlShapeError(`cannot upload ${data.constructor.name} into ${t.type} tensor ${t.name}`);
  if (data.byteLength !== expected) {
    throw new GgmlShapeError(
      `tensor ${t.name} ${t.shapeText} needs ${expected} bytes, got ${data.byteLength}`,
    );
  }
  n.base.ggml_backend_tensor_set(ptrOf(t), data, 0, expected);
}

export function getF32(t: Tensor): Float32Array {
  if (t.type !== "f32") throw new GgmlShapeError(`tensor ${t.name} is ${t.type}, not f32`);
  const out = new Float32Array(t.nelements);
  loadNative().base.ggml_backend_tensor_get(ptrOf(t), out, 0, out.byteLength);
  return out;
}

/** The raw bytes of a tensor (a quantised one's blocks, as ggml stores them). */
export function getBytes(t: Tensor): Uint8Array {
  const out = new Uint8Array(byteSize(t.type, t.nelements));
  loadNative().base.ggml_backend_tensor_get(ptrOf(t), out, 0, out.byteLength);
  return out;
}

export function getScalar(t: Tensor): number {
  return getF32(t)[0] as number;
}

/** The gradient tensor of `t` in a graph with a backward pass, or null when `t` gets none. */
export function gradOf(g: Graph, t: Tensor, ctx: Context): Tensor | null {
  const p = loadNative().base.ggml_graph_get_grad(graphPtr(g), ptrOf(t));
  return p ? contexts.get(ctx).wrap(p) : null;
}
