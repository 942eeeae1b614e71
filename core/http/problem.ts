import type { Context, Env, ErrorHandler, NotFoundHandler } from "hono";
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
    return problemResponse(
      toProblem(appError, new URL(c.req.url).pathname, (c.var as ProblemVariables).requestId),
      headers,
    );
  };
}

export function problemNotFound<E extends Env>(): NotFoundHandler<E> {
  return (c) =>
    problemResponse(
      toProblem(
        new AppError("not_found", `No route for ${c.req.method} ${new URL(c.req.url).pathname}`),
        new URL(c.req.url).pathname,
        (c.var as ProblemVariables).requestId,
      ),
    );
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
