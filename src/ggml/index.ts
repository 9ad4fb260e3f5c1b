// Public face of the ggml binding: handles and errors only, never a pointer or a ggml enum.
export { Backend, type BackendInfo, defaultPoll, defaultThreads } from "./backend.js";
export { GgmlShapeError } from "./context.js";
