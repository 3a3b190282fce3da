import { describe, expect, test } from "bun:test";
import { COMMANDS, runCli, withHint } from "./index.ts";

/** runCli in-process, with its output captured. */
async function cli(...argv: string[]) {
  let out = "";
  let err = "";
  const code = await runCli(argv, { out: (t) => void (out += t), err: (t) => void (err += t), env: {}, cwd: "/" });
  return { code, out, err };
}

const groups = [...new Set(COMMANDS.filter((c) => c.name.length > 1).map((c) => c.name[0]!))];

describe("help for command groups", () => {
  test("every command group answers --help with its commands, exit 0", async () => {
    expect(groups.length).toBeGreaterThan(5);
    for (const g of groups) {
      const r = await cli(g, "--help");
      expect(r.code, g).toBe(0);
      expect(r.out).toStartWith(`Usage: agentowl ${g} <command>`);
      for (const c of COMMANDS.filter((c) => c.name[0] === g)) expect(r.out).toContain(c.name.join(" "));
      expect(r.err).toBe("");
    }
  });

  test("'help events' prints the events group, not the top-level usage", async () => {
    const r = await cli("help", "events");
    expect(r.code).toBe(0);
    expect(r.out).toStartWith("Usage: agentowl events <command>");
    expect(r.out).toContain("events replay");
  });

  test("'help events ls' prints that command's help", async () => {
    const r = await cli("help", "events", "ls");
    expect(r.out).toStartWith("Usage: agentowl events ls");
  });
});

describe("mistyped commands", () => {
  test("a mistyped top-level command gets a did-you-mean", async () => {
    const r = await cli("evnets", "ls");
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      "agentowl: unknown command 'evnets ls': did you mean 'agentowl events'? (see 'agentowl --help')\n",
    );
  });

  test("a mistyped subcommand gets a did-you-mean within its group", async () => {
    const r = await cli("deliveries", "retyr", "dlv_1");
    expect(r.err).toBe(
      "agentowl: unknown command 'deliveries retyr dlv_1': did you mean 'agentowl deliveries retry'? (see 'agentowl deliveries --help')\n",
    );
  });

  test("'help' with an unknown topic is a usage error, not the top-level help", async () => {
    const r = await cli("help", "evnts");
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain("did you mean 'agentowl events'?");
  });

  test("messages never stack two parentheticals", async () => {
    expect(withHint("bad value (expected a number)", "see 'agentowl x --help'")).toBe(
      "bad value (expected a number); see 'agentowl x --help'",
    );
    expect(withHint("bad value", "see 'agentowl x --help'")).toBe("bad value (see 'agentowl x --help')");
    for (const argv of [["evnets"], ["events", "zzz"], ["config"], ["version", "--verbose"], ["init", "now"]]) {
      const r = await cli(...argv);
      expect(r.err.trimEnd().split("\n")).toHaveLength(1);
      expect(r.err, argv.join(" ")).not.toMatch(/\)[^(]*\(/);
    }
  });
});

describe("flags with a fixed set of values", () => {
  const offline = ["--url", "http://127.0.0.1:9", "--token", "aow_x"];
  for (const [argv, flag, near] of [
    [["deliveries", "ls", "--state", "bogus"], "--state", null],
    [["deliveries", "ls", "--state", "daed"], "--state", "dead"],
    [["approvals", "ls", "--state", "pendng"], "--state", "pending"],
    [["events", "ls", "--type", "email.recieved"], "--type", "email.received"],
    [["events", "ls", "--channel", "mail"], "--channel", null],
  ] as const) {
    test(`'${argv.join(" ")}' is a usage error naming the choices, before any request`, async () => {
      const r = await cli(...argv, ...offline);
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      expect(r.err).toStartWith(`agentowl ${argv.slice(0, 2).join(" ")}: ${flag} takes one of `);
      expect(r.err).toContain(`not '${argv[3]}'`);
      if (near) expect(r.err).toContain(`did you mean '${near}'?`);
      expect(r.err.trimEnd().split("\n")).toHaveLength(1);
    });
  }
});
