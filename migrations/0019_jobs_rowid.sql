-- jobs without AUTOINCREMENT (docs/performance.md), which updated sqlite_sequence on every
-- enqueue: the same rows and ids, rebuilt. Ids stay never reused: a new row gets the largest id
-- plus one, and the retention sweep never deletes the job with the largest id. Where the sweep
-- had already deleted the newest jobs (AUTOINCREMENT's high-water mark above the largest id),
-- a finished job of kind `id.high_water` holds the mark, until a newer job lets the sweep take it.
-- No table references jobs, so drizzle-kit's PRAGMA foreign_keys=OFF/ON (a no-op inside the
-- migration's transaction, src/store/migrate.ts) is left out.
CREATE TABLE `__new_jobs` (
	`id` integer PRIMARY KEY NOT NULL,
	`kind` text NOT NULL,
	`tenant` text,
	`payload` text NOT NULL,
	`idempotency_key` text,
	`state` text NOT NULL,
	`attempt` integer DEFAULT 0 NOT NULL,
	`max_attempts` integer NOT NULL,
	`run_at` integer NOT NULL,
	`created_at` integer NOT NULL,
	`expires_at` integer,
	`leased_at` integer,
	`lease_expires_at` integer,
	`lease_owner` text,
	`finished_at` integer,
	`last_error` text,
	`dead_reason` text
);
--> statement-breakpoint
INSERT INTO `__new_jobs`("id", "kind", "tenant", "payload", "idempotency_key", "state", "attempt", "max_attempts", "run_at", "created_at", "expires_at", "leased_at", "lease_expires_at", "lease_owner", "finished_at", "last_error", "dead_reason") SELECT "id", "kind", "tenant", "payload", "idempotency_key", "state", "attempt", "max_attempts", "run_at", "created_at", "expires_at", "leased_at", "lease_expires_at", "lease_owner", "finished_at", "last_error", "dead_reason" FROM `jobs`;--> statement-breakpoint
INSERT INTO `__new_jobs`("id", "kind", "payload", "state", "attempt", "max_attempts", "run_at", "created_at", "finished_at") SELECT "seq", 'id.high_water', 'null', 'done', 0, 0, 0, 0, 0 FROM `sqlite_sequence` WHERE "name" = 'jobs' AND "seq" > (SELECT coalesce(max("id"), 0) FROM `__new_jobs`);--> statement-breakpoint
DROP TABLE `jobs`;--> statement-breakpoint
ALTER TABLE `__new_jobs` RENAME TO `jobs`;--> statement-breakpoint
CREATE INDEX `jobs_ready` ON `jobs` (`run_at`) WHERE state = 'available';--> statement-breakpoint
CREATE INDEX `jobs_leased` ON `jobs` (`lease_expires_at`) WHERE state = 'leased';--> statement-breakpoint
CREATE INDEX `jobs_finished` ON `jobs` (`state`,`finished_at`) WHERE state IN ('done', 'dead');--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_idempotency` ON `jobs` (`kind`,`idempotency_key`) WHERE idempotency_key IS NOT NULL;