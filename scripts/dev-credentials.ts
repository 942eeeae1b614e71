import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { eq, isNull } from "drizzle-orm";
import { generateSigningKey } from "../core/auth/keys";
import { randomToken } from "../core/ids";
import { generateEncryptionKey } from "../core/secret-box";
import { hashSecret, verifySecret } from "../core/secret-hash";
import { writeAudit } from "../db/audit";
import { apiClients } from "../db/schema";
import type { Database } from "../db/types";

export const LOCAL_ADMIN_CLIENT_ID = "local-admin";

/** Claves de firma locales: se generan una vez y se guardan en la carpeta de datos. */
export async function ensureLocalSigningKeys(path: string): Promise<string> {
  if (existsSync(path)) return readFileSync(path, "utf8");
  const keys = JSON.stringify([
    await generateSigningKey(`local-${new Date().toISOString().slice(0, 10)}`),
  ]);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, keys, { mode: 0o600 });
  return keys;
}

/** Claves de cifrado locales (AES-256-GCM) para secretos en reposo. */
export function ensureLocalEncryptionKeys(path: string): string {
  if (existsSync(path)) return readFileSync(path, "utf8");
  const keys = JSON.stringify([
    generateEncryptionKey(`local-${new Date().toISOString().slice(0, 10)}`),
  ]);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, keys, { mode: 0o600 });
  return keys;
}

/**
 * Cliente admin local (rol platform_admin); reutiliza el secreto guardado si sigue siendo válido.
 * Nunca revive uno revocado (alguien lo revocó a propósito, quizá en una base que no es de
 * desarrollo): entonces devuelve undefined. Crearlo o cambiarle el secreto queda auditado.
 */
export async function ensureLocalAdminClient(
  db: Database,
  credentialsPath: string,
  urls: { adminUrl: string; edgeUrl: string },
): Promise<{ clientId: string; clientSecret: string } | undefined> {
  let secret: string | undefined;
  if (existsSync(credentialsPath)) {
    const saved = JSON.parse(readFileSync(credentialsPath, "utf8")) as {
      admin?: { clientSecret?: string };
    };
    secret = saved.admin?.clientSecret;
  }
  const [existing] = await db
    .select()
    .from(apiClients)
    .where(eq(apiClients.clientId, LOCAL_ADMIN_CLIENT_ID));
  if (existing?.revokedAt) return undefined;
  const valid = existing && secret && (await verifySecret(secret, existing.secretHash));
  if (!valid || !secret) {
    secret = randomToken(32);
    const secretHash = await hashSecret(secret);
    const revived = await db.transaction(async (tx) => {
      const [row] = await tx
        .insert(apiClients)
        .values({
          clientId: LOCAL_ADMIN_CLIENT_ID,
          secretHash,
          name: "Local administrator (npm start)",
          kind: "admin",
          roles: ["platform_admin"],
        })
        .onConflictDoUpdate({
          target: apiClients.clientId,
          set: { secretHash },
          // Revocado entre la lectura y aquí: tampoco se revive.
          setWhere: isNull(apiClients.revokedAt),
        })
        .returning({ clientId: apiClients.clientId, roles: apiClients.roles });
      if (!row) return false;
      await writeAudit(tx, {
        actor: "npm-start",
        action: existing ? "api_client.secret_rotated" : "api_client.created",
        entityType: "api_client",
        entityId: row.clientId,
        after: { clientId: row.clientId, kind: "admin", roles: row.roles },
      });
      return true;
    });
    if (!revived) return undefined;
  }
  const credentials = { clientId: LOCAL_ADMIN_CLIENT_ID, clientSecret: secret };
  mkdirSync(dirname(credentialsPath), { recursive: true });
  writeFileSync(credentialsPath, `${JSON.stringify({ ...urls, admin: credentials }, null, 2)}\n`, {
    mode: 0o600,
  });
  return credentials;
}
