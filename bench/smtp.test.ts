import { expect, test } from "bun:test";
import { spawnSync } from "bun";
import { postfixDurable, SmtpClient } from "./smtp.ts";

const postfixHere = spawnSync(["which", "postfix"]).exitCode === 0 && process.getuid?.() === 0;

// A full report runs every section in one process, and a section that opens a data dir there sets
// umask 077 (prepareDataDir); the SMTP rounds after it lost their Postfix reference.
test.skipIf(!postfixHere)(
  "Postfix's durable accept starts and takes a message under umask 077 as under the usual umask",
  async () => {
    const before = process.umask(0o077);
    try {
      const pf = await postfixDurable();
      expect(pf).not.toBeNull();
      try {
        const client = await SmtpClient.open(pf!.port);
        const sent = await client.send(1);
        expect(sent.ms).toBeGreaterThan(0);
        client.close();
      } finally {
        await pf!.stop();
      }
      expect(process.umask(0o077)).toBe(0o077);
    } finally {
      process.umask(before);
    }
  },
);
