import type { EntitlementInput, VersionedEntitlements } from "./entitlements";

// OpenFeature Remote Evaluation Protocol (open-feature/protocol, service/openapi.yaml): las
// features de una instancia son flags booleanos y sus límites flags numéricos.
//
// Razones (OpenFeature `reason`):
// - DISABLED: la instancia o la suscripción no están activas (suspendida, cancelada, vencida…);
//   el valor es false (feature) o 0 (límite), como en /v1/entitlements.
// - TARGETING_MATCH: un override de la suscripción decide el valor (Enable/Disable o valor de
//   límite): es una regla específica de ese tenant.
// - STATIC: el valor sale del plan tal cual (incluida o no, límite del plan).
// - STALE: la base no responde y se sirve la última versión conocida, pasada la cota de 2 s
//   (x-entitlements-stale: 1): los proveedores OFREP no ven cabeceras, el cuerpo lo dice.

export type OfrepReason = "STATIC" | "TARGETING_MATCH" | "DISABLED" | "STALE";
export type OfrepErrorCode =
  | "PARSE_ERROR"
  | "TARGETING_KEY_MISSING"
  | "INVALID_CONTEXT"
  | "GENERAL"
  | "FLAG_NOT_FOUND";

/** Respuesta de GET /ofrep/v1/configuration (extensión opcional del protocolo). */
export interface OfrepConfiguration {
  name: string;
  capabilities: {
    cacheInvalidation: { polling: { enabled: true; minPollingIntervalMs: number } };
    flagEvaluation: { supportedTypes: ("boolean" | "int")[] };
  };
}

/**
 * Features booleanas y límites enteros; sondear más rápido que la frescura de la cache del edge
 * solo devolvería lo mismo, por eso ese es el intervalo mínimo.
 */
export function ofrepConfiguration(freshMs: number): OfrepConfiguration {
  return {
    name: "farutech-orchestrator",
    capabilities: {
      cacheInvalidation: { polling: { enabled: true, minPollingIntervalMs: Math.max(freshMs, 1) } },
      flagEvaluation: { supportedTypes: ["boolean", "int"] },
    },
  };
}

/** Claves decididas por overrides: lo que convierte STATIC en TARGETING_MATCH. */
export interface OverriddenKeys {
  features: string[];
  limits: string[];
}

export function overriddenKeys(input: EntitlementInput): OverriddenKeys {
  const features = new Set<string>();
  const limits = new Set<string>();
  for (const o of input.overrides) {
    if (o.kind === "feature") features.add(o.code);
    else limits.add(o.name);
  }
  return { features: [...features].sort(), limits: [...limits].sort() };
}

export interface OfrepEvaluation {
  key: string;
  value: boolean | number;
  reason: OfrepReason;
  variant?: string;
  metadata: Record<string, string | number | boolean>;
}

export interface OfrepFailure {
  key?: string;
  errorCode: OfrepErrorCode;
  errorDetails: string;
}

function metadataOf(ent: VersionedEntitlements): Record<string, string> {
  const meta: Record<string, string> = { productCode: ent.productCode, status: ent.status };
  if (ent.planCode) meta.planCode = ent.planCode;
  return meta;
}

/** Un flag: feature (booleano) o límite (número); undefined si el producto no lo tiene. */
export function evaluateFlag(
  ent: VersionedEntitlements,
  overridden: OverriddenKeys,
  key: string,
  stale = false,
): OfrepEvaluation | undefined {
  const active = ent.status === "active";
  // DISABLED manda: una copia vieja nunca da más de lo que dice.
  const reasonOf = (overriddenKey: boolean): OfrepReason =>
    !active ? "DISABLED" : stale ? "STALE" : overriddenKey ? "TARGETING_MATCH" : "STATIC";
  // Object.hasOwn: una clave como "__proto__" o "toString" no es un flag.
  if (Object.hasOwn(ent.features, key)) {
    const value = ent.features[key] === true;
    return {
      key,
      value,
      reason: reasonOf(overridden.features.includes(key)),
      variant: value ? "on" : "off",
      metadata: metadataOf(ent),
    };
  }
  if (Object.hasOwn(ent.limits, key)) {
    return {
      key,
      value: ent.limits[key] ?? 0,
      reason: reasonOf(overridden.limits.includes(key)),
      metadata: metadataOf(ent),
    };
  }
  return undefined;
}

/** Todos los flags de la instancia: features y luego límites, en orden estable. */
export function evaluateAllFlags(
  ent: VersionedEntitlements,
  overridden: OverriddenKeys,
  stale = false,
): OfrepEvaluation[] {
  const keys = [...Object.keys(ent.features), ...Object.keys(ent.limits)];
  const flags: OfrepEvaluation[] = [];
  for (const key of new Set(keys)) {
    const flag = evaluateFlag(ent, overridden, key, stale);
    if (flag) flags.push(flag);
  }
  return flags;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Cuerpo OFREP → id de instancia (`context.targetingKey`) o el error que manda el protocolo.
 * `raw` es el texto del cuerpo: vacío equivale a `{}`.
 */
export function parseOfrepRequest(
  raw: string,
): { ok: true; instanceId: string } | { ok: false; failure: OfrepFailure } {
  let body: unknown = {};
  if (raw.trim() !== "") {
    try {
      body = JSON.parse(raw);
    } catch {
      return fail("PARSE_ERROR", "The request body is not valid JSON");
    }
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return fail("PARSE_ERROR", "The request body must be a JSON object");
  }
  const context = (body as { context?: unknown }).context;
  if (context === undefined) {
    return fail(
      "TARGETING_KEY_MISSING",
      "context.targetingKey (the tenant instance id) is required",
    );
  }
  if (typeof context !== "object" || context === null || Array.isArray(context)) {
    return fail("INVALID_CONTEXT", "context must be a JSON object");
  }
  const targetingKey = (context as { targetingKey?: unknown }).targetingKey;
  if (targetingKey === undefined || targetingKey === null || targetingKey === "") {
    return fail(
      "TARGETING_KEY_MISSING",
      "context.targetingKey (the tenant instance id) is required",
    );
  }
  if (typeof targetingKey !== "string" || !UUID_RE.test(targetingKey)) {
    return fail("INVALID_CONTEXT", "context.targetingKey must be a tenant instance id (UUID)");
  }
  return { ok: true, instanceId: targetingKey.toLowerCase() };
}

function fail(
  errorCode: OfrepErrorCode,
  errorDetails: string,
): { ok: false; failure: OfrepFailure } {
  return { ok: false, failure: { errorCode, errorDetails } };
}
