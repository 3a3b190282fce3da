CREATE TABLE `jobs` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
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
CREATE INDEX `jobs_ready` ON `jobs` (`run_at`) WHERE state = 'available';--> statement-breakpoint
CREATE INDEX `jobs_leased` ON `jobs` (`lease_expires_at`) WHERE state = 'leased';--> statement-breakpoint
CREATE INDEX `jobs_finished` ON `jobs` (`state`,`finished_at`) WHERE state IN ('done', 'dead');--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_idempotency` ON `jobs` (`kind`,`idempotency_key`) WHERE idempotency_key IS NOT NULL;--> statement-breakpoint
CREATE TABLE `kv` (
	`key` text PRIMARY KEY NOT NULL,
	`value` text NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `outbox` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`id` text NOT NULL,
	`topic` text NOT NULL,
	`tenant` text,
	`payload` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `outbox_id_unique` ON `outbox` (`id`);--> statement-breakpoint
CREATE INDEX `outbox_created` ON `outbox` (`created_at`);--> statement-breakpoint
CREATE TABLE `outbox_cursors` (
	`subscriber` text PRIMARY KEY NOT NULL,
	`position` integer NOT NULL,
	`updated_at` integer NOT NULL
);
