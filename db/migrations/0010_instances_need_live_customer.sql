-- Una instancia nueva solo para un cliente no borrado. El FOR SHARE choca con el UPDATE del
-- borrado lógico: si el borrado va primero, esta comprobación ve deleted_at ya puesto; si va
-- después, el borrado ve la instancia nueva y la suspende. Sin esto, una provisión concurrente
-- con el borrado dejaba una instancia activa de un cliente borrado.
CREATE FUNCTION "tenant_instances_require_live_customer"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM "customers" WHERE "id" = NEW."customer_id" AND "deleted_at" IS NULL FOR SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'customer % does not exist or was deleted', NEW."customer_id"
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'tenant_instances_live_customer';
  END IF;
  RETURN NEW;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "tenant_instances_live_customer"
  BEFORE INSERT ON "tenant_instances"
  FOR EACH ROW EXECUTE FUNCTION "tenant_instances_require_live_customer"();
