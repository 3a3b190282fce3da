/**
 * Backups (docs/operations.md#backups): an archive of the data dir taken while the server serves,
 * verified and restored by the CLI.
 */
export { ArchiveRefused, type Manifest, readArchive } from "./archive.ts";
export { archiveName, type BackupProgress, createBackup, pruneBackups } from "./backup.ts";
export { type BackupResult, ENCRYPTION_NOTE } from "./plan.ts";
export { type RestoreResult, restoreArchive, verifyArchive } from "./restore.ts";
export { type BackupSettings, Backups } from "./service.ts";
