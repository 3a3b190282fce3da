/**
 * Messages to another thread, gathered per turn of the event loop: everything posted in one turn
 * goes as one array, so a busy thread pays one `postMessage` (and wakes the other thread once)
 * for many items instead of once each. The receiver handles the array's items in order.
 */
export function postBatcher<T>(post: (items: T[]) => void): (item: T) => void {
  let batch: T[] | null = null;
  const flush = (): void => {
    const items = batch!;
    batch = null;
    post(items);
  };
  return (item) => {
    if (batch) batch.push(item);
    else {
      batch = [item];
      setImmediate(flush);
    }
  };
}
