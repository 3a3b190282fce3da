/**
 * A start-up that fails half-way undoes what it had acquired, in reverse order: the data dir's
 * lock, the database, the workers and timers, the HTTP listener. The next start on the same data
 * dir then succeeds in the same process.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApp } from "../../src/app/app.ts";
import { loadConfig } from "../../src/config/index.ts";
import { silentLogger } from "../../src/core/log.ts";

const root = mkdtempSync(join(tmpdir(), "agentowl-startup-failure-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const config = (smtp: string) =>
  loadConfig({
    env: {
      AGENTOWL_DATA_DIR: join(root, "data"),
      AGENTOWL_HTTP_LISTEN: "127.0.0.1:0",
      AGENTOWL_SMTP_LISTEN: smtp,
      AGENTOWL_SMTP_GREETING_DELAY: "0ms",
    },
    cwd: root,
  });

test("a start-up that fails at its last step (the SMTP port taken) releases everything; the next start on the same data dir succeeds", async () => {
  const taken = createServer().listen(0, "127.0.0.1");
  await new Promise((r) => taken.once("listening", r));
  const port = (taken.address() as { port: number }).port;
  try {
    await expect(startApp({ config: config(`127.0.0.1:${port}`), log: silentLogger })).rejects.toThrow(
      `cannot listen on 127.0.0.1:${port}: EADDRINUSE`,
    );
  } finally {
    taken.close();
  }
  // The lock, the database and the HTTP listener were let go: a second start takes them.
  const app = await startApp({ config: config("127.0.0.1:0"), log: silentLogger });
  expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
  expect((await app.stop()).forced).toBe(false);
});
