CREATE TABLE `resource_history` (
	`tenant` text NOT NULL,
	`kind` text NOT NULL,
	`name` text NOT NULL,
	`resource_version` integer NOT NULL,
	`op` text NOT NULL,
	`spec` text NOT NULL,
	`actor` text NOT NULL,
	`changed_at` integer NOT NULL,
	PRIMARY KEY(`tenant`, `kind`, `name`, `resource_version`)
);
--> statement-breakpoint
CREATE TABLE `resources` (
	`tenant` text NOT NULL,
	`kind` text NOT NULL,
	`name` text NOT NULL,
	`spec` text NOT NULL,
	`resource_version` integer NOT NULL,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	PRIMARY KEY(`tenant`, `kind`, `name`)
);
--> statement-breakpoint
CREATE INDEX `resources_kind` ON `resources` (`kind`,`name`);--> statement-breakpoint
CREATE TABLE `tokens` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`hash` text NOT NULL,
	`scopes` text NOT NULL,
	`created_at` integer NOT NULL,
	`created_by` text NOT NULL,
	`expires_at` integer,
	`revoked_at` integer
);
--> statement-breakpoint
CREATE UNIQUE INDEX `tokens_hash_unique` ON `tokens` (`hash`);--> statement-breakpoint
CREATE INDEX `tokens_created` ON `tokens` (`created_at`);