import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";

const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/**
 * Verificador SCRAM-SHA-256 (RFC 5802 / RFC 7677) en el formato que Postgres guarda en
 * pg_authid. Se calcula aquí para que CREATE/ALTER ROLE lleve el verificador y nunca la
 * contraseña: así no aparece en pg_stat_activity ni en los logs del servidor (log_statement).
 * Solo para contraseñas ASCII imprimibles (las nuestras son base64url), que SASLprep no cambia.
 */
export function scramSha256Verifier(
  password: string,
  iterations = 4096,
  salt: Buffer = randomBytes(16),
): string {
  if (!PRINTABLE_ASCII.test(password)) {
    throw new Error("scramSha256Verifier expects a printable ASCII password");
  }
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}
