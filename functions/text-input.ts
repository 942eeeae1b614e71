import { z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import { AppError, type FieldError } from "../core/errors";

// Entrada que JSON.parse acepta pero que se guardaría alterada en silencio: un surrogate suelto
// (Postgres lo guarda como U+FFFD) y una clave "__proto__" (z.record la descarta). Ambas son un
// 400 que nombra el campo.

// Con la bandera u, un par válido es un solo punto de código: \p{Cs} solo casa surrogates sueltos.
const LONE_SURROGATE = /\p{Cs}/u;

/** true si el texto es Unicode bien formado (String.prototype.isWellFormed, ES2024). */
export function isWellFormedText(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

/**
 * Rutas (`body.a.0.b`, como zodFieldErrors) de los textos mal formados de un valor JSON. Una
 * clave mal formada se nombra por el objeto que la contiene.
 */
export function illFormedTextFields(value: unknown, path = "body"): FieldError[] {
  if (typeof value === "string") {
    return isWellFormedText(value) ? [] : [{ path, message: "Not well-formed Unicode" }];
  }
  if (Array.isArray(value)) {
    return value.flatMap((item, i) => illFormedTextFields(item, `${path}.${i}`));
  }
  if (typeof value !== "object" || value === null) return [];
  return Object.entries(value).flatMap(([key, child]) =>
    isWellFormedText(key)
      ? illFormedTextFields(child, `${path}.${key}`)
      : [{ path, message: "A key is not well-formed Unicode" }],
  );
}

// El mismo criterio que el validador json de hono: lo que él no lee, aquí no se mira.
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * Rechaza un cuerpo JSON con texto que no es Unicode bien formado, en cualquier campo. Va detrás
 * de bodyLimit; un JSON roto se deja al validador de la ruta (su propio 400).
 */
export function wellFormedJsonBody(): MiddlewareHandler {
  return async function wellFormedJsonBodyMiddleware(c, next) {
    const mediaType = (c.req.header("content-type") ?? "").split(";")[0]?.trim() ?? "";
    if (!JSON_MEDIA_TYPE.test(mediaType)) return next();
    // Un surrogate suelto solo entra como escape \uXXXX: sin uno en el texto no hace falta recorrerlo.
    const text = await c.req.text();
    if (!/\\u[dD][89a-fA-F]/.test(text)) return next();
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return next();
    }
    const fields = illFormedTextFields(parsed);
    if (fields.length > 0) {
      throw new AppError(
        "validation_failed",
        "The request body has text that is not valid Unicode",
        {
          fields,
        },
      );
    }
    return next();
  };
}

/**
 * z.record que no descarta en silencio una clave "__proto__" (zod la salta para no tocar el
 * prototipo del resultado): la rechaza con un error en esa clave.
 */
export function recordWithoutProtoKey<T extends z.ZodType>(record: T) {
  return z.preprocess((raw, ctx) => {
    if (typeof raw === "object" && raw !== null && Object.hasOwn(raw, "__proto__")) {
      ctx.addIssue({ code: "custom", path: ["__proto__"], message: "Reserved key", input: raw });
    }
    return raw;
  }, record);
}
