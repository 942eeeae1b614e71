import { type OpenAPIHono, z } from "@hono/zod-openapi";

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

/** Código de catálogo en la ruta (`…/by-code/{code}`). */
export const codeParam = (description: string, example: string) =>
  z
    .string()
    .min(1)
    .max(64)
    .openapi({ param: { name: "code", in: "path" }, description, example });

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

/** ETag de un recurso que no se edita con If-Match (tarea, DLQ): solo dice si cambió. */
export const contentEtagHeader = {
  ETag: {
    schema: { type: "string" as const },
    description: "Resumen del contenido: cambia cuando cambia el recurso",
  },
};

type OpenApiDocument = ReturnType<OpenAPIHono["getOpenAPI31Document"]>;
type Operation = {
  parameters?: unknown[];
  responses?: Record<string, { headers?: Record<string, unknown> }>;
};

// Cabeceras que valen para todas las rutas (las pone un middleware, no el esquema de cada ruta):
// se documentan una vez como componentes y se enlazan desde cada operación.
const PROTOCOL_PARAMETERS = {
  IdempotencyKey: {
    name: "Idempotency-Key",
    in: "header",
    required: false,
    description:
      "Clave de idempotencia (1-255 caracteres ASCII visibles). Repetir la misma clave con el mismo " +
      "cuerpo devuelve la primera respuesta (cabecera idempotent-replayed: true); con otro cuerpo, " +
      "422. Se guarda 24 h.",
    schema: { type: "string", pattern: "^[\\x21-\\x7e]{1,255}$", example: "crm-2026-0001" },
  },
  CorrelationId: {
    name: "X-Correlation-Id",
    in: "header",
    required: false,
    description:
      "Id de correlación (1-128 de A-Z a-z 0-9 . _ : -; si falta, el x-request-id): va en cada " +
      "línea de log y en la auditoría (salvo POST /api/provisioning/provision, cuya tarea y " +
      "auditoría llevan el correlationId del cuerpo). En DELETE /api/provisioning/{id} y PUT " +
      "/api/provisioning/{id}/features, repetir la misma petición con el mismo valor devuelve la " +
      "misma tarea; otra petición con el mismo valor es otra tarea.",
    schema: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,128}$", example: "incident-42-vet" },
  },
  RequestId: {
    name: "X-Request-Id",
    in: "header",
    required: false,
    description:
      "Id de la petición (se genera si falta o no es válido); se devuelve en la respuesta",
    schema: { type: "string", pattern: "^[A-Za-z0-9._:-]{1,128}$", example: "req-7f3a" },
  },
} as const;

const REPLAYED_HEADER = {
  description: "true si la respuesta es la repetición de una petición anterior (idempotencia)",
  schema: { type: "string", enum: ["true"], example: "true" },
};

const isTaskDedupedByCorrelation = (method: string, path: string) =>
  path.startsWith("/api/provisioning/{") && (method === "delete" || method === "put");

/** Documento OpenAPI con las cabeceras de protocolo (Idempotency-Key, X-Correlation-Id…). */
export function withProtocolHeaders(doc: OpenApiDocument): OpenApiDocument {
  const ref = (name: keyof typeof PROTOCOL_PARAMETERS) => ({
    $ref: `#/components/parameters/${name}`,
  });
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    if (!path.startsWith("/api/")) continue;
    for (const [method, value] of Object.entries(item ?? {})) {
      const op = value as Operation;
      const shared: unknown[] = [ref("CorrelationId"), ref("RequestId")];
      const replays = method === "post" || isTaskDedupedByCorrelation(method, path);
      if (method === "post") shared.unshift(ref("IdempotencyKey"));
      op.parameters = [...(op.parameters ?? []), ...shared];
      if (!replays) continue;
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        if (!status.startsWith("2")) continue;
        response.headers = { ...response.headers, "idempotent-replayed": REPLAYED_HEADER };
      }
    }
  }
  doc.components = {
    ...doc.components,
    parameters: { ...doc.components?.parameters, ...PROTOCOL_PARAMETERS },
  };
  return doc;
}
