import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fingerprintOf } from "../server/tls.ts";
import { ensureSelfSigned } from "../ingress/smtp/tls.ts";
import { DEFAULT_URL, exitCodeOfStatus, resolveConnection } from "./client.ts";
import { UsageError } from "./exit-codes.ts";
import { profilePath, readProfiles, writeProfiles } from "./profile.ts";

const root = mkdtempSync(join(tmpdir(), "agentowl-client-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
/** An environment whose profile file holds these profiles (the first is the default). */
function withProfiles(
  profiles: Record<string, { url: string; token: string; fingerprint?: string }>,
): Record<string, string> {
  const path = join(root, `profile-${++n}.toml`);
  writeProfiles(path, { default: Object.keys(profiles)[0] ?? null, profiles });
  return { AGENTOWL_PROFILE: path };
}

describe("where the CLI connects, and with which token", () => {
  test("flags beat AGENTOWL_URL / AGENTOWL_TOKEN, which beat the default profile", () => {
    const profiles = withProfiles({ office: { url: "http://10.0.0.2:8080", token: "aow_profile" } });
    const env = { ...profiles, AGENTOWL_URL: "http://10.0.0.3:8080/", AGENTOWL_TOKEN: "aow_env" };
    expect(resolveConnection({ url: "http://10.0.0.4:8080", token: "aow_flag" }, env)).toEqual({
      url: "http://10.0.0.4:8080",
      token: "aow_flag",
    });
    expect(resolveConnection({}, env)).toEqual({ url: "http://10.0.0.3:8080", token: "aow_env" });
    expect(resolveConnection({}, profiles)).toEqual({ url: "http://10.0.0.2:8080", token: "aow_profile" });
  });

  test("without anything, the local default URL and no token", () => {
    const empty = join(root, `empty-${++n}`);
    mkdirSync(empty);
    expect(resolveConnection({}, { AGENTOWL_PROFILE: join(root, "none.toml") }, empty)).toEqual({
      url: DEFAULT_URL,
      token: null,
      guessed: "local settings",
    });
  });

  test("without a URL, the appliance on this box as its settings say it listens, its certificate file pinned on loopback", async () => {
    const dataDir = join(root, `box-${++n}`);
    await ensureSelfSigned(dataDir, "agentowl.lan");
    const pem = readFileSync(join(dataDir, "tls", "cert.pem"), "utf8");
    const env = { AGENTOWL_PROFILE: join(root, "none.toml"), AGENTOWL_DATA_DIR: dataDir };
    expect(resolveConnection({}, { ...env, AGENTOWL_HTTP_LISTEN: "0.0.0.0:9443" }, root)).toEqual({
      url: "https://127.0.0.1:9443",
      token: null,
      guessed: "local settings",
      pin: { fingerprint: fingerprintOf(pem), certificate: pem, source: join(dataDir, "tls", "cert.pem") },
    });
    expect(resolveConnection({}, { ...env, AGENTOWL_HTTP_LISTEN: "127.0.0.1:9080" }, root)).toEqual({
      url: "http://127.0.0.1:9080",
      token: null,
      guessed: "local settings",
    });
    expect(resolveConnection({}, { ...env, AGENTOWL_HTTP_LISTEN: "[::]:9443" }, root).url).toBe("https://[::1]:9443");
    // Another host's URL never gets this box's certificate.
    expect(resolveConnection({ url: "https://10.0.0.2:9443" }, env, root).pin).toBeUndefined();
  });

  test("a profile's pin goes with its own URL only; --fingerprint (or AGENTOWL_FINGERPRINT) beats it; a malformed one is a usage error", () => {
    const fp = `sha256:${"AB:".repeat(31)}AB`;
    const other = `sha256:${"CD:".repeat(31)}CD`;
    const env = { ...withProfiles({ office: { url: "https://10.0.0.2:8080", token: "aow_p", fingerprint: fp } }) };
    expect(resolveConnection({}, env, root).pin).toEqual({ fingerprint: fp, source: "profile office" });
    expect(resolveConnection({ url: "https://10.0.0.3:8080", token: "t" }, env, root).pin).toBeUndefined();
    expect(resolveConnection({ fingerprint: other.toLowerCase() }, env, root).pin).toEqual({
      fingerprint: other,
      source: "--fingerprint",
    });
    expect(resolveConnection({}, { ...env, AGENTOWL_FINGERPRINT: other }, root).pin).toEqual({
      fingerprint: other,
      source: "AGENTOWL_FINGERPRINT",
    });
    expect(() => resolveConnection({ fingerprint: "sha256:AB" }, env, root)).toThrow(UsageError);
  });

  test("a profile's token is only ever sent to that profile's own URL", () => {
    const env = withProfiles({ office: { url: "http://10.0.0.2:8080", token: "aow_profile" } });
    const elsewhere = resolveConnection({ url: "http://evil.example:8080" }, env);
    expect(elsewhere.token).toBeNull();
    expect(elsewhere.why).toContain("http://10.0.0.2:8080");
    expect(resolveConnection({}, { ...env, AGENTOWL_URL: "http://evil.example:8080" }).token).toBeNull();
    expect(() => resolveConnection({ profile: "office", url: "http://evil.example:8080" }, env)).toThrow(UsageError);
  });

  test("--profile picks a named profile; an unknown one is a usage error", () => {
    const env = withProfiles({
      office: { url: "http://10.0.0.2:8080", token: "aow_a" },
      lab: { url: "http://10.0.0.9:8080", token: "aow_b" },
    });
    expect(
      resolveConnection({ profile: "lab" }, { ...env, AGENTOWL_URL: "http://x:1", AGENTOWL_TOKEN: "aow_env" }),
    ).toEqual({ url: "http://10.0.0.9:8080", token: "aow_b" });
    expect(() => resolveConnection({ profile: "nope" }, env)).toThrow("no profile 'nope'");
  });

  test("a URL that is not http(s) is a usage error naming where it came from", () => {
    expect(() => resolveConnection({ url: "ftp://x" }, {})).toThrow("--url");
    expect(() => resolveConnection({}, { AGENTOWL_URL: "localhost:8080", AGENTOWL_TOKEN: "t" })).toThrow(
      "AGENTOWL_URL",
    );
  });
});

describe("the profile file", () => {
  test("lives at $AGENTOWL_PROFILE, else under $XDG_CONFIG_HOME, else ~/.config", () => {
    expect(profilePath({ AGENTOWL_PROFILE: "/p.toml", XDG_CONFIG_HOME: "/x", HOME: "/h" })).toBe("/p.toml");
    expect(profilePath({ XDG_CONFIG_HOME: "/x", HOME: "/h" })).toBe("/x/agentowl/profile.toml");
    expect(profilePath({ HOME: "/h" })).toBe("/h/.config/agentowl/profile.toml");
  });

  test("is written mode 0600 and read back; without profiles it is removed", () => {
    const path = join(root, "deep", "dir", "profile.toml");
    writeProfiles(path, { default: "a", profiles: { a: { url: "http://h:1", token: "aow_x" } } });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readProfiles(path)).toEqual({ default: "a", profiles: { a: { url: "http://h:1", token: "aow_x" } } });
    writeProfiles(path, { default: null, profiles: {} });
    expect(readProfiles(path)).toEqual({ default: null, profiles: {} });
  });

  test("keeps a pinned certificate; a malformed pin is refused, never silently dropped; a certificate that is not the pinned one is not kept", async () => {
    const dir = join(root, `pinned-${++n}`);
    await ensureSelfSigned(dir, "agentowl.lan");
    const pem = readFileSync(join(dir, "tls", "cert.pem"), "utf8");
    const fp = fingerprintOf(pem);
    const path = join(root, `pinned-${n}.toml`);
    writeProfiles(path, {
      default: "a",
      profiles: { a: { url: "https://h:1", token: "aow_x", fingerprint: fp, certificate: pem } },
    });
    expect(readProfiles(path).profiles.a).toEqual({
      url: "https://h:1",
      token: "aow_x",
      fingerprint: fp,
      certificate: pem,
    });
    writeProfiles(path, {
      default: "a",
      profiles: {
        a: { url: "https://h:1", token: "aow_x", fingerprint: `sha256:${"00:".repeat(31)}00`, certificate: pem },
      },
    });
    expect(readProfiles(path).profiles.a!.certificate).toBeUndefined();
    writeFileSync(
      path,
      'default = "a"\n[profiles.a]\nurl = "https://h:1"\ntoken = "aow_x"\nfingerprint = "sha256:nope"\n',
    );
    expect(() => readProfiles(path)).toThrow("fingerprint is not a SHA-256 fingerprint");
  });

  test("a broken file is named without quoting it (it holds tokens)", async () => {
    const path = join(root, "broken.toml");
    await Bun.write(path, 'token = "aow_secret\n');
    expect(() => readProfiles(path)).toThrow(path);
    try {
      readProfiles(path);
    } catch (e) {
      expect((e as Error).message).not.toContain("aow_secret");
    }
  });
});

test("HTTP statuses map to the documented exit codes", () => {
  expect([401, 403, 404, 409, 412, 400, 422, 500, 503].map(exitCodeOfStatus)).toEqual([5, 5, 3, 4, 4, 1, 1, 1, 1]);
});
