-- Retention prunes the start of the audit log (docs/operations.md#retention): a delete is allowed
-- only up to the entry the pruning recorded, in the same transaction, after the signed checkpoint
-- of the pruned prefix was written. Any other delete still aborts.
DROP TRIGGER `audit_log_no_delete`;--> statement-breakpoint
CREATE TRIGGER `audit_log_no_delete` BEFORE DELETE ON `audit_log` WHEN OLD.seq > COALESCE((SELECT CAST(`value` AS INTEGER) FROM `kv` WHERE `key` = 'audit.pruned_through'), 0) BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
