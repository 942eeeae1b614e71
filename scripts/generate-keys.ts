import { generateSigningKey } from "../core/auth/keys";
import { generateEncryptionKey } from "../core/secret-box";

// Claves nuevas en formato .env, para docker compose, `sst secret set` o Secrets de Kubernetes:
//   npm run -s keys:generate              → AUTH_SIGNING_KEYS=… (ES256; docs/rotacion-de-claves.md)
//   npm run -s keys:generate -- all       → además ENCRYPTION_KEYS=… (AES-256-GCM): `> .env`
//   npm run -s keys:generate -- encryption → solo ENCRYPTION_KEYS=…
const which = process.argv[2] ?? "signing";
if (!["signing", "encryption", "all"].includes(which) || process.argv.length > 3) {
  // --help es una pregunta, no un error: el uso por stdout y 0.
  const help = (which === "--help" || which === "-h") && process.argv.length === 3;
  (help ? console.log : console.error)(
    "usage: npm run -s keys:generate -- [signing|encryption|all]",
  );
  process.exit(help ? 0 : 2);
}
const suffix = `${new Date().toISOString().slice(0, 10)}-${crypto.randomUUID().slice(0, 8)}`;
if (which !== "encryption")
  console.log(`AUTH_SIGNING_KEYS='${JSON.stringify([await generateSigningKey(`key-${suffix}`)])}'`);
if (which !== "signing")
  console.log(`ENCRYPTION_KEYS='${JSON.stringify([generateEncryptionKey(`enc-${suffix}`)])}'`);
