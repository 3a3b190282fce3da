import { ApiClient, DEFAULT_URL, normalizeUrl } from "./client.ts";
import { type Command, stringOpt } from "./command.ts";
import { CommandFailure, EXIT, UsageError } from "./exit-codes.ts";
import { checkProfileName, DEFAULT_PROFILE, profilePath, readProfiles, writeProfiles } from "./profile.ts";

/**
 * `agentowl login` saves a URL and a token as a named profile (mode 0600) after checking the
 * token against the server; `agentowl logout` forgets it. The token comes from stdin, never from
 * the command line, where other local users could read it in `ps`; it is never printed.
 */
const loginCommand: Command = {
  name: ["login"],
  summary: "check an API token and save it as a profile for the other commands",
  help: `Usage: agentowl login [--url URL] [--profile NAME] [--default]

Reads an API token from stdin (at a terminal: a prompt that does not echo), checks it against
the server (POST /v1/sign-in, which records the sign-in in the audit log), and saves the URL and token as profile NAME (default "${DEFAULT_PROFILE}") in
$AGENTOWL_PROFILE, else $XDG_CONFIG_HOME/agentowl/profile.toml, else ~/.config/agentowl/profile.toml,
mode 0600. The first profile saved, or one saved with --default, is the default: commands use
it when neither flags nor AGENTOWL_URL / AGENTOWL_TOKEN say otherwise.

  agentowl login --url http://10.0.0.2:8080 < token.txt

URL: --url, else AGENTOWL_URL, else the profile's current URL, else ${DEFAULT_URL}.
Exit codes: 0 saved, 1 failed (server unreachable, file not writable), 2 usage (no token on
stdin), 5 the server refused the token.`,
  options: { url: { type: "string" }, profile: { type: "string" }, default: { type: "boolean" } },
  async run({ values }, io) {
    const name = checkProfileName(stringOpt(values, "profile") ?? DEFAULT_PROFILE);
    const path = profilePath(io.env);
    const file = readProfiles(path);
    const flagUrl = stringOpt(values, "url");
    const base = flagUrl !== undefined ? normalizeUrl(flagUrl, "--url") : normalizeUrl(io.env.AGENTOWL_URL || file.profiles[name]?.url || DEFAULT_URL, "AGENTOWL_URL");

    const token = (io.tty?.stdin && io.readSecret ? await io.readSecret(`API token for ${base}: `) : ((await io.readStdin?.()) ?? "")).trim();
    if (!token) throw new UsageError("no token on stdin (e.g. agentowl login < token.txt)");
    if (/\s/.test(token)) throw new UsageError("the token on stdin must be one word (one line, no spaces)");

    const { body } = await new ApiClient({ url: base, token }).call<{ token?: { id?: string; name?: string } }>("POST", "/v1/sign-in", { json: { client: "agentowl-cli" } });
    file.profiles[name] = { url: base, token };
    if (values.default || !file.default || !file.profiles[file.default]) file.default = name;
    writeProfiles(path, file);
    const who = body.token?.name ?? body.token?.id;
    io.out(`logged in to ${base}${who ? ` as token ${who}` : ""} (profile ${name}${file.default === name ? ", the default" : ""}; saved in ${path})\n`);
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
    io.out(`removed profile ${name} from ${path}${file.default && file.default !== name ? ` (default now: ${file.default})` : ""}\n`);
    return EXIT.ok;
  },
};

export const LOGIN_COMMANDS: readonly Command[] = [loginCommand, logoutCommand];
