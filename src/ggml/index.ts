// Public face of the ggml binding: handles and errors only, never a pointer or a ggml enum.
export { Backend, type BackendInfo, type BackendOptions, defaultPoll, defaultThreads } from "./backend.js";
export { GgmlShapeError } from "./context.js";
export type { DeviceName } from "./device.js";
export { type CudaMissing, CudaUnavailableError } from "./native-cuda.js";
