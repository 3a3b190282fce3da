CREATE TABLE `secrets` (
	`tenant` text NOT NULL,
	`name` text NOT NULL,
	`version` integer NOT NULL,
	`master_key_id` text NOT NULL,
	`wrapped_key` blob NOT NULL,
	`sealed_value` blob NOT NULL,
	`created_at` integer NOT NULL,
	`created_by` text NOT NULL,
	`expires_at` integer,
	`rotation_period_ms` integer,
	PRIMARY KEY(`tenant`, `name`, `version`)
);
