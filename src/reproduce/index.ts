// `steerlm reproduce`: SteerLM's ablation on SteerBench (re-exported by src/index.ts).
export {
  ARM_DESCRIPTIONS,
  ARMS,
  type Arm,
  REPRODUCE_PLANS,
  REPRODUCE_SEEDS,
  type ReproducePlan,
} from "./plan.js";
export {
  type ArmFigures,
  type CurveFigures,
  formatReport as formatReproduceReport,
  type ReproduceReport,
} from "./report.js";
export { type ReproduceOptions, runReproduce } from "./run.js";
