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

/** El edge no respondió a la carga (sin snapshot, o pasado maxStaleMs): la opción `fallback`. */
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

/**
 * Lo que se sirve ante una copia vieja del edge (`x-entitlements-stale`) teniendo ya `held`.
 * `version` es un hash del contenido, no un contador: no se sabe cuál de las dos es más nueva.
 * La copia solo puede restringir (una suspensión ya vista no se deshace sin una respuesta fresca,
 * y la que trae la copia se aplica ya): devuelve `held` si la copia no restringe nada, `copy` si
 * solo restringe, y si hace de todo, lo más restrictivo de cada una.
 */
export function restrictedBy(held: Entitlements, copy: Entitlements): Entitlements {
  const heldActive = held.status === "active";
  let tighter = heldActive && copy.status !== "active";
  let looser = !heldActive && copy.status !== held.status;
  const keys = (a: object, b: object) => [...new Set([...Object.keys(a), ...Object.keys(b)])];
  // Object.fromEntries: una clave "__proto__" queda como propiedad propia, no como prototipo.
  const features = Object.fromEntries(
    keys(held.features, copy.features).map((code) => {
      const a = Object.hasOwn(held.features, code) && held.features[code] === true;
      const b = Object.hasOwn(copy.features, code) && copy.features[code] === true;
      tighter ||= a && !b;
      looser ||= b && !a;
      return [code, a && b];
    }),
  );
  const limits = Object.fromEntries(
    keys(held.limits, copy.limits).map((name) => {
      const a = Object.hasOwn(held.limits, name) ? held.limits[name] : undefined;
      const b = Object.hasOwn(copy.limits, name) ? copy.limits[name] : undefined;
      // Un límite que el plan no define no pone tope: cualquier valor definido restringe más.
      const value = Math.min(a ?? Number.POSITIVE_INFINITY, b ?? Number.POSITIVE_INFINITY);
      tighter ||= value !== a;
      looser ||= value !== b;
      return [name, value];
    }),
  );
  if (!tighter) return held;
  if (!looser) return copy;
  return {
    ...held,
    status: heldActive ? copy.status : held.status,
    features,
    limits,
    // No es ninguna versión del edge: distinta de las dos para quien compare versiones.
    version: `${held.version}+${copy.version}`,
  };
}
