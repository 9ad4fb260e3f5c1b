import { availableParallelism, loadavg } from "node:os";
import { SteerlmError } from "../util/errors.js";
import { log } from "../util/log.js";
import { type Context, GgmlShapeError } from "./context.js";
import { type DeviceName, type OpenedCuda, openCuda, requestedDevice } from "./device.js";
import {
  GGML_LOG_LEVEL,
  GGML_OP_CUSTOM,
  loadNative,
  type NativeGgml,
  type Ptr,
  TENSOR_OP_OFFSET,
  TENSOR_SRC_OFFSET,
  THREADPOOL_PARAMS_SIZE,
  THREADPOOL_POLL_OFFSET,
} from "./native.js";
import { byteSize, dtypeFromCode, ptrOf, type Tensor } from "./tensor.js";

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
 * The compute backend: the CPU (default) or a CUDA device (opt-in: `{ device: "cuda" | "auto" }` or
 * STEERLM_DEVICE). Owns the native backend handle and, on the CPU, its thread pool.
 * `new Backend(threads, poll)` is the CPU-era form and still honours STEERLM_DEVICE.
 */
/**
 * Backends whose thread pool is running. ggml's pool threads keep polling until the pool is freed; a
 * process that exits without freeing it (an error path, process.exit) crashed in them at teardown
 * (exit status 139 instead of its own). The exit hook stops every pool still running.
 */
const running = new Set<Backend>();
let exitHook = false;

export class Backend {
  readonly #n: NativeGgml;
  #ptr: Ptr;
  #pool: Ptr = 0n;
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
      this.#ptr = this.#cuda.ptr;
      this.#threads = 0;
      return;
    }
    this.#ptr = this.#n.cpu.ggml_backend_cpu_init() as Ptr;
    if (!this.#ptr) throw new Error("ggml_backend_cpu_init failed");
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
    this.#n.cpu.ggml_backend_cpu_set_n_threads(this.ptr, n);
    const params = new Uint8Array(THREADPOOL_PARAMS_SIZE);
    this.#n.base.ggml_threadpool_params_init(params, n);
    new DataView(params.buffer).setUint32(THREADPOOL_POLL_OFFSET, this.#poll, true);
    const pool = this.#n.cpu.ggml_threadpool_new(params) as Ptr;
    if (!pool) throw new Error("ggml_threadpool_new failed");
    this.#n.cpu.ggml_backend_cpu_set_threadpool(this.ptr, pool);
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
      name: String(this.#n.base.ggml_backend_name(this.ptr)),
      device: this.device,
      description: this.#cuda?.description ?? "",
      cpuVariant: this.#n.cpuVariant,
      threads: this.#threads,
    };
  }

  // private: the native handle never leaves this class
  private get ptr(): Ptr {
    if (!this.#ptr) throw new Error("ggml backend used after free");
    return this.#ptr;
  }

  /** Allocates backend memory for every tensor created so far in `ctx`. */
  allocTensors(ctx: Context): Buffer {
    const p = this.#n.base.ggml_backend_alloc_ctx_tensors(ctx.ptr, this.ptr) as Ptr;
    if (!p) throw new Error("ggml_backend_alloc_ctx_tensors failed (out of memory?)");
    return new Buffer(this.#n, p);
  }

  newAllocator(): GraphAllocator {
    return new GraphAllocator(this.#n, this.#n.base.ggml_backend_get_default_buffer_type(this.ptr) as Ptr);
  }

  compute(g: Graph): void {
    if (this.#cuda) this.#checkOps(g);
    const status = Number(this.#n.base.ggml_backend_graph_compute(this.ptr, g.ptr));
    if (status !== 0) throw new Error(`ggml graph compute failed with status ${status}`);
  }

  /**
   * Computes on a libuv worker thread, so the event loop (progress bars, IPC, a server) keeps running.
   * Nothing else may touch this backend's graphs or tensors until the promise settles.
   */
  computeAsync(g: Graph): Promise<void> {
    if (this.#cuda) this.#checkOps(g);
    return new Promise((resolve, reject) => {
      this.#n.base.ggml_backend_graph_compute.async(this.ptr, g.ptr, (err: unknown, status: unknown) => {
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else if (Number(status) !== 0)
          reject(new Error(`ggml graph compute failed with status ${String(status)}`));
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
    const typeAt = (p: Ptr) => {
      const code = this.#n.readI32(p, 0);
      try {
        return dtypeFromCode(code);
      } catch {
        return `type ${code}`;
      }
    };
    const bad = new Set<string>();
    for (let i = 0; i < n; i++) {
      const node = this.#n.base.ggml_graph_node(g.ptr, i) as Ptr;
      if (cuda.native.base.ggml_backend_supports_op(this.ptr, node)) continue;
      const srcs = this.#n.readI64(node, TENSOR_SRC_OFFSET, 2).filter((s) => s !== 0);
      const types = srcs.map((s) => typeAt(BigInt(s))).join(", ");
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

  free(): void {
    if (this.#ptr) this.#n.base.ggml_backend_free(this.#ptr);
    this.#ptr = 0n;
    if (this.#pool) this.#n.cpu.ggml_threadpool_free(this.#pool);
    this.#pool = 0n;
    running.delete(this);
  }
}

export class Buffer {
  constructor(
    private readonly n: NativeGgml,
    private p: Ptr,
  ) {}
  get size(): number {
    return Number(this.n.base.ggml_backend_buffer_get_size(this.p));
  }
  free(): void {
    if (this.p) this.n.base.ggml_backend_buffer_free(this.p);
    this.p = 0n;
  }
}

/** ggml_gallocr: plans and allocates the intermediate tensors of a graph, reusing memory between nodes. */
export class GraphAllocator {
  #p: Ptr;
  constructor(
    private readonly n: NativeGgml,
    buft: Ptr,
  ) {
    this.#p = n.base.ggml_gallocr_new(buft) as Ptr;
  }
  alloc(g: Graph): void {
    if (!this.n.base.ggml_gallocr_alloc_graph(this.#p, g.ptr))
      throw new Error("ggml_gallocr_alloc_graph failed");
  }
  get size(): number {
    return Number(this.n.base.ggml_gallocr_get_buffer_size(this.#p, 0));
  }
  free(): void {
    if (this.#p) this.n.base.ggml_gallocr_free(this.#p);
    this.#p = 0n;
  }
}

/** A computation graph with room for `size` nodes (no 2048-node cap: deep models size it themselves). */
export class Graph {
  readonly #n: NativeGgml;
  readonly ptr: Ptr;
  constructor(
    private readonly ctx: Context,
    readonly size: number,
  ) {
    this.#n = loadNative();
    this.ptr = this.#n.base.ggml_new_graph_custom(ctx.ptr, size, true) as Ptr;
  }

  get nodeCount(): number {
    return Number(this.#n.base.ggml_graph_n_nodes(this.ptr));
  }

  /** Nodes that are steerlm's own kernels (ggml custom ops, CPU code): such a graph runs on the CPU only. */
  get customNodes(): number {
    let count = 0;
    for (let i = 0; i < this.nodeCount; i++) {
      const node = this.#n.base.ggml_graph_node(this.ptr, i) as Ptr;
      if (this.#n.readI32(node, TENSOR_OP_OFFSET) === GGML_OP_CUSTOM) count++;
    }
    return count;
  }

  /** Adds `t` and everything it depends on. Throws before ggml would abort on a full graph. */
  expand(t: Tensor, budget = 0): void {
    if (this.nodeCount + budget >= this.size) {
      throw new GgmlShapeError(`ggml graph full (${this.nodeCount}/${this.size} nodes)`);
    }
    this.#n.base.ggml_build_forward_expand(this.ptr, ptrOf(t));
  }

  /**
   * Appends the backward pass for the graph's loss. `accumulators` maps a parameter (or the loss) to a
   * statically allocated tensor that gradients are added into, so they survive across computes and
   * accumulate over micro-batches until `reset`.
   */
  backward(accumulators: ReadonlyMap<Tensor, Tensor>): void {
    const n = this.nodeCount;
    const byPtr = new Map<Ptr, Ptr>();
    for (const [k, v] of accumulators) byPtr.set(ptrOf(k), ptrOf(v));
    const accs = new BigUint64Array(n);
    for (let i = 0; i < n; i++) {
      const node = this.#n.base.ggml_graph_node(this.ptr, i) as Ptr;
      const acc = byPtr.get(node);
      if (acc !== undefined) accs[i] = acc;
    }
    // backward needs roughly 3 nodes per forward node; refuse before ggml asserts on a full graph
    if (n * 4 + 16 > this.size) {
      throw new GgmlShapeError(`graph of ${this.size} nodes too small for a backward pass over ${n} nodes`);
    }
    this.#n.base.ggml_build_backward_expand(this.ctx.ptr, this.ptr, accs);
  }

  /** Zeroes gradient accumulators and sets d(loss)/d(loss) = 1. */
  reset(): void {
    this.#n.base.ggml_graph_reset(this.ptr);
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
  const p = loadNative().base.ggml_graph_get_grad(g.ptr, ptrOf(t)) as Ptr;
  return p ? ctx.wrap(p) : null;
}
