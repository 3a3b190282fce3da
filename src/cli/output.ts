import YAML from "yaml";
import type { CommandIO } from "./command.ts";
import type { ApiClient } from "./client.ts";

/**
 * What the CLI prints for people: tables, YAML, times, and a progress bar on stderr. Scripts
 * pass --json and get the API's own JSON instead.
 */

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [headers, ...rows].map((r) => formatRow(r, widths)).join("\n") + "\n";
}

/** One row at fixed widths (for output that streams, where the widths cannot wait for every row). */
export function formatRow(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
    .join("  ")
    .trimEnd();
}

/**
 * A value as one table cell: "-" for nothing, lists comma-joined, objects as compact JSON, cut
 * at `max` characters. Control characters become "?": a value from the wire (a mail subject, a
 * log field) must not be able to move the cursor or recolour the operator's terminal.
 */
export function cell(value: unknown, max = 60): string {
  let text: string;
  if (value === null || value === undefined || value === "") text = "-";
  else if (Array.isArray(value))
    text = value.length ? value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(",") : "-";
  else if (typeof value === "object") text = JSON.stringify(value);
  else text = String(value);
  text = safeText(text);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Control characters (C0, DEL, C1) replaced by "?". */
export const safeText = (text: string): string => text.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");

/** An ISO time to the second, in UTC: `2026-11-21 14:02:11Z`. */
export function time(value: unknown): string {
  if (typeof value !== "string" && typeof value !== "number") return "-";
  const ms = typeof value === "number" ? value : Date.parse(value);
  return Number.isNaN(ms)
    ? cell(value)
    : new Date(ms)
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d+Z$/, "Z");
}

export const toYaml = (value: unknown): string => YAML.stringify(value, { lineWidth: 0 });
export const toJson = (value: unknown): string => `${JSON.stringify(value, null, 2)}\n`;

const BAR_WIDTH = 24;
const REDRAW_MS = 80;
const SPINNER = "|/-\\";

/**
 * A one-line progress indicator on stderr, redrawn in place: a bar when the total is known, a
 * spinner and a count when not. Silent unless stderr is a terminal and the output is for people,
 * so that scripts and logs never see carriage returns.
 */
export class Progress {
  private drawn = false;
  private lastDraw = 0;
  private frame = 0;
  private timer: Timer | null = null;
  private readonly started = performance.now();

  constructor(
    private readonly io: CommandIO,
    private readonly label: string,
    readonly enabled: boolean,
  ) {}

  /** `done` of `total` (unknown total: a running count). */
  update(done: number, total?: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (this.drawn && now - this.lastDraw < REDRAW_MS && done !== total) return;
    this.lastDraw = now;
    let line: string;
    if (total) {
      const filled = Math.round((Math.min(done, total) / total) * BAR_WIDTH);
      line = `${this.label} [${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}] ${Math.floor((done / total) * 100)}% ${done}/${total}`;
    } else {
      line = `${this.label} ${SPINNER[this.frame++ % SPINNER.length]} ${done}`;
    }
    this.draw(line);
  }

  /** For one long request: a spinner and the seconds elapsed, until done(). */
  spin(): void {
    if (!this.enabled || this.timer) return;
    const tick = () =>
      this.draw(
        `${this.label} ${SPINNER[this.frame++ % SPINNER.length]} ${((performance.now() - this.started) / 1000).toFixed(1)} s`,
      );
    this.timer = setInterval(tick, 100);
  }

  /** Erase the line; the command's own output follows. */
  done(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.drawn) this.io.err("\r\u001b[2K");
    this.drawn = false;
  }

  private draw(line: string): void {
    this.io.err(`\r\u001b[2K${line}`);
    this.drawn = true;
  }
}

/** A progress indicator for this command: only on a terminal, never with --json. */
export const progressFor = (io: CommandIO, label: string, values: Record<string, unknown>): Progress =>
  new Progress(io, label, Boolean(io.tty?.stderr) && !values.json);

/** Every item of a list (`client.listAll`), with the progress line a terminal shows while more pages come. */
export async function listShowingProgress<T>(
  client: Pick<ApiClient, "listAll">,
  path: string,
  io: CommandIO,
  label: string,
  values: Record<string, unknown>,
  opts: Omit<NonNullable<Parameters<ApiClient["listAll"]>[1]>, "onPage"> = {},
): Promise<T[]> {
  const progress = progressFor(io, label, values);
  try {
    return await client.listAll<T>(path, { ...opts, onPage: (n, more) => more && progress.update(n, opts.max) });
  } finally {
    progress.done();
  }
}
