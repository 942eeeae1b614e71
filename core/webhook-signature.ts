// Firma de webhooks: HMAC-SHA256 sobre `<timestamp>.<cuerpo>`, cabecera `t=<unix>,v1=<hex>`.
// Durante la rotación de un secreto la cabecera lleva una firma `v1` por secreto vigente (el nuevo
// primero): el receptor acepta si alguna coincide con el suyo. Rechaza timestamps viejos (repetición).
export const SIGNATURE_HEADER = "Farutech-Signature";

async function hmacHex(secret: string, message: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message));
  return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Cabecera con una firma por secreto (el nuevo y, mientras dure la rotación, el anterior). */
export async function signWebhook(
  secrets: string | readonly string[],
  body: string,
  timestamp: number,
): Promise<string> {
  const list = typeof secrets === "string" ? [secrets] : secrets;
  const signatures = await Promise.all(list.map((s) => hmacHex(s, `${timestamp}.${body}`)));
  return [`t=${timestamp}`, ...signatures.map((v) => `v1=${v}`)].join(",");
}

function sameText(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export async function verifyWebhook(
  secret: string,
  body: string,
  header: string,
  nowSeconds: number,
  toleranceSeconds = 300,
): Promise<boolean> {
  const pairs = header.split(",").map((p) => {
    const at = p.indexOf("=");
    return at < 0 ? ["", ""] : [p.slice(0, at).trim(), p.slice(at + 1).trim()];
  });
  const stamps = pairs.filter(([k]) => k === "t");
  const signatures = pairs.filter(([k]) => k === "v1").map(([, v]) => v ?? "");
  const t = Number(stamps[0]?.[1]);
  if (stamps.length !== 1 || !Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds)
    return false;
  const expected = await hmacHex(secret, `${t}.${body}`);
  // Todas se comparan (sin cortar en la primera): el tiempo no dice cuál coincidió.
  let matched = false;
  for (const v of signatures) matched = sameText(expected, v) || matched;
  return matched;
}
