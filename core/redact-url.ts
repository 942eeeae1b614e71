import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";

/**
 * Una URL de webhook sin lo que puede ser secreto: muchos receptores (Slack, Discord…) llevan el
 * token en la ruta o en la query. Queda el origen, que basta para reconocer el destino; el
 * endpoint se identifica por su id.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    const hidden = (u.pathname !== "/" && u.pathname !== "") || u.search !== "";
    return `${u.origin}${hidden ? "/…" : "/"}`;
  } catch {
    return "<invalid url>";
  }
}

/** Huella corta de la URL completa: en la auditoría se ve que cambió sin guardarla. */
export function urlFingerprint(url: string): string {
  return bytesToHex(sha256(utf8ToBytes(url))).slice(0, 16);
}
