// Training jobs for the distributed engines (`steerlm export job`), re-exported by src/index.ts.
export { ENGINE_INFO, ENGINES, type Engine, type EngineInfo, parseEngine } from "./engines.js";
export { type ExportJobOptions, type ExportJobResult, exportJob } from "./export.js";
