import { afterEach, describe, expect, test } from "bun:test";
import type { AddressInfo } from "node:net";
import { SMTPServer } from "smtp-server";
import { bindEmail } from "../../../test/helpers/smtp-ingress.ts";
import { tempStorages } from "../../../test/helpers/storage.ts";
import type { ToolRecord } from "../types.ts";
import { emailPlugin } from "./email.ts";

const storages = tempStorages();
const stops: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

/** A smarthost on 127.0.0.1: every message it takes, with its envelope. */
async function smarthost() {
  const got: { from: string; to: string[]; data: string }[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    onData(stream, session, done) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        got.push({
          from: (session.envelope.mailFrom as { address: string }).address,
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks).toString("utf8"),
        });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  stops.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { got, port: (server.server.address() as AddressInfo).port };
}

const resource = (address: string): ToolRecord => ({
  id: "tl_1",
  runtimeId: "rt_1",
  tenant: "beta",
  tool: "email",
  plugin: "email",
  provisioning: "pool",
  state: "active",
  resourceId: address,
  config: { address },
  secretRef: null,
  createdAt: 0,
  updatedAt: 0,
});

const callOf = (address: string, args: Record<string, unknown>) => ({
  tenant: "beta",
  runtimeId: "rt_1",
  agent: "support",
  callId: "tc_1",
  resource: resource(address),
  args,
  secrets: {},
  signal: AbortSignal.timeout(10_000),
});

describe("the email tool", () => {
  test("its address is <agent>@<tenant>.<mail_domain>, and an address a binding lists is refused", async () => {
    const storage = storages();
    await bindEmail(storage, "beta", "mail", ["hello"]);
    const plugin = emailPlugin({ mailDomain: "agentowl.lan", smarthost: null, resources: storage.resources });
    const ctx = { tenant: "beta", runtimeId: "rt_1", tool: "email", config: {} };
    expect(await plugin.create({ ...ctx, agent: "support" })).toEqual({
      resourceId: "support@beta.agentowl.lan",
      config: { address: "support@beta.agentowl.lan" },
    });
    const e = await plugin.create({ ...ctx, agent: "hello" }).catch((e: any) => e);
    expect([e.kind, e.detail]).toEqual([
      "conflict",
      "hello@beta.agentowl.lan already belongs to the email binding mail",
    ]);
  });

  test("a reply arrives at the smarthost on the LAN, from the tool's address", async () => {
    const storage = storages();
    const relay = await smarthost();
    const plugin = emailPlugin({
      mailDomain: "agentowl.lan",
      smarthost: `127.0.0.1:${relay.port}`,
      resources: storage.resources,
    });
    const result = (await plugin.call(
      callOf("support@beta.agentowl.lan", {
        to: "customer@example.com",
        subject: "Re: your order",
        text: "It ships tomorrow.",
        in_reply_to: "<m1@example.com>",
      }),
    )) as { accepted: string[] };
    expect(result.accepted).toEqual(["customer@example.com"]);
    expect(relay.got).toHaveLength(1);
    const [mail] = relay.got;
    expect([mail!.from, mail!.to]).toEqual(["support@beta.agentowl.lan", ["customer@example.com"]]);
    expect(mail!.data).toContain("Subject: Re: your order");
    expect(mail!.data).toContain("In-Reply-To: <m1@example.com>");
    expect(mail!.data).toContain("It ships tomorrow.");
  });

  test("only the smarthost, and only on the LAN: none configured, or a public one, is refused before anything is sent", async () => {
    const storage = storages();
    const args = { to: "a@example.com", subject: "s", text: "t" };
    const none = emailPlugin({ mailDomain: "agentowl.lan", smarthost: null, resources: storage.resources });
    expect(((await none.call(callOf("support@beta.agentowl.lan", args)).catch((e: any) => e)) as any).kind).toBe(
      "unavailable",
    );
    const pub = emailPlugin({
      mailDomain: "agentowl.lan",
      smarthost: "93.184.216.34:25",
      resources: storage.resources,
    });
    const e = (await pub.call(callOf("support@beta.agentowl.lan", args)).catch((e: any) => e)) as any;
    expect(e.kind).toBe("forbidden");
    const bad = emailPlugin({ mailDomain: "agentowl.lan", smarthost: "127.0.0.1:1", resources: storage.resources });
    for (const wrong of [
      { ...args, to: "Eve <e@x.com>" },
      { ...args, subject: "a\r\nBcc: x@y.z" },
    ])
      expect(((await bad.call(callOf("support@beta.agentowl.lan", wrong)).catch((e: any) => e)) as any).kind).toBe(
        "invalid_input",
      );
  });
});
