import { fileURLToPath } from "node:url";
import type { PeerOpts, PeerResult } from "./common.ts";

export type { PeerResult } from "./common.ts";

interface NodeReport {
  version: string;
  sync: number;
  journal: string;
  enqueuePerSec: number;
  processPerSec: number;
}

function isNodeReport(v: unknown): v is NodeReport {
  if (typeof v !== "object" || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.version === "string" &&
    typeof r.sync === "number" &&
    typeof r.journal === "string" &&
    typeof r.enqueuePerSec === "number" &&
    typeof r.processPerSec === "number"
  );
}

/** liteque needs better-sqlite3, which Bun cannot load, so the measurement runs in Node. */
export async function runPeer(opts: PeerOpts): Promise<PeerResult> {
  const script = fileURLToPath(new URL("./liteque-node.mjs", import.meta.url));
  const proc = Bun.spawn(["node", script, JSON.stringify(opts)], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  const line = stdout.trim().split("\n").at(-1) ?? "";
  if (code !== 0) throw new Error(`liteque-node.mjs exited ${code}: ${stderr.trim()}`);
  const report: unknown = JSON.parse(line);
  if (!isNodeReport(report)) throw new Error(`liteque-node.mjs: unexpected output ${line}`);
  if (report.sync !== 2 || report.journal !== "wal") {
    throw new Error(`liteque pragmas: ${report.journal}/${report.sync}`);
  }
  return {
    name: "liteque (Node)",
    version: report.version,
    durability: "WAL + synchronous=FULL (set on drizzle's better-sqlite3 handle; library default is NORMAL)",
    enqueuePerSec: report.enqueuePerSec,
    processPerSec: report.processPerSec,
    notes:
      "runs in Node 20 (better-sqlite3); Runner concurrency=50; dequeue needed a shim: liteque 0.8.0 " +
      "fails on better-sqlite3 >= 11.10 (async transaction callback)",
  };
}
