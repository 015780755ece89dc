/**
 * A function of a string remembered for the strings seen lately: requests repeat the same few paths and URLs,
 * so a value computed once serves the next ones. At most `limit` are kept (all are forgotten when it is reached,
 * so a client sending ever new strings only costs the computation it would cost anyway). A call that throws is
 * not remembered.
 */
export function rememberedLately<T>(limit: number, compute: (key: string) => T): (key: string) => T {
  const remembered = new Map<string, T>();
  return (key) => {
    if (remembered.has(key)) return remembered.get(key)!;
    const value = compute(key);
    if (remembered.size >= limit) remembered.clear();
    remembered.set(key, value);
    return value;
  };
}
