/**
 * SteerLM 2.0's P(a|x,y): the regression APM predicts a real number r per attribute; HelpSteer2 turns it
 * into a distribution over the attribute's integer levels with a Beta distribution of fixed concentration
 * (alpha + beta = 24) centred on r, and gives each level the Beta mass of its bin.
 *
 * Numerics: ln Γ by a Lanczos approximation and the regularized incomplete beta I_x(a, b) by its continued
 * fraction (modified Lentz), both in float64, as in the standard treatments of the incomplete beta.
 */

/** alpha + beta of the Beta distribution (the paper's 24). */
export const BETA_CONCENTRATION = 24;
/** r' is clamped to [ε, 1−ε] so that alpha and beta stay positive at the ends of the scale. */
export const BETA_EPSILON = 1e-3;

// Lanczos coefficients for g = 7, n = 9 (about 15 significant digits for x > 0).
const LANCZOS_G = 7;
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** ln Γ(x) for x > 0. */
export function lnGamma(x: number): number {
  if (!(x > 0)) throw new RangeError(`lnGamma: x must be > 0, got ${x}`);
  // Γ(x) = Γ(x+1)/x keeps the series in the range where it is accurate.
  if (x < 0.5) return lnGamma(x + 1) - Math.log(x);
  const z = x - 1;
  let s = LANCZOS[0]!;
  for (let i = 1; i < LANCZOS.length; i++) s += LANCZOS[i]! / (z + i);
  const t = z + LANCZOS_G + 0.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(s);
}

/** ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a+b). */
export function lnBeta(a: number, b: number): number {
  return lnGamma(a) + lnGamma(b) - lnGamma(a + b);
}

const CF_MAX_ITER = 500;
const CF_EPS = 1e-15;
const TINY = 1e-300;

/** The continued fraction of I_x(a,b) (without its prefactor), by the modified Lentz method. */
function betaContinuedFraction(x: number, a: number, b: number): number {
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= CF_MAX_ITER; m++) {
    const m2 = 2 * m;
    // even step: d_{2m} = m(b−m)x / ((a+2m−1)(a+2m))
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    // odd step: d_{2m+1} = −(a+m)(a+b+m)x / ((a+2m)(a+2m+1))
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < CF_EPS) return h;
  }
  throw new Error(`incomplete beta: no convergence for x=${x}, a=${a}, b=${b}`);
}

/**
 * The regularized incomplete beta I_x(a, b) = P(X ≤ x) for X ~ Beta(a, b), and its complement 1 − I_x,
 * each computed directly (not as 1 minus the other) so that both tails keep their relative precision.
 */
export function incompleteBeta(x: number, a: number, b: number): { lower: number; upper: number } {
  if (!(a > 0 && b > 0)) throw new RangeError(`incompleteBeta: a, b must be > 0, got ${a}, ${b}`);
  if (!(x >= 0 && x <= 1)) throw new RangeError(`incompleteBeta: x must be in [0, 1], got ${x}`);
  if (x === 0) return { lower: 0, upper: 1 };
  if (x === 1) return { lower: 1, upper: 0 };
  const lnFront = a * Math.log(x) + b * Math.log1p(-x) - lnBeta(a, b);
  // The fraction converges fast for x < (a+1)/(a+b+2); beyond it, use I_x(a,b) = 1 − I_{1−x}(b,a).
  if (x < (a + 1) / (a + b + 2)) {
    const lower = (Math.exp(lnFront) * betaContinuedFraction(x, a, b)) / a;
    return { lower, upper: 1 - lower };
  }
  const upper = (Math.exp(lnFront) * betaContinuedFraction(1 - x, b, a)) / b;
  return { lower: 1 - upper, upper };
}

/** I_x(a, b), the Beta(a, b) CDF at x. */
export function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  return incompleteBeta(x, a, b).lower;
}

/** Mass of Beta(a, b) on [lo, hi], from whichever tail keeps it precise. */
export function betaMass(lo: number, hi: number, a: number, b: number): number {
  const L = incompleteBeta(lo, a, b);
  const H = incompleteBeta(hi, a, b);
  // Both ends in the upper tail: the difference of the small upper tails loses nothing.
  const mass = L.lower < 0.5 ? H.lower - L.lower : L.upper - H.upper;
  return Math.max(mass, 0);
}

/** The Beta(alpha, beta) of one attribute whose prediction is r on the scale min..max. */
export function betaParams(r: number, min: number, max: number): { alpha: number; beta: number } {
  const scaled = (r - min) / (max - min);
  const clamped = Math.min(Math.max(Number.isNaN(scaled) ? 0.5 : scaled, BETA_EPSILON), 1 - BETA_EPSILON);
  const alpha = BETA_CONCENTRATION * clamped;
  return { alpha, beta: BETA_CONCENTRATION - alpha };
}

/**
 * ln P(level = v) for a prediction r on the integer scale min..max: the scale's L = max−min+1 levels
 * split [0, 1] into L equal bins, and level v gets the Beta mass of bin (v−min) (on 0..4: [v/5, (v+1)/5]).
 */
export function logLevelProbability(r: number, v: number, min: number, max: number): number {
  if (!(Number.isInteger(v) && v >= min && v <= max))
    throw new RangeError(`level ${v} is outside the scale ${min}..${max}`);
  const L = max - min + 1;
  const { alpha, beta } = betaParams(r, min, max);
  const k = v - min;
  return Math.log(betaMass(k / L, (k + 1) / L, alpha, beta));
}

/** One attribute of a: its value, the APM's prediction for it, and its scale. */
export interface AttributeTerm {
  value: number;
  prediction: number;
  min: number;
  max: number;
}

/** log P(a|x,y) = Σ over the attributes of a of ln P(a_k | r_k). */
export function logPAttributes(terms: readonly AttributeTerm[]): number {
  return terms.reduce((s, t) => s + logLevelProbability(t.prediction, t.value, t.min, t.max), 0);
}
