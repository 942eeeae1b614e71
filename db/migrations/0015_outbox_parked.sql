DROP INDEX "outbox_pending_idx";--> statement-breakpoint
ALTER TABLE "outbox_events" ADD COLUMN "parked_at" timestamp (3) with time zone;--> statement-breakpoint
CREATE INDEX "outbox_pending_idx" ON "outbox_events" USING btree ("seq") WHERE "outbox_events"."published_at" IS NULL AND "outbox_events"."parked_at" IS NULL;