-- La unicidad del TaxId pasa a la forma canónica (sin separadores, mayúsculas). Si ya hay dos
-- clientes del mismo país con el mismo TaxId escrito distinto, el último paso falla: hay que
-- fusionarlos o corregirlos antes de aplicar esta migración.
ALTER TABLE "customers" DROP CONSTRAINT "customers_country_tax_id_uq";--> statement-breakpoint
ALTER TABLE "customers" ADD COLUMN "tax_id_key" text GENERATED ALWAYS AS (upper(regexp_replace(tax_id, '[^0-9A-Za-z]', '', 'g'))) STORED NOT NULL;--> statement-breakpoint
ALTER TABLE "customers" ADD CONSTRAINT "customers_country_tax_id_key_uq" UNIQUE("country","tax_id_key");