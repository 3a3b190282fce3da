/**
 * install.sh into a throw-away root (--prefix under a temp dir): without a service manager it says
 * which steps it skipped; with a stub systemctl (or launchctl) first in PATH, which records its
 * calls and starts `agentowl serve` for real, the calls are the expected ones and /readyz is
 * waited for. A second run changes nothing; --dry-run changes nothing; --uninstall keeps the data
 * and --purge removes it. The "binary" is a wrapper that runs src/main.ts with bun.
 */
import { afterAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { Database } from "bun:sqlite";
import { join, resolve } from "node:path";

const REPO = resolve(import.meta.dir, "../..");
const INSTALL = join(REPO, "install.sh");
const BUN = join(REPO, "node_modules/.bin/bun");
const work = mkdtempSync(join(tmpdir(), "agentowl-install-"));
const servers: string[] = [];
afterAll(() => {
  // A server a stub service manager started and a failed test left running.
  for (const state of servers) {
    try {
      process.kill(Number(readFileSync(join(state, "pid"), "utf8")), "SIGKILL");
    } catch {}
  }
  rmSync(work, { recursive: true, force: true });
});

const me = Bun.spawnSync(["id", "-un"]).stdout.toString().trim();

/** A stand-in for the compiled binary: bun running this checkout's src/main.ts. */
function wrapper(name: string, extra = ""): string {
  const path = join(work, name);
  writeFileSync(path, `#!/bin/sh\n${extra}exec "${BUN}" "${REPO}/src/main.ts" "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}
const binary = wrapper("agentowl");

/** A PATH like this machine's, without systemctl and launchctl (as in a container). */
const noServiceManager = (() => {
  const dir = join(work, "path-without-systemctl");
  mkdirSync(dir);
  const seen = new Set<string>();
  for (const from of (process.env.PATH ?? "/usr/bin:/bin").split(":")) {
    let names: string[] = [];
    try {
      names = readdirSync(from);
    } catch {}
    for (const name of names) {
      if (name === "systemctl" || name === "launchctl" || seen.has(name)) continue;
      seen.add(name);
      symlinkSync(join(from, name), join(dir, name));
    }
  }
  return dir;
})();

const STUB = `#!/bin/sh
name=$(basename "$0")
state=$STUB_STATE
echo "$name $*" >>"$state/calls"
running() { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }
start() {
  (set -a; . "$STUB_ENV_FILE"; set +a
   AGENTOWL_DATA_DIR=$STUB_DATA_DIR CREDENTIALS_DIRECTORY=$STUB_CRED_DIR exec "$STUB_BIN" serve) >>"$state/serve.log" 2>&1 </dev/null &
  echo $! >"$state/pid"
}
stop() {
  if running; then pid=$(cat "$state/pid"); kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; fi
  rm -f "$state/pid"
}
case "$name $1" in
"systemctl is-enabled") [ -f "$state/enabled" ] ;;
"systemctl is-active") running ;;
"systemctl enable") touch "$state/enabled" ;;
"systemctl disable") rm -f "$state/enabled" ;;
"systemctl start" | "launchctl bootstrap") start ;;
"systemctl restart" | "launchctl kickstart") stop; start ;;
"systemctl stop" | "launchctl bootout") stop ;;
"systemctl daemon-reload") ;;
"launchctl print") running ;;
*) echo "stub: unexpected $name $*" >&2; exit 3 ;;
esac
`;

interface Root {
  prefix: string;
  dataDir: string;
  etc: string;
  state: string;
  env: Record<string, string>;
}

async function freePort(): Promise<number> {
  const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = s.port;
  s.stop(true);
  return port;
}

/** A fresh throw-away root; with `stub`, a fake service manager first in PATH. */
async function root(name: string, stub?: "systemctl" | "launchctl"): Promise<Root> {
  const prefix = join(work, name);
  const state = join(work, `${name}-state`);
  mkdirSync(state, { recursive: true });
  const etc = join(prefix, "etc/agentowl");
  const dataDir = join(prefix, "var/lib/agentowl");
  let path = `${noServiceManager}`;
  if (stub) {
    const bin = join(state, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, stub), STUB);
    chmodSync(join(bin, stub), 0o755);
    path = `${bin}:${path}`;
    // The settings the service will run with: kept by install.sh, read by the stub's serve.
    mkdirSync(etc, { recursive: true });
    const port = await freePort();
    writeFileSync(
      join(etc, "agentowl.env"),
      `AGENTOWL_HTTP_LISTEN=127.0.0.1:${port}\nAGENTOWL_SMTP_LISTEN=127.0.0.1:0\n` +
        `AGENTOWL_DNS_SERVERS=127.0.0.1:9\nAGENTOWL_DNS_TIMEOUT=200ms\n`,
      { mode: 0o600 },
    );
    servers.push(state);
  }
  return {
    prefix,
    dataDir,
    etc,
    state,
    env: {
      PATH: path,
      HOME: work,
      STUB_STATE: state,
      STUB_BIN: join(prefix, "bin/agentowl"),
      STUB_ENV_FILE: join(etc, "agentowl.env"),
      STUB_DATA_DIR: dataDir,
      STUB_CRED_DIR: join(etc, "credentials"),
    },
  };
}

function install(r: Root, ...args: string[]): { code: number; out: string } {
  const p = Bun.spawnSync(["sh", INSTALL, "--prefix", r.prefix, "--user", me, "--binary", binary, ...args], {
    env: r.env,
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: p.exitCode ?? -1, out: p.stdout.toString() + p.stderr.toString() };
}

/** Every path under `dir` with its type, mode, size and modification time. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = lstatSync(p);
      out.push(`${p} ${s.mode.toString(8)} ${s.isDirectory() ? "" : s.size} ${s.mtimeMs}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

const calls = (r: Root) => (existsSync(join(r.state, "calls")) ? readFileSync(join(r.state, "calls"), "utf8") : "");
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

describe("install.sh without a service manager", async () => {
  const r = await root("plain");

  test("installs the binary, a 0700 data dir, the master key credential, the unit; says what it skipped", () => {
    const { code, out } = install(r);
    expect(code, out).toBe(0);
    expect(out).toContain("skip  enabling and starting the service: systemctl is not installed");
    expect(out).toContain("skip  waiting for /readyz: the service was not started");
    expect(out).toMatch(/Console sign-in \(shown once[\s\S]*password {2}\S{20}/);
    expect(readFileSync(join(r.prefix, "bin/agentowl"), "utf8")).toBe(readFileSync(binary, "utf8"));
    expect(mode(r.dataDir)).toBe("700");
    expect(existsSync(join(r.dataDir, "agentowl.db"))).toBe(true);
    // The master key is root's, outside the data dir; the data dir holds none.
    expect(mode(join(r.etc, "credentials/agentowl-master-key"))).toBe("600");
    expect(existsSync(join(r.dataDir, "master.key"))).toBe(false);
    const unit = readFileSync(join(r.prefix, "etc/systemd/system/agentowl.service"), "utf8");
    expect(unit).toContain(`ExecStart=${r.prefix}/bin/agentowl serve`);
    expect(unit).toContain(`ReadWritePaths=${r.dataDir}\n`);
    expect(unit).toContain(`LoadCredential=agentowl-master-key:${r.etc}/credentials/agentowl-master-key`);
    expect(unit).toContain(`User=${me}\n`);
  });

  test("a second run changes nothing and says so", () => {
    const before = tree(r.prefix);
    const { code, out } = install(r);
    expect(code, out).toBe(0);
    expect(out).toContain("nothing to change");
    expect(out).not.toContain("+ ");
    expect(tree(r.prefix)).toEqual(before);
  });

  test("--dry-run prints every step and changes nothing, on a fresh root and on an upgrade", async () => {
    const fresh = await root("dry");
    const { code, out } = install(fresh, "--dry-run");
    expect(code, out).toBe(0);
    expect(out).toContain(`would run: mkdir -p ${fresh.dataDir}`);
    expect(out).toMatch(/would run: .*agentowl init/);
    expect(out).toContain("nothing was changed");
    expect(existsSync(fresh.prefix)).toBe(false);
    // A service user that does not exist yet would be created as a system user without a shell.
    const user = install(fresh, "--dry-run", "--user", "agentowl-test-nobody");
    expect(user.out).toContain(
      `would run: useradd --system --user-group --home-dir ${fresh.dataDir} --no-create-home --shell /usr/sbin/nologin agentowl-test-nobody`,
    );
    expect(existsSync(fresh.prefix)).toBe(false);

    const before = tree(r.prefix);
    const upgrade = install(r, "--upgrade", "--dry-run", "--binary", wrapper("agentowl-next", "# next\n"));
    expect(upgrade.code, upgrade.out).toBe(0);
    expect(upgrade.out).toContain(`would run: cp -p ${r.prefix}/bin/agentowl ${r.prefix}/bin/agentowl.prev`);
    expect(tree(r.prefix)).toEqual(before);
  });

  test("another binary is refused without --upgrade; --upgrade keeps the previous one as agentowl.prev", () => {
    const next = wrapper("agentowl-next", "# next\n");
    const refused = install(r, "--binary", next);
    expect(refused.code).toBe(1);
    expect(refused.out).toContain("use --upgrade");
    const { code, out } = install(r, "--upgrade", "--binary", next);
    expect(code, out).toBe(0);
    expect(readFileSync(join(r.prefix, "bin/agentowl.prev"), "utf8")).toBe(readFileSync(binary, "utf8"));
    expect(readFileSync(join(r.prefix, "bin/agentowl"), "utf8")).toBe(readFileSync(next, "utf8"));
    expect(install(r, "--upgrade", "--binary", next).out).toContain("nothing to change");
  });

  test("--uninstall removes the binary and the unit and keeps the data; --purge removes the data", () => {
    const { code, out } = install(r, "--uninstall");
    expect(code, out).toBe(0);
    expect(out).toContain("skip  stopping and disabling the service: systemctl is not installed");
    expect(existsSync(join(r.prefix, "bin/agentowl"))).toBe(false);
    expect(existsSync(join(r.prefix, "bin/agentowl.prev"))).toBe(false);
    expect(existsSync(join(r.prefix, "etc/systemd/system/agentowl.service"))).toBe(false);
    expect(existsSync(join(r.dataDir, "agentowl.db"))).toBe(true);
    expect(existsSync(join(r.etc, "credentials/agentowl-master-key"))).toBe(true);
    expect(out).toContain(`kept the data dir ${r.dataDir}`);

    const purged = install(r, "--uninstall", "--purge");
    expect(purged.code, purged.out).toBe(0);
    expect(existsSync(r.dataDir)).toBe(false);
    expect(existsSync(r.etc)).toBe(false);
    expect(install(r, "--uninstall").out).toContain("nothing to change");
  });

  test("on Ubuntu 24.04 an AppArmor profile lets bubblewrap create user namespaces", async () => {
    const u = await root("ubuntu");
    const release = join(work, "os-release-ubuntu");
    writeFileSync(release, 'ID=ubuntu\nVERSION_ID="24.04"\n');
    u.env.INSTALL_OS_RELEASE = release;
    const { code, out } = install(u);
    expect(code, out).toBe(0);
    const profile = readFileSync(join(u.prefix, "etc/apparmor.d/agentowl-bwrap"), "utf8");
    expect(profile).toMatch(/profile agentowl-bwrap \S*bwrap flags=\(unconfined\) \{\s*userns,/);
    expect(out).toContain("skip  loading the AppArmor profile: apparmor_parser is not installed");
    // Debian (and Ubuntu before 24.04) gets none.
    writeFileSync(release, 'ID=debian\nVERSION_ID="12"\n');
    const d = await root("debian");
    d.env.INSTALL_OS_RELEASE = release;
    expect(install(d).code).toBe(0);
    expect(existsSync(join(d.prefix, "etc/apparmor.d/agentowl-bwrap"))).toBe(false);
  });
});

describe("install.sh with a stub systemctl", async () => {
  const r = await root("systemd", "systemctl");

  test("reloads, enables and starts the service, waits for /readyz, prints the console URL and the SMTP address", () => {
    const { code, out } = install(r, "--init-system", "systemd", "--ready-timeout", "30");
    expect(code, out + readFileSync(join(r.state, "serve.log"), "utf8")).toBe(0);
    expect(calls(r)).toBe(
      [
        "systemctl daemon-reload",
        "systemctl is-enabled --quiet agentowl.service",
        "systemctl enable agentowl.service",
        "systemctl is-active --quiet agentowl.service",
        "systemctl start agentowl.service",
        "",
      ].join("\n"),
    );
    expect(out).toMatch(/ok {4}ready: http:\/\/127\.0\.0\.1:\d+\/readyz answered 200/);
    expect(out).toMatch(/Console: {2}http:\/\/127\.0\.0\.1:\d+\/console/);
    expect(out).toContain("SMTP:     127.0.0.1:0");
    expect(out).not.toContain("skip");
  });

  test("a second run only asks, changes nothing, and says so", () => {
    writeFileSync(join(r.state, "calls"), "");
    const { code, out } = install(r, "--init-system", "systemd");
    expect(code, out).toBe(0);
    expect(out).toContain("nothing to change");
    expect(calls(r)).toBe(
      ["systemctl is-enabled --quiet agentowl.service", "systemctl is-active --quiet agentowl.service", ""].join("\n"),
    );
  });

  test("an upgrade restarts the service on the new binary", () => {
    writeFileSync(join(r.state, "calls"), "");
    const { code, out } = install(
      r,
      "--init-system",
      "systemd",
      "--upgrade",
      "--binary",
      wrapper("agentowl-v2", "# v2\n"),
    );
    expect(code, out).toBe(0);
    // The installed binary does the upgrade: stop, swap, start, wait for /readyz.
    expect(calls(r)).toContain("systemctl stop agentowl.service\nsystemctl start agentowl.service\n");
    expect(out).toMatch(/upgraded and ready: .* answered 200/);
    expect(existsSync(join(r.dataDir, "upgrade/last.json"))).toBe(true);
  });

  test("--uninstall stops and disables the service, reloads systemd, keeps the data", () => {
    writeFileSync(join(r.state, "calls"), "");
    const { code, out } = install(r, "--init-system", "systemd", "--uninstall");
    expect(code, out).toBe(0);
    expect(calls(r)).toBe(
      [
        "systemctl is-active --quiet agentowl.service",
        "systemctl stop agentowl.service",
        "systemctl is-enabled --quiet agentowl.service",
        "systemctl disable agentowl.service",
        "systemctl daemon-reload",
        "",
      ].join("\n"),
    );
    expect(existsSync(join(r.dataDir, "agentowl.db"))).toBe(true);
  });
});

describe("install.sh with a stub launchctl", async () => {
  const r = await root("launchd", "launchctl");

  test("writes the plist for these paths and bootstraps it", () => {
    const { code, out } = install(r, "--init-system", "launchd", "--ready-timeout", "30");
    expect(code, out).toBe(0);
    const plist = join(r.prefix, "Library/LaunchDaemons/dev.agentowl.agentowl.plist");
    expect(calls(r)).toBe(
      ["launchctl print system/dev.agentowl.agentowl", `launchctl bootstrap system ${plist}`, ""].join("\n"),
    );
    const parsed = Bun.spawnSync([
      "python3",
      "-c",
      "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))",
      plist,
    ]);
    expect(parsed.exitCode, parsed.stderr.toString()).toBe(0);
    const p = JSON.parse(parsed.stdout.toString());
    expect(p.UserName).toBe(me);
    expect(p.ProgramArguments.at(-1)).toBe(join(r.prefix, "bin/agentowl"));
    expect(p.EnvironmentVariables.AGENTOWL_DATA_DIR).toBe(r.dataDir);
    expect(p.StandardErrorPath).toBe(join(r.prefix, "Library/Logs/agentowl.log"));
    // launchd has no credentials: the master key is in the data dir, where serve looks for it.
    expect(existsSync(join(r.dataDir, "master.key"))).toBe(true);
    expect(existsSync(join(r.etc, "credentials"))).toBe(false);
    expect(install(r, "--init-system", "launchd", "--uninstall").code).toBe(0);
    expect(calls(r)).toContain("launchctl bootout system/dev.agentowl.agentowl\n");
  });
});

describe("install.sh --upgrade to a binary that never gets ready", async () => {
  const r = await root("rollback", "systemctl");
  const port = () =>
    /AGENTOWL_HTTP_LISTEN=127\.0\.0\.1:(\d+)/.exec(readFileSync(join(r.etc, "agentowl.env"), "utf8"))![1];
  const readyz = async () => (await fetch(`http://127.0.0.1:${port()}/readyz`)).status;
  const db = () => new Database(join(r.dataDir, "agentowl.db"), { readonly: true });

  /**
   * A stand-in for a broken release: it says its version, and its serve migrates the database past
   * what the installed binary knows (so only a restored database lets the old one start), then
   * exits, or hangs without ever answering.
   */
  function broken(name: string, then: "exit 1" | "exec sleep 600"): string {
    const path = join(work, name);
    const migrate =
      `const { Database } = require("bun:sqlite"); const db = new Database(process.env.AGENTOWL_DATA_DIR + "/agentowl.db");` +
      ` db.run("INSERT INTO schema_migrations VALUES (9999, 'from_the_future', 'x', 0)");`;
    writeFileSync(
      path,
      `#!/bin/sh\ncase "$1" in\nversion) echo '{"version":"9.9.9","commit":"broken"}' ;;\n` +
        `upgrade) exit 2 ;;\nserve) "${BUN}" -e "${migrate.replaceAll('"', '\\"')}"; ${then} ;;\n*) exit 1 ;;\nesac\n`,
    );
    chmodSync(path, 0o755);
    return path;
  }

  test("installed and serving first", async () => {
    const { code, out } = install(r, "--init-system", "systemd", "--ready-timeout", "30");
    expect(code, out).toBe(0);
    expect(await readyz()).toBe(200);
  });

  for (const [name, then] of [
    ["exits", "exit 1"],
    ["hangs", "exec sleep 600"],
  ] as const) {
    test(`a new binary that ${name} is rolled back, binary and database: the old one serves again with its data`, async () => {
      const admins = db().query("SELECT username FROM users").all();
      expect(admins.length).toBeGreaterThan(0);
      writeFileSync(join(r.state, "calls"), "");
      const next = broken(`agentowl-broken-${name}`, then);
      const { code, out } = install(
        r,
        "--init-system",
        "systemd",
        "--upgrade",
        "--binary",
        next,
        "--ready-timeout",
        name === "hangs" ? "3" : "30",
      );
      expect(code, out).toBe(1);
      expect(out).toContain(name === "hangs" ? "was not ready within 3s" : "it exited");
      expect(out).toContain("rolled back: agentowl");
      expect(readFileSync(join(r.prefix, "bin/agentowl"), "utf8")).toBe(readFileSync(binary, "utf8"));
      expect(existsSync(join(r.dataDir, "upgrade/pre-9.9.9.db"))).toBe(true);
      expect(await readyz()).toBe(200);
      const after = db();
      expect(after.query("SELECT count(*) AS n FROM schema_migrations WHERE idx = 9999").get()).toEqual({ n: 0 });
      expect(after.query("SELECT username FROM users").all()).toEqual(admins);
      // Without the polls of is-active (how many depends on the machine's speed).
      expect(calls(r).replaceAll("systemctl is-active --quiet agentowl.service\n", "")).toBe(
        [
          "systemctl is-enabled --quiet agentowl.service",
          "systemctl stop agentowl.service",
          "systemctl start agentowl.service",
          "systemctl stop agentowl.service",
          "systemctl start agentowl.service",
          "",
        ].join("\n"),
      );
    });
  }

  test("agentowl rollback undoes a successful upgrade by hand, once", async () => {
    const v2 = wrapper("agentowl-v2-rollback", "# v2 for rollback\n");
    const up = install(r, "--init-system", "systemd", "--upgrade", "--binary", v2, "--ready-timeout", "30");
    expect(up.code, up.out).toBe(0);
    expect(readFileSync(join(r.prefix, "bin/agentowl"), "utf8")).toBe(readFileSync(v2, "utf8"));
    const rollback = () =>
      Bun.spawnSync(
        [
          join(r.prefix, "bin/agentowl"),
          "rollback",
          "--bin",
          join(r.prefix, "bin/agentowl"),
          "--init-system",
          "systemd",
          "--env-file",
          join(r.etc, "agentowl.env"),
        ],
        {
          env: {
            ...r.env,
            AGENTOWL_DATA_DIR: r.dataDir,
            AGENTOWL_MASTER_KEY_FILE: join(r.etc, "credentials/agentowl-master-key"),
          },
          stdout: "pipe",
          stderr: "pipe",
        },
      );
    const once = rollback();
    expect(once.exitCode, once.stdout.toString() + once.stderr.toString()).toBe(0);
    expect(readFileSync(join(r.prefix, "bin/agentowl"), "utf8")).toBe(readFileSync(binary, "utf8"));
    expect(await readyz()).toBe(200);
    const twice = rollback();
    expect(twice.exitCode).toBe(4);
    expect(twice.stderr.toString()).toContain("rolled back already");
  });
});
