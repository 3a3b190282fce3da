import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createConnection, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../core/clock.ts";
import { AppError } from "../errors/index.ts";
import { hashRuntimeToken, newRuntimeToken, openChannel, type ChannelOptions } from "./channel.ts";
import { type Message, Peer, type PeerRequestHandler, ProtocolError } from "./protocol.ts";
import type { RuntimeChannel } from "./types.ts";

let root: string;
let socketPath: string;
const token = newRuntimeToken();
const channels: RuntimeChannel[] = [];
const clients: Socket[] = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "chan-"));
  socketPath = join(root, "agents", "run", "rt_test.sock");
});

afterEach(async () => {
  for (const s of clients.splice(0)) s.destroy();
  for (const c of channels.splice(0)) await c.close();
  rmSync(root, { recursive: true, force: true });
});

async function open(over: Partial<ChannelOptions> = {}) {
  const refused: string[] = [];
  const ch = await openChannel({
    runtimeId: "rt_test",
    socketPath,
    tokenHash: hashRuntimeToken(token),
    helloTimeoutMs: 5000,
    onRefused: (r) => refused.push(r),
    ...over,
  });
  channels.push(ch);
  return { ch, refused };
}

/** A runtime's side: answers hello with `tok`, and `handler` for the rest. */
async function connect(tok: string, handler: PeerRequestHandler = () => ({})) {
  const socket = createConnection(socketPath);
  clients.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  const received: Message[] = [];
  const hellos: Record<string, unknown>[] = [];
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  const peer = new Peer(socket, {
    onRequest: (type, body) => {
      if (type === "hello") {
        hellos.push(body);
        return { token: tok };
      }
      return handler(type, body);
    },
    onMessage: (m) => received.push(m),
  });
  return { peer, received, hellos, closed };
}

describe("openChannel", () => {
  test("the socket's directory is 0700, the socket 0600, a stale socket file is replaced, close removes it", async () => {
    mkdirSync(join(root, "agents", "run"), { recursive: true, mode: 0o755 });
    // A socket file left by a process that died (Python's bind leaves it behind when it exits).
    const made = Bun.spawnSync([
      "python3",
      "-c",
      "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])",
      socketPath,
    ]);
    expect(made.exitCode).toBe(0);
    expect(statSync(socketPath).isSocket()).toBe(true);
    const { ch } = await open();
    expect(statSync(join(root, "agents", "run")).mode & 0o777).toBe(0o700);
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    await ch.close();
    expect(existsSync(socketPath)).toBe(false);
  });

  test("a file at the socket path that is not a socket is not removed", async () => {
    mkdirSync(join(root, "agents", "run"), { recursive: true });
    writeFileSync(socketPath, "data");
    await expect(open()).rejects.toMatchObject({ kind: "conflict" });
    expect(existsSync(socketPath)).toBe(true);
  });

  test("a socket path longer than a Unix socket allows is refused with what to do", async () => {
    socketPath = join(root, "x".repeat(120), "rt.sock");
    await expect(open()).rejects.toMatchObject({ kind: "config_invalid" });
  });

  test("the runtime with its token is authenticated after hello; requests go both ways; activity carries the clock's time", async () => {
    const clock = new ManualClock();
    const { ch, refused } = await open({ clock });
    const seen: number[] = [];
    ch.onActivity((at) => seen.push(at));
    ch.onRequest(async (type, body) => ({ handled: type, body }));
    const rt = await connect(token, (type, body) => ({ task: type, id: body.task_id }));
    await ch.authenticated;
    expect(rt.hellos).toEqual([{ protocol: 1, runtime: "rt_test" }]);
    expect(seen).toEqual([clock.now()]);
    expect(await ch.request("task", { task_id: "t1" }, 1000)).toEqual({ task: "task", id: "t1" });
    clock.advance(5000);
    expect(await rt.peer.request("tool.call", { tool: "x", args: {} }, 1000)).toEqual({
      handled: "tool.call",
      body: { tool: "x", args: {} },
    });
    expect(seen.at(-1)).toBe(clock.now());
    rt.peer.notify("heartbeat");
    const before = seen.length;
    await waitFor(() => seen.length > before);
    expect(refused).toEqual([]);
  });

  test("a wrong token is refused: the connection is closed, the refusal reported, and authenticated fails", async () => {
    const { ch, refused } = await open();
    const rt = await connect("rtt_wrong");
    await expect(ch.authenticated).rejects.toMatchObject({ kind: "unauthenticated" });
    await rt.closed;
    expect(refused).toEqual(["wrong token"]);
    expect(rt.received.find((m) => m.type === "error")).toMatchObject({ code: "unauthenticated" });
    await expect(ch.request("task", {}, 1000)).rejects.toMatchObject({ kind: "unavailable" });
  });

  test("a second connection while one is authenticated is refused; the first keeps working", async () => {
    const { ch, refused } = await open();
    ch.onRequest(async () => ({ ok: 1 }));
    const first = await connect(token, () => ({ first: true }));
    await ch.authenticated;
    const second = await connect(token);
    await second.closed;
    expect(refused).toEqual(["a second connection while one is open"]);
    expect(second.hellos).toEqual([]);
    expect(await ch.request("task", {}, 1000)).toEqual({ first: true });
  });

  test("after the connection ends, the runtime may connect again with its token", async () => {
    const { ch } = await open();
    const first = await connect(token);
    await ch.authenticated;
    first.peer.close();
    await first.closed;
    await waitFor(async () => (await ch.request("t", {}, 1000).catch((e) => e)) instanceof AppError);
    const again = await connect(token, () => ({ again: true }));
    await waitFor(() => again.hellos.length === 1);
    await waitFor(async () => JSON.stringify(await ch.request("t", {}, 1000).catch(() => null)) === '{"again":true}');
  });

  test("requests before hello was answered are refused unauthenticated, and the handler does not see them", async () => {
    const { ch } = await open();
    const calls: string[] = [];
    ch.onRequest(async (type) => calls.push(type));
    // A client that never answers hello but asks for a tool.
    const socket = createConnection(socketPath);
    clients.push(socket);
    await new Promise((r) => socket.once("connect", r));
    const sneaky = new Peer(socket, { onRequest: () => new Promise(() => {}) });
    await expect(sneaky.request("tool.call", { tool: "x" }, 1000)).rejects.toMatchObject({ code: "unauthenticated" });
    expect(calls).toEqual([]);
  });

  test("an AppError from the handler is the runtime's error {code: kind, message: detail}; anything else is internal", async () => {
    const { ch } = await open();
    ch.onRequest(async (type) => {
      if (type === "secret.get") throw new AppError("forbidden", "secret not in the template");
      throw new Error("database path /var/lib/x");
    });
    const rt = await connect(token);
    await ch.authenticated;
    await expect(rt.peer.request("secret.get", { ref: "vault:x" }, 1000)).rejects.toMatchObject({
      code: "forbidden",
      message: "secret not in the template",
    });
    await expect(rt.peer.request("model.chat", {}, 1000)).rejects.toMatchObject({
      code: "internal",
      message: "internal error",
    });
  });

  test("a request the runtime does not answer in time is an AppError timeout; its refusal keeps its kind", async () => {
    const { ch } = await open();
    await connect(token, (type) => {
      if (type === "slow") return new Promise(() => {});
      throw new ProtocolError("not_found", "no such task");
    });
    await ch.authenticated;
    await expect(ch.request("slow", {}, 50)).rejects.toMatchObject({ kind: "timeout" });
    await expect(ch.request("other", {}, 1000)).rejects.toMatchObject({ kind: "not_found" });
  });

  test("nobody answering hello in time fails authenticated with timeout", async () => {
    const { ch } = await open({ helloTimeoutMs: 50 });
    await expect(ch.authenticated).rejects.toMatchObject({ kind: "timeout" });
  });

  test("notifications reach the authenticated runtime", async () => {
    const { ch } = await open();
    const rt = await connect(token);
    await ch.authenticated;
    ch.notify("tool.result", { call_id: "c1", status: "done", result: 1 });
    await waitFor(() => rt.received.some((m) => m.type === "tool.result"));
    expect(rt.received.find((m) => m.type === "tool.result")).toEqual({
      type: "tool.result",
      call_id: "c1",
      status: "done",
      result: 1,
    });
  });
});

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 5));
  }
}
