/**
 * sd_notify(3) for a service started by systemd with Type=notify: one datagram per state change
 * ("READY=1", "WATCHDOG=1", "STOPPING=1") to the Unix datagram socket named by NOTIFY_SOCKET.
 * Node's dgram has no Unix sockets and Bun has no datagram Unix sockets either, so the three
 * libc calls go through bun:ffi (Linux only: systemd is Linux only). Without NOTIFY_SOCKET, or
 * where libc cannot be opened, every call is a no-op (docs/operations.md#the-service).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

export interface Notifier {
  /** True when states go to a service manager. */
  readonly enabled: boolean;
  /** Send one state message (e.g. "READY=1"); false when it was not delivered. */
  notify(state: string): boolean;
  close(): void;
}

const NOOP: Notifier = { enabled: false, notify: () => false, close() {} };

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un) on Linux: a 2-byte family and a 108-byte path. */
const SUN_PATH_MAX = 108;

function openLibc() {
  const symbols = {
    socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendto: {
      args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32],
      returns: FFIType.i64,
    },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
  } as const;
  for (const name of ["libc.so.6", "libc.so"]) {
    try {
      return dlopen(name, symbols);
    } catch {}
  }
  return null;
}

/** struct sockaddr_un for `path`; a leading "@" names an abstract socket (a NUL first byte). */
function socketAddress(path: string): Buffer | null {
  const bytes = Buffer.from(path.startsWith("@") ? `\0${path.slice(1)}` : path, "utf8");
  if (bytes.length === 0 || bytes.length >= SUN_PATH_MAX) return null;
  const addr = Buffer.alloc(2 + bytes.length + (path.startsWith("@") ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  bytes.copy(addr, 2);
  return addr;
}

/** The notifier for this process: a no-op unless systemd gave it NOTIFY_SOCKET on Linux. */
export function systemdNotifier(env: Record<string, string | undefined> = process.env): Notifier {
  const path = env.NOTIFY_SOCKET;
  if (!path || process.platform !== "linux") return NOOP;
  const addr = socketAddress(path);
  const libc = addr && openLibc();
  if (!addr || !libc) return NOOP;
  const fd = libc.symbols.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    libc.close();
    return NOOP;
  }
  let open = true;
  return {
    enabled: true,
    notify(state) {
      if (!open) return false;
      const message = Buffer.from(state, "utf8");
      const sent = libc.symbols.sendto(fd, ptr(message), message.length, MSG_NOSIGNAL, ptr(addr), addr.length);
      return Number(sent) === message.length;
    },
    close() {
      if (!open) return;
      open = false;
      libc.symbols.close(fd);
      libc.close();
    },
  };
}

/**
 * How often systemd expects WATCHDOG=1 (WatchdogSec=, passed as WATCHDOG_USEC), or null when it
 * does not watch this process (WATCHDOG_PID, when set, names another one).
 */
export function watchdogIntervalMs(
  env: Record<string, string | undefined> = process.env,
  pid: number = process.pid,
): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return null;
  return Math.max(1, Math.floor(usec / 1000));
}
