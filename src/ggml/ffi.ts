/**
 * The C types that the prototypes in native*.ts use, each registered with koffi and mapped to a TypeScript
 * type here, once. A prototype string is then the only statement of a function's signature: `Bound` derives
 * its TypeScript type from it at compile time, so the declared C function and the way TypeScript calls it
 * cannot disagree. Layouts are copied from ggml/include/*.h at the commit native.ts names.
 */
import koffi, { type KoffiFunc, type LibraryHandle } from "koffi";

/**
 * A C pointer as koffi 3 passes it (a bigint), branded with the C type it points to: koffi itself accepts
 * any pointer anywhere, and a tensor passed as a context crashes ggml. Never leaves src/ggml.
 */
export type Handle<T extends string> = bigint & { readonly [pointee]: T };
declare const pointee: unique symbol;
export type CtxPtr = Handle<"ggml_context">;
export type TensorPtr = Handle<"ggml_tensor">;
export type GraphPtr = Handle<"ggml_cgraph">;
export type BackendPtr = Handle<"ggml_backend">;
export type BufferPtr = Handle<"ggml_backend_buffer">;
export type BufferTypePtr = Handle<"ggml_backend_buffer_type">;
export type GallocrPtr = Handle<"ggml_gallocr">;
export type ThreadpoolPtr = Handle<"ggml_threadpool">;
/** A custom op's function (ggml_custom_op_t): one of steerlm's kernels (native/*.c). */
export type KernelFn = Handle<"ggml_custom_op_t">;
/**
 * A custom op's 32-bit parameter as its userdata word, which ggml copies into the node: a pointer-sized
 * value, never dereferenced, so no memory has to outlive the graph. `userdataBits`: flags as they are;
 * `userdataWord`: an f32's bits.
 */
export type UserdataWord = Handle<"ggml_userdata">;
export function userdataBits(bits: number): UserdataWord {
  return BigInt(bits >>> 0) as UserdataWord;
}
export function userdataWord(value: number): UserdataWord {
  return userdataBits(new Uint32Array(Float32Array.of(value).buffer)[0] as number);
}
/** ggml_log_callback, registered with koffi. */
export type LogCallback = Handle<"ggml_log_callback_t">;

for (const name of [
  "ggml_context",
  "ggml_tensor",
  "ggml_cgraph",
  "ggml_backend",
  "ggml_backend_buffer",
  "ggml_backend_buffer_type",
  "ggml_gallocr",
  "ggml_threadpool",
  "ggml_userdata",
]) {
  koffi.opaque(name);
}
koffi.proto("void ggml_log_callback_t(int level, const char *text, void *user_data)");
koffi.proto("void ggml_custom_op_t(ggml_tensor *dst, int ith, int nth, void *userdata)");

/** struct ggml_init_params. mem_buffer is always NULL here: ggml allocates the context's memory itself. */
export interface InitParams {
  mem_size: number;
  mem_buffer: null;
  no_alloc: boolean;
}
koffi.struct("ggml_init_params", { mem_size: "size_t", mem_buffer: "void *", no_alloc: "bool" });

/** struct ggml_threadpool_params (GGML_MAX_N_THREADS = 512); prio is an enum ggml_sched_priority. */
export interface ThreadpoolParams {
  cpumask: boolean[];
  n_threads: number;
  prio: number;
  poll: number;
  strict_cpu: boolean;
  paused: boolean;
}
koffi.struct("ggml_threadpool_params", {
  cpumask: koffi.array("bool", 512),
  n_threads: "int",
  prio: "int",
  poll: "uint32_t",
  strict_cpu: "bool",
  paused: "bool",
});

/** Structs by value (or by pointer, which koffi fills from and back into the same object). */
interface Structs {
  ggml_init_params: InitParams;
  ggml_threadpool_params: ThreadpoolParams;
}
/** Scalars as parameters (koffi gives a 64-bit result as a bigint when it exceeds 2^53: see `Result`). */
interface Scalars {
  void: undefined;
  bool: boolean;
  int: number;
  uint32_t: number;
  int64_t: number;
  size_t: number;
  float: number;
  double: number;
}

type Trim<S extends string> = S extends ` ${infer R}` ? Trim<R> : S extends `${infer R} ` ? Trim<R> : S;
/** "*x" → "*", "**x" → "**", "x" → "": the stars that open a parameter name. */
type Stars<S extends string> = S extends `*${infer R}` ? `*${Stars<R>}` : "";
/** A C type as written, name dropped: "ggml_tensor *a" → "ggml_tensor *", "int64_t ne0" → "int64_t". */
type Spelling<S extends string> =
  Trim<S> extends `${infer B}*${infer R}`
    ? `${Trim<B>} *${Stars<R>}`
    : Trim<S> extends `${infer T} ${string}`
      ? T
      : Trim<S>;
/** koffi's direction qualifiers and const say nothing about the JavaScript value. */
type Unqualified<C extends string> = C extends `${"const " | "_In_ " | "_Out_ " | "_Inout_ "}${infer R}`
  ? Unqualified<R>
  : C;
/** A spelling no rule below knows: calls through it do not compile, and the message names it. */
interface UnknownCType<C extends string> {
  unknownCType: C;
}

/** What JavaScript passes for a parameter of C type `C`. */
type Arg<C extends string> =
  Unqualified<C> extends infer U extends string
    ? U extends keyof Scalars
      ? Scalars[U]
      : U extends keyof Structs
        ? Structs[U]
        : U extends `${infer S extends keyof Structs} *`
          ? Structs[S]
          : U extends "char *"
            ? string
            : U extends `${"void" | keyof Scalars} *`
              ? ArrayBufferView
              : U extends `${infer T} **`
                ? ReadonlyArray<Handle<T> | null>
                : U extends `${infer T} *`
                  ? Handle<T>
                  : UnknownCType<C>
    : never;
/** What a function returning C type `C` gives back: pointers may be NULL. */
type Result<C extends string> = C extends "int64_t" | "size_t"
  ? number | bigint
  : C extends `${string}char *`
    ? string | null
    : C extends `${infer T} *`
      ? Handle<T> | null
      : Arg<C>;
/**
 * A parameter named `…_or_null` may be NULL (ggml documents which: a softmax without a mask, RoPE without
 * frequency factors, no user data); every other pointer parameter must not be.
 */
type Param<P extends string> = P extends `${string}_or_null` ? Arg<Spelling<P>> | null : Arg<Spelling<P>>;

/** The parameters of a list (callbacks are passed through their typedef, so no comma nests). */
type Split<S extends string> = S extends `${infer H},${infer R}`
  ? [H, ...Split<R>]
  : Trim<S> extends ""
    ? []
    : [S];
type Params<L extends readonly string[]> = { [I in keyof L]: Param<L[I]> };
type Head<P extends string> = P extends `${infer H}(${string}` ? H : never;
type LastWord<S extends string> = S extends `${string} ${infer R}`
  ? LastWord<R>
  : S extends `${string}*${infer R}`
    ? LastWord<R>
    : S;
/** "ggml_tensor * ggml_add(ggml_context *ctx, …)" → "ggml_add". */
export type NameOf<P extends string> = LastWord<Trim<Head<P>>>;
/** The TypeScript type of the C function that prototype `P` declares. */
export type Signature<P extends string> = P extends `${infer H}(${infer L})`
  ? H extends `${infer R}${NameOf<P>}`
    ? (...args: Params<Split<L>>) => Result<Spelling<R>>
    : never
  : never;
/** The functions that prototypes `P` declare, by name, each typed from its own (`.async`: on a worker). */
export type Bound<P extends readonly string[]> = {
  readonly [S in P[number] as NameOf<S>]: KoffiFunc<Signature<S>>;
};

/** Declares every C prototype in `prototypes` (copied from the library's headers) in `lib`. */
export function declare<const P extends readonly string[]>(lib: LibraryHandle, prototypes: P): Bound<P> {
  const fns: Record<string, unknown> = {};
  for (const p of prototypes) {
    const fn = lib.func(p);
    fns[fn.info.name] = fn;
  }
  // the one place where koffi's untyped functions take the types their prototypes give them
  return fns as Bound<P>;
}

/** Byte offsets inside struct ggml_tensor (ggml.h): type(4)+pad(4)+buffer(8), then ne[4] and nb[4]. */
export const TENSOR_TYPE_OFFSET = 0;
export const TENSOR_NE_OFFSET = 16;
export const TENSOR_NB_OFFSET = 48;
/** ... then `enum ggml_op op`, op_params[16], flags, src[10] (at 152), view_src, view_offs, data (at 248). */
export const TENSOR_OP_OFFSET = 80;
export const TENSOR_SRC_OFFSET = 152;
export const TENSOR_DATA_OFFSET = 248;
/** ggml_custom_4d's op (enum ggml_op). */
export const GGML_OP_CUSTOM = 95;

export type Quad = readonly [number, number, number, number];

/** A tensor's type (its enum ggml_type comes first), shape ne[4] and byte strides nb[4], read from ggml. */
export function tensorLayout(t: TensorPtr): { type: number; ne: Quad; nb: Quad } {
  const quad = (offset: number): Quad => {
    const [a = 0, b = 0, c = 0, d = 0] = Array.from(
      koffi.decode(t, offset, "int64_t", 4) as ArrayLike<number | bigint>,
      Number,
    );
    return [a, b, c, d];
  };
  return {
    type: Number(koffi.decode(t, TENSOR_TYPE_OFFSET, "int32_t")),
    ne: quad(TENSOR_NE_OFFSET),
    nb: quad(TENSOR_NB_OFFSET),
  };
}

/** The tensor's op (enum ggml_op). */
export function tensorOp(t: TensorPtr): number {
  return Number(koffi.decode(t, TENSOR_OP_OFFSET, "int32_t"));
}

/** The tensor's first `n` sources (src[]), NULL where it has fewer. */
export function tensorSources(t: TensorPtr, n: number): Array<TensorPtr | null> {
  return Array.from(koffi.decode(t, TENSOR_SRC_OFFSET, "ggml_tensor *", n) as ArrayLike<TensorPtr | null>);
}
