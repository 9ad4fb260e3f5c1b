// `steerlm demo` and steerability evaluation (re-exported by src/index.ts).

export {
  DEMO_PLANS,
  type DemoOptions,
  type DemoPlan,
  type DemoReport,
  formatDemoReport,
  runDemo,
} from "./demo.js";
export {
  type AttributeResult,
  type EvaluateOptions,
  evaluateSteerability,
  type Sample as SteerSample,
  type SteerabilityReport,
} from "./evaluate.js";
