ALTER TABLE "subscription_feature_overrides" ADD COLUMN "requested_at" timestamp (3) with time zone DEFAULT now() NOT NULL;
--> statement-breakpoint
-- Las filas existentes toman su fecha de creación como fecha de pedido.
UPDATE "subscription_feature_overrides" SET "requested_at" = "created_at";