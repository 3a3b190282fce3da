import { afterAll, beforeAll, expect, test } from "bun:test";
import { Elysia } from "elysia";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import { silentLogger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import { createHttpApp } from "../server/server.ts";
import { openSqliteStorage, type SqliteStorage } from "../store/index.ts";
import { generateToken, sha256Hex } from "./auth.ts";
import { type BackupTaker, backupRoutes } from "./backups.ts";

/**
 * POST /v1/backups against a stand-in for the backups service (src/backup/service.ts): admin only,
 * progress and the result as NDJSON, 409 while one runs. The real backup through it is tested end
 * to end (test/crash/backup.test.ts).
 */
let dir: string;
let storage: SqliteStorage;
let base = "";
let server: { stop(): unknown } | null = null;
const tokens: Record<string, string> = {};
let release: (() => void) | null = null;
let runs = 0;
let lastOpts: unknown;

const taker: BackupTaker = {
  take(onProgress, opts) {
    if (release) throw new AppError("conflict", "a backup is already running");
    runs++;
    lastOpts = opts;
    onProgress?.({ phase: "snapshot" });
    return new Promise((resolve) => {
      release = () => {
        release = null;
        onProgress?.({ done: 10, total: 10 });
        resolve({
          path: "/b/agentowl-x.tar",
          bytes: 10,
          files: 1,
          schemaVersion: 3,
          missing: { spool: 0, blobs: 0 },
          createdAt: "2026-12-01T03:17:00.000Z",
        });
      };
    });
  },
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "agentowl-backups-api-"));
  storage = openSqliteStorage({ dir });
  for (const [name, scopes] of [
    ["admin", ["admin"]],
    ["tenant", ["tenant:alpha:write"]],
  ] as const) {
    const token = generateToken();
    await storage.tokens.create({ name, hash: sha256Hex(token), scopes: [...scopes], expiresAt: null, createdBy: "t" });
    tokens[name] = token;
  }
  const app = createHttpApp({
    log: silentLogger,
    metrics: new Metrics(),
    version: "test",
    ready: async () => ({}),
  }).use(new Elysia({ prefix: "/v1", normalize: false }).use(backupRoutes(taker, storage.tokens, new ManualClock())));
  app.listen({ hostname: "127.0.0.1", port: 0 });
  server = app as unknown as typeof server;
  base = `http://127.0.0.1:${app.server!.port}`;
});

afterAll(async () => {
  server?.stop();
  await storage.close();
  rmSync(dir, { recursive: true, force: true });
});

const post = (token: string | null) =>
  fetch(`${base}/v1/backups`, { method: "POST", headers: token ? { authorization: `Bearer ${token}` } : {} });

test("only an admin may take a backup: no token 401, a tenant token 403, and nothing is started", async () => {
  expect((await post(null)).status).toBe(401);
  expect((await post(tokens.tenant!)).status).toBe(403);
  expect(runs).toBe(0);
});

test("the answer streams progress lines, then the result; a second request while it runs is 409", async () => {
  const res = await post(tokens.admin!);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("application/x-ndjson");
  expect((await post(tokens.admin!)).status).toBe(409);
  release!();
  const lines = (await res.text())
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines[0]).toEqual({ progress: { phase: "snapshot" } });
  expect(lines.at(-1)).toEqual({
    backup: {
      path: "/b/agentowl-x.tar",
      bytes: 10,
      files: 1,
      schema_version: 3,
      missing: { spool: 0, blobs: 0 },
      created_at: "2026-12-01T03:17:00.000Z",
    },
  });
});

test("max_rate in the body caps this backup (MiB/s passed on as bytes/s); a bad one is refused and starts nothing", async () => {
  const send = (body: unknown) =>
    fetch(`${base}/v1/backups`, {
      method: "POST",
      headers: { authorization: `Bearer ${tokens.admin!}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const before = runs;
  for (const bad of [{ max_rate: -1 }, { max_rate: 1.5 }, { max_rate: "fast" }, { other: 1 }])
    expect([JSON.stringify(bad), (await send(bad)).status]).toEqual([JSON.stringify(bad), 422]);
  expect(runs).toBe(before);
  const res = await send({ max_rate: 32 });
  expect(res.status).toBe(200);
  release!();
  await res.text();
  expect(lastOpts).toEqual({ maxBytesPerSecond: 32 * 2 ** 20 });
  const plain = await post(tokens.admin!);
  release!();
  await plain.text();
  expect(lastOpts).toEqual({});
});
