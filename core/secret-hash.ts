import { base64url, fromBase64url } from "./ids";

// PBKDF2 de WebCrypto: funciona igual en Node y en workerd (cuyo máximo son 100 000 iteraciones).
const ITERATIONS = 100_000;
const SCHEME = "pbkdf2-sha256";
const B64URL = /^[A-Za-z0-9_-]+$/;

async function derive(secret: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

export async function hashSecret(secret: string): Promise<string> {
  const salt = new Uint8Array(16);
  crypto.getRandomValues(salt);
  const hash = await derive(secret, salt, ITERATIONS);
  return `${SCHEME}$${ITERATIONS}$${base64url(salt)}$${base64url(hash)}`;
}

function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, iter, salt, hash] = stored.split("$");
  if (scheme !== SCHEME || !iter || !salt || !hash) return false;
  const iterations = Number(iter);
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > ITERATIONS) return false;
  if (!B64URL.test(salt) || !B64URL.test(hash)) return false;
  try {
    const actual = await derive(secret, fromBase64url(salt), iterations);
    return timingSafeEqual(actual, fromBase64url(hash));
  } catch {
    // Un hash guardado corrupto nunca autentica.
    return false;
  }
}
