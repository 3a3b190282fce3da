/**
 * The bubblewrap command line of one runtime (docs/agents.md): every namespace new (so no network
 * but a loopback of its own), the system read-only, a private /tmp, its own directory at /work as
 * the only writable path, its socket at /run/agentowl.sock, and nothing of the appliance's data.
 */
import { lstatSync, readlinkSync } from "node:fs";

export const SANDBOX_SOCKET = "/run/agentowl.sock";
export const SANDBOX_WORK = "/work";

/** Top-level system paths: bound read-only, or re-made as the symlinks they are (merged /usr). */
const SYSTEM = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];
/** What of /etc a program needs to run (the dynamic linker's cache, users, certificates), nothing else. */
const ETC = [
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/alternatives",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/localtime",
  "/etc/passwd",
  "/etc/group",
  "/etc/nsswitch.conf",
  "/etc/hosts",
];

export type PathKind = { dir: true } | { symlink: string } | null;

export function systemPathKind(path: string): PathKind {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return { symlink: readlinkSync(path) };
    return st.isDirectory() ? { dir: true } : null;
  } catch {
    return null;
  }
}

export interface BwrapOptions {
  /** The runtime's directory on the host: /work inside. */
  dir: string;
  /** Its socket on the host: /run/agentowl.sock inside. */
  socket: string;
  /** Further read-only binds, host path → sandbox path (the runtime program). */
  readOnly: readonly (readonly [string, string])[];
  kind?: (path: string) => PathKind;
}

/**
 * bwrap's arguments up to the command (which follows them). The environment is bwrap's own, which
 * its child inherits: the launcher gives bwrap exactly the runtime's, so the token is on no command line.
 */
export function bwrapArgs(o: BwrapOptions): string[] {
  const kind = o.kind ?? systemPathKind;
  const args = ["--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"];
  for (const p of SYSTEM) {
    const k = kind(p);
    if (k && "symlink" in k) args.push("--symlink", k.symlink, p);
    else if (k) args.push("--ro-bind", p, p);
  }
  for (const p of ETC) args.push("--ro-bind-try", p, p);
  args.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  for (const [host, inside] of o.readOnly) args.push("--ro-bind", host, inside);
  args.push("--bind", o.dir, SANDBOX_WORK, "--bind", o.socket, SANDBOX_SOCKET);
  // The sandbox's root is bwrap's tmpfs: read-only, so that /work and /tmp are the only writable paths.
  args.push("--remount-ro", "/", "--chdir", SANDBOX_WORK);
  return args;
}
