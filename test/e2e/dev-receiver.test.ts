/**
 * `agentowl dev receiver`, the receiver the quick start and the example file point at: a real
 * process on a real port, signed deliveries from the standardwebhooks package (not our signer).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { killLeftovers, type Running, startAgentowl } from "../helpers/process.ts";

const work = mkdtempSync(join(tmpdir(), "agentowl-receiver-"));
afterEach(killLeftovers);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const SECRET = `whsec_${Buffer.from("a receiver test secret of 32 b!!").toString("base64")}`;
const envelope = {
  id: "evt_01JD",
  type: "email.received",
  tenant: "beta",
  agent: "hello",
  channel: "email",
  data: { from: { address: "alice@example.com" }, subject: "Invoice 42" },
};

async function start(args: string[]): Promise<{ proc: Running; url: string }> {
  const proc = startAgentowl(["dev", "receiver", "--listen", "127.0.0.1:0", ...args], { cwd: work });
  const url = await proc.waitFor("the listening line", () => /listening on (http:\/\/\S+)/.exec(proc.stderr)?.[1]);
  return { proc, url };
}

function signed(body: string, id: string, secret = SECRET): Record<string, string> {
  const at = new Date();
  const signature = new Webhook(secret).sign(id, at, body);
  return {
    "content-type": "application/json",
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(at.getTime() / 1000)),
    "webhook-signature": signature,
  };
}

describe("agentowl dev receiver", () => {
  test("prints one line per delivery and checks its Standard Webhooks signature", async () => {
    const secretFile = join(work, "secret");
    writeFileSync(secretFile, `${SECRET}\n`);
    const { proc, url } = await start(["--secret-file", secretFile]);
    const body = JSON.stringify(envelope);
    expect((await fetch(url, { method: "POST", headers: signed(body, "msg_good"), body })).status).toBe(200);
    const other = `whsec_${Buffer.from("another secret, not the endpoint").toString("base64")}`;
    expect((await fetch(url, { method: "POST", headers: signed(body, "msg_forged", other), body })).status).toBe(200);
    const good = await proc.waitFor("the good line", () => proc.lines.find((l) => l.includes("msg_good")));
    expect(good).toMatch(
      /msg_good {2}email\.received {2}beta\/hello {2}from alice@example\.com: "Invoice 42" {2}signature valid$/,
    );
    const forged = await proc.waitFor("the forged line", () => proc.lines.find((l) => l.includes("msg_forged")));
    expect(forged).toContain("signature INVALID");
    proc.proc.kill("SIGINT");
    expect(await proc.exit(5000)).toBe(0);
  });

  test("--status answers every delivery with it, so retries can be watched", async () => {
    const { proc, url } = await start(["--status", "503", "--json"]);
    const body = JSON.stringify(envelope);
    expect((await fetch(url, { method: "POST", headers: signed(body, "msg_1"), body })).status).toBe(503);
    const line = await proc.waitFor("a JSON line", () => proc.lines.find((l) => l.startsWith("{")));
    expect(JSON.parse(line)).toMatchObject({ method: "POST", headers: { "webhook-id": "msg_1" }, body });
  });

  test("a bad --status or an unreadable --secret-file is one usage line, exit 2", async () => {
    for (const args of [
      ["--status", "99"],
      ["--secret-file", join(work, "missing")],
      ["--listen", "nowhere"],
    ]) {
      const proc = startAgentowl(["dev", "receiver", ...args], { cwd: work });
      expect(await proc.exit(10_000)).toBe(2);
      expect(proc.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(proc.stderr).toStartWith("agentowl dev receiver: ");
    }
  });
});
