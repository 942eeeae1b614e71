ALTER TABLE "api_clients" ADD COLUMN "row_version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "subscription_feature_overrides" ADD COLUMN "row_version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "webhook_endpoints" ADD COLUMN "row_version" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
-- Versión para ETag / If-Match de overrides, clientes OAuth y webhooks. La sube un trigger y no
-- cada UPDATE: a estas filas también escriben el upsert de apply_overrides del worker, el borrado
-- GDPR, el script de credenciales de desarrollo y el ON UPDATE CASCADE de un código de feature.
-- Solo cuenta lo que la API muestra: re-cifrar un secreto o repetir requested_at no la cambia.
CREATE FUNCTION "bump_row_version"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW."row_version" := OLD."row_version" + 1;
  RETURN NEW;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "subscription_feature_overrides_row_version"
  BEFORE UPDATE ON "subscription_feature_overrides"
  FOR EACH ROW
  WHEN ((OLD."feature_code", OLD."override_type", OLD."limit_name", OLD."value")
    IS DISTINCT FROM (NEW."feature_code", NEW."override_type", NEW."limit_name", NEW."value"))
  EXECUTE FUNCTION "bump_row_version"();
--> statement-breakpoint
CREATE TRIGGER "api_clients_row_version"
  BEFORE UPDATE ON "api_clients"
  FOR EACH ROW
  WHEN ((OLD."name", OLD."kind", OLD."customer_id", OLD."instance_ids", OLD."roles", OLD."revoked_at")
    IS DISTINCT FROM (NEW."name", NEW."kind", NEW."customer_id", NEW."instance_ids", NEW."roles", NEW."revoked_at"))
  EXECUTE FUNCTION "bump_row_version"();
--> statement-breakpoint
CREATE TRIGGER "webhook_endpoints_row_version"
  BEFORE UPDATE ON "webhook_endpoints"
  FOR EACH ROW
  WHEN ((OLD."product_id", OLD."tenant_instance_id", OLD."url", OLD."active")
    IS DISTINCT FROM (NEW."product_id", NEW."tenant_instance_id", NEW."url", NEW."active"))
  EXECUTE FUNCTION "bump_row_version"();
