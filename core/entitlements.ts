import { canonicalJson, sha256Hex } from "./ids";

export type InstanceStatus = "provisioning" | "active" | "failed" | "suspended" | "decommissioned";
export type SubscriptionStatus = "pending" | "active" | "suspended" | "cancelled";

export type Override =
  | { kind: "feature"; code: string; type: "enable" | "disable" }
  | { kind: "limit"; name: string; value: number };

export interface EntitlementInput {
  instance: { id: string; status: InstanceStatus };
  productCode: string;
  /** Todos los códigos de feature del producto: el documento los lista todos, activos o no. */
  productFeatures: readonly string[];
  /**
   * Los nombres de límite del producto: sin suscripción activa (o sin ninguna) se listan en 0, así
   * una app no cae en su valor por defecto (que pudiera ser más generoso) al pedir uno.
   */
  productLimits?: readonly string[];
  subscription: {
    status: SubscriptionStatus;
    startsAt: Date;
    expiresAt: Date | null;
  } | null;
  plan: {
    code: string;
    maxUsers: number;
    features: readonly string[];
    limits: Readonly<Record<string, number>>;
  } | null;
  overrides: readonly Override[];
  now: Date;
}

export type EffectiveStatus =
  | "active"
  | Exclude<InstanceStatus, "active">
  | "no_subscription"
  | Exclude<SubscriptionStatus, "active">
  | "not_started"
  | "expired";

export interface Entitlements {
  instanceId: string;
  productCode: string;
  planCode: string | null;
  status: EffectiveStatus;
  features: Record<string, boolean>;
  limits: Record<string, number>;
}

export interface VersionedEntitlements extends Entitlements {
  version: string;
}

export function effectiveStatus(input: EntitlementInput): EffectiveStatus {
  if (input.instance.status !== "active") return input.instance.status;
  const sub = input.subscription;
  if (!sub || !input.plan) return "no_subscription";
  if (sub.status !== "active") return sub.status;
  if (sub.startsAt.getTime() > input.now.getTime()) return "not_started";
  if (sub.expiresAt && sub.expiresAt.getTime() <= input.now.getTime()) return "expired";
  return "active";
}

/**
 * Instantes posteriores a `input.now` en que el estado efectivo cambia solo porque pasa el tiempo
 * (la suscripción empieza o vence). Quien cachea el resultado los necesita para no seguir
 * sirviendo como activa una suscripción vencida cuando no puede volver a la base.
 */
export function statusChangesAfter(input: EntitlementInput): Date[] {
  const sub = input.subscription;
  if (!sub) return [];
  const now = input.now.getTime();
  const candidates = [sub.startsAt, sub.expiresAt]
    .filter((d): d is Date => d !== null && d.getTime() > now)
    .sort((a, b) => a.getTime() - b.getTime());
  const changes: Date[] = [];
  let status = effectiveStatus(input);
  for (const at of candidates) {
    // La misma regla evaluada en ese instante: sin una segunda copia de la lógica de fechas.
    const next = effectiveStatus({ ...input, now: at });
    if (next !== status) changes.push(at);
    status = next;
  }
  return changes;
}

// Regla del dominio: activa si (el plan la incluye o hay override Enable) y no hay Disable;
// el override siempre gana. Nada está activo si la instancia o la suscripción no lo están.
export function resolveEntitlements(input: EntitlementInput): Entitlements {
  const status = effectiveStatus(input);
  const active = status === "active";
  const enabled = new Set<string>();
  const disabled = new Set<string>();
  const limitOverrides = new Map<string, number>();
  for (const o of input.overrides) {
    if (o.kind === "feature") (o.type === "enable" ? enabled : disabled).add(o.code);
    else limitOverrides.set(o.name, o.value);
  }
  const planFeatures = new Set(input.plan?.features ?? []);

  const features: Record<string, boolean> = {};
  const codes = [...new Set([...input.productFeatures, ...planFeatures, ...enabled])].sort();
  for (const code of codes) {
    features[code] = active && (planFeatures.has(code) || enabled.has(code)) && !disabled.has(code);
  }

  const limits: Record<string, number> = {};
  // MaxUsers del plan es la fuente de max_users; un límite homónimo del plan no lo pisa.
  const base: Record<string, number> = input.plan
    ? { ...input.plan.limits, max_users: input.plan.maxUsers }
    : {};
  // Sin suscripción activa (o sin suscripción ni plan) los límites valen 0, también los del
  // producto que el plan no fija: nada puede consumirse.
  const known = active ? [] : [...(input.productLimits ?? []), "max_users"];
  const names = new Set([...Object.keys(base), ...limitOverrides.keys(), ...known]);
  for (const name of [...names].sort()) {
    const value = limitOverrides.get(name) ?? base[name];
    if (!active) limits[name] = 0;
    else if (value !== undefined && input.plan) limits[name] = value;
  }

  return {
    instanceId: input.instance.id,
    productCode: input.productCode,
    planCode: input.plan?.code ?? null,
    status,
    features,
    limits,
  };
}

// La versión es un hash del contenido: cambia exactamente cuando cambia lo que la app ve.
export async function withVersion(entitlements: Entitlements): Promise<VersionedEntitlements> {
  const version = (await sha256Hex(canonicalJson(entitlements))).slice(0, 32);
  return { ...entitlements, version };
}
