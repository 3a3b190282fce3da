import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { parse, stringify } from "smol-toml";
import { fingerprintOf, parseFingerprint } from "../server/tls.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";

/**
 * The CLI's saved connections, written by `agentowl login`: a TOML file, mode 0600, holding
 * named profiles (a URL and its token) and which one is the default.
 *
 *   default = "office"
 *   [profiles.office]
 *   url = "https://10.0.0.2:8080"
 *   token = "aow_…"
 *   fingerprint = "sha256:2F:48:…"       # the certificate pinned at login (https:// only)
 *   certificate = "-----BEGIN CERTIFICATE-----…"
 */
export interface Profile {
  url: string;
  token: string;
  /** The server certificate's SHA-256 fingerprint, confirmed at `agentowl login`. */
  fingerprint?: string;
  /** That certificate (PEM): a self-signed one is the connection's trust anchor. */
  certificate?: string;
}

export interface Profiles {
  default: string | null;
  profiles: Record<string, Profile>;
}

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const DEFAULT_PROFILE = "default";

/** $AGENTOWL_PROFILE, else $XDG_CONFIG_HOME/agentowl/profile.toml, else ~/.config/agentowl/profile.toml. */
export function profilePath(env: Record<string, string | undefined>): string {
  if (env.AGENTOWL_PROFILE) return env.AGENTOWL_PROFILE;
  const config = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(config, "agentowl", "profile.toml");
}

export function checkProfileName(name: string): string {
  if (!PROFILE_NAME.test(name))
    throw new UsageError(`profile name '${name}' is not valid (letters, digits, '.', '_', '-')`);
  return name;
}

/** The profiles in `path`; none when the file does not exist. */
export function readProfiles(path: string): Profiles {
  if (!existsSync(path)) return { default: null, profiles: {} };
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(path, "utf8"));
  } catch (e) {
    // Never the parser's message: it quotes the file, and the file holds tokens.
    const line = (e as { line?: number }).line;
    throw new CommandFailure(
      `${path}${line ? `:${line}` : ""}: not a valid profile file (TOML); fix or remove it, then run 'agentowl login'`,
      EXIT.failed,
    );
  }
  const profiles: Record<string, Profile> = {};
  const table = doc.profiles && typeof doc.profiles === "object" ? (doc.profiles as Record<string, unknown>) : {};
  for (const [name, p] of Object.entries(table)) {
    const { url, token, fingerprint, certificate } = (p ?? {}) as Record<string, unknown>;
    if (typeof url !== "string" || typeof token !== "string") continue;
    profiles[name] = { url, token };
    // A pin that is not one is refused, never dropped: dropping it would silently unpin the server.
    if (fingerprint !== undefined) {
      const parsed = typeof fingerprint === "string" ? parseFingerprint(fingerprint) : null;
      if (!parsed)
        throw new CommandFailure(
          `${path}: profile ${name}: fingerprint is not a SHA-256 fingerprint; run 'agentowl login --profile ${name}' again`,
          EXIT.failed,
        );
      profiles[name].fingerprint = parsed;
      if (typeof certificate === "string" && certificateMatches(certificate, parsed))
        profiles[name].certificate = certificate;
    }
  }
  return { default: typeof doc.default === "string" ? doc.default : null, profiles };
}

/** A stored certificate is used only when it is the pinned one (else the CLI reads it from the server and checks it). */
function certificateMatches(pem: string, fingerprint: string): boolean {
  try {
    return fingerprintOf(pem) === fingerprint;
  } catch {
    return false;
  }
}

/** Write the profiles atomically, mode 0600 from the first byte (in a 0700 directory); no profiles, no file. */
export function writeProfiles(path: string, file: Profiles): void {
  if (Object.keys(file.profiles).length === 0) {
    rmSync(path, { force: true });
    return;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const text = `# agentowl CLI profiles, written by 'agentowl login'. Holds API tokens: keep it mode 0600.\n${stringify(
    {
      ...(file.default ? { default: file.default } : {}),
      profiles: file.profiles,
    },
  )}\n`;
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new CommandFailure(
      `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      EXIT.failed,
    );
  }
}
