/** A child's output as lines: each at most MAX_LINE_BYTES (the rest of a longer one is dropped), the last MAX_LINES kept. */
export const MAX_LINE_BYTES = 8 * 1024;
export const MAX_LINES = 500;

/** The last `max` items pushed. */
export class Ring<T> {
  private readonly items: T[] = [];
  constructor(private readonly max = MAX_LINES) {}
  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.max) this.items.shift();
  }
  list(): T[] {
    return [...this.items];
  }
}

/** Text in, lines out: a line longer than `maxLine` bytes is cut there and marked ` […]`. */
export class LineSplitter {
  private partial = "";
  /** The current line grew past the limit: drop the rest of it, up to its newline. */
  private cut = false;

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxLine = MAX_LINE_BYTES,
  ) {}

  push(text: string): void {
    let start = 0;
    for (let nl = text.indexOf("\n", start); nl >= 0; nl = text.indexOf("\n", start)) {
      this.add(text.slice(start, nl));
      this.end();
      start = nl + 1;
    }
    this.add(text.slice(start));
  }

  /** The output ended: a last line without its newline counts. */
  flush(): void {
    if (this.partial || this.cut) this.end();
  }

  private add(piece: string): void {
    if (this.cut || !piece) return;
    const room = this.maxLine - Buffer.byteLength(this.partial);
    if (Buffer.byteLength(piece) <= room) {
      this.partial += piece;
      return;
    }
    // Cut at a character boundary within the room left.
    let keep = piece.slice(0, room);
    while (Buffer.byteLength(keep) > room) keep = keep.slice(0, -1);
    this.partial += keep;
    this.cut = true;
  }

  private end(): void {
    const line = this.cut ? `${this.partial} […]` : this.partial;
    this.partial = "";
    this.cut = false;
    this.onLine(line);
  }
}
