import { AppError } from "../errors";

interface PgErrorLike {
  code: string;
  constraint?: string;
  detail?: string;
}

function findPgError(err: unknown): PgErrorLike | undefined {
  let current: unknown = err;
  // drizzle envuelve el error del driver en `cause`; buscamos unos pocos niveles.
  for (let depth = 0; depth < 4 && current && typeof current === "object"; depth++) {
    const candidate = current as { code?: unknown; cause?: unknown };
    if (typeof candidate.code === "string" && /^[0-9A-Z]{5}$/.test(candidate.code)) {
      return candidate as PgErrorLike;
    }
    current = candidate.cause;
  }
  return undefined;
}

export function pgErrorCode(err: unknown): string | undefined {
  return findPgError(err)?.code;
}

export function pgConstraint(err: unknown): string | undefined {
  return findPgError(err)?.constraint;
}

// Traduce violaciones de restricciones de Postgres en errores de cliente, nunca en 500.
export function mapDatabaseError(err: unknown): AppError | undefined {
  const pg = findPgError(err);
  if (!pg) return undefined;
  const constraint = pg.constraint ? ` (${pg.constraint})` : "";
  switch (pg.code) {
    case "23505":
      return new AppError(
        "conflict",
        `A resource with the same unique key already exists${constraint}`,
        {
          cause: err,
          extra: pg.constraint ? { constraint: pg.constraint } : undefined,
        },
      );
    case "23503":
      // Trigger de tenant_instances: el cliente se borró mientras se creaba la instancia.
      if (pg.constraint === "tenant_instances_live_customer") {
        return new AppError("not_found", "The customer does not exist or was deleted", {
          cause: err,
          fields: [{ path: "body.customerId", message: "Unknown customer" }],
        });
      }
      return new AppError(
        "unprocessable",
        `A referenced resource does not exist or does not match${constraint}`,
        {
          cause: err,
          extra: pg.constraint ? { constraint: pg.constraint } : undefined,
        },
      );
    case "23514":
    case "23502":
      return new AppError("unprocessable", `The change breaks a data rule${constraint}`, {
        cause: err,
        extra: pg.constraint ? { constraint: pg.constraint } : undefined,
      });
    case "22P02":
    case "22003":
    case "22007":
    case "22008":
      return new AppError("bad_request", "A value has an invalid format", { cause: err });
    // NUL (\u0000) u otros caracteres que Postgres no puede guardar en text/jsonb.
    case "22021":
    case "22P05":
      return new AppError(
        "bad_request",
        "A value contains a character that cannot be stored (such as NUL)",
        { cause: err },
      );
    // Valor demasiado grande para un índice u otro límite del motor.
    case "54000":
    case "22001":
      return new AppError("bad_request", "A value is too long", { cause: err });
    case "40001":
    case "40P01":
      return new AppError("conflict", "The change conflicted with a concurrent one; retry it", {
        cause: err,
      });
    default:
      return undefined;
  }
}

/**
 * Texto del error para logs, tareas, la DLQ y los avisos por correo. De un fallo de drizzle solo el
 * error de la base: su mensaje trae el SQL y los parámetros (datos personales, cadenas cifradas).
 */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    if (err.message.startsWith("Failed query:") && err.cause instanceof Error) {
      const code = pgErrorCode(err);
      const suffix = code ? ` (${code})` : "";
      // Postgres repite el valor rechazado al final (`…: "valor"`): se quita también.
      const message = err.cause.message.replace(/: ".*"$/s, ': "…"');
      return `database error: ${message}${suffix}`.slice(0, 1000);
    }
    return err.message.slice(0, 1000);
  }
  return String(err).slice(0, 1000);
}
