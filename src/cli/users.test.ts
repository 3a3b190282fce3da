import { afterAll, expect, test } from "bun:test";
import type { CommandIO } from "./command.ts";
import { runCli } from "./index.ts";

// A stand-in for /v1/users on a real socket: it records what the CLI sent.
const received: { method: string; path: string; body: unknown }[] = [];
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    received.push({ method: req.method, path: new URL(req.url).pathname, body: await req.json().catch(() => null) });
    return req.method === "POST"
      ? Response.json({ username: "ann", role: "admin", tenants: [] }, { status: 201 })
      : new Response(null, { status: 204 });
  },
});
afterAll(() => server.stop(true));

/** runCli at a terminal whose person types `typed`, one answer per prompt. */
async function atTerminal(argv: string[], typed: string[]) {
  const prompts: string[] = [];
  let out = "";
  let err = "";
  const io: CommandIO = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    env: { AGENTOWL_URL: `http://127.0.0.1:${server.port}`, AGENTOWL_TOKEN: "aow_test", HOME: "/nonexistent" },
    cwd: "/",
    tty: { stdin: true, stderr: true },
    readStdin: () => Promise.reject(new Error("stdin is the terminal: nothing may read it whole")),
    readSecret: async (prompt) => {
      prompts.push(prompt);
      return typed.shift() ?? "";
    },
  };
  const code = await runCli(argv, io);
  return { code, out, err, prompts };
}

test("at a terminal the password is asked twice without echo and sent once", async () => {
  received.length = 0;
  const r = await atTerminal(
    ["users", "add", "ann", "--role", "admin"],
    ["correct horse battery", "correct horse battery"],
  );
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.prompts).toEqual(["password for ann: ", "the same again: "]);
  expect(received).toEqual([
    { method: "POST", path: "/v1/users", body: { username: "ann", password: "correct horse battery", role: "admin" } },
  ]);
  expect(r.out).not.toContain("correct horse battery");

  const p = await atTerminal(["users", "passwd", "ann"], ["a new passphrase", "a new passphrase"]);
  expect(p.code).toBe(0);
  expect(received.at(-1)).toEqual({
    method: "PUT",
    path: "/v1/users/ann/password",
    body: { password: "a new passphrase" },
  });
});

test("two different passwords, or a short one, change nothing and send nothing (exit 2)", async () => {
  received.length = 0;
  const differ = await atTerminal(["users", "passwd", "ann"], ["correct horse battery", "correct horse batterz"]);
  expect(differ.code).toBe(2);
  expect(differ.err).toMatch(/the two passwords differ; nothing was changed/);
  const short = await atTerminal(["users", "passwd", "ann"], ["short", "short"]);
  expect(short.code).toBe(2);
  expect(short.err).toMatch(/at least 12 characters/);
  expect(received).toEqual([]);
});
