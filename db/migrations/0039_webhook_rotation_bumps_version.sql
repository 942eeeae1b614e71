-- GET /api/webhooks muestra hasta cuándo firma el secreto anterior: rotar y olvidarlo cambian lo
-- que se muestra, así que también la versión (ETag), o un GET condicional daría 304 con el dato viejo.
DROP TRIGGER "webhook_endpoints_row_version" ON "webhook_endpoints";--> statement-breakpoint
CREATE TRIGGER "webhook_endpoints_row_version"
  BEFORE UPDATE ON "webhook_endpoints"
  FOR EACH ROW
  WHEN ((OLD."product_id", OLD."tenant_instance_id", OLD."url", OLD."active", OLD."previous_secret_expires_at")
    IS DISTINCT FROM (NEW."product_id", NEW."tenant_instance_id", NEW."url", NEW."active", NEW."previous_secret_expires_at"))
  EXECUTE FUNCTION "bump_row_version"();
