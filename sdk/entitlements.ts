import { FarutechError } from "./errors.js";

/** Respuesta de `GET /v1/entitlements` (contrato del edge). */
export interface Entitlements {
  instanceId: string;
  productCode: string;
  /** null si la instancia no tiene suscripción ni plan (status `no_subscription`). */
  planCode: string | null;
  status: string;
  features: Record<string, boolean>;
  limits: Record<string, number>;
  version: string;
}

/** Lo que el edge dijo la última vez que respondió. */
export interface EdgeSnapshot extends Entitlements {
  source: "edge";
  /**
   * true si el último intento de revalidar falló (se sirve lo último conocido) o si el edge
   * respondió con su propia copia vieja porque su base no respondía.
   */
  stale: boolean;
  /** Cuándo llegó este contenido (200), en ms del reloj del cliente. */
  fetchedAt: number;
  /** Última confirmación del edge (200 o 304). */
  validatedAt: number;
}

/** Sin respuesta del edge todavía: lo que dice la opción `fallback`. */
export interface FallbackSnapshot {
  source: "fallback";
  stale: true;
  instanceId: string;
  features: Record<string, boolean>;
  limits: Record<string, number>;
}

export type EntitlementsSnapshot = EdgeSnapshot | FallbackSnapshot;

export interface EntitlementsFallback {
  features?: Record<string, boolean>;
  limits?: Record<string, number>;
}

const isRecordOf = <T>(value: unknown, check: (v: unknown) => v is T): value is Record<string, T> =>
  typeof value === "object" &&
  value !== null &&
  !Array.isArray(value) &&
  Object.values(value).every(check);

const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/** Valida el cuerpo sin zod: el SDK no arrastra dependencias a las apps hijas. */
export function parseEntitlements(body: unknown): Entitlements {
  const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
  const { instanceId, productCode, planCode, status, features, limits, version } = b;
  if (
    typeof instanceId !== "string" ||
    typeof productCode !== "string" ||
    (typeof planCode !== "string" && planCode !== null) ||
    typeof status !== "string" ||
    typeof version !== "string" ||
    !isRecordOf(features, isBoolean) ||
    !isRecordOf(limits, isNumber)
  ) {
    throw new FarutechError(
      "bad_response",
      "Entitlements response does not match the contract",
      200,
    );
  }
  return { instanceId, productCode, planCode, status, features, limits, version };
}
