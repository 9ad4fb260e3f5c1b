/** Learning-rate schedule: linear warmup from 0, then cosine decay to minLrRatio·lr at totalSteps. */
export interface ScheduleOptions {
  lr: number;
  warmupSteps: number;
  /** Steps of the whole run; 0 = constant after warmup. */
  totalSteps: number;
  /** Floor of the cosine as a fraction of lr. */
  minLrRatio: number;
}

/** LR for optimiser step `step` (1-based: the first update is step 1). */
export function learningRate(s: ScheduleOptions, step: number): number {
  if (s.warmupSteps > 0 && step <= s.warmupSteps) return (s.lr * step) / s.warmupSteps;
  if (s.totalSteps <= 0 || s.totalSteps <= s.warmupSteps) return s.lr;
  const progress = Math.min(1, (step - s.warmupSteps) / (s.totalSteps - s.warmupSteps));
  const floor = s.lr * s.minLrRatio;
  return floor + (s.lr - floor) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
