/**
 * The README is what a newcomer follows: its links stay inside the
 * repository, and its first command (`npm start`) run on a fresh copy at a terminal prints the way
 * on: a token, the URLs, and a next command that works as printed.
 */
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { agentowlEnv, killLeftovers, Running, stopUnderTerminal } from "../helpers/process.ts";

setDefaultTimeout(60_000);
const ROOT = resolve(import.meta.dir, "../..");
const work = mkdtempSync(join(tmpdir(), "agentowl-readme-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(killLeftovers);

const docs = [
  "README.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => `docs/${f}`),
];

describe("README and docs", () => {
  test("every relative link resolves to a file in the repository, none outside it or climbing out of docs/", () => {
    const bad: string[] = [];
    for (const doc of docs) {
      const text = readFileSync(join(ROOT, doc), "utf8");
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target!) || target!.startsWith("#")) continue;
        const path = resolve(ROOT, dirname(doc), target!.split("#")[0]!);
        if (relative(ROOT, path).startsWith("..")) bad.push(`${doc}: ${target} leaves the repository`);
        // A doc names the repository's files by their path, never a link climbing out of docs/.
        else if (target!.startsWith("../"))
          bad.push(`${doc}: ${target} climbs out of its folder (name the file as \`path\` instead)`);
        else if (!existsSync(path)) bad.push(`${doc}: ${target} does not exist`);
      }
    }
    expect(bad).toEqual([]);
  });
});

/** The tracked files, as a fresh clone has them, in `dir` (node_modules linked: `npm ci` is not what is tested). */
function freshCopy(dir: string): void {
  const files = Bun.spawnSync(["git", "ls-files", "-z"], { cwd: ROOT }).stdout.toString().split("\0").filter(Boolean);
  for (const f of files) {
    if (!existsSync(join(ROOT, f))) continue;
    mkdirSync(dirname(join(dir, f)), { recursive: true });
    copyFileSync(join(ROOT, f), join(dir, f));
  }
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
}

describe.if(Bun.which("script") !== null && Bun.which("git") !== null && existsSync(join(ROOT, ".git")))(
  "the quick start on a fresh copy",
  () => {
    test("`npm start` at a terminal prints a token, the URLs and the next command, and that command works as printed", async () => {
      const clone = join(work, "clone");
      freshCopy(clone);
      // The README's command, at a terminal (script), on free ports rather than 8080/2525.
      const env = agentowlEnv({ AGENTOWL_HTTP_LISTEN: "127.0.0.1:0", AGENTOWL_SMTP_LISTEN: "127.0.0.1:0" });
      const proc = Bun.spawn(["script", "-qfec", "npm start", "/dev/null"], {
        cwd: clone,
        env,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
      const server = new Running(proc);
      try {
        const banner = await server.waitFor(
          "the next command",
          () => {
            const all = server.lines.join("\n");
            return /apply -f examples\/agentowl\.yaml/.test(all) ? all : null;
          },
          30_000,
        );
        const token = /\b(aow_[A-Za-z0-9_-]{43})\b/.exec(banner)?.[1];
        const url = /AGENTOWL_URL=(\S+)/.exec(banner)?.[1];
        const command = /^\s+(\S+ \S+) apply -f examples\/agentowl\.yaml/m.exec(banner)?.[1];
        expect(token).toBeDefined();
        expect(url).toMatch(/^https?:\/\/127\.0\.0\.1:\d+$/);
        expect(command).toBe("node_modules/.bin/bun src/main.ts");
        // The next command, as printed: it reaches the server with the token and names what is missing.
        const apply = Bun.spawnSync(["sh", "-c", `${command} apply -f examples/agentowl.yaml`], {
          cwd: clone,
          env: { ...env, AGENTOWL_TOKEN: token!, AGENTOWL_URL: url! },
        });
        const said = apply.stderr.toString() + apply.stdout.toString();
        expect(said).toContain("vault:beta/crm-signing");
        expect(said).not.toMatch(/cannot reach|not authenticated|token/i);
        const tenants = Bun.spawnSync(["sh", "-c", `${command} tenants ls`], {
          cwd: clone,
          env: { ...env, AGENTOWL_TOKEN: token!, AGENTOWL_URL: url! },
        });
        expect(tenants.exitCode, tenants.stderr.toString()).toBe(0);
        // The console's first user, printed once beside the token: it signs in.
        const signIn = /Console at (\S+)\/console: user (\S+), password (\S+) /.exec(banner);
        expect(signIn?.[1]).toBe(url);
        const form = await fetch(`${url}/console/sign-in`);
        const cookie = form.headers.getSetCookie()[0]!.split(";")[0]!;
        const csrf = /name="_csrf" value="([^"]+)"/.exec(await form.text())![1]!;
        const signedIn = await fetch(`${url}/console/sign-in`, {
          method: "POST",
          redirect: "manual",
          headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ _csrf: csrf, username: signIn![2]!, password: signIn![3]! }).toString(),
        });
        expect(signedIn.status).toBe(303);
        expect(signedIn.headers.getSetCookie().some((c) => c.startsWith("agentowl_session="))).toBe(true);
      } finally {
        await stopUnderTerminal(server);
      }
    });
  },
);
