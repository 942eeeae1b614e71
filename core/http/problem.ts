import type { Context, Env, ErrorHandler, Hono, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ZodError } from "zod";
import {
  AppError,
  type ErrorCode,
  errorCodes,
  type FieldError,
  statusFor,
  titleFor,
} from "../errors";
import type { Logger } from "../logger";
import { mapDatabaseError } from "./db-errors";
import { requestLogger } from "./request-context";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";
const PROBLEM_BASE = "https://docs.farutech.com/problems/";

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  requestId?: string;
  errors?: FieldError[];
  [key: string]: unknown;
}

export function toProblem(err: AppError, instance?: string, requestId?: string): Problem {
  return {
    ...(err.extra ?? {}),
    type: `${PROBLEM_BASE}${err.code}`,
    title: titleFor(err.code),
    status: statusFor(err.code),
    detail: err.message,
    code: err.code,
    ...(instance ? { instance } : {}),
    ...(requestId ? { requestId } : {}),
    ...(err.fields ? { errors: err.fields } : {}),
  };
}

export function problemResponse(problem: Problem, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(problem), {
    status: problem.status,
    headers: { "content-type": PROBLEM_CONTENT_TYPE, ...headers },
  });
}

export function zodFieldErrors(error: ZodError, prefix = ""): FieldError[] {
  const pathOf = (path: PropertyKey[]) =>
    [prefix, ...path.map(String)].filter((p) => p !== "").join(".");
  return error.issues.flatMap((issue) =>
    // Un campo o parámetro desconocido se nombra en su propia ruta (query.customer_id).
    issue.code === "unrecognized_keys"
      ? issue.keys.map((key) => ({ path: pathOf([...issue.path, key]), message: "Unknown field" }))
      : [{ path: pathOf(issue.path), message: issue.message }],
  );
}

function codeForStatus(status: number): ErrorCode {
  const found = errorCodes.find(
    (code) => code !== "validation_failed" && statusFor(code) === status,
  );
  return found ?? (status >= 500 ? "internal" : "bad_request");
}

// Convierte cualquier error lanzado en AppError; lo desconocido se vuelve 500 sin detalles internos.
export function normalizeError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  if (err instanceof HTTPException) {
    const code = codeForStatus(err.status);
    // Los errores 4xx de hono (p. ej. JSON malformado) conservan su mensaje; los 5xx no se exponen.
    const detail = err.status < 500 && err.message ? err.message : titleFor(code);
    return new AppError(code, detail, { cause: err });
  }
  const mapped = mapDatabaseError(err);
  if (mapped) return mapped;
  return new AppError("internal", "An unexpected error occurred", { cause: err });
}

interface ProblemVariables {
  requestId?: string;
}

function contextLogger(c: Context): Logger | undefined {
  return c.get("baseLogger") ? requestLogger(c) : undefined;
}

/**
 * RFC 6750 §3: 401 siempre con su reto; con un token presentado, `invalid_token` (inválido,
 * vencido o ajeno). 403 con token: `insufficient_scope` (el token no alcanza a ese recurso).
 */
export function bearerChallenge(
  code: "unauthorized" | "forbidden" | (string & {}),
  authorization: string | undefined,
): string | undefined {
  const presented = /^Bearer\s/i.test(authorization ?? "");
  if (code === "unauthorized") {
    return presented ? 'Bearer realm="farutech", error="invalid_token"' : 'Bearer realm="farutech"';
  }
  if (code === "forbidden" && presented)
    return 'Bearer realm="farutech", error="insufficient_scope"';
  return undefined;
}

/** Retry-After de un 503: lo que suele tardar un reinicio o failover de la base. */
export const RETRY_AFTER_UNAVAILABLE_SECONDS = 5;

export function problemErrorHandler<E extends Env>(): ErrorHandler<E> {
  return (err, c) => {
    const appError = normalizeError(err);
    const logger = contextLogger(c);
    if (appError.status >= 500) {
      // El serializador `err` del logger (core/logger.ts) quita el SQL y los parámetros.
      logger?.error({ err, code: appError.code }, "request failed");
    } else {
      logger?.info({ code: appError.code, detail: appError.message }, "request rejected");
    }
    const headers: Record<string, string> = {};
    const challenge = bearerChallenge(appError.code, c.req.header("authorization"));
    if (challenge) headers["www-authenticate"] = challenge;
    // Algo de este lado no está (base, bus): vale reintentar, y el SDK respeta la cabecera.
    if (appError.status === 503) headers["retry-after"] = String(RETRY_AFTER_UNAVAILABLE_SECONDS);
    return problemResponse(
      toProblem(appError, new URL(c.req.url).pathname, (c.var as ProblemVariables).requestId),
      headers,
    );
  };
}

// Orden del Allow: el de RFC 9110 para los métodos comunes; los demás, después.
const METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const byMethodOrder = (a: string, b: string) =>
  (METHOD_ORDER.indexOf(a) + 1 || 99) - (METHOD_ORDER.indexOf(b) + 1 || 99) || a.localeCompare(b);

/**
 * Métodos con una ruta propia (no un middleware "ALL") para este path. hono responde HEAD con
 * la ruta GET, así que GET implica HEAD.
 */
export function allowedMethods(app: Pick<Hono, "router" | "routes">, path: string): string[] {
  const methods = new Set(app.routes.map((r) => r.method).filter((m) => m !== "ALL"));
  const allowed = [...methods].filter((method) =>
    app.router.match(method, path)[0].some(([[, route]]) => route.method !== "ALL"),
  );
  if (allowed.includes("GET") && !allowed.includes("HEAD")) allowed.push("HEAD");
  return allowed.sort(byMethodOrder);
}

/**
 * 404 problem+json de lo que no tiene ruta. Con `app`, si el path existe con otro método es un
 * 405 con `Allow` (RFC 9110 §15.5.6): un 404 haría creer al cliente que la ruta no existe.
 */
export function problemNotFound<E extends Env>(
  app?: Pick<Hono, "router" | "routes">,
): NotFoundHandler<E> {
  return (c) => {
    const pathname = new URL(c.req.url).pathname;
    const requestId = (c.var as ProblemVariables).requestId;
    const allowed = app ? allowedMethods(app, c.req.path) : [];
    // HEAD se enruta como GET; y un handler que llama a c.notFound() en su propio método es un 404.
    const method = c.req.method === "HEAD" ? "GET" : c.req.method;
    if (allowed.length > 0 && !allowed.includes(method)) {
      const allow = allowed.join(", ");
      return problemResponse(
        toProblem(
          new AppError(
            "method_not_allowed",
            `${c.req.method} is not allowed on ${pathname}; allowed: ${allow}`,
          ),
          pathname,
          requestId,
        ),
        { allow },
      );
    }
    return problemResponse(
      toProblem(
        new AppError("not_found", `No route for ${c.req.method} ${pathname}`),
        pathname,
        requestId,
      ),
    );
  };
}

// defaultHook de @hono/zod-openapi: toda validación fallida se vuelve un 400 con los campos.
export function validationHook(
  result: { success: true } | { success: false; error: ZodError; target?: string },
): void {
  if (!result.success) {
    const target = result.target === "json" || !result.target ? "body" : result.target;
    throw new AppError("validation_failed", `The request ${target} is invalid`, {
      fields: zodFieldErrors(result.error, target),
    });
  }
}
