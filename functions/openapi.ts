import { z } from "@hono/zod-openapi";

export const problemSchema = z
  .object({
    type: z.string().openapi({
      description: "URI del tipo de problema",
      example: "https://docs.farutech.com/problems/validation_failed",
    }),
    title: z
      .string()
      .openapi({ description: "Resumen del tipo de problema", example: "Validation failed" }),
    status: z.number().int().openapi({ description: "Código HTTP", example: 400 }),
    detail: z
      .string()
      .openapi({ description: "Explicación de este caso", example: "The request body is invalid" }),
    code: z
      .string()
      .openapi({ description: "Código estable para programas", example: "validation_failed" }),
    instance: z
      .string()
      .optional()
      .openapi({ description: "Ruta de la petición", example: "/api/provisioning/provision" }),
    requestId: z.string().optional().openapi({
      description: "Id de la petición (x-request-id)",
      example: "3f0c3c1e-2b0a-4c43-9d5b-4b2f3a1f6c10",
    }),
    errors: z
      .array(
        z.object({
          path: z.string().openapi({ description: "Campo que falló", example: "body.customerId" }),
          message: z.string().openapi({ description: "Por qué falló", example: "Invalid UUID" }),
        }),
      )
      .optional()
      .openapi({ description: "Campos que fallaron la validación" }),
  })
  .openapi("Problem", { description: "RFC 9457 problem details" });

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: problemSchema } },
});

/** Respuestas de error compartidas por todas las rutas. */
export const errorResponses = {
  400: problem("La petición es inválida"),
  401: problem("Falta el token o es inválido"),
  403: problem("El token no tiene el rol necesario"),
  404: problem("El recurso no existe"),
  409: problem("Conflicto con el estado actual"),
  422: problem("La petición es válida pero no puede aplicarse"),
  500: problem("Error interno"),
  503: problem("Dependencia no disponible"),
} as const;

export const bearerSecurity = [{ Bearer: [] }];

export const uuidParam = (name: string, description: string) =>
  z.uuid().openapi({
    param: { name, in: "path" },
    description,
    example: "0b8f2c1e-6f7a-4d7e-9a55-2f1d3c4b5a69",
  });

// Estricta (y lo heredan sus `.extend`): un filtro mal escrito (`customer_id`) es un 400, no una
// lista sin filtrar sobre la que un operador actuaría creyéndola filtrada.
export const paginationQuery = z.strictObject({
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(100)
    .default(20)
    .openapi({ description: "Tamaño de página (1-100)", example: 20 }),
  cursor: z.string().max(512).optional().openapi({
    description: "Cursor opaco devuelto como nextCursor",
    example: "eyJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMFoiLCJpIjoiLi4uIn0",
  }),
});

export function pageSchema<T extends z.ZodTypeAny>(item: T, name: string) {
  return z
    .object({
      items: z.array(item).openapi({ description: "Elementos de esta página" }),
      nextCursor: z.string().nullable().openapi({
        description: "Cursor de la página siguiente; null en la última",
        example: null,
      }),
    })
    .openapi(name);
}

/** Cuerpo JSON obligatorio de una ruta. */
export const jsonBody = <T extends z.ZodTypeAny>(schema: T) => ({
  content: { "application/json": { schema } },
  required: true,
});

/** Cabecera If-Match opcional de PATCH/DELETE (412 si la versión cambió). */
export const ifMatchHeader = z.object({
  "if-match": z.string().optional().openapi({
    description:
      "ETag leído antes, o una lista de ETags (vale si coincide alguno), o *; 412 si la versión cambió, 400 si no es una lista de ETags",
    example: '"v3"',
  }),
});

/** Cabecera ETag de los GET de un recurso. */
export const etagHeader = {
  ETag: { schema: { type: "string" as const }, description: "Versión para If-Match" },
};
