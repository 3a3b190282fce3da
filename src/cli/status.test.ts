import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "./index.ts";

const dir = mkdtempSync(join(tmpdir(), "agentowl-status-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("status prints the disk use of each kind of data in the data dir, and the free space", async () => {
  const files: Record<string, number> = {
    "agentowl.db": 4096,
    "agentowl.db-wal": 1000,
    "spool/seg-1": 3000,
    "blobs/sha256/ab/abcd": 5000,
    "audit/checkpoints.jsonl": 200,
    "backups/b.tar": 7000,
    "agents/rt_1/work": 900,
  };
  for (const [path, size] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), Buffer.alloc(size));
  }
  let out = "";
  const io = { out: (t: string) => void (out += t), err: () => {}, env: { AGENTOWL_DATA_DIR: dir }, cwd: dir };
  expect(await runCli(["status", "--json"], io)).toBe(0);
  const j = JSON.parse(out);
  expect(j.kinds).toEqual({
    database: 4096,
    wal: 1000,
    spool: 3000,
    blobs: 5000,
    audit: 200,
    backups: 7000,
    agents: 900,
  });
  expect(j.free).toBeGreaterThan(0);
  out = "";
  expect(await runCli(["status"], io)).toBe(0);
  for (const kind of ["database", "wal", "spool", "blobs", "audit", "backups", "agents"])
    expect(out).toMatch(new RegExp(`^  ${kind} +\\S+ \\S+$`, "m"));
  expect(out).toMatch(/^free .* of .*%\)$/m);
});
