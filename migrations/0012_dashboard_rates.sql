CREATE INDEX `deliveries_state_updated` ON `deliveries` (`state`,`updated_at`,`tenant`);--> statement-breakpoint
CREATE INDEX `events_received` ON `events` (`received_at`,`tenant`);