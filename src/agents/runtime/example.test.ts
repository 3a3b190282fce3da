/** examples/runtime.py, the protocol's example in another language, against the appliance's real channel. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { hashRuntimeToken, newRuntimeToken, openChannel } from "../channel.ts";

const EXAMPLE = resolve(import.meta.dir, "..", "..", "..", "examples", "runtime.py");
const python = Bun.which("python3");
let root = "";

afterEach(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

test.if(python !== null)(
  "examples/runtime.py answers hello with its token, takes configure, and answers a task",
  async () => {
    root = mkdtempSync(join(tmpdir(), "pyrt-"));
    const token = newRuntimeToken();
    const socket = join(root, "rt_py.sock");
    const refused: string[] = [];
    const channel = await openChannel({
      runtimeId: "rt_py",
      socketPath: socket,
      tokenHash: hashRuntimeToken(token),
      helloTimeoutMs: 10_000,
      onRefused: (r) => refused.push(r),
    });
    let activity = 0;
    channel.onActivity(() => activity++);
    const proc = Bun.spawn([python!, EXAMPLE], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin",
        AGENTOWL_RUNTIME_SOCKET: socket,
        AGENTOWL_RUNTIME_TOKEN: token,
        AGENTOWL_RUNTIME_ID: "rt_py",
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      await channel.authenticated;
      const template = {
        name: "echo",
        version: 1,
        instructions: "",
        model: { default: "m", allow_override: false },
        tools: [],
      };
      expect(
        await channel.request("configure", { tenant: "beta", agent: "hello", template, user_config: {} }, 5000),
      ).toEqual({});
      const event = { id: "evt_1", type: "email.received", channel: "email", data: { subject: "Hi" } };
      expect(await channel.request("task", { task_id: "tsk_1", delivery_id: "dlv_1", event }, 5000)).toEqual({
        status: "done",
        output: 'echo: {"subject": "Hi"}',
      });
      await expect(channel.request("secret.get", {}, 5000)).rejects.toMatchObject({ kind: "unavailable" });
      expect(activity).toBeGreaterThan(0);
      expect(refused).toEqual([]);
      channel.notify("shutdown", {});
      expect(await proc.exited).toBe(0);
    } finally {
      proc.kill("SIGKILL");
      await channel.close();
    }
  },
);
