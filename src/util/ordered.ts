/**
 * `fn` over `items` with at most `concurrency` results pending (running, or done and not yet taken),
 * yielded in the items' order: a quick late item waits for the slow early ones, so a job that writes as
 * it goes writes the same file whatever order the calls finish in. When the consumer stops early or a
 * call fails, the calls still pending are aborted through their signal and their outcomes dropped.
 */
export async function* mapOrdered<T, R>(
  items: readonly T[],
  concurrency: number,
  fn: (item: T, index: number, signal: AbortSignal) => Promise<R>,
): AsyncGenerator<R> {
  const stop = new AbortController();
  const pending: Array<Promise<R>> = [];
  let next = 0;
  const fill = () => {
    while (next < items.length && pending.length < Math.max(1, concurrency)) {
      const i = next++;
      const call = fn(items[i]!, i, stop.signal);
      call.catch(() => {}); // taken in order below; one abandoned on an early stop must not go unhandled
      pending.push(call);
    }
  };
  try {
    fill();
    while (pending.length > 0) {
      const result = await (pending[0] as Promise<R>);
      pending.shift();
      fill();
      yield result;
    }
  } finally {
    stop.abort();
  }
}
