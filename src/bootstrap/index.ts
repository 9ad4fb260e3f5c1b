// SteerLM step 4: bootstrapping with high-quality samples (generate at top-quality values, re-annotate).
export {
  defaultQualityKey,
  pickCombo,
  readTopCombos,
  rowSeed as bootstrapRowSeed,
  type TopCombos,
  type TopCombosOptions,
} from "./combos.js";
export {
  promptOf as bootstrapPromptOf,
  type ReadPromptsOptions as ReadBootstrapPromptsOptions,
  readPrompts as readBootstrapPrompts,
} from "./prompts.js";
export {
  BOOTSTRAP_PROGRESS_FORMAT,
  type BootstrapOptions,
  type BootstrapResult,
  runBootstrap,
} from "./run.js";
