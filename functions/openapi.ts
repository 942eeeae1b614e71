import { type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Env, MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import { AppError, type FieldError } from "../core/errors";
import { guardedRoles } from "./middleware/auth";

const uuidExample = "0b8f2c1e-6f7a-4d7e-9a55-2f1d3c4b5a69";

// Miembros de extensión que los servicios añaden con AppError({ extra }): se declaran para que un
// cliente generado los conserve en vez de descartarlos.
const problemExtensions = {
  currentStatus: z.string().optional().openapi({
    description: "Estado actual que impide la operación (instancia, cliente OAuth…)",
    example: "suspended",
  }),
  tenantInstanceId: z.uuid().optional().openapi({
    description: "Instancia a la que se refiere el conflicto",
    example: uuidExample,
  }),
  databaseTier: z.string().optional().openapi({
    description: "Tier de base de la instancia (409 al pedir la conexión de una Standard)",
    example: "standard",
  }),
  unknownCodes: z
    .array(z.string())
    .optional()
    .openapi({
      description: "Códigos de feature o límite que no existen en el producto",
      example: ["NO_SUCH_FEATURE"],
    }),
  featuresInUse: z
    .array(z.string())
    .optional()
    .openapi({
      description: "Features que siguen en uso y bloquean el borrado",
      example: ["VET_AGENDA"],
    }),
  plans: z
    .array(z.string())
    .optional()
    .openapi({
      description: "Códigos de los planes que incluyen esas features",
      example: ["VET_STARTER"],
    }),
  overrides: z.number().int().optional().openapi({
    description: "Cuántos overrides usan esas features",
    example: 2,
  }),
  pendingTasks: z.number().int().optional().openapi({
    description: "Cuántas actualizaciones de features aún no aplicadas las piden",
    example: 1,
  }),
  subscriptions: z.number().int().optional().openapi({
    description: "Suscripciones que aún tienen el plan",
    example: 3,
  }),
  historicalSubscriptions: z.number().int().optional().openapi({
    description: "Suscripciones que tuvieron el plan (queda en su historia de facturación)",
    example: 3,
  }),
  subscriptionId: z.uuid().optional().openapi({
    description: "Suscripción que ya existe para la instancia",
    example: uuidExample,
  }),
  taskId: z.uuid().optional().openapi({
    description: "Tarea de provisioning en curso o que ya atiende la petición",
    example: uuidExample,
  }),
  purge: z.boolean().optional().openapi({
    description: "Si la baja en curso borra los datos",
    example: false,
  }),
  deprovisionTaskId: z.uuid().optional().openapi({
    description: "Baja en curso que impide el replay",
    example: uuidExample,
  }),
  taskStatus: z.string().optional().openapi({
    description: "Estado de la tarea de la entrada del DLQ",
    example: "succeeded",
  }),
  instanceStatus: z.string().optional().openapi({
    description: "Estado de la instancia de la entrada del DLQ",
    example: "decommissioned",
  }),
  replayedAt: z.string().optional().openapi({
    description: "Cuándo se repitió ya la entrada del DLQ (ISO 8601 UTC)",
    format: "date-time",
    example: "2026-01-24T13:20:07.500Z",
  }),
  customerId: z.uuid().optional().openapi({
    description: "Cliente borrado (GDPR) al que se refiere",
    example: uuidExample,
  }),
  customerDeletedAt: z.string().optional().openapi({
    description: "Cuándo se borró el cliente (ISO 8601 UTC)",
    format: "date-time",
    example: "2026-01-24T13:20:00.000Z",
  }),
};

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
    ...problemExtensions,
  })
  .openapi("Problem", {
    description:
      "RFC 9457 problem details. Los campos después de errors son extensiones (RFC 9457 §3.2) que " +
      "solo trae el problema que las nombra; un cliente debe ignorar las que no conozca.",
  });

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: problemSchema } },
});

// Lo pone el renderer de errores (core/http/problem.ts) en todo 401 y en el 403 de un token Bearer.
const challenged = (description: string, challenge: string, example: string) => ({
  ...problem(description),
  headers: {
    "WWW-Authenticate": {
      description: challenge,
      schema: { type: "string" as const, example },
    },
  },
});

/** Respuestas de error compartidas por todas las rutas. */
export const errorResponses = {
  400: problem("La petición es inválida"),
  401: challenged(
    "Falta el token o es inválido",
    'Reto Bearer (RFC 6750); con un token inválido lleva error="invalid_token"',
    'Bearer realm="farutech"',
  ),
  403: challenged(
    "El token no tiene el rol necesario",
    'Reto Bearer con error="insufficient_scope" (si se envió un token Bearer)',
    'Bearer realm="farutech", error="insufficient_scope"',
  ),
  404: problem("El recurso no existe"),
  409: problem("Conflicto con el estado actual"),
  422: problem("La petición es válida pero no puede aplicarse"),
  500: problem("Error interno"),
  503: problem("Dependencia no disponible"),
} as const;

const { 404: notFound, 409: _conflict, 422: _unprocessable, ...anyOperation } = errorResponses;

/** Una lista sin recurso padre: no hay 404, ni conflicto ni regla de negocio que romper. */
export const listErrorResponses = anyOperation;

/** Una lectura de un recurso (o de una lista que cuelga de uno): 404 si no existe. */
export const readErrorResponses = { ...anyOperation, 404: notFound };

/** If-Match con una versión que ya no es la actual: se relee el recurso (y su ETag) y se repite. */
export const preconditionFailed = problem(
  "El If-Match no coincide con la versión actual del recurso: otro cambio llegó antes",
);

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
  // Solo dígitos decimales: z.coerce.number aceptaría 0x3, 0b11 o 1e1 (Number() los entiende).
  limit: z
    .preprocess(
      (value) => (typeof value === "string" && /^[0-9]+$/.test(value) ? Number(value) : value),
      z.number({ error: "Expected an integer in decimal digits" }).int().min(1).max(100),
    )
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

/** Respuestas con un secreto (credenciales, cadena de conexión): ni proxies ni navegador las guardan. */
export const noStoreHeader = {
  "Cache-Control": {
    schema: { type: "string" as const, enum: ["no-store"], example: "no-store" },
    description: "no-store: la respuesta lleva un secreto y no se guarda en ninguna cache",
  },
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
  operationId?: string;
  description?: string;
  security?: Record<string, string[]>[];
  "x-required-roles"?: string[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses?: Record<string, { headers?: Record<string, unknown>; [key: string]: unknown }>;
};

// Las ponen bodyLimit (app.ts) y el filtro de tipo de @hono/zod-openapi a toda ruta con cuerpo,
// no el esquema de cada ruta: se añaden aquí a cada operación que declara un cuerpo.
const BODY_ERROR_RESPONSES = {
  413: "El cuerpo supera 256 KiB",
  415: "El cuerpo no es application/json (texto, formulario o sin content-type)",
} as const;

/** Documento OpenAPI con 413 y 415 en cada operación que recibe un cuerpo. */
export function withBodyErrors(doc: OpenApiDocument): OpenApiDocument {
  const schema = { $ref: "#/components/schemas/Problem" };
  for (const item of Object.values(doc.paths ?? {})) {
    for (const value of Object.values(item ?? {})) {
      const op = value as Operation;
      if (!op.requestBody || !op.responses) continue;
      for (const [status, description] of Object.entries(BODY_ERROR_RESPONSES)) {
        op.responses[status] ??= {
          description,
          content: { "application/problem+json": { schema } },
        };
      }
      // En orden de código, como las demás respuestas.
      op.responses = Object.fromEntries(
        Object.entries(op.responses).sort(([a], [b]) => a.localeCompare(b)),
      );
    }
  }
  return doc;
}

/** Lo que se lee de un cuerpo que la operación no espera: basta para nombrar sus campos. */
const UNEXPECTED_BODY_INSPECT_BYTES = 4 * 1024;
const JSON_MEDIA_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;

/** Lee el cuerpo sin pasar de `max` bytes; undefined si es más largo. */
async function readAtMost(
  body: ReadableStream<Uint8Array>,
  max: number,
): Promise<Uint8Array | undefined> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** Los campos de un cuerpo no esperado; [] si es `{}` en JSON, que no trae nada que ignorar. */
function unexpectedBodyFields(bytes: Uint8Array | undefined, contentType: string): FieldError[] {
  const whole: FieldError[] = [
    { path: "body", message: "Not allowed: this operation takes no request body" },
  ];
  if (!bytes || !JSON_MEDIA_TYPE.test(contentType)) return whole;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return whole;
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return whole;
  return Object.keys(parsed).map((key) => ({ path: `body.${key}`, message: "Unknown field" }));
}

/**
 * Una operación sin cuerpo en su esquema (acciones como /erase o /replay, los DELETE) rechaza
 * con 400 el cuerpo que le manden en vez de ignorarlo: `{"confirm":false}` no puede borrar.
 * Vale sin cuerpo, con uno vacío (Content-Length 0 o chunked sin bytes) y con `{}` en JSON.
 * Se instala una vez, antes de bodyLimit: estas operaciones responden 400, nunca 413. Una ruta
 * fuera del registro OpenAPI (app.post, `hide`) cuenta como sin cuerpo: ignorarlo es el defecto.
 */
export function rejectUndeclaredBody<E extends Env>(
  app: Pick<OpenAPIHono, "openAPIRegistry">,
): MiddlewareHandler<E> {
  // Se calcula en la primera petición: para entonces todas las rutas están registradas.
  let withBody: Set<string> | undefined;
  return async function rejectUndeclaredBody(c, next) {
    const body = c.req.raw.body;
    if (!body) return next();
    withBody ??= new Set(
      app.openAPIRegistry.definitions.flatMap((def) =>
        def.type === "route" && def.route.request?.body
          ? [`${def.route.method.toUpperCase()} ${def.route.path.replace(/\{([^}]+)\}/g, ":$1")}`]
          : [],
      ),
    );
    const route = matchedRoutes(c)
      .filter((r) => r.method !== "ALL")
      .at(-1);
    // Sin ruta: lo responde el 404/405; con cuerpo declarado: lo validan su esquema y bodyLimit.
    if (!route || withBody.has(`${route.method} ${route.path}`)) return next();
    // Si otro middleware ya lo leyó (c.req.text()), está en la cache de hono y no se relee.
    const alreadyRead = c.req.raw.bodyUsed;
    const declared = Number(c.req.header("content-length") ?? "0");
    const bytes = alreadyRead
      ? new Uint8Array(await c.req.arrayBuffer())
      : declared > UNEXPECTED_BODY_INSPECT_BYTES
        ? undefined
        : await readAtMost(body, UNEXPECTED_BODY_INSPECT_BYTES);
    const fields =
      bytes?.byteLength === 0
        ? []
        : unexpectedBodyFields(bytes, c.req.header("content-type") ?? "");
    if (fields.length > 0) {
      throw new AppError("validation_failed", "This operation takes no request body", { fields });
    }
    // Leído aquí, se repone para quien lo lea después (la idempotencia lo resume).
    if (!alreadyRead) c.req.raw = new Request(c.req.raw, { body: bytes });
    return next();
  };
}

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
      "misma tarea; otra petición con el mismo valor es otra tarea. En /api/provisioning/*, uno " +
      "presente y no válido es un 400 que nombra header.x-correlation-id.",
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

// Errores que el middleware de idempotencia guarda y repite (isFinalOutcome): el mismo cuerpo
// siempre los produce. 413 no: bodyLimit lo responde antes de que la clave se mire.
const REPLAYED_ERROR_STATUSES = new Set(["400", "415"]);

const uriReference = (description: string, example: string) => ({
  description,
  schema: { type: "string", format: "uri-reference", example },
});
const LOCATION_HEADERS: Record<string, ReturnType<typeof uriReference>> = {
  "201": uriReference("URL relativa del recurso creado", `/api/customers/${uuidExample}`),
  "202": uriReference(
    "URL relativa de la tarea (/api/provisioning/tasks/{taskId}) que sigue la operación asíncrona",
    `/api/provisioning/tasks/${uuidExample}`,
  ),
};

// 201/202 que no nombran un recurso nuevo: el límite vive dentro del producto que se devuelve, el
// replay del DLQ devuelve la misma entrada y el ciclo de facturación no tiene recurso que consultar.
const WITHOUT_LOCATION = new Set(["addProductLimit", "replayDeadLetter", "triggerBillingCycle"]);

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
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        const location = LOCATION_HEADERS[status];
        if (location && !WITHOUT_LOCATION.has(op.operationId ?? "")) {
          response.headers = { Location: location, ...response.headers };
        }
        const replayed =
          (replays && status.startsWith("2")) ||
          (method === "post" && REPLAYED_ERROR_STATUSES.has(status));
        if (replayed) {
          response.headers = { ...response.headers, "idempotent-replayed": REPLAYED_HEADER };
        }
      }
    }
  }
  doc.components = {
    ...doc.components,
    parameters: { ...doc.components?.parameters, ...PROTOCOL_PARAMETERS },
  };
  return doc;
}

/**
 * Documento OpenAPI con los roles de cada operación, leídos del guard (requireRole) que la ruta
 * tiene de verdad: `security` con los roles (OpenAPI 3.1 lo permite en esquemas no OAuth),
 * `x-required-roles` para programas y una frase en la descripción para personas.
 */
export function withRequiredRoles(
  doc: OpenApiDocument,
  routes: readonly { method: string; path: string; handler: unknown }[],
): OpenApiDocument {
  for (const route of routes) {
    const roles = guardedRoles(route.handler);
    if (!roles) continue;
    const path = route.path.replace(/:([A-Za-z0-9_]+)/g, "{$1}");
    const item = doc.paths?.[path] as Record<string, Operation> | undefined;
    const op = item?.[route.method.toLowerCase()];
    if (!op) continue;
    op.security = [{ Bearer: [...roles] }];
    op["x-required-roles"] = [...roles];
    const sentence = `Requiere uno de los roles: ${roles.join(", ")}.`;
    op.description = op.description ? `${op.description}\n\n${sentence}` : sentence;
  }
  return doc;
}

type SchemaNode = { [keyword: string]: unknown };
const isSchemaNode = (value: unknown): value is SchemaNode =>
  typeof value === "object" && value !== null && !Array.isArray(value);

// Toda marca de tiempo que la API devuelve (createdAt, expiresAt, occurredAt…) sale de
// toISOString(): ISO 8601 en UTC. Se documenta aquí, una vez, y no en cada z.string() de respuesta;
// openapi-headers.test.ts valida respuestas reales con ajv y sus formatos.
const TIMESTAMP_PROPERTY = /At$/;

/** Esquemas con nombre que alcanza `value` (siguiendo $ref), en `into`. */
function collectRefs(value: unknown, schemas: Record<string, unknown>, into: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) collectRefs(item, schemas, into);
    return;
  }
  if (!isSchemaNode(value)) return;
  if (typeof value.$ref === "string") {
    const name = value.$ref.split("/").at(-1) ?? "";
    if (into.has(name)) return;
    into.add(name);
    collectRefs(schemas[name], schemas, into);
    return;
  }
  for (const child of Object.values(value)) collectRefs(child, schemas, into);
}

/** format: date-time en las propiedades *At de tipo string de este esquema y los que anida. */
function markTimestamps(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) markTimestamps(item);
    return;
  }
  if (!isSchemaNode(node) || typeof node.$ref === "string") return;
  const properties = isSchemaNode(node.properties) ? node.properties : {};
  for (const [name, prop] of Object.entries(properties)) {
    if (!isSchemaNode(prop) || !TIMESTAMP_PROPERTY.test(name) || prop.format) continue;
    if ([prop.type].flat().includes("string")) prop.format = "date-time";
  }
  for (const child of Object.values(node)) markTimestamps(child);
}

/**
 * Documento OpenAPI con `format: date-time` en las marcas de tiempo de las respuestas. Solo en
 * esquemas que ninguna petición usa: en un cuerpo o parámetro, lo que se acepta lo dice zod.
 */
export function withTimestampFormats(doc: OpenApiDocument): OpenApiDocument {
  const schemas = (doc.components?.schemas ?? {}) as Record<string, unknown>;
  const inRequests = new Set<string>();
  const inResponses = new Set<string>();
  const responseSchemas: unknown[] = [];
  for (const item of Object.values(doc.paths ?? {})) {
    for (const value of Object.values(item ?? {})) {
      const op = value as Operation;
      collectRefs([op.requestBody, op.parameters], schemas, inRequests);
      for (const response of Object.values(op.responses ?? {})) {
        const content = isSchemaNode(response.content) ? response.content : {};
        for (const media of Object.values(content)) {
          if (isSchemaNode(media)) responseSchemas.push(media.schema);
        }
      }
    }
  }
  collectRefs(responseSchemas, schemas, inResponses);
  markTimestamps(responseSchemas);
  for (const name of inResponses) {
    if (!inRequests.has(name)) markTimestamps(schemas[name]);
  }
  return doc;
}
