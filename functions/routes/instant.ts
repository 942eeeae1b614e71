import { z } from "@hono/zod-openapi";

// Años admitidos, en UTC. Desde 10000 `toISOString()` da "+010000-…" y Postgres lo rechaza (500);
// por debajo de 100, V8 lee de vuelta "0049-06-01 00:00:00+00" como 2049. 1970 deja fuera fechas
// que ninguna suscripción ni entrada de auditoría puede tener.
export const MIN_INSTANT_YEAR = 1970;
export const MAX_INSTANT_YEAR = 9999;

export const INSTANT_RANGE_MESSAGE = `Must fall within years ${MIN_INSTANT_YEAR}-${MAX_INSTANT_YEAR} in UTC`;

/** ¿El instante, ya pasado a UTC, cae dentro de los años admitidos? */
export function instantInRange(value: string): boolean {
  const year = new Date(value).getUTCFullYear();
  return Number.isFinite(year) && year >= MIN_INSTANT_YEAR && year <= MAX_INSTANT_YEAR;
}

/**
 * Fecha y hora ISO 8601 con zona (Z o ±hh:mm), entre 1970 y 9999 una vez en UTC. Toda fecha que
 * entra por una ruta admin la usa; el error nombra el campo (`body.expiresAt`, `query.from`).
 */
export const instant = (description: string, example: string) =>
  z.iso
    // abort: con un formato inválido el rango no se mira (un solo error por campo).
    .datetime({ offset: true, message: "ISO 8601 date-time with zone", abort: true })
    .refine(instantInRange, { message: INSTANT_RANGE_MESSAGE })
    .openapi({
      description: `${description}. ISO 8601 con zona, años ${MIN_INSTANT_YEAR}-${MAX_INSTANT_YEAR} en UTC`,
      example,
    });
