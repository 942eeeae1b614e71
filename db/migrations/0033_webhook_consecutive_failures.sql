-- Racha de eventos en la DLQ por endpoint: el worker de integración lo desactiva al llegar al tope.
ALTER TABLE "webhook_endpoints" ADD COLUMN "consecutive_failures" integer DEFAULT 0 NOT NULL;