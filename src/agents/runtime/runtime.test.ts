import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { hashRuntimeToken, newRuntimeToken, openChannel } from "../channel.ts";
import type { ChatMessage, ConfigureRequest, ModelChatRequest } from "../protocol.ts";
import type { RuntimeChannel } from "../types.ts";
import { MAX_TURNS, runRuntime } from "./runtime.ts";

const SRC = resolve(import.meta.dir, "..", "..");

const CONFIG: ConfigureRequest = {
  tenant: "beta",
  agent: "hello",
  template: {
    name: "helper",
    version: 3,
    instructions: "You answer mail.",
    model: { default: "llama3", allow_override: false },
    tools: [{ id: "lookup", description: "look a thing up", parameters: { type: "object" } }],
  },
  user_config: {},
};

const EVENT = { id: "evt_1", type: "email.received", channel: "email", data: { subject: "Hi", text: "hello" } };

let root: string;
let channel: RuntimeChannel;
const token = newRuntimeToken();
const logs: string[] = [];
let exited: Promise<number>;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), "rt-"));
  logs.length = 0;
  channel = await openChannel({
    runtimeId: "rt_a",
    socketPath: join(root, "rt_a.sock"),
    tokenHash: hashRuntimeToken(token),
    helloTimeoutMs: 10_000,
    onRefused: () => {},
  });
});

afterEach(async () => {
  await channel.close();
  rmSync(root, { recursive: true, force: true });
});

function start(heartbeatMs?: number) {
  exited = runRuntime({ socket: join(root, "rt_a.sock"), token, id: "rt_a" }, (l) => logs.push(l), { heartbeatMs });
  return channel.authenticated;
}

const call = (id: string, name: string, args: unknown) => ({
  id,
  type: "function",
  function: { name, arguments: JSON.stringify(args) },
});

describe("the reference runtime", () => {
  test("answers hello with its token, takes its configuration, and is ready for tasks", async () => {
    await start();
    expect(await channel.request("configure", { ...CONFIG }, 5000)).toEqual({});
    expect(logs).toContain("runtime rt_a: configured as hello of beta, template helper v3, 1 tool(s)");
  });

  test("a task before configure is refused as unavailable", async () => {
    await start();
    await expect(
      channel.request("task", { task_id: "t1", delivery_id: "d1", event: EVENT }, 5000),
    ).rejects.toMatchObject({ kind: "unavailable" });
  });

  test("a task: the model is asked without streaming with the tools, each tool call goes to tool.call, the final text answers", async () => {
    const chats: ModelChatRequest[] = [];
    const toolCalls: Record<string, unknown>[] = [];
    channel.onRequest(async (type, body) => {
      if (type === "model.chat") {
        const req = structuredClone(body) as unknown as ModelChatRequest;
        chats.push(req);
        if (!req.messages.some((m) => m.role === "tool"))
          return {
            choices: [
              {
                message: {
                  content: null,
                  tool_calls: [call("c1", "lookup", { q: "x" }), call("c2", "lookup", { q: "y" })],
                },
              },
            ],
          };
        const tools = req.messages.filter((m) => m.role === "tool").map((m) => m.content);
        return { choices: [{ message: { content: `final: ${tools.join(" | ")}` } }] };
      }
      if (type === "tool.call") {
        toolCalls.push(body);
        return (body.args as { q: string }).q === "x"
          ? { call_id: "call_1", status: "done", result: { found: 1 } }
          : { call_id: "call_2", status: "awaiting_approval", approval_id: "apr_1" };
      }
      throw new Error(type);
    });
    await start();
    await channel.request("configure", { ...CONFIG }, 5000);
    const answer = await channel.request("task", { task_id: "tsk_1", delivery_id: "dlv_1", event: EVENT }, 5000);
    expect(answer).toEqual({
      status: "done",
      output: 'final: {"found":1} | waiting for a human\'s approval (apr_1); the result will come later',
    });
    expect(chats).toHaveLength(2);
    expect(chats[0]!.messages.slice(0, 2).map((m: ChatMessage) => m.role)).toEqual(["system", "user"]);
    expect(chats[0]!.messages[0]!.content).toBe("You answer mail.");
    expect(chats[0]!.messages[1]!.content).toContain('"subject": "Hi"');
    expect(chats[0]!.tools).toEqual([
      {
        type: "function",
        function: { name: "lookup", description: "look a thing up", parameters: { type: "object" } },
      },
    ]);
    expect((chats[0] as unknown as Record<string, unknown>).stream).toBeUndefined();
    expect(chats[1]!.messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool", "tool"]);
    expect(chats[1]!.messages.slice(3).map((m) => m.tool_call_id)).toEqual(["c1", "c2"]);
    expect(toolCalls).toEqual([
      { tool: "lookup", args: { q: "x" }, task_id: "tsk_1" },
      { tool: "lookup", args: { q: "y" }, task_id: "tsk_1" },
    ]);
  });

  test(`a model that keeps asking for tools is stopped after ${MAX_TURNS} turns and the task fails`, async () => {
    let chats = 0;
    channel.onRequest(async (type) => {
      if (type === "model.chat") {
        chats++;
        return { choices: [{ message: { content: null, tool_calls: [call(`c${chats}`, "lookup", {})] } }] };
      }
      return { status: "refused", reason: "not provisioned" };
    });
    await start();
    await channel.request("configure", { ...CONFIG }, 5000);
    expect(await channel.request("task", { task_id: "t", delivery_id: "d", event: EVENT }, 5000)).toEqual({
      status: "failed",
      output: `no final answer after ${MAX_TURNS} turns`,
    });
    expect(chats).toBe(MAX_TURNS);
  });

  test("heartbeats arrive on their interval, and the runtime ends when the socket closes", async () => {
    const seen: number[] = [];
    channel.onActivity((at) => seen.push(at));
    await start(20);
    const after = seen.length;
    const end = performance.now() + 5000;
    while (seen.length < after + 3 && performance.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(seen.length).toBeGreaterThanOrEqual(after + 3);
    await channel.close();
    expect(await exited).toBe(0);
  });

  test("the shutdown notification ends it", async () => {
    await start();
    channel.notify("shutdown", {});
    expect(await exited).toBe(0);
  });

  test("`agentowl runtime` as a process: hello answered, configured, exits when the socket closes (start-up and RSS printed)", async () => {
    const t0 = performance.now();
    const proc = Bun.spawn([process.execPath, join(SRC, "main.ts"), "runtime"], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        AGENTOWL_RUNTIME_SOCKET: join(root, "rt_a.sock"),
        AGENTOWL_RUNTIME_TOKEN: token,
        AGENTOWL_RUNTIME_ID: "rt_a",
      },
      cwd: root,
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      await channel.authenticated;
      const helloMs = performance.now() - t0;
      await channel.request("configure", { ...CONFIG }, 5000);
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1];
      console.log(`agentowl runtime from source: hello answered ${helloMs.toFixed(0)} ms after spawn, RSS ${rss} kB`);
      await channel.close();
      expect(await proc.exited).toBe(0);
      expect(await new Response(proc.stdout).text()).toContain("configured as hello of beta");
    } finally {
      proc.kill("SIGKILL");
    }
  });
});

describe("what `agentowl runtime` loads", () => {
  /** Every module reachable from `file` by static or dynamic import, type-only imports excluded. */
  function reachable(file: string, seen = new Set<string>()): Set<string> {
    if (seen.has(file)) return seen;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:^import\s+(?!type\s)(?:[^;]*?\s+from\s+)?|import\()"(\.{1,2}\/[^"]+)"/gm))
      reachable(resolve(dirname(file), m[1]!), seen);
    return seen;
  }

  test("only its command file, the error kinds, the runtime and the protocol: nothing of the appliance", () => {
    const files = [...reachable(join(SRC, "cli", "runtime.ts"))].map((f) => f.slice(SRC.length + 1)).sort();
    expect(files.filter((f) => !f.startsWith("errors/"))).toEqual([
      "agents/protocol.ts",
      "agents/runtime/runtime.ts",
      "cli/runtime.ts",
    ]);
  });

  test("main.ts runs `runtime` before it imports the command table", () => {
    const main = readFileSync(join(SRC, "main.ts"), "utf8");
    expect(main).not.toMatch(/^import\s/m);
    expect(main.indexOf('import("./cli/runtime.ts")')).toBeLessThan(main.indexOf('import("./cli/index.ts")'));
  });
});
