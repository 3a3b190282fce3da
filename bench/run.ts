/**
 * `npm run bench [-- [--runs N] [--full] [name...]]`: runs the named benchmark sections (all when
 * none is named), each printing its figures beside references measured in the same run, then
 * prints one table of every figure and target and writes it as JSON and Markdown under
 * bench/results/ (docs/performance.md says how to read it).
 *
 * The default shortens the sections so that all of them fit in about six minutes on the 2-core
 * development machine (DEFAULTS below); `--full` runs each at its own length. `--runs N` runs
 * every section N times and reports the medians (each ratio taken within its run). A run of
 * every section also replaces bench/results/latest.{json,md}, the copy kept in the repository.
 */
import { join } from "node:path";
import {
  isNoisy,
  loadAverage,
  machineInfo,
  mergeRuns,
  type Report,
  renderTable,
  type SectionResult,
  writeReport,
} from "./report.ts";

/** The default profile's lengths, where the section's own default is longer (environment wins). */
const DEFAULTS: Record<string, string> = {
  BENCH_SMTP_QUICK: "1",
  BENCH_HTTP_SECONDS: "6",
  BENCH_DISPATCH_SECONDS: "6",
  BENCH_DISPATCH_MAILS: "500",
  BENCH_JOBS: "20000",
  BENCH_PEER_JOBS: "1000",
  BENCH_POLICY_DECISIONS: "1000000",
  BENCH_STARTUP_RUNS: "9",
  BENCH_CONSOLE_LOADS: "100",
  BENCH_CONSOLE_LIVE: "60",
  BENCH_OPS_EVENTS: "10000",
  BENCH_OPS_BLOB_MIB: "128",
  BENCH_OPS_BASELINE_SECONDS: "5",
  BENCH_PG_JOBS: "20000",
  BENCH_PG_ROUNDS: "1",
  BENCH_PG_SECONDS: "4",
  BENCH_AGENTS_CLAIMS: "200",
  BENCH_AGENTS_CALLS: "200",
  BENCH_AGENTS_COLD: "15",
  BENCH_AGENTS_IDLE: "5",
  BENCH_AGENTS_FIRST: "20",
};

type Bench = () => Promise<SectionResult | undefined | void>;
const BENCHES: Record<string, Bench> = {
  smtp: async () => (await import("./smtp-section.ts")).smtpSection(await (await import("./smtp.ts")).benchSmtp()),
  http: async () => (await import("./http.ts")).benchHttp(),
  dispatch: async () => (await import("./dispatch.ts")).benchDispatch(),
  queue: async () => (await import("./queue.ts")).benchQueue(),
  policy: async () => (await import("./policy.ts")).benchPolicy(),
  audit: async () => (await import("./audit.ts")).benchAudit(),
  startup: async () => (await import("./startup.ts")).benchStartup(),
  console: async () => (await import("./console.ts")).benchConsole(),
  ops: async () => (await import("./ops.ts")).benchOps(),
  postgres: async () => (await import("./postgres.ts")).benchPostgres(),
  agents: async () => (await import("./agents.ts")).benchAgents(),
};

function parseArgs(argv: string[]): { names: string[]; runs: number; full: boolean } {
  const names: string[] = [];
  let runs = 1;
  let full = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--runs") runs = Number(argv[++i]);
    else if (a.startsWith("--runs=")) runs = Number(a.slice("--runs=".length));
    else if (a === "--full") full = true;
    else if (a.startsWith("-")) throw new Error(`unknown option ${a}`);
    else names.push(a);
  }
  if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs takes a whole number ≥ 1");
  return { names, runs, full };
}

let args: ReturnType<typeof parseArgs>;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  console.error(`bench: ${(e as Error).message} (usage: npm run bench -- [--runs N] [--full] [name...])`);
  process.exit(2);
}
for (const name of args.names) {
  if (!BENCHES[name]) {
    console.error(`bench: unknown benchmark '${name}' (known: ${Object.keys(BENCHES).join(", ")})`);
    process.exit(2);
  }
}
if (!args.full) for (const [k, v] of Object.entries(DEFAULTS)) process.env[k] ??= v;

const names = args.names.length ? args.names : Object.keys(BENCHES);
const startedAt = new Date();
const loadBefore = loadAverage();
const perSection = new Map<string, SectionResult[]>(names.map((n) => [n, []]));
for (let run = 1; run <= args.runs; run++) {
  for (const name of names) {
    console.log(`\n=== ${name}${args.runs > 1 ? ` (run ${run} of ${args.runs})` : ""} ===`);
    const load = loadAverage()[0]!;
    const t0 = performance.now();
    let result: SectionResult;
    try {
      const r = await BENCHES[name]!();
      result = r ?? { section: name, figures: [], targets: [], notes: ["printed its figures only (returns none)"] };
    } catch (e) {
      console.error(`bench ${name} failed:`, e);
      result = { section: name, figures: [], targets: [], notes: [`failed: ${(e as Error).message}`] };
    }
    perSection.get(name)!.push({ ...result, seconds: (performance.now() - t0) / 1000, loadBefore: load });
  }
}

const machine = machineInfo(loadBefore, loadAverage());
const report: Report = {
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  runs: args.runs,
  profile:
    `${args.full ? "full lengths (--full)" : "default profile (shortened to fit about 6 minutes)"}, ` +
    `sections: ${names.join(", ")}`,
  machine,
  noisy: isNoisy(machine),
  sections: names.map((n) => mergeRuns(perSection.get(n)!)),
};
console.log(`\n${"=".repeat(30)} report ${"=".repeat(30)}\n`);
console.log(renderTable(report));
const written = writeReport(report, join(import.meta.dir, "results"), args.names.length === 0);
console.log(`\nwritten: ${written.map((p) => p.slice(join(import.meta.dir, "..").length + 1)).join(", ")}`);
process.exit(0);
