import { createHash, createHmac, randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import pg from "pg";

// El cliente SCRAM de `pg` (el que usan las apps hijas para entrar con esa contraseña) es la
// implementación independiente contra la que se comprueba el verificador.
interface SaslSession {
  response: string;
  clientNonce: string;
}
const sasl = createRequire(import.meta.url)("pg/lib/crypto/sasl.js") as {
  startSession(mechanisms: string[]): SaslSession;
  continueSession(session: SaslSession, password: string, serverData: string): Promise<void>;
  finalizeSession(session: SaslSession, serverData: string): void;
};

/** Hace de servidor Postgres en un intercambio SCRAM: true si el cliente prueba la contraseña. */
export async function scramLogin(verifier: string, password: string): Promise<boolean> {
  const match = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (!match) throw new Error(`not a SCRAM verifier: ${verifier}`);
  const [, iterations, salt, storedKeyB64, serverKeyB64] = match;
  const storedKey = Buffer.from(storedKeyB64 ?? "", "base64");
  const session = sasl.startSession(["SCRAM-SHA-256"]);
  const nonce = session.clientNonce + randomBytes(12).toString("base64");
  const serverFirst = `r=${nonce},s=${salt},i=${iterations}`;
  await sasl.continueSession(session, password, serverFirst);
  const clientFinal = session.response;
  const proof = Buffer.from(/,p=(.+)$/.exec(clientFinal)?.[1] ?? "", "base64");
  const authMessage = `n=*,r=${session.clientNonce},${serverFirst},${clientFinal.replace(/,p=.+$/, "")}`;
  const clientSignature = createHmac("sha256", storedKey).update(authMessage).digest();
  const clientKey = Buffer.from(proof.map((b, i) => b ^ (clientSignature[i] ?? 0)));
  if (!createHash("sha256").update(clientKey).digest().equals(storedKey)) return false;
  const serverKey = Buffer.from(serverKeyB64 ?? "", "base64");
  const serverSignature = createHmac("sha256", serverKey).update(authMessage).digest("base64");
  // El cliente comprueba a su vez la firma del servidor (lanza si no coincide).
  sasl.finalizeSession(session, `v=${serverSignature}`);
  return true;
}

/**
 * El verificador que el servidor guarda para un rol. Las pruebas lo comprueban con scramLogin
 * porque el Postgres local entra con trust y no pide contraseña.
 */
export async function storedRoleVerifier(adminUrl: string, role: string): Promise<string> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ rolpassword: string | null }>(
      "select rolpassword from pg_authid where rolname = $1",
      [role],
    );
    return rows[0]?.rolpassword ?? "";
  } finally {
    await admin.end();
  }
}
