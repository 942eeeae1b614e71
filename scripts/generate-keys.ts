import { generateSigningKey } from "../core/auth/keys";
import { generateEncryptionKey } from "../core/secret-box";

// Imprime AUTH_SIGNING_KEYS=… (ES256) y ENCRYPTION_KEYS=… (AES-256-GCM) nuevas, en formato .env:
// `npm run -s keys:generate > .env` para docker compose, o valores para `sst secret set`.
const suffix = `${new Date().toISOString().slice(0, 10)}-${crypto.randomUUID().slice(0, 8)}`;
console.log(`AUTH_SIGNING_KEYS='${JSON.stringify([await generateSigningKey(`key-${suffix}`)])}'`);
console.log(`ENCRYPTION_KEYS='${JSON.stringify([generateEncryptionKey(`enc-${suffix}`)])}'`);
