/**
 * The few parts of POSIX ustar a backup archive needs (docs/operations.md#backups): regular files
 * only, names of at most 100 bytes (or a 155-byte prefix and a 100-byte name), sizes in octal up
 * to 8 GiB and in GNU's base-256 form past that. GNU tar and bsdtar read what this writes, and
 * this reads theirs (of regular files); anything else is refused, never guessed at.
 */

export const BLOCK = 512;
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = new Uint8Array(2 * BLOCK);
const OCTAL_SIZE_MAX = 8 ** 11 - 1;
/** The longest path accepted: prefix (155) + "/" + name (100). */
const PATH_MAX = 256;

export interface TarEntry {
  path: string;
  size: number;
}

/** Bytes of zero padding after `size` bytes of data. */
export const paddingOf = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

/** Bytes an entry of `size` takes in the archive: its header, its data, its padding. */
export const entryBytes = (size: number): number => BLOCK + size + paddingOf(size);

/** A path the archive may hold: relative, `/`-separated, no `.` or `..` part, printable ASCII. */
export function safePath(path: string): boolean {
  if (!path || path.length > PATH_MAX || path.startsWith("/") || !/^[\x21-\x7e]+$/.test(path)) return false;
  return path.split("/").every((p) => p !== "" && p !== "." && p !== "..");
}

function putString(block: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = new TextEncoder().encode(value);
  if (bytes.length > length) throw new Error(`tar field of ${length} bytes cannot hold ${value}`);
  block.set(bytes, offset);
}

function putOctal(block: Uint8Array, offset: number, length: number, value: number): void {
  putString(block, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

/** The 512-byte ustar header of a regular file. */
export function tarHeader(entry: TarEntry, opts: { mtimeSec: number; mode?: number }): Uint8Array {
  if (!safePath(entry.path)) throw new Error(`not a path an archive may hold: ${entry.path}`);
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) throw new Error(`bad size ${entry.size}`);
  const block = new Uint8Array(BLOCK);
  let name = entry.path;
  let prefix = "";
  if (name.length > 100) {
    const cut = name.lastIndexOf("/", 155);
    if (cut <= 0 || name.length - cut - 1 > 100) throw new Error(`path too long for ustar: ${name}`);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  putString(block, 0, 100, name);
  putOctal(block, 100, 8, opts.mode ?? 0o600);
  putOctal(block, 108, 8, 0);
  putOctal(block, 116, 8, 0);
  if (entry.size <= OCTAL_SIZE_MAX) putOctal(block, 124, 12, entry.size);
  else {
    // GNU base-256: the high bit of the first byte set, the size big-endian in the rest.
    block[124] = 0x80;
    let v = entry.size;
    for (let i = 135; i > 124; i--) {
      block[i] = v % 256;
      v = Math.floor(v / 256);
    }
  }
  putOctal(block, 136, 12, Math.max(0, Math.floor(opts.mtimeSec)));
  block.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  block[156] = 0x30; // "0": a regular file
  putString(block, 257, 6, "ustar\0");
  putString(block, 263, 2, "00");
  putString(block, 345, 155, prefix);
  let sum = 0;
  for (const b of block) sum += b;
  putString(block, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

function readString(block: Uint8Array, offset: number, length: number): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
}

function readNumber(block: Uint8Array, offset: number, length: number): number | null {
  if (block[offset]! & 0x80) {
    let v = 0;
    for (let i = offset + 1; i < offset + length; i++) v = v * 256 + block[i]!;
    return Number.isSafeInteger(v) ? v : null;
  }
  const text = readString(block, offset, length).trim();
  if (!/^[0-7]*$/.test(text)) return null;
  return text === "" ? 0 : Number.parseInt(text, 8);
}

/**
 * A header block read back: the entry it announces, `null` for a zero block (the end), or an
 * error message for anything this format does not allow (a bad checksum, a link, a device, a
 * path with `..`).
 */
export function parseHeader(block: Uint8Array): TarEntry | null | { error: string } {
  if (block.length !== BLOCK) return { error: "a short header block" };
  if (block.every((b) => b === 0)) return null;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  const stored = readNumber(block, 148, 8);
  if (stored !== sum) return { error: "a header's checksum does not match" };
  const type = String.fromCharCode(block[156]!);
  if (type !== "0" && type !== "\0") return { error: `an entry of type '${type}' (only regular files are allowed)` };
  const name = readString(block, 0, 100);
  const magic = readString(block, 257, 6);
  const prefix = magic === "ustar" ? readString(block, 345, 155) : "";
  const path = prefix ? `${prefix}/${name}` : name;
  if (!safePath(path))
    return { error: `an entry with a path that is not allowed: ${JSON.stringify(path.slice(0, 80))}` };
  const size = readNumber(block, 124, 12);
  if (size === null) return { error: `entry ${path} has an unreadable size` };
  return { path, size };
}
