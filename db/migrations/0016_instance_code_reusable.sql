-- El código de instancia es único entre las instancias vivas del cliente: uno dado de baja se
-- puede volver a usar (un cliente que vuelve recupera su "norte").
ALTER TABLE "tenant_instances" DROP CONSTRAINT "tenant_instances_customer_code_uq";--> statement-breakpoint
CREATE UNIQUE INDEX "tenant_instances_customer_code_uq" ON "tenant_instances" USING btree ("customer_id","instance_code") WHERE "tenant_instances"."status" <> 'decommissioned';