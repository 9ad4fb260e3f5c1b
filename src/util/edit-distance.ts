/**
 * Edit distance between two sequences (of words, or of a string's characters), giving up (returning
 * budget + 1) once it must exceed `budget`.
 */
export function editDistance(a: readonly string[], b: readonly string[], budget = Infinity): number {
  // Row i of the table: prev[j] = distance(a[..i), b[..j)); the out-of-range fallbacks are never read.
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (const [i, wa] of a.entries()) {
    const cur = [i + 1];
    let best = i + 1;
    for (const [j, wb] of b.entries()) {
      const d = Math.min(
        (prev[j + 1] ?? Infinity) + 1,
        (cur[j] ?? Infinity) + 1,
        (prev[j] ?? Infinity) + (wa === wb ? 0 : 1),
      );
      cur.push(d);
      best = Math.min(best, d);
    }
    if (best > budget) return budget + 1;
    prev = cur;
  }
  return prev[b.length] ?? Infinity;
}
