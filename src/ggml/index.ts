// Public face of the ggml binding: handles and errors only, never a pointer or a ggml enum. Owners of native
// memory (Backend, Context, Buffer, GraphAllocator; LlamaModel and Trainer above them) are Disposable: write
// `using x = …` (TypeScript lowers it for our ES2022 target; Node 20.19 has Symbol.dispose) or try/finally
// with free(). A second free does nothing; a freed object throws when used.
export { Backend, type BackendInfo, type BackendOptions, defaultPoll, defaultThreads } from "./backend.js";
export type { DeviceName } from "./device.js";
export { type CudaMissing, CudaUnavailableError } from "./native-cuda.js";
export { amxF32Products, bf16OnAmx, gemmScratch } from "./native-kernels.js";
export { measurePeak, type PeakMeasure, type PeakPrecision, type PeakReport, peakReport } from "./peak.js";
export { GgmlShapeError } from "./shape-error.js";
