import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "../errors/index.ts";
import { type LoadOptions, loadConfig } from "./load.ts";
import { renderConfigDocs } from "./show.ts";
import { SETTING_NAMES } from "./schema.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "agentowl-config-"));
  dirs.push(dir);
  return dir;
}

/** A temp dir holding `agentowl.toml` with `toml` in it. */
function withFile(toml: string): { cwd: string; file: string } {
  const cwd = tempDir();
  const file = join(cwd, "agentowl.toml");
  writeFileSync(file, toml);
  return { cwd, file };
}

/** loadConfig must refuse: one config_invalid line that says each of `mentions`. Returns the line. */
function refused(opts: LoadOptions, ...mentions: string[]): string {
  let error: unknown;
  try {
    loadConfig({ compiled: false, ...opts });
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(AppError);
  const { kind, detail } = error as AppError;
  expect(kind).toBe("config_invalid");
  expect(detail).not.toContain("\n");
  for (const m of mentions) expect(detail).toContain(m);
  return detail;
}

describe("defaults", () => {
  test("with nothing set, every setting has its documented default and says so", () => {
    const cwd = tempDir();
    const config = loadConfig({ env: {}, cwd, compiled: false });
    expect(config.dataDir).toBe(join(cwd, "data"));
    expect(config.http).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(config.smtp).toEqual({ host: "0.0.0.0", port: 2525 });
    expect(config.mailDomain).toBe("agentowl.lan");
    expect(config.tls).toBeNull();
    expect(config.masterKeyFile).toBe(join(cwd, "data", "master.key"));
    expect(config.bootstrapToken).toBeNull();
    expect(config.dnsServers).toBeNull();
    expect(config.logLevel).toBe("info");
    expect(config.shutdownTimeoutMs).toBe(10_000);
    expect(config.commitWindowMs).toBe(0);
    expect(config.commitMaxBatch).toBe(1000);
    expect(config.workerConcurrency).toBe(64);
    expect(config.visibilityTimeoutMs).toBe(5 * 60_000);
    expect(config.retentionMs).toBe(7 * 86_400_000);
    expect(config.file).toBeNull();
    for (const name of SETTING_NAMES) expect(config.sources[name]).toBe("default");
  });

  test("the settings are frozen: nothing changes them after start-up", () => {
    const config = loadConfig({ env: {}, cwd: tempDir() });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.settings)).toBe(true);
  });

  test("the compiled binary keeps its data in /var/lib/agentowl on Linux and /usr/local/var/agentowl on macOS", () => {
    const cwd = tempDir();
    const linux = loadConfig({ env: {}, cwd, compiled: true, platform: "linux" });
    expect(linux.dataDir).toBe("/var/lib/agentowl");
    expect(linux.masterKeyFile).toBe("/var/lib/agentowl/master.key");
    expect(loadConfig({ env: {}, cwd, compiled: true, platform: "darwin" }).dataDir).toBe("/usr/local/var/agentowl");
  });

  test("a relative data dir is resolved against the working directory", () => {
    const cwd = tempDir();
    expect(loadConfig({ env: { AGENTOWL_DATA_DIR: "var/owl" }, cwd }).dataDir).toBe(join(cwd, "var", "owl"));
  });
});

describe("agentowl.toml", () => {
  const toml = `http_listen = "127.0.0.1:9000"\ndns_servers = ["1.1.1.1", "9.9.9.9:53"]\ncommit_max_batch = 50\nshutdown_timeout = "30s"\n`;

  test("is read from AGENTOWL_CONFIG, relative to the working directory", () => {
    const { cwd, file } = withFile(toml);
    const config = loadConfig({ env: { AGENTOWL_CONFIG: "agentowl.toml" }, cwd });
    expect(config.file).toBe(file);
    expect(config.http).toEqual({ host: "127.0.0.1", port: 9000 });
    expect(config.dnsServers).toEqual(["1.1.1.1", "9.9.9.9:53"]);
    expect(config.commitMaxBatch).toBe(50);
    expect(config.shutdownTimeoutMs).toBe(30_000);
    expect(config.sources.http_listen).toBe("file");
    expect(config.sources.log_level).toBe("default");
  });

  test("is read from <data_dir>/agentowl.toml when AGENTOWL_CONFIG is unset", () => {
    const cwd = tempDir();
    const dataDir = join(cwd, "owl");
    mkdirSync(dataDir);
    writeFileSync(join(dataDir, "agentowl.toml"), toml);
    const config = loadConfig({ env: { AGENTOWL_DATA_DIR: dataDir }, cwd });
    expect(config.file).toBe(join(dataDir, "agentowl.toml"));
    expect(config.commitMaxBatch).toBe(50);
  });

  test("is read from the default data dir when nothing names one", () => {
    const cwd = tempDir();
    mkdirSync(join(cwd, "data"));
    writeFileSync(join(cwd, "data", "agentowl.toml"), `log_level = "debug"\n`);
    const config = loadConfig({ env: {}, cwd, compiled: false });
    expect(config.logLevel).toBe("debug");
    expect(config.sources.log_level).toBe("file");
  });

  test("AGENTOWL_CONFIG naming a missing file is an error, not a silent fall-back to defaults", () => {
    const cwd = tempDir();
    refused(
      { env: { AGENTOWL_CONFIG: "nowhere.toml" }, cwd },
      "AGENTOWL_CONFIG",
      join(cwd, "nowhere.toml"),
      "does not exist",
    );
  });

  test("an unknown key is refused, naming the file and suggesting the closest setting", () => {
    const { cwd, file } = withFile(`log_levle = "debug"\n`);
    const detail = refused({ env: { AGENTOWL_CONFIG: file }, cwd }, "log_levle", file, "did you mean log_level?");
    expect(detail).toBe(`log_levle in ${file}: unknown setting (did you mean log_level?)`);
  });

  test("a table where a setting belongs is an unknown key too", () => {
    const { cwd, file } = withFile(`[http]\nlisten = ":80"\n`);
    refused({ env: { AGENTOWL_CONFIG: file }, cwd }, "http in", file, "unknown setting");
  });

  test("a corrupt file is reported as file:line:col", () => {
    const { cwd, file } = withFile(`log_level = "info"\ncommit_max_batch = = 5\n`);
    const detail = refused({ env: { AGENTOWL_CONFIG: file }, cwd }, `config file ${file}:2:`);
    expect(detail).toMatch(/\.toml:2:\d+: \S/);
  });
});

describe("environment", () => {
  test("AGENTOWL_* variables override the file, setting by setting", () => {
    const { cwd, file } = withFile(`log_level = "debug"\nworker_concurrency = 4\n`);
    const config = loadConfig({ env: { AGENTOWL_CONFIG: file, AGENTOWL_LOG_LEVEL: "warn" }, cwd });
    expect(config.logLevel).toBe("warn");
    expect(config.sources.log_level).toBe("env");
    expect(config.workerConcurrency).toBe(4);
    expect(config.sources.worker_concurrency).toBe("file");
  });

  test("an empty variable counts as unset", () => {
    const { cwd, file } = withFile(`log_level = "debug"\n`);
    expect(loadConfig({ env: { AGENTOWL_CONFIG: file, AGENTOWL_LOG_LEVEL: "" }, cwd }).logLevel).toBe("debug");
  });

  test("AGENTOWL_DNS_SERVERS is a comma-separated list", () => {
    const config = loadConfig({
      env: { AGENTOWL_DNS_SERVERS: "1.1.1.1, 9.9.9.9:53,,[2606:4700::1111]:53" },
      cwd: tempDir(),
    });
    expect(config.dnsServers).toEqual(["1.1.1.1", "9.9.9.9:53", "[2606:4700::1111]:53"]);
  });

  test("whole numbers, durations and listen addresses are parsed", () => {
    const config = loadConfig({
      env: {
        AGENTOWL_COMMIT_MAX_BATCH: "250",
        AGENTOWL_SHUTDOWN_TIMEOUT: "1500ms",
        AGENTOWL_QUEUE_RETENTION: "24h",
        AGENTOWL_HTTP_LISTEN: "[::1]:0",
        AGENTOWL_SMTP_LISTEN: ":25",
        AGENTOWL_MAIL_DOMAIN: "Mail.Example.COM",
      },
      cwd: tempDir(),
    });
    expect(config.commitMaxBatch).toBe(250);
    expect(config.shutdownTimeoutMs).toBe(1500);
    expect(config.retentionMs).toBe(86_400_000);
    expect(config.http).toEqual({ host: "::1", port: 0 });
    expect(config.smtp).toEqual({ host: "0.0.0.0", port: 25 });
    expect(config.mailDomain).toBe("mail.example.com");
  });

  test("an unknown AGENTOWL_* variable is refused, naming it and suggesting the closest one", () => {
    const detail = refused({ env: { AGENTOWL_LOG_LEVL: "debug" }, cwd: tempDir() }, "AGENTOWL_LOG_LEVL");
    expect(detail).toBe("AGENTOWL_LOG_LEVL: unknown setting (did you mean AGENTOWL_LOG_LEVEL?)");
    refused(
      { env: { AGENTOWL_SHUTDOWN_TIMOUT: "5s" }, cwd: tempDir() },
      "AGENTOWL_SHUTDOWN_TIMOUT",
      "did you mean AGENTOWL_SHUTDOWN_TIMEOUT?",
    );
  });

  test("the CLI client's own variables are accepted", () => {
    const { cwd, file } = withFile("");
    const env = {
      AGENTOWL_CONFIG: file,
      AGENTOWL_URL: "http://127.0.0.1:8080",
      AGENTOWL_TOKEN: "tok_abc",
      AGENTOWL_PROFILE: "home",
    };
    expect(loadConfig({ env, cwd }).file).toBe(file);
  });

  test("variables outside AGENTOWL_* are none of its business", () => {
    expect(() => loadConfig({ env: { PATH: "/bin", AGENTOWLISH: "x", HOME: "/root" }, cwd: tempDir() })).not.toThrow();
  });
});

describe("an invalid value stops start-up with one line naming the setting and its source", () => {
  const fromEnv: [what: string, env: Record<string, string>, mentions: string[]][] = [
    [
      "a listen address without a port",
      { AGENTOWL_HTTP_LISTEN: "8080" },
      ["AGENTOWL_HTTP_LISTEN (environment)", "host:port", `"8080"`],
    ],
    [
      "a port above 65535",
      { AGENTOWL_SMTP_LISTEN: "127.0.0.1:65536" },
      ["AGENTOWL_SMTP_LISTEN (environment)", `"127.0.0.1:65536"`],
    ],
    [
      "a duration without a unit",
      { AGENTOWL_SHUTDOWN_TIMEOUT: "10" },
      ["AGENTOWL_SHUTDOWN_TIMEOUT (environment)", "a duration", `"10"`],
    ],
    [
      "a fractional duration",
      { AGENTOWL_QUEUE_VISIBILITY_TIMEOUT: "1.5m" },
      ["AGENTOWL_QUEUE_VISIBILITY_TIMEOUT (environment)", `"1.5m"`],
    ],
    [
      "a duration in words",
      { AGENTOWL_COMMIT_WINDOW: "2 seconds" },
      ["AGENTOWL_COMMIT_WINDOW (environment)", `"2 seconds"`],
    ],
    [
      "a fraction for an integer",
      { AGENTOWL_COMMIT_MAX_BATCH: "1.5" },
      ["AGENTOWL_COMMIT_MAX_BATCH (environment)", "an integer", `"1.5"`],
    ],
    [
      "an exponent for an integer",
      { AGENTOWL_COMMIT_MAX_BATCH: "1e3" },
      ["AGENTOWL_COMMIT_MAX_BATCH (environment)", `"1e3"`],
    ],
    [
      "hexadecimal for an integer",
      { AGENTOWL_WORKER_CONCURRENCY: "0x10" },
      ["AGENTOWL_WORKER_CONCURRENCY (environment)", `"0x10"`],
    ],
    [
      "a boolean for an integer",
      { AGENTOWL_WORKER_CONCURRENCY: "true" },
      ["AGENTOWL_WORKER_CONCURRENCY (environment)", `"true"`],
    ],
    [
      "a word for an integer",
      { AGENTOWL_COMMIT_MAX_BATCH: "lots" },
      ["AGENTOWL_COMMIT_MAX_BATCH (environment)", `"lots"`],
    ],
    [
      "zero workers",
      { AGENTOWL_WORKER_CONCURRENCY: "0" },
      ["AGENTOWL_WORKER_CONCURRENCY (environment)", "from 1 to 1000"],
    ],
    [
      "too many workers",
      { AGENTOWL_WORKER_CONCURRENCY: "1001" },
      ["AGENTOWL_WORKER_CONCURRENCY (environment)", "from 1 to 1000"],
    ],
    [
      "a negative batch",
      { AGENTOWL_COMMIT_MAX_BATCH: "-1" },
      ["AGENTOWL_COMMIT_MAX_BATCH (environment)", "from 1 to 10000"],
    ],
    [
      "an unknown log level",
      { AGENTOWL_LOG_LEVEL: "verbose" },
      ["AGENTOWL_LOG_LEVEL (environment)", "debug | info | warn | error", `"verbose"`],
    ],
    [
      "a mail domain with a space",
      { AGENTOWL_MAIL_DOMAIN: "not a domain" },
      ["AGENTOWL_MAIL_DOMAIN (environment)", "a domain name"],
    ],
    [
      "a mail domain without a dot",
      { AGENTOWL_MAIL_DOMAIN: "localhost" },
      ["AGENTOWL_MAIL_DOMAIN (environment)", `"localhost"`],
    ],
    [
      "a DNS server that is not host[:port]",
      { AGENTOWL_DNS_SERVERS: "1.1.1.1,bad host" },
      ["AGENTOWL_DNS_SERVERS (environment)", "bad host"],
    ],
    [
      "a bootstrap token under 24 characters",
      { AGENTOWL_BOOTSTRAP_TOKEN: "tooshort" },
      ["AGENTOWL_BOOTSTRAP_TOKEN (environment)", "at least 24 characters"],
    ],
    [
      "tls_cert without tls_key",
      { AGENTOWL_TLS_CERT: "/etc/cert.pem" },
      ["AGENTOWL_TLS_CERT (environment)", "tls_key", "set both or neither"],
    ],
    [
      "tls_key without tls_cert",
      { AGENTOWL_TLS_KEY: "/etc/key.pem" },
      ["AGENTOWL_TLS_KEY (environment)", "tls_cert", "set both or neither"],
    ],
  ];
  for (const [what, env, mentions] of fromEnv) {
    test(`from the environment: ${what}`, () => {
      refused({ env, cwd: tempDir() }, ...mentions);
    });
  }

  const fromFile: [what: string, toml: string, mentions: string[]][] = [
    ["a bad listen address", `http_listen = "everywhere"`, ["http_listen in", `"everywhere"`]],
    ["a number for a listen address", `http_listen = 8080`, ["http_listen in", "host:port"]],
    ["a bad duration", `shutdown_timeout = "forever"`, ["shutdown_timeout in", "a duration", `"forever"`]],
    ["a fraction for an integer", `worker_concurrency = 2.5`, ["worker_concurrency in", "an integer", "2.5"]],
    ["a string for an integer", `commit_max_batch = "lots"`, ["commit_max_batch in", `"lots"`]],
    ["an integer out of range", `commit_max_batch = 5000000000`, ["commit_max_batch in", "from 1 to 10000"]],
    ["an unknown log level", `log_level = "loud"`, ["log_level in", `"loud"`]],
    ["a bad mail domain", `mail_domain = "-bad-.lan"`, ["mail_domain in", "a domain name"]],
    ["an empty data dir", `data_dir = ""`, ["data_dir in", "a directory path"]],
    [
      "tls_key without tls_cert",
      `tls_key = "/etc/key.pem"`,
      ["tls_key in", "tls_cert (AGENTOWL_TLS_CERT)", "set both or neither"],
    ],
  ];
  for (const [what, toml, mentions] of fromFile) {
    test(`from agentowl.toml: ${what}`, () => {
      const { cwd, file } = withFile(toml + "\n");
      refused({ env: { AGENTOWL_CONFIG: file }, cwd }, ...mentions, `in ${file}`);
    });
  }

  test("a bad bootstrap token is refused without echoing it: the error lands in the journal", () => {
    for (const token of ["short-secret", "a long enough secret but with spaces"]) {
      const detail = refused({ env: { AGENTOWL_BOOTSTRAP_TOKEN: token }, cwd: tempDir() }, "AGENTOWL_BOOTSTRAP_TOKEN");
      expect(detail).not.toContain(token);
      const { cwd, file } = withFile(`bootstrap_token = ${JSON.stringify(token)}\n`);
      expect(refused({ env: { AGENTOWL_CONFIG: file }, cwd }, "bootstrap_token in")).not.toContain(token);
    }
  });

  test("the environment is checked even when the file is fine, and names the variable, not the file", () => {
    const { cwd, file } = withFile(`shutdown_timeout = "10s"\n`);
    const detail = refused(
      { env: { AGENTOWL_CONFIG: file, AGENTOWL_SHUTDOWN_TIMEOUT: "soon" }, cwd },
      "AGENTOWL_SHUTDOWN_TIMEOUT",
    );
    expect(detail).not.toContain(file);
  });
});

describe("docs/configuration.md", () => {
  test("holds exactly the settings table generated from the schema", () => {
    const doc = readFileSync(join(import.meta.dir, "..", "..", "docs", "configuration.md"), "utf8");
    const table = doc
      .split("\n")
      .filter((line) => line.startsWith("|"))
      .join("\n");
    expect(
      table + "\n",
      "docs/configuration.md is out of date: run `bun scripts/config-docs.ts --write` (or `bun scripts/config-docs.ts` to print the table)",
    ).toBe(renderConfigDocs());
  });
});

describe("settings beside the rest of the appliance", () => {
  test("still validate after Elysia and its OpenAPI plugin registered their own formats", async () => {
    await import("../api/v1.ts");
    const config = loadConfig({ env: {}, cwd: "/tmp" });
    expect(config.shutdownTimeoutMs).toBe(10_000);
    expect(config.http).toEqual({ host: "0.0.0.0", port: 8080 });
  });
});
