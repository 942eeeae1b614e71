// Desplegado con SST, los secretos llegan como links (sst.config.ts), no como variables sueltas.
// Aquí se traducen a los nombres de entorno que lee core/config.ts, así el código no depende del SDK
// de SST y fuera de SST no cambia nada. Formatos (los del SDK `sst`, `Resource`):
// - contenedores y `sst dev`: `SST_RESOURCE_<Nombre>` = JSON `{"value": …}`;
// - Cloudflare Workers: un binding `<Nombre>` con ese mismo JSON;
// - Lambda: JSON `{<Nombre>: {"value": …}}` cifrado en `SST_KEY_FILE` con AES-256-GCM, clave
//   `SST_KEY` (base64), nonce de ceros y la etiqueta al final.

import { parseJsonOrUndefined } from "./ids";

/** Nombre del link (sst.Secret) → variable de entorno que lo consume. */
export const SST_LINKS = {
  DatabaseUrl: "DATABASE_URL",
  // La del edge, con su usuario de mínimo privilegio; solo el edge la enlaza. Va después de
  // DatabaseUrl: si un componente enlazara las dos, gana esta (falla a la vista, no escala).
  EdgeDatabaseUrl: "DATABASE_URL",
  NatsUrl: "NATS_URL",
  NatsWsUrl: "NATS_WS_URL",
  NatsToken: "NATS_TOKEN",
  AuthSigningKeys: "AUTH_SIGNING_KEYS",
  EncryptionKeys: "ENCRYPTION_KEYS",
  SmtpUrl: "SMTP_URL",
} as const;

export type SstLinkName = keyof typeof SST_LINKS;

function linkValue(raw: unknown): string | undefined {
  const parsed: unknown = typeof raw === "string" ? parseJsonOrUndefined(raw) : raw;
  if (parsed && typeof parsed === "object" && "value" in parsed) {
    const value = (parsed as { value: unknown }).value;
    return typeof value === "string" && value !== "" ? value : undefined;
  }
  return undefined;
}

/**
 * Entorno con los links de SST traducidos (solo agrega variables de texto, así que conserva el
 * tipo del entorno). Una variable ya definida gana; `resources` son los recursos de Lambda.
 */
export function envWithSstLinks<T extends Record<string, unknown>>(
  env: T,
  resources: Record<string, unknown> = {},
): T {
  const linked: Record<string, string> = {};
  for (const [name, variable] of Object.entries(SST_LINKS)) {
    const value =
      linkValue(env[`SST_RESOURCE_${name}`]) ?? linkValue(env[name]) ?? linkValue(resources[name]);
    if (value !== undefined) linked[variable] = value;
  }
  const defined = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  );
  return { ...env, ...linked, ...defined } as T;
}

/** Descifra el archivo de recursos de Lambda (`SST_KEY_FILE`) con la clave `SST_KEY`. */
export async function decryptSstResources(
  file: Uint8Array,
  keyBase64: string,
): Promise<Record<string, unknown>> {
  const keyBytes = Uint8Array.from(atob(keyBase64), (c) => c.charCodeAt(0));
  const key = await crypto.subtle.importKey("raw", keyBytes, "AES-GCM", false, ["decrypt"]);
  const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: new Uint8Array(12) }, key, file);
  const parsed: unknown = JSON.parse(new TextDecoder().decode(plain));
  return parsed && typeof parsed === "object" ? (parsed as Record<string, unknown>) : {};
}
