-- delivery_attempts without AUTOINCREMENT (docs/performance.md): the same rows and ids, rebuilt.
-- drizzle-kit wraps a rebuild in PRAGMA foreign_keys=OFF/ON, which is a no-op inside the
-- migration's transaction (src/store/migrate.ts); nothing references this table, so dropping it
-- checks nothing either way.
CREATE TABLE `__new_delivery_attempts` (
	`id` integer PRIMARY KEY NOT NULL,
	`delivery_id` text NOT NULL,
	`attempt` integer NOT NULL,
	`started_at` integer NOT NULL,
	`latency_ms` integer NOT NULL,
	`status` integer,
	`error_class` text,
	`error` text,
	`excerpt` text,
	FOREIGN KEY (`delivery_id`) REFERENCES `deliveries`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
INSERT INTO `__new_delivery_attempts`("id", "delivery_id", "attempt", "started_at", "latency_ms", "status", "error_class", "error", "excerpt") SELECT "id", "delivery_id", "attempt", "started_at", "latency_ms", "status", "error_class", "error", "excerpt" FROM `delivery_attempts`;--> statement-breakpoint
DROP TABLE `delivery_attempts`;--> statement-breakpoint
ALTER TABLE `__new_delivery_attempts` RENAME TO `delivery_attempts`;--> statement-breakpoint
CREATE INDEX `delivery_attempts_delivery` ON `delivery_attempts` (`delivery_id`,`attempt`);