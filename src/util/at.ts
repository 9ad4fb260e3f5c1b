/**
 * `xs[i]` where the code has already bounded `i` (a table indexed by an attribute level, the last element
 * of a non-empty list). A miss is a bug in steerlm, not bad input, so it is a plain Error (the CLI prints
 * a stack trace and asks for a report) naming what was looked up.
 */
export function at<T>(xs: ArrayLike<T> | Readonly<Record<number, T>>, i: number, what: string): T {
  const x = (xs as Readonly<Record<number, T | undefined>>)[i];
  if (x === undefined) throw new Error(`${what}: no entry ${i}`);
  return x;
}
