CREATE TABLE `delivery_attempts` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
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
CREATE INDEX `delivery_attempts_delivery` ON `delivery_attempts` (`delivery_id`,`attempt`);--> statement-breakpoint
ALTER TABLE `deliveries` ADD `route` text;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `decision` text;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `approval_id` text;--> statement-breakpoint
ALTER TABLE `deliveries` ADD `first_attempt_at` integer;--> statement-breakpoint
CREATE UNIQUE INDEX `deliveries_event_endpoint` ON `deliveries` (`event_id`,`endpoint`);--> statement-breakpoint
CREATE INDEX `deliveries_approval` ON `deliveries` (`approval_id`);--> statement-breakpoint
ALTER TABLE `events` ADD `routing` text;