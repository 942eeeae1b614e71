import { slugify } from "./ids";

// Identificadores técnicos de una instancia (seed 001 §3: GlobalInstanceId, namespace, subdominio).
export function tenantCodeFor(
  customerLegalName: string,
  instanceCode: string,
  instanceId: string,
): string {
  const base = slugify(`${slugify(customerLegalName, 20)}-${instanceCode}`, 47);
  return `${base}-${instanceId.replace(/-/g, "").slice(0, 8)}`;
}

/** Namespace de Kubernetes: ≤ 63 caracteres, DNS-1123. */
export function kubernetesNamespaceFor(tenantCode: string): string {
  return `tenant-${tenantCode}`.slice(0, 63).replace(/-+$/, "");
}

/**
 * Subdominio de la instancia. Dos clientes cuyos nombres dan el mismo slug chocarían con el mismo
 * código de instancia: entonces se añade el prefijo del id de la instancia (`instanceId`).
 */
export function subdomainUrlFor(
  customerLegalName: string,
  instanceCode: string,
  baseDomain: string,
  instanceId?: string,
): string {
  const host = instanceId
    ? `${instanceCode}-${instanceId.replace(/-/g, "").slice(0, 8)}`
    : instanceCode;
  return `${host}.${slugify(customerLegalName, 30)}.${baseDomain}`;
}

export const DEFAULT_BASE_DOMAIN = "farutech.com";
