/**
 * `make(key)`, remembered by the key's text: for values that depend on nothing but the text and
 * are asked for again and again on a hot path (an endpoint's parsed URL, a secret's decoded key,
 * a key's JSON). At most `max` are kept; when full the table starts over, so a stream of distinct
 * texts costs memory only up to the bound. A `make` that throws remembers nothing.
 */
export function memoByText<T>(max: number, make: (key: string) => T): (key: string) => T {
  const table = new Map<string, T>();
  return (key) => {
    let value = table.get(key);
    if (value === undefined && !table.has(key)) {
      value = make(key);
      if (table.size >= max) table.clear();
      table.set(key, value);
    }
    return value as T;
  };
}
