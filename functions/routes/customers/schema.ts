import { z } from "@hono/zod-openapi";
import type { customers } from "../../../db/schema";

// ISO 3166-1 alfa-2 oficiales (249): el formato solo no basta, "XX" o "ZZ" no son países.
// Más XK (Kosovo): asignado por el usuario, pero es el que usan la UE y los bancos.
const ISO_COUNTRIES = new Set(
  (
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ " +
    "BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM " +
    "DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS " +
    "GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN " +
    "KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ " +
    "MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM " +
    "PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV " +
    "SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI " +
    "VN VU WF WS XK YE YT ZA ZM ZW"
  ).split(" "),
);

export function isIsoCountry(code: string): boolean {
  return ISO_COUNTRIES.has(code);
}

export const countrySchema = z
  .string()
  .regex(/^[A-Z]{2}$/, "ISO 3166-1 alpha-2 code in upper case")
  .refine(isIsoCountry, "Not an ISO 3166-1 alpha-2 country code")
  .openapi({ description: "País, ISO 3166-1 alfa-2 en mayúsculas", example: "CO" });

const legalName = z
  .string()
  .trim()
  .min(1)
  .max(200)
  .openapi({ description: "Razón social", example: "Grupo Éxito S.A." });

const billingEmail = z
  .email()
  .max(254)
  .openapi({ description: "Correo de facturación", example: "facturacion@grupoexito.example" });

const timestamp = (description: string) =>
  z.string().openapi({ description, example: "2026-01-24T13:20:00.000Z" });

export const customerSchema = z
  .object({
    id: z
      .uuid()
      .openapi({ description: "Id del cliente", example: "7d4c6a2e-1b3f-4e5a-8c9d-0a1b2c3d4e5f" }),
    legalName: z.string().openapi({
      description: 'Razón social ("erased-…" tras el borrado GDPR)',
      example: "Grupo Éxito S.A.",
    }),
    taxId: z.string().openapi({
      description: "Identificación tributaria, única por país",
      example: "890900608-9",
    }),
    billingEmail: z
      .string()
      .openapi({ description: "Correo de facturación", example: "facturacion@grupoexito.example" }),
    country: z.string().openapi({ description: "ISO 3166-1 alfa-2", example: "CO" }),
    isActive: z.boolean().openapi({ description: "Activo (puede provisionar)", example: true }),
    createdAt: timestamp("Creación (ISO 8601)"),
    updatedAt: timestamp("Última modificación (ISO 8601)"),
    deletedAt: z.string().nullable().openapi({
      description: "Borrado lógico (GDPR); null si no está borrado",
      example: null,
    }),
    erasedAt: z.string().nullable().openapi({
      description: "Datos personales borrados (GDPR); null si no se han borrado",
      example: null,
    }),
  })
  .openapi("Customer");

export const createCustomerSchema = z
  .strictObject({
    legalName,
    taxId: z
      .string()
      .trim()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9][A-Za-z0-9 .\-/]*$/, "letters, digits, spaces, '.', '-' or '/'")
      .openapi({
        description: "Identificación tributaria, única por país",
        example: "890900608-9",
      }),
    billingEmail,
    country: countrySchema,
  })
  .openapi("CreateCustomer");

export const updateCustomerSchema = z
  .strictObject({
    legalName: legalName.optional(),
    billingEmail: billingEmail.optional(),
    isActive: z
      .boolean()
      .optional()
      .openapi({ description: "Activa o desactiva el cliente", example: false }),
  })
  .refine((v) => Object.values(v).some((x) => x !== undefined), {
    message: "At least one of legalName, billingEmail or isActive is required",
  })
  // El refine no sale en el documento: minProperties dice lo mismo a quien genere clientes.
  .openapi("UpdateCustomer", { minProperties: 1 });

export type CreateCustomerInput = z.infer<typeof createCustomerSchema>;
export type UpdateCustomerInput = z.infer<typeof updateCustomerSchema>;
export type CustomerRow = typeof customers.$inferSelect;

export function toCustomer(row: CustomerRow) {
  return {
    id: row.id,
    legalName: row.legalName,
    taxId: row.taxId,
    billingEmail: row.billingEmail,
    country: row.country,
    isActive: row.isActive,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    deletedAt: row.deletedAt ? row.deletedAt.toISOString() : null,
    erasedAt: row.erasedAt ? row.erasedAt.toISOString() : null,
  };
}
