/**
 * Postfix's durable accept as an SMTP reference: a private Postfix instance (its own config and
 * queue directory under a temporary directory, Debian's binaries) listening on 127.0.0.1:PORT.
 * Every message is written to the queue and fsynced by cleanup before smtpd answers 250, as
 * Postfix always does; the queue manager then hands it to the discard transport, so nothing is
 * delivered anywhere. No DNS, no chroot, no connection limits, no greeting pause.
 *
 * Needs root (Postfix drops to the postfix user) and the postfix package; `startPostfix` returns
 * null with the reason when either is missing, so the report can say the reference was missing.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "bun";

const POSTFIX = "/usr/sbin/postfix";
const DAEMONS = "/usr/lib/postfix/sbin";

export interface PostfixInstance {
  port: number;
  /** The master's pid: its children (smtpd, cleanup, qmgr, discard) do the work. */
  pids(): number[];
  stop(): Promise<void>;
}

const MAIN_CF = (dir: string) => `compatibility_level = 3.6
queue_directory = ${dir}/queue
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
daemon_directory = ${DAEMONS}
myhostname = bench.localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
default_transport = discard
relay_transport = discard
local_transport = discard
alias_maps =
alias_database =
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
in_flow_delay = 0
maillog_file_prefixes = ${dir}
maillog_file = ${dir}/maillog
`;

const MASTER_CF = (port: number) =>
  [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    "pickup unix n - n 60 1 pickup",
    "cleanup unix n - n - 0 cleanup",
    "qmgr unix n - n 300 1 qmgr",
    "rewrite unix - - n - - trivial-rewrite",
    "bounce unix - - n - 0 bounce",
    "defer unix - - n - 0 bounce",
    "trace unix - - n - 0 bounce",
    "verify unix - - n - 1 verify",
    "flush unix n - n 1000? 0 flush",
    "proxymap unix - - n - - proxymap",
    "showq unix n - n - - showq",
    "error unix - - n - - error",
    "retry unix - - n - - error",
    "discard unix - - n - - discard",
    "anvil unix - - n - 1 anvil",
    "scache unix - - n - 1 scache",
    "postlog unix-dgram n - n - 1 postlogd",
    "",
  ].join("\n");

/** Children of `pid`, recursively, from /proc (Linux). */
function descendants(pid: number): number[] {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    return kids.flatMap((k) => [k, ...descendants(k)]);
  } catch {
    return [];
  }
}

/** A private Postfix on `port` in `dir` (which it fills), or the reason there is none. */
export function startPostfix(dir: string, port: number): PostfixInstance | string {
  if (!existsSync(POSTFIX) || !existsSync(join(DAEMONS, "smtpd")))
    return "postfix not installed (apt-get install postfix)";
  if (process.getuid?.() !== 0) return "postfix needs root to start an instance";
  const conf = join(dir, "etc");
  mkdirSync(conf, { recursive: true });
  mkdirSync(join(dir, "data"), { recursive: true });
  mkdirSync(join(dir, "queue"), { recursive: true });
  const owner = spawnSync(["chown", "postfix", join(dir, "data")]);
  if (owner.exitCode !== 0) return "no postfix user to own its data directory";
  chmodSync(dir, 0o755);
  writeFileSync(join(conf, "main.cf"), MAIN_CF(dir));
  writeFileSync(join(conf, "master.cf"), MASTER_CF(port));
  const run = (...args: string[]) => spawnSync([POSTFIX, "-c", conf, ...args], { stdout: "pipe", stderr: "pipe" });
  const started = run("start");
  if (started.exitCode !== 0) {
    const why = `${started.stdout}${started.stderr}`.trim().split("\n").at(-1);
    return `postfix did not start: ${why}`;
  }
  const masterPid = () => {
    try {
      return Number(readFileSync(join(dir, "queue/pid/master.pid"), "utf8").trim());
    } catch {
      return 0;
    }
  };
  return {
    port,
    pids: () => {
      const m = masterPid();
      return m ? [m, ...descendants(m)] : [];
    },
    stop: async () => {
      run("stop");
      const t0 = performance.now();
      while (masterPid() && existsSync(`/proc/${masterPid()}`) && performance.now() - t0 < 10_000) await Bun.sleep(50);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
