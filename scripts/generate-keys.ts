import { generateSigningKey } from "../core/auth/keys";

// Imprime AUTH_SIGNING_KEYS=… con una clave ES256 nueva (para docker compose o secretos de SST).
const kid = `key-${new Date().toISOString().slice(0, 10)}-${crypto.randomUUID().slice(0, 8)}`;
console.log(`AUTH_SIGNING_KEYS='${JSON.stringify([await generateSigningKey(kid)])}'`);
