/**
 * The macOS sandbox profile of one runtime (SBPL, for `sandbox-exec -p`): no network but its own
 * socket, writes only to its directory and the temporary directories, and the appliance's data
 * directory unreadable but for its own directory and socket. Later rules take precedence.
 */

/** A string literal in SBPL: double-quoted, with backslash escapes. */
export const sbplString = (s: string): string => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

export interface ProfileOptions {
  /** The runtime's directory (its only writable path besides the temporary ones). */
  dir: string;
  socket: string;
  /** The appliance's data directory: hidden, but for `dir` and `socket`. */
  dataDir: string;
}

export function sandboxExecProfile({ dir, socket, dataDir }: ProfileOptions): string {
  return [
    "(version 1)",
    "(allow default)",
    "(deny network*)",
    `(allow network-outbound (remote unix-socket (path-literal ${sbplString(socket)})))`,
    "(deny file-write*)",
    `(allow file-write* (subpath ${sbplString(dir)}) (subpath "/private/tmp") (subpath "/private/var/folders") (literal "/dev/null"))`,
    `(deny file-read* (subpath ${sbplString(dataDir)}))`,
    `(allow file-read* (subpath ${sbplString(dir)}) (literal ${sbplString(socket)}))`,
    "",
  ].join("\n");
}
