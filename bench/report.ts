/**
 * The benchmark report (docs/performance.md): what each section returns, the medians over runs,
 * the machine it ran on, and the writers of the console table, the JSON and the Markdown. Pure
 * functions but for `machineInfo` and `writeReport`; no benchmark runs here.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";

/** Another measurement of the same run a figure is compared with, as value / other. */
export interface Comparison {
  /** reference: what the figure is judged against; floor: the least any implementation on this stack does; ceiling: no work at all. */
  role: "reference" | "floor" | "ceiling";
  name: string;
  value: number;
  /** The figure's value divided by this one's. */
  ratio: number;
}

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** Latency percentiles in milliseconds, when the figure has a latency. */
  p50?: number;
  p99?: number;
  /** CPU milliseconds (user + system, all threads) per 1,000 items of the process doing the work. */
  cpuMsPer1000?: number;
  /** Peak resident set of that process during the measurement, MiB. */
  peakRssMiB?: number;
  vs?: Comparison[];
}

export interface Target {
  name: string;
  measured: number;
  op: ">=" | ">" | "<" | "<=";
  bound: number;
  unit: string;
}

export interface SectionResult {
  section: string;
  figures: Figure[];
  targets: Target[];
  /** What a reader must know: a reference that was missing, a part that failed. */
  notes: string[];
  /** Filled by the runner: wall seconds and the 1-minute load average when the section started. */
  seconds?: number;
  loadBefore?: number;
}

export interface Machine {
  cores: number;
  cpu: string;
  memoryGiB: number;
  kernel: string;
  bun: string;
  /** 1, 5 and 15 minute load averages. */
  loadBefore: number[];
  loadAfter: number[];
}

export interface Report {
  startedAt: string;
  finishedAt: string;
  runs: number;
  /** What the run did, in a sentence (the default profile or the full one, which sections). */
  profile: string;
  machine: Machine;
  /** Load before start over 0.5 per core: other work shared the machine. */
  noisy: boolean;
  sections: SectionResult[];
}

/** A figure with its comparisons, ratios computed. */
export function figure(
  name: string,
  value: number,
  unit: string,
  extra: Omit<Figure, "name" | "value" | "unit" | "vs"> & {
    vs?: { role: Comparison["role"]; name: string; value: number }[];
  } = {},
): Figure {
  const { vs, ...rest } = extra;
  const f: Figure = { name, value, unit, ...rest };
  if (vs?.length) f.vs = vs.map((c) => ({ ...c, ratio: value / c.value }));
  return f;
}

export const NOISY_LOAD_PER_CORE = 0.5;

export function isNoisy(machine: Pick<Machine, "cores" | "loadBefore">): boolean {
  return (machine.loadBefore[0] ?? 0) / machine.cores > NOISY_LOAD_PER_CORE;
}

export function isMet(t: Target): boolean {
  switch (t.op) {
    case ">=":
      return t.measured >= t.bound;
    case ">":
      return t.measured > t.bound;
    case "<":
      return t.measured < t.bound;
    case "<=":
      return t.measured <= t.bound;
  }
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const med = (xs: (number | undefined)[]): number | undefined => {
  const d = xs.filter((x): x is number => x !== undefined);
  return d.length ? median(d) : undefined;
};

/**
 * One section from several runs of it: each number is the median of its values across the runs
 * (ratios too, each taken within its own run, so a ratio is never of two different runs). Figures
 * and targets are matched by name; one that only some runs produced is kept with those.
 */
export function mergeRuns(runs: readonly SectionResult[]): SectionResult {
  const first = runs[0]!;
  if (runs.length === 1) return first;
  const n = runs.length;
  // A median of fewer runs than the report claims (a reference that failed to start in some) is said so.
  const partial: string[] = [];
  const of = (k: number, what: string) => {
    if (k < n) partial.push(`${what}: the median of ${k} of ${n} runs (the others did not measure it)`);
  };
  const names = <T extends { name: string }>(lists: T[][]) => [...new Set(lists.flat().map((x) => x.name))];
  const figures = names(runs.map((r) => r.figures)).map((name) => {
    const all = runs.flatMap((r) => r.figures.filter((f) => f.name === name));
    of(all.length, name);
    const f0 = all[0]!;
    const f: Figure = { name, value: median(all.map((f) => f.value)), unit: f0.unit };
    for (const k of ["p50", "p99", "cpuMsPer1000", "peakRssMiB"] as const) {
      const v = med(all.map((f) => f[k]));
      if (v !== undefined) f[k] = v;
    }
    // Every comparison any run made, by role and name (a run may lack one whose reference failed).
    const sameAs = (c: { role: string; name: string }) => (x: { role: string; name: string }) =>
      x.role === c.role && x.name === c.name;
    const compared = all.flatMap((f) => f.vs ?? []);
    const kinds = compared.filter((c, i) => compared.findIndex(sameAs(c)) === i);
    if (kinds.length)
      f.vs = kinds.map((c) => {
        const same = all.map((f) => f.vs?.find(sameAs(c))).filter((x) => !!x);
        of(same.length, `${name} beside ${c.name}`);
        return {
          ...c,
          value: median(same.map((x) => x.value)),
          ratio: median(same.map((x) => x.ratio)),
        };
      });
    return f;
  });
  const targets = names(runs.map((r) => r.targets)).map((name) => {
    const all = runs.flatMap((r) => r.targets.filter((t) => t.name === name));
    of(all.length, `target "${name}"`);
    return { ...all[0]!, measured: median(all.map((t) => t.measured)) };
  });
  const notes = runs.flatMap((r) => r.notes);
  const counted = [...new Set(notes)].map((note) => {
    const k = notes.filter((x) => x === note).length;
    return k < n ? `${note} (in ${k} of ${n} runs)` : note;
  });
  return {
    section: first.section,
    figures,
    targets,
    notes: [...counted, ...partial],
    seconds: med(runs.map((r) => r.seconds)),
    loadBefore: med(runs.map((r) => r.loadBefore)),
  };
}

/** The machine as the report states it; the load is read by the caller before and after. */
export function machineInfo(loadBefore: number[], loadAfter: number[]): Machine {
  let cpu = cpus()[0]?.model ?? "unknown";
  if (cpu === "unknown") {
    try {
      cpu = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? cpu;
    } catch {}
  }
  return {
    cores: cpus().length,
    cpu,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    kernel: release(),
    bun: Bun.version,
    loadBefore,
    loadAfter,
  };
}

export const loadAverage = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);

// ---- formatting ----

/** Three significant digits at most, thousands separated: 1,895 / 21.5 / 0.32. */
export function num(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : a >= 0.01 ? 3 : 4;
  return x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

const ratio = (r: number) => `${Number.isFinite(r) ? r.toFixed(2) : "–"}x`;

export function comparisons(f: Figure): string {
  return (f.vs ?? [])
    .map((c) => `${ratio(c.ratio)} ${c.name} (${c.role === "reference" ? "" : `${c.role} `}${num(c.value)})`)
    .join("; ");
}

export const targetText = (t: Target) => `${t.op === ">=" ? "≥" : t.op === "<=" ? "≤" : t.op} ${num(t.bound)}${t.unit}`;
/** A ratio always with two decimals, anything else as `num` does. */
export const measuredText = (t: Target) => (t.unit === "x" ? ratio(t.measured) : `${num(t.measured)}${t.unit}`);
export const metText = (t: Target) => (isMet(t) ? "met" : "not met");

function machineLine(r: Report): string {
  const m = r.machine;
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  return (
    `${m.cores} cores (${m.cpu}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Bun ${m.bun}; ` +
    `load before ${load(m.loadBefore)}, after ${load(m.loadAfter)}` +
    (r.noisy
      ? ` — NOISY: load before start over ${NOISY_LOAD_PER_CORE} per core (${(m.loadBefore[0]! / m.cores).toFixed(2)})`
      : "")
  );
}

const cell = (s: string) => s.replaceAll("|", "\\|");

/** The Markdown report: machine, one table of figures, one of targets, the notes. */
export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  out.push(`# Benchmark report${r.noisy ? " (noisy)" : ""}`, "");
  out.push(
    `Run ${r.startedAt} → ${r.finishedAt}; ${r.runs === 1 ? "one run" : `median of ${r.runs} runs`}; ${r.profile}.`,
  );
  out.push("", `Machine: ${machineLine(r)}.`, "");
  out.push(
    "Each figure stands beside measurements of the same run; a ratio is the figure divided by the other one " +
      "(ceiling: no work at all; floor: the least any implementation on this stack does). CPU is milliseconds " +
      "per 1,000 items of the process doing the work, all its threads.",
    "",
  );
  out.push("| section | figure | value | p50 ms | p99 ms | CPU ms / 1,000 | peak RSS MiB | beside, same run |");
  out.push("|---|---|---|---|---|---|---|---|");
  for (const s of r.sections)
    for (const f of s.figures)
      out.push(
        `| ${s.section} | ${cell(f.name)} | ${num(f.value)} ${f.unit} | ${num(f.p50)} | ${num(f.p99)} | ` +
          `${num(f.cpuMsPer1000)} | ${num(f.peakRssMiB)} | ${cell(comparisons(f))} |`,
      );
  out.push("", "## Targets", "");
  out.push("| section | target | measured | bound | |", "|---|---|---|---|---|");
  for (const s of r.sections)
    for (const t of s.targets)
      out.push(
        `| ${s.section} | ${cell(t.name)} | ${measuredText(t)} | ${targetText(t)} | ${isMet(t) ? "met" : "**not met**"} |`,
      );
  const met = r.sections.flatMap((s) => s.targets).filter(isMet).length;
  const all = r.sections.flatMap((s) => s.targets).length;
  out.push("", `${met} of ${all} targets met.`);
  const notes = r.sections.flatMap((s) => s.notes.map((n) => `- ${s.section}: ${n}`));
  if (notes.length) out.push("", "## Notes", "", ...notes);
  out.push("", "## Sections", "");
  out.push("| section | wall s | load before (1 min) |", "|---|---|---|");
  for (const s of r.sections) out.push(`| ${s.section} | ${num(s.seconds)} | ${num(s.loadBefore)} |`);
  return `${out.join("\n")}\n`;
}

/** The table printed at the end of `npm run bench`: plain text, aligned columns. */
export function renderTable(r: Report): string {
  const rows: string[][] = [
    ["section", "figure", "value", "p50 ms", "p99 ms", "CPU/1k", "RSS MiB", "beside, same run"],
  ];
  for (const s of r.sections)
    for (const f of s.figures)
      rows.push([
        s.section,
        f.name,
        `${num(f.value)} ${f.unit}`,
        num(f.p50),
        num(f.p99),
        num(f.cpuMsPer1000),
        num(f.peakRssMiB),
        comparisons(f),
      ]);
  const targets: string[][] = [["section", "target", "measured", "bound", ""]];
  for (const s of r.sections)
    for (const t of s.targets) targets.push([s.section, t.name, measuredText(t), targetText(t), metText(t)]);
  const align = (table: string[][]) => {
    const w = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    return table
      .map((row) =>
        row
          .map((c, i) => (i === row.length - 1 ? c : c.padEnd(w[i]!)))
          .join("  ")
          .trimEnd(),
      )
      .join("\n");
  };
  const notes = r.sections.flatMap((s) => s.notes.map((n) => `  ${s.section}: ${n}`));
  return [
    `${r.noisy ? "NOISY RUN. " : ""}${r.runs === 1 ? "One run" : `Median of ${r.runs} runs`}; ${r.profile}`,
    machineLine(r),
    "",
    align(rows),
    "",
    align(targets),
    ...(notes.length ? ["", "notes:", ...notes] : []),
  ].join("\n");
}

/** JSON with the met / not met of each target spelled out, so a reader needs no code. */
export function renderJson(r: Report): string {
  return `${JSON.stringify(
    {
      ...r,
      sections: r.sections.map((s) => ({ ...s, targets: s.targets.map((t) => ({ ...t, met: isMet(t) })) })),
    },
    null,
    2,
  )}\n`;
}

/**
 * Writes `<stamp>.json` and `<stamp>.md` under `dir`, and `latest.json` / `latest.md` when
 * `latest` (a run of every section); returns the paths written.
 */
export function writeReport(r: Report, dir: string, latest: boolean): string[] {
  mkdirSync(dir, { recursive: true });
  const stamp = r.startedAt.replace(/[:.]/g, "-");
  const json = renderJson(r);
  const md = renderMarkdown(r);
  const names = [`${stamp}.json`, `${stamp}.md`, ...(latest ? ["latest.json", "latest.md"] : [])];
  for (const n of names) writeFileSync(join(dir, n), n.endsWith(".json") ? json : md);
  if (latest) formatForRepo([join(dir, "latest.json"), join(dir, "latest.md")]);
  return names.map((n) => join(dir, n));
}

/**
 * The kept copy is committed, so it is written as the repository's formatter (`npm run lint`)
 * wants it: aligned tables, short arrays on one line. Without Biome installed it stays as written.
 */
export function formatForRepo(files: string[]): void {
  const biome = join(import.meta.dir, "..", "node_modules", ".bin", "biome");
  if (!existsSync(biome)) return;
  spawnSync(biome, ["format", "--write", ...files], { stdio: "ignore" });
}
