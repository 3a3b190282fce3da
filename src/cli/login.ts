import { fingerprintOf, isLoopback, parseFingerprint } from "../server/tls.ts";
import { ApiClient, DEFAULT_URL, normalizeUrl } from "./client.ts";
import { type CommandArgs, type CommandIO, type Command, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { localAppliance, peerCertificate, type Pin } from "./pin.ts";
import {
  checkProfileName,
  DEFAULT_PROFILE,
  type Profile,
  profilePath,
  readProfiles,
  writeProfiles,
} from "./profile.ts";

/**
 * Trust on first use (docs/api.md): the certificate an https:// server presents, shown for the
 * person to compare with the fingerprint `agentowl serve` logged or `agentowl init` printed,
 * and pinned once confirmed. Nothing (no token) is sent to the server before that.
 */
async function confirmCertificate(
  base: string,
  values: CommandArgs["values"],
  io: CommandIO,
  previous: Profile | undefined,
): Promise<Pin & { certificate: string }> {
  let peer;
  try {
    peer = await peerCertificate(base);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CommandFailure(
      `cannot read the certificate ` +
        `of ${base}: ${err.code ?? err.message}${err.code === "ECONNRESET" || err.code === "EPROTO" ? " (does it serve plain HTTP? try http://)" : ""}`,
      EXIT.failed,
      [],
      true,
    );
  }
  const pin = { fingerprint: peer.fingerprint, certificate: peer.pem, source: `the certificate confirmed at login` };
  const flag = stringOpt(values, "fingerprint");
  const expectedRaw = flag ?? (io.env.AGENTOWL_FINGERPRINT || undefined);
  if (expectedRaw !== undefined) {
    const expected = parseFingerprint(expectedRaw);
    if (!expected)
      throw new UsageError(
        `${flag !== undefined ? "--fingerprint" : "AGENTOWL_FINGERPRINT"} '${expectedRaw}' is not a SHA-256 fingerprint (sha256:AB:CD:… , 32 bytes in hex)`,
      );
    if (expected !== peer.fingerprint)
      throw new CommandFailure(
        `${base} presents certificate ${peer.fingerprint}, not the expected ${expected}: nothing sent, nothing saved`,
        EXIT.auth,
      );
    return pin;
  }
  const changed =
    previous?.fingerprint !== undefined && previous.url === base && previous.fingerprint !== peer.fingerprint;
  if (previous?.url === base && previous.fingerprint === peer.fingerprint) return pin;
  const local = localAppliance(io.env, io.cwd)?.certificate;
  if (!changed && local && isLoopback(new URL(base).hostname) && fingerprintOf(local.pem) === peer.fingerprint) {
    io.err(`certificate ${peer.fingerprint} is this box's ${local.path}\n`);
    return pin;
  }
  const shown = `${base} presents the certificate\n\n  ${peer.fingerprint}\n  (${peer.subject || "no subject"}; valid until ${peer.validTo})\n\n`;
  const warning = changed
    ? `WARNING: this is not the certificate pinned before (${previous!.fingerprint}). Unless it ` +
      `was replaced on purpose, someone may be intercepting the connection.\n`
    : "";
  if (values.yes) {
    io.err(`${shown}${warning}trusted without comparing it (--yes)\n`);
    return pin;
  }
  if (io.tty?.stdin && io.confirm) {
    io.err(
      `${shown}${warning}Compare it with the fingerprint 'agentowl serve' logs at start ("fingerprint") or 'agentowl init' printed.\n`,
    );
    if (!(await io.confirm("Is it the same? Trust it? [y/N] ")))
      throw new CommandFailure("certificate not trusted: nothing sent, nothing saved", EXIT.auth);
    return pin;
  }
  throw new UsageError(
    `${base} presents certificate ${peer.fingerprint}${changed ? ` (CHANGED: the profile pinned ${previous!.fingerprint})` : ""}; ` +
      `compare it with the fingerprint 'agentowl serve' logged, then pass ` +
      `--fingerprint ${peer.fingerprint} (or --yes to trust it unseen)`,
  );
}

/**
 * `agentowl login` saves a URL and a token as a named profile (mode 0600) after checking the
 * token against the server; `agentowl logout` forgets it. The token comes from stdin, never from
 * the command line, where other local users could read it in `ps`; it is never printed.
 */
const loginCommand: Command = {
  name: ["login"],
  summary: "check an API token and save it as a profile for the other commands",
  help: `Usage: agentowl login [--url URL] [--profile NAME] [--default] [--fingerprint sha256:… | --yes]

For an https:// URL, first shows the SHA-256 fingerprint of the server's certificate, to compare
with the one 'agentowl serve' logs at start ("fingerprint") or 'agentowl init' printed; at a
terminal it asks, else --fingerprint (or AGENTOWL_FINGERPRINT) must match it (--yes trusts it
unseen). A certificate already pinned by the profile, or on loopback the one in this box's data
dir, needs no question. The profile keeps the certificate: every later command refuses a server
that presents another one. Nothing is sent before the certificate is trusted. An http:// URL
to another host works with a warning: the token then travels in clear.

Then reads an API token from stdin (at a terminal: a prompt that does not echo), checks it against
the server (POST /v1/sign-in, which records the sign-in in the audit log), and saves the URL and token as profile NAME (default "${DEFAULT_PROFILE}") in
$AGENTOWL_PROFILE, else $XDG_CONFIG_HOME/agentowl/profile.toml, else ~/.config/agentowl/profile.toml,
mode 0600. The first profile saved, or one saved with --default, is the default: commands use
it when neither flags nor AGENTOWL_URL / AGENTOWL_TOKEN say otherwise.

  agentowl login --url https://10.0.0.2:8080
  agentowl login --url https://10.0.0.2:8080 --fingerprint sha256:2F:48:… < token.txt

URL: --url, else AGENTOWL_URL, else the profile's current URL, else the appliance on this box
as its settings say it listens (${DEFAULT_URL} by default).
Exit codes: 0 saved, 1 failed (server unreachable, file not writable), 2 usage (no token on
stdin; a certificate to confirm without a terminal), 5 the server refused the token, or the
certificate was not trusted or is not the expected one.`,
  options: {
    url: { type: "string" },
    profile: { type: "string" },
    default: { type: "boolean" },
    fingerprint: { type: "string" },
    yes: { type: "boolean" },
  },
  async run({ values }, io) {
    const name = checkProfileName(stringOpt(values, "profile") ?? DEFAULT_PROFILE);
    const path = profilePath(io.env);
    const file = readProfiles(path);
    const flagUrl = stringOpt(values, "url");
    const base =
      flagUrl !== undefined
        ? normalizeUrl(flagUrl, "--url")
        : normalizeUrl(
            io.env.AGENTOWL_URL || file.profiles[name]?.url || localAppliance(io.env, io.cwd)?.url || DEFAULT_URL,
            "AGENTOWL_URL",
          );
    const secure = new URL(base).protocol === "https:";
    const pin = secure ? await confirmCertificate(base, values, io, file.profiles[name]) : undefined;

    const token = (
      io.tty?.stdin && io.readSecret ? await io.readSecret(`API token for ${base}: `) : ((await io.readStdin?.()) ?? "")
    ).trim();
    if (!token) throw new UsageError("no token on stdin (e.g. agentowl login < token.txt)");
    if (/\s/.test(token)) throw new UsageError("the token on stdin must be one word (one line, no spaces)");

    const client = new ApiClient({ url: base, token, ...(pin ? { pin } : {}) }, (line) => io.err(line));
    const { body } = await client.call<{ token?: { id?: string; name?: string } }>("POST", "/v1/sign-in", {
      json: { client: "agentowl-cli" },
    });
    file.profiles[name] = {
      url: base,
      token,
      ...(pin ? { fingerprint: pin.fingerprint, certificate: pin.certificate } : {}),
    };
    if (values.default || !file.default || !file.profiles[file.default]) file.default = name;
    writeProfiles(path, file);
    const who = body.token?.name ?? body.token?.id;
    io.out(
      `logged in to ${base}${who ? ` as token ${who}` : ""} ` +
        `(profile ${name}${file.default === name ? ", the default" : ""}${pin ? `; certificate ${pin.fingerprint} pinned` : ""}; ` +
        `saved in ${path})\n`,
    );
    return EXIT.ok;
  },
};

const logoutCommand: Command = {
  name: ["logout"],
  summary: "forget a saved profile and its token",
  help: `Usage: agentowl logout [--profile NAME]

Removes profile NAME (else the default profile) from the profile file; the file goes when its
last profile does. The token itself stays valid on the server: revoke it with
'agentowl tokens revoke ID' if it should no longer work anywhere.

Exit codes: 0 removed, 1 failed (file not writable), 2 usage, 3 no such profile.`,
  options: { profile: { type: "string" } },
  async run({ values }, io) {
    const path = profilePath(io.env);
    const file = readProfiles(path);
    const named = stringOpt(values, "profile");
    const name = named === undefined ? (file.default ?? DEFAULT_PROFILE) : checkProfileName(named);
    if (!file.profiles[name]) throw new CommandFailure(`no profile '${name}' in ${path}`, EXIT.notFound);
    delete file.profiles[name];
    if (file.default === name) file.default = Object.keys(file.profiles)[0] ?? null;
    writeProfiles(path, file);
    io.out(
      `removed profile ${name} from ${path}${file.default && file.default !== name ? ` (default now: ${file.default})` : ""}\n`,
    );
    return EXIT.ok;
  },
};

export const LOGIN_COMMANDS: readonly Command[] = [loginCommand, logoutCommand];
